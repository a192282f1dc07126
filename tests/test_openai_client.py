"""memo.openai.cached(client): an AsyncOpenAI client cached where it stands, over real HTTP."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import openai
import pytest
from doubles import StoreDouble
from openai import AsyncOpenAI

import memo
import memo.openai
from memo import MemoryStore

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI

MESSAGES = [{"role": "user", "content": "What is caching?"}]


async def test_repeated_chat_completion_is_one_http_request(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """The same chat request twice: one HTTP request, equal objects, the second a hit."""
    client = memo.openai.cached(openai_client)
    first = await client.chat.completions.create(model="fake", messages=MESSAGES)
    assert memo.openai.last_call_was_hit() is False
    second = await client.chat.completions.create(model="fake", messages=MESSAGES)
    assert memo.openai.last_call_was_hit() is True
    assert openai_server.count("/v1/chat/completions") == 1
    assert second == first
    assert (second.id, second.created, second.usage) == (first.id, first.created, first.usage)
    assert second._request_id == first._request_id is not None
    info = memo.openai.cache_info(client)
    assert (info.hits, info.misses, info.errors) == (1, 1, 0)


async def test_a_server_that_sends_no_request_id_is_cached(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Without x-request-id (some compatible servers), answers are stored; _request_id is None."""
    client = memo.openai.cached(openai_client)
    first = await client.chat.completions.create(model="fake-no-request-id", messages=MESSAGES)
    second = await client.chat.completions.create(model="fake-no-request-id", messages=MESSAGES)
    assert memo.openai.last_call_was_hit() is True
    assert openai_server.count("/v1/chat/completions") == 1
    assert second == first
    assert second._request_id is first._request_id is None
    info = memo.openai.cache_info(client)
    assert (info.hits, info.misses, info.errors) == (1, 1, 0)


@pytest.mark.parametrize(
    ("call", "path"),
    [
        pytest.param(
            lambda c: c.embeddings.create(model="fake-embed", input=["a", "bb"]),
            "/v1/embeddings",
            id="embeddings-default-base64",
        ),
        pytest.param(
            lambda c: c.embeddings.create(model="fake-embed", input="a", encoding_format="float"),
            "/v1/embeddings",
            id="embeddings-float",
        ),
        pytest.param(
            lambda c: c.responses.create(model="fake", input="Hello"),
            "/v1/responses",
            id="responses",
        ),
        pytest.param(
            lambda c: c.chat.completions.create(
                model="fake", messages=MESSAGES, n=3, temperature=1.2
            ),
            "/v1/chat/completions",
            id="chat-n3-temperature",
        ),
        pytest.param(
            lambda c: c.chat.completions.create(model="fake-odd", messages=MESSAGES),
            "/v1/chat/completions",
            id="chat-odd-payload",
        ),
    ],
)
async def test_each_endpoint_is_cached(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, call: Any, path: str
) -> None:
    """embeddings, Responses, sampled and odd (unvalidated) chat answers are sent once."""
    client = memo.openai.cached(openai_client)
    first = await call(client)
    second = await call(client)
    assert openai_server.count(path) == 1
    assert second == first
    assert memo.openai.last_call_was_hit() is True
    assert memo.openai.cache_info(client).errors == 0


async def test_embeddings_hit_is_decoded_like_a_miss(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """The SDK asks for base64 embeddings; a hit is decoded to the same floats."""
    client = memo.openai.cached(openai_client)
    first = await client.embeddings.create(model="fake-embed", input="abc")
    second = await client.embeddings.create(model="fake-embed", input="abc")
    assert openai_server.last.body["encoding_format"] == "base64"
    assert first.data[0].embedding == second.data[0].embedding == [1.0, 3.0, 0.0, 0.25]


async def test_tool_call_ids_come_back_unchanged(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A hit keeps the tool-call ids that the next turn's messages refer to."""
    client = memo.openai.cached(openai_client)
    tools: Any = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    first = await client.chat.completions.create(model="fake", messages=MESSAGES, tools=tools)
    second = await client.chat.completions.create(model="fake", messages=MESSAGES, tools=tools)
    calls = second.choices[0].message.tool_calls
    assert calls is not None
    assert calls[0].id == "call_1_0"
    assert second == first
    assert openai_server.count() == 1


async def test_concurrent_identical_requests_are_sent_once(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Twenty identical requests in flight together make one HTTP request."""
    client = memo.openai.cached(openai_client)
    openai_server.gate.clear()  # hold the answer until every caller has joined
    calls = asyncio.gather(
        *(client.chat.completions.create(model="fake", messages=MESSAGES) for _ in range(20))
    )
    task = asyncio.ensure_future(calls)
    assert await asyncio.to_thread(openai_server.wait_for, 1)
    openai_server.gate.set()
    results = await task
    assert openai_server.count() == 1
    assert all(result == results[0] for result in results)
    info = memo.openai.cache_info(client)
    assert (info.hits, info.misses) == (19, 1)


async def test_joined_callers_each_get_their_own_object(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Two callers of one flight: the SDK decodes base64 for one and leaves it for the other."""
    client = memo.openai.cached(openai_client)
    openai_server.gate.clear()
    calls = asyncio.gather(
        client.embeddings.create(model="fake-embed", input="abc"),
        client.embeddings.create(model="fake-embed", input="abc", encoding_format="base64"),
    )
    task = asyncio.ensure_future(calls)
    assert await asyncio.to_thread(openai_server.wait_for, 1)
    openai_server.gate.set()
    decoded, raw = await task
    assert openai_server.count() == 1
    assert memo.openai.cache_info(client).hits == 1
    assert decoded.data[0].embedding == [1.0, 3.0, 0.0, 0.25]
    assert isinstance(raw.data[0].embedding, str)


async def test_errors_are_raised_and_never_stored(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """An API error reaches the caller each time; nothing is stored for it."""
    client = memo.openai.cached(openai_client)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="fake-error", messages=MESSAGES)
    assert openai_server.count() == 2


async def test_an_error_sent_with_http_200_is_not_stored(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """An error body some servers send with status 200 is returned but asked again next time."""
    client = memo.openai.cached(openai_client)
    answers = [
        await client.chat.completions.create(model="fake-error-200", messages=MESSAGES)
        for _ in range(2)
    ]
    assert [a.error["message"] for a in answers] == ["overloaded #1", "overloaded #2"]  # type: ignore[attr-defined]
    assert openai_server.count() == 2


async def test_unfinished_responses_are_not_stored(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A queued (background) Responses answer is returned but asked again next time."""
    client = memo.openai.cached(openai_client)
    first = await client.responses.create(model="fake", input="Hi", background=True)
    second = await client.responses.create(model="fake", input="Hi", background=True)
    assert first.status == second.status == "queued"
    assert first.id != second.id
    assert openai_server.count() == 2


async def test_other_endpoints_pass_through(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Everything but the cached endpoints reaches the API every time."""
    client = memo.openai.cached(openai_client)
    for _ in range(2):
        page = await client.models.list()
        assert [model.id async for model in page] == ["fake"]
    assert openai_server.count("/v1/models") == 2
    assert memo.openai.cache_info(client).misses == 0


async def test_cached_client_is_a_copy_of_the_same_class(openai_client: AsyncOpenAI) -> None:
    """The cached client is an AsyncOpenAI configured like the original, which is unchanged."""
    client = memo.openai.cached(openai_client)
    assert isinstance(client, AsyncOpenAI)
    assert client is not openai_client
    assert client.base_url == openai_client.base_url
    assert client.api_key == openai_client.api_key
    assert "post" not in vars(openai_client)


class EarlyClient(AsyncOpenAI):
    """A client that makes its resources when built, as openai releases before 1.7x did."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        assert self.embeddings is not None
        assert self.chat.completions is not None


async def test_resources_made_with_the_client_are_cached(openai_server: FakeOpenAI) -> None:
    """Resources that exist before cached() returns are cached too, not silently sent."""
    async with EarlyClient(
        base_url=openai_server.base_url, api_key="sk-test", max_retries=0
    ) as raw:
        client = memo.openai.cached(raw)
        assert "embeddings" in vars(client)
        for _ in range(2):
            await client.embeddings.create(model="fake-embed", input="a")
            await client.chat.completions.create(model="fake", messages=MESSAGES)
    assert openai_server.count() == 2
    assert memo.openai.cache_info(client).hits == 2


async def test_original_client_stays_uncached(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Wrapping a client does not change it: its calls still all reach the API."""
    memo.openai.cached(openai_client)
    for _ in range(2):
        await openai_client.chat.completions.create(model="fake", messages=MESSAGES)
    assert openai_server.count() == 2


async def test_with_options_stays_cached_and_shares_entries(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """client.with_options(timeout=..., max_retries=...) is cached, with the same keys."""
    client = memo.openai.cached(openai_client)
    first = await client.chat.completions.create(model="fake", messages=MESSAGES)
    patient = client.with_options(timeout=5.0, max_retries=1)
    second = await patient.chat.completions.create(model="fake", messages=MESSAGES)
    assert second == first
    assert openai_server.count() == 1
    assert memo.openai.cache_info(patient) == memo.openai.cache_info(client)


async def test_entries_survive_a_new_client(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Another cached client on the same folder (a restart) reads the stored answer."""
    first = await memo.openai.cached(openai_client).chat.completions.create(
        model="fake", messages=MESSAGES
    )
    again = memo.openai.cached(openai_client)
    second = await again.chat.completions.create(model="fake", messages=MESSAGES)
    assert second == first
    assert openai_server.count() == 1
    assert memo.openai.cache_info(again).hits == 1


async def test_bypass_and_refreshing(openai_server: FakeOpenAI, openai_client: AsyncOpenAI) -> None:
    """memo.bypass() sends without touching the entry; memo.refreshing() sends and overwrites."""
    client = memo.openai.cached(openai_client)
    first = await client.chat.completions.create(model="fake", messages=MESSAGES)
    with memo.bypass():
        fresh = await client.chat.completions.create(model="fake", messages=MESSAGES)
    assert memo.openai.last_call_was_hit() is False
    assert fresh.id != first.id
    assert await client.chat.completions.create(model="fake", messages=MESSAGES) == first
    with memo.refreshing():
        renewed = await client.chat.completions.create(model="fake", messages=MESSAGES)
    assert await client.chat.completions.create(model="fake", messages=MESSAGES) == renewed
    assert renewed.id not in {first.id, fresh.id}
    assert openai_server.count() == 3


async def test_cache_clear_drops_every_entry(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """cache_clear(client) empties the namespace; the next call is sent again."""
    client = memo.openai.cached(openai_client, store=MemoryStore())
    await client.chat.completions.create(model="fake", messages=MESSAGES)
    await client.embeddings.create(model="fake-embed", input="a")
    assert await memo.openai.cache_clear(client) == 2
    await client.chat.completions.create(model="fake", messages=MESSAGES)
    assert openai_server.count() == 3


FIRE = "disk on fire"


def broken_store() -> StoreDouble:
    """A store whose every read and write fails."""
    return StoreDouble(fail=dict.fromkeys(("get", "set", "delete", "clear"), OSError(FIRE)))


async def test_a_broken_store_never_loses_the_answer(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """A store that fails on every read and write: each call still gets its answer."""
    client = memo.openai.cached(openai_client, store=broken_store())
    completion = await client.chat.completions.create(model="fake", messages=MESSAGES)
    stream = await client.chat.completions.create(model="fake", messages=MESSAGES, stream=True)
    chunks = [chunk async for chunk in stream]
    assert completion.choices[0].message.content == "Echo #1: What is caching?"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert memo.openai.cache_info(client).errors == 4
    assert "disk on fire" in caplog.text


@pytest.mark.parametrize(
    ("options", "error"),
    [
        pytest.param({"key_headers": ("Authorization",)}, ValueError, id="key-headers-credential"),
        pytest.param({"key_headers": "OpenAI-Beta"}, TypeError, id="key-headers-str"),
        pytest.param({"ttl": -1}, ValueError, id="negative-ttl"),
        pytest.param(
            {"store": MemoryStore(), "directory": "x"}, TypeError, id="store-and-directory"
        ),
    ],
)
def test_bad_options_fail_at_once(
    openai_client: AsyncOpenAI, options: dict[str, Any], error: type[Exception]
) -> None:
    """Wrong options raise when the client is wrapped, saying what is wrong."""
    with pytest.raises(error):
        memo.openai.cached(openai_client, **options)


def test_refuses_what_it_cannot_cache(openai_client: AsyncOpenAI) -> None:
    """A sync client, or a client already cached, is refused with a clear message."""
    with pytest.raises(TypeError, match="AsyncOpenAI"):
        memo.openai.cached(openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9"))  # type: ignore[type-var]
    with pytest.raises(ValueError, match="already cached"):
        memo.openai.cached(memo.openai.cached(openai_client))
    with pytest.raises(TypeError, match="not cached by memo"):
        memo.openai.cache_info(openai_client)
