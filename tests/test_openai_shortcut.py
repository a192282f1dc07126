"""The cached client's shortcut: a repeated request skips the SDK's request transform.

A cached client remembers what a call's own arguments led to (the key of the
body the SDK built) and answers a repeat straight from the entry. These tests
spy on the SDK's transform to see which way a call went, and check that the
shortcut's answer is exactly what the full path gives: same type, same
fields, same counters, and a request that differs in any way that matters is
never answered from another's entry.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

import openai
import pytest
from openai._utils import _transform
from pydantic import BaseModel

import memo
import memo.openai
from memo import MemoryStore, RedisStore
from memo.openai import _shortcut

if TYPE_CHECKING:
    from collections.abc import Callable

    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI
    from redis_server import RedisServer

MESSAGES: Any = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is caching?"},
]


class City(BaseModel):
    name: str
    population: int


@pytest.fixture
def transforms(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every run of the SDK's request transform (async and sync), by the type it checked against."""
    seen: list[Any] = []
    async_transform, transform = _transform.async_transform, _transform.transform

    async def counting_async_transform(data: Any, expected_type: Any) -> Any:
        seen.append(expected_type)
        return await async_transform(data, expected_type)

    def counting_transform(data: Any, expected_type: Any) -> Any:
        seen.append(expected_type)
        return transform(data, expected_type)

    monkeypatch.setattr(_transform, "async_transform", counting_async_transform)
    monkeypatch.setattr(_transform, "transform", counting_transform)
    return seen


def _chat(client: AsyncOpenAI, **params: Any) -> Any:
    return client.chat.completions.create(**{"model": "fake", "messages": MESSAGES, **params})


def _parse(client: AsyncOpenAI) -> Any:
    return client.chat.completions.parse(model="fake", messages=MESSAGES, response_format=City)


def _embed_base64(client: AsyncOpenAI) -> Any:
    return client.embeddings.create(model="fake-embed", input=["a", "bb"])


def _embed_float(client: AsyncOpenAI) -> Any:
    return client.embeddings.create(model="fake-embed", input="a", encoding_format="float")


def _respond(client: AsyncOpenAI) -> Any:
    return client.responses.create(model="fake", input="Hello", temperature=0.5)


def _respond_parsed(client: AsyncOpenAI) -> Any:
    return client.responses.parse(model="fake", input="A city?", text_format=City)


def _raw_chat(client: AsyncOpenAI) -> Any:
    return client.chat.completions.with_raw_response.create(model="fake", messages=MESSAGES)


def _raw_parse(client: AsyncOpenAI) -> Any:
    return client.chat.completions.with_raw_response.parse(
        model="fake", messages=MESSAGES, response_format=City
    )


def _raw_embed(client: AsyncOpenAI) -> Any:
    return client.embeddings.with_raw_response.create(model="fake-embed", input=["a", "bb"])


def _chat_with_options(client: AsyncOpenAI) -> Any:
    return _chat(
        client,
        temperature=0,
        timeout=openai.Timeout(30.0, connect=5.0),
        extra_headers={"X-Trace": "1"},
        extra_query={"tenant": "a"},
        extra_body={"metadata": {"run": "7"}},
    )


CALLS = [
    pytest.param(_chat, id="chat"),
    pytest.param(_chat_with_options, id="chat-options"),
    pytest.param(_parse, id="chat-parse"),
    pytest.param(_embed_base64, id="embeddings-base64"),
    pytest.param(_embed_float, id="embeddings-float"),
    pytest.param(_respond, id="responses"),
    pytest.param(_respond_parsed, id="responses-parse"),
]
RAW_CALLS = [
    pytest.param(_raw_chat, id="raw-chat"),
    pytest.param(_raw_parse, id="raw-parse"),
    pytest.param(_raw_embed, id="raw-embeddings"),
]


def _same(shortcut: Any, slow: Any) -> None:
    """The shortcut's object is the full path's: same type, fields, set fields and request id."""
    assert type(shortcut) is type(slow)
    assert shortcut == slow
    assert shortcut.model_dump(warnings=False) == slow.model_dump(warnings=False)
    unset = {"exclude_unset": True, "warnings": False}
    assert shortcut.model_dump(**unset) == slow.model_dump(**unset)
    assert shortcut._request_id == slow._request_id is not None


def _parsed(answer: Any) -> Any:
    if hasattr(answer, "output_parsed"):
        return answer.output_parsed
    choices = getattr(answer, "choices", None)
    return getattr(choices[0].message, "parsed", None) if choices else None


@pytest.mark.parametrize("call", CALLS)
async def test_a_repeat_skips_the_transform_and_equals_the_full_path(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    transforms: list[Any],
    call: Callable[[AsyncOpenAI], Any],
) -> None:
    """The second call runs no transform, sends nothing and equals a full-path hit."""
    client = memo.openai.cached(openai_client, store=MemoryStore())
    first = await call(client)
    assert len(transforms) == 1
    shortcut = await call(client)
    assert len(transforms) == 1  # the shortcut: the SDK method did not run
    assert memo.openai.last_call_was_hit() is True
    # A copy of the client has a table of its own: its first call is the full path's hit.
    slow = await call(client.with_options())
    assert len(transforms) == 2
    assert memo.openai.last_call_was_hit() is True
    assert openai_server.count() == 1
    _same(shortcut, slow)
    _same(shortcut, first)
    if _parsed(first) is not None:  # structured output: the caller's own model, rebuilt
        assert type(_parsed(shortcut)) is City
        assert _parsed(shortcut) == _parsed(slow) == _parsed(first)
        assert _parsed(shortcut) is not _parsed(first)
    info = memo.openai.cache_info(client)
    assert (info.hits, info.misses, info.errors) == (2, 1, 0)


@pytest.mark.parametrize("call", RAW_CALLS)
async def test_a_raw_repeat_is_the_full_paths_raw_response(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    transforms: list[Any],
    call: Callable[[AsyncOpenAI], Any],
) -> None:
    """with_raw_response on the shortcut: the SDK's raw object, parse() and headers as on a hit."""
    client = memo.openai.cached(openai_client, store=MemoryStore())
    await call(client)
    shortcut = await call(client)
    assert len(transforms) == 1
    slow = await call(client.with_options())
    assert len(transforms) == 2
    assert openai_server.count() == 1
    assert type(shortcut) is type(slow)
    _same(shortcut.parse(), slow.parse())
    assert dict(shortcut.headers) == dict(slow.headers)
    assert shortcut.http_request.url == slow.http_request.url
    assert (shortcut.status_code, shortcut.request_id) == (slow.status_code, slow.request_id)


async def test_embeddings_in_base64_and_float_are_two_entries(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """The SDK asks base64 by default and decodes it; floats asked for are another request."""
    client = memo.openai.cached(openai_client, store=MemoryStore())
    decoded = await _embed_base64(client)
    again = await _embed_base64(client)
    floats = await client.embeddings.create(
        model="fake-embed", input=["a", "bb"], encoding_format="float"
    )
    floats_again = await client.embeddings.create(
        model="fake-embed", input=["a", "bb"], encoding_format="float"
    )
    assert openai_server.count() == 2
    assert again == decoded
    assert isinstance(again.data[0].embedding, list)
    assert isinstance(again.data[0].embedding[0], float)
    assert floats_again == floats
    # The stored base64 answer is decoded for each caller: one's edit is not another's.
    again.data[0].embedding[0] = 1e9
    assert (await _embed_base64(client)).data[0].embedding[0] != 1e9


def _variant(**changes: Any) -> dict[str, Any]:
    return {"model": "fake", "messages": MESSAGES, **changes}


OTHER_CONTENT: Any = [MESSAGES[0], {"role": "user", "content": "What is caching!"}]
REORDERED: Any = [{"content": m["content"], "role": m["role"]} for m in MESSAGES]

# (first request, second request, whether the second is a new request to the API,
# whether the second goes straight to the entry).
NEAR_MISSES = [
    pytest.param(_variant(), _variant(messages=OTHER_CONTENT), True, False, id="content"),
    pytest.param(_variant(), _variant(messages=tuple(MESSAGES)), False, False, id="tuple-vs-list"),
    pytest.param(_variant(temperature=1), _variant(temperature=1.0), True, False, id="1-vs-1.0"),
    pytest.param(_variant(temperature=1), _variant(temperature=True), True, False, id="1-vs-True"),
    pytest.param(_variant(), _variant(messages=REORDERED), False, True, id="key-order"),
    pytest.param(
        _variant(extra_headers={"X-Trace": "1"}),
        _variant(extra_headers={"X-Trace": "2"}),
        False,
        False,
        id="extra-headers-value",
    ),
    pytest.param(
        _variant(extra_query={"a": "1"}),
        _variant(extra_query={"a": "2"}),
        True,
        False,
        id="extra-query",
    ),
    pytest.param(
        _variant(extra_body={"seed": 1}), _variant(extra_body={"seed": 2}), True, False, id="body"
    ),
    pytest.param(
        _variant(),
        _variant(temperature=openai.NOT_GIVEN),
        False,
        False,
        id="not-given-passed-explicitly",
    ),
    pytest.param(
        _variant(), _variant(extra_headers=None), False, False, id="none-passed-explicitly"
    ),
    pytest.param(_variant(), _variant(n=1), True, False, id="default-sent-explicitly"),
    pytest.param(_variant(), _variant(timeout=30.0), False, False, id="timeout"),
]


@pytest.mark.parametrize(("first", "second", "sent", "shortcut"), NEAR_MISSES)
async def test_near_misses_go_the_way_the_full_path_goes(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    transforms: list[Any],
    first: dict[str, Any],
    second: dict[str, Any],
    *,
    sent: bool,
    shortcut: bool,
) -> None:
    """A request that differs is never answered from another's entry without the full path."""
    client = memo.openai.cached(openai_client, store=MemoryStore())
    await client.chat.completions.create(**first)
    answer = await client.chat.completions.create(**first)  # remembered, and a shortcut hit
    assert len(transforms) == 1
    other = await client.chat.completions.create(**second)
    assert len(transforms) == (1 if shortcut else 2)
    assert openai_server.count() == (2 if sent else 1)
    assert (other == answer) is not sent
    # What the full path gives for the second request, from a client with a table of its own.
    _same(other, await client.with_options().chat.completions.create(**second))
    # And the second request is remembered in turn.
    before = len(transforms)
    _same(await client.chat.completions.create(**second), other)
    assert len(transforms) == before


async def test_a_generator_of_messages_takes_the_full_path(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, transforms: list[Any]
) -> None:
    """Consumed once, a generator is never remembered: each call transforms, and hits."""
    client = memo.openai.cached(openai_client, store=MemoryStore())
    first = await _chat(client)
    for _ in range(2):
        hit = await _chat(client, messages=(message for message in MESSAGES))
        assert memo.openai.last_call_was_hit() is True
        _same(hit, first)
    assert len(transforms) == 3
    assert openai_server.count() == 1


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(lambda: {**MESSAGES[1]}, id="dict"),
        pytest.param(lambda: type("Sub", (dict,), {})(MESSAGES[1]), id="dict-subclass"),
    ],
)
async def test_only_plain_values_are_remembered(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    transforms: list[Any],
    value: Callable[[], Any],
) -> None:
    """A dict subclass (its meaning may be more than its items) is transformed every time."""
    client = memo.openai.cached(openai_client, store=MemoryStore())
    for _ in range(3):
        await _chat(client, messages=[MESSAGES[0], value()])
    plain = type(value()) is dict
    assert len(transforms) == (1 if plain else 3)
    assert openai_server.count() == 1


async def test_another_base_url_is_another_request(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, transforms: list[Any]
) -> None:
    """with_options(base_url=...) and setting client.base_url never reuse the other URL's entry."""
    client = memo.openai.cached(openai_client, store=MemoryStore())
    await _chat(client)
    await _chat(client)
    elsewhere = openai_server.base_url.replace("127.0.0.1", "localhost")
    other = client.with_options(base_url=elsewhere)
    await _chat(other)
    assert openai_server.count() == 2
    client.base_url = elsewhere  # the SDK's setter: the same client now sends elsewhere
    moved = await _chat(client)
    assert memo.openai.last_call_was_hit() is True  # the entry `other` stored, by the full path
    assert len(transforms) == 3
    _same(moved, await _chat(other))
    assert openai_server.count() == 2


async def test_key_headers_are_keyed_in_order(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, transforms: list[Any]
) -> None:
    """With key_headers, the header value that is sent decides, whichever spelling came last."""
    client = memo.openai.cached(openai_client, store=MemoryStore(), key_headers=("X-Tag",))
    one: Any = {"X-Tag": "1", "x-tag": "2"}
    two: Any = {"x-tag": "2", "X-Tag": "1"}
    first = await _chat(client, extra_headers=one)
    await _chat(client, extra_headers=one)
    assert len(transforms) == 1
    second = await _chat(client, extra_headers=two)
    assert len(transforms) == 2
    assert openai_server.count() == 2  # "2" then "1" were sent: two keys
    assert second != first
    third = await _chat(client, extra_headers={"X-Tag": "3"})
    assert openai_server.count() == 3
    assert third != first


async def test_a_parse_remembers_its_own_copy_of_the_tools(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, transforms: list[Any]
) -> None:
    """Editing the tools passed to the first call changes nothing for a later equal call."""
    tool: Any = {
        "type": "function",
        "function": {
            "name": "lookup",
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
    client = memo.openai.cached(openai_client, store=MemoryStore())
    tools = [tool]
    first = await client.chat.completions.parse(model="fake", messages=MESSAGES, tools=tools)
    tools[0]["function"]["strict"] = False  # the caller edits its own list afterwards
    tools[0] = {**tool, "function": {**tool["function"], "strict": True}}
    again = await client.chat.completions.parse(model="fake", messages=MESSAGES, tools=tools)
    assert len(transforms) == 1
    _same(again, first)
    call = again.choices[0].message.tool_calls[0]
    assert (
        call.function.parsed_arguments
        == first.choices[0].message.tool_calls[0].function.parsed_arguments
    )
    assert call.function.parsed_arguments == {"city": "example"}
    assert openai_server.count() == 1


async def test_an_entry_gone_behind_its_back_is_sent_again(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, transforms: list[Any]
) -> None:
    """A remembered request whose entry was deleted is a miss: sent, stored, then a shortcut hit."""
    store = MemoryStore()
    client = memo.openai.cached(openai_client, store=store)
    first = await _chat(client)
    await _chat(client)
    assert await memo.openai.cache_clear(client) == 1
    fresh = await _chat(client)
    assert memo.openai.last_call_was_hit() is False
    assert openai_server.count() == 2
    assert fresh != first
    again = await _chat(client)
    assert memo.openai.last_call_was_hit() is True
    _same(again, fresh)
    assert len(transforms) == 2
    info = memo.openai.cache_info(client)
    assert (info.hits, info.misses, info.errors) == (2, 2, 0)


async def test_an_expired_entry_is_sent_again(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    transforms: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After the ttl, the remembered request reaches the API again."""
    from memo.stores import memory

    now = [1000.0]
    monkeypatch.setattr(memory.time, "monotonic", lambda: now[0])
    client = memo.openai.cached(openai_client, store=MemoryStore(), ttl=60)
    first = await _chat(client)
    await _chat(client)
    assert openai_server.count() == 1
    now[0] += 61
    fresh = await _chat(client)
    assert openai_server.count() == 2
    assert fresh != first
    _same(await _chat(client), fresh)
    assert openai_server.count() == 2


async def test_an_unreadable_entry_is_counted_once(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A damaged entry behind the shortcut: one error counted (by the full path), and resent."""
    store = MemoryStore()
    client = memo.openai.cached(openai_client, store=store)
    await _chat(client)
    await _chat(client)
    (key,) = list(store._data)
    await store.set(key, b"not an entry")
    fresh = await _chat(client)
    assert openai_server.count() == 2
    info = memo.openai.cache_info(client)
    assert (info.hits, info.misses, info.errors) == (1, 2, 1)
    _same(await _chat(client), fresh)


async def test_bypass_and_refreshing_are_honoured(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Under bypass() a remembered request is sent and nothing stored; refreshing() overwrites."""
    client = memo.openai.cached(openai_client, store=MemoryStore())
    first = await _chat(client)
    await _chat(client)
    with memo.bypass():
        bypassed = await _chat(client)
    assert memo.openai.last_call_was_hit() is False
    assert openai_server.count() == 2
    assert bypassed != first
    _same(await _chat(client), first)
    with memo.refreshing():
        refreshed = await _chat(client)
    assert openai_server.count() == 3
    _same(await _chat(client), refreshed)
    assert memo.openai.last_call_was_hit() is True
    info = memo.openai.cache_info(client)
    assert (info.hits, info.misses, info.errors) == (3, 2, 0)


async def test_a_request_in_flight_is_joined(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, transforms: list[Any]
) -> None:
    """With the entry gone, identical remembered calls send one request between them."""
    client = memo.openai.cached(openai_client, store=MemoryStore())
    await _chat(client)
    await _chat(client)
    await memo.openai.cache_clear(client)
    openai_server.gate.clear()
    calls = [asyncio.ensure_future(_chat(client)) for _ in range(5)]
    await asyncio.to_thread(openai_server.wait_for, 2)
    openai_server.gate.set()
    results = await asyncio.gather(*calls)
    assert openai_server.count() == 2
    assert all(result == results[0] for result in results)
    info = memo.openai.cache_info(client)
    assert (info.hits, info.misses, info.errors) == (5, 2, 0)


async def test_a_store_read_through_get_is_a_shortcut_too(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    transforms: list[Any],
    redis_server: RedisServer,
) -> None:
    """RedisStore (read by awaiting get): a repeat is answered from Redis, misses go through."""
    store = RedisStore(redis_server.url, lock_timeout=5)
    try:
        client = memo.openai.cached(openai_client, store=store)
        first = await _chat(client)
        _same(await _chat(client), first)
        assert len(transforms) == 1
        await memo.openai.cache_clear(client)
        fresh = await _chat(client)  # a miss after a shortcut read that took Redis's lock
        assert openai_server.count() == 2
        _same(await _chat(client), fresh)
        assert len(transforms) == 2
    finally:
        await store.close()


async def test_the_default_disk_store(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, transforms: list[Any]
) -> None:
    """On the default DiskStore, a repeat is a shortcut hit."""
    client = memo.openai.cached(openai_client)
    first = await _chat(client)
    _same(await _chat(client), first)
    assert len(transforms) == 1
    assert openai_server.count() == 1


async def test_the_table_is_bounded(
    openai_client: AsyncOpenAI, transforms: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bound, the least recently used request is forgotten (and transformed again)."""
    monkeypatch.setattr(_shortcut, "MAX_REMEMBERED", 2)
    client = memo.openai.cached(openai_client, store=MemoryStore())
    for text in ("a", "b", "a", "c"):  # "a" used again: "b" is the oldest when "c" comes
        await _chat(client, messages=[{"role": "user", "content": text}])
    assert len(transforms) == 3
    await _chat(client, messages=[{"role": "user", "content": "a"}])
    assert len(transforms) == 3
    await _chat(client, messages=[{"role": "user", "content": "b"}])
    assert len(transforms) == 4


async def test_streams_take_the_full_path(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, transforms: list[Any]
) -> None:
    """stream=True is never answered by the shortcut (it replays recordings its own way)."""
    client = memo.openai.cached(openai_client, store=MemoryStore())
    for _ in range(2):
        stream = await _chat(client, stream=True)
        chunks = [chunk async for chunk in stream]
        assert chunks
    assert len(transforms) == 2
    assert openai_server.count() == 1


async def test_a_method_patched_later_sees_every_call(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    transforms: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Instrumentation that wraps the SDK's method (after cached()) is called on every hit."""
    from openai.resources.chat.completions import AsyncCompletions

    client = memo.openai.cached(openai_client, store=MemoryStore())
    first = await _chat(client)
    await _chat(client)
    traced: list[str] = []
    create = AsyncCompletions.create

    @functools.wraps(create)
    async def traced_create(self: Any, *args: Any, **kwargs: Any) -> Any:
        traced.append(kwargs["model"])
        return await create(self, *args, **kwargs)

    monkeypatch.setattr(AsyncCompletions, "create", traced_create)
    for _ in range(2):
        _same(await _chat(client), first)
        assert memo.openai.last_call_was_hit() is True
    assert traced == ["fake", "fake"]
    assert len(transforms) == 3  # the full path, each time
    assert openai_server.count() == 1
    monkeypatch.setattr(AsyncCompletions, "create", create)  # instrumentation removed
    _same(await _chat(client), first)
    assert traced == ["fake", "fake"]
    assert len(transforms) == 3  # the shortcut again


async def test_raw_calls_count_their_body_against_a_budget(
    openai_client: AsyncOpenAI, transforms: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raw call's entry keeps the body it sent: past the byte budget, the oldest is forgotten."""
    monkeypatch.setattr(_shortcut, "MAX_REMEMBERED_BYTES", 3000)
    client = memo.openai.cached(openai_client, store=MemoryStore())
    raw = client.chat.completions.with_raw_response

    def long(text: str) -> Any:
        return [{"role": "user", "content": text * 600}]  # ~1,200 bytes counted per entry

    await _chat(client)  # a parsed call's entry holds no body: it stays
    await raw.create(model="fake", messages=long("a"))
    await raw.create(model="fake", messages=long("b"))
    assert len(transforms) == 3
    await raw.create(model="fake", messages=long("a"))
    await _chat(client)
    assert len(transforms) == 3
    await raw.create(model="fake", messages=long("c"))  # over the budget: "b" goes
    await raw.create(model="fake", messages=long("b"))
    assert len(transforms) == 5
    await _chat(client)
    assert len(transforms) == 5


async def test_a_base_url_changed_during_a_first_call_is_not_mixed_up(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, transforms: list[Any]
) -> None:
    """A call keyed for the old base URL is not remembered for the new one."""
    client = memo.openai.cached(openai_client, store=MemoryStore())
    openai_server.gate.clear()
    old_url = asyncio.ensure_future(_chat(client))
    assert await asyncio.to_thread(openai_server.wait_for, 1)
    client.base_url = openai_server.base_url.replace("127.0.0.1", "localhost")
    new_url = asyncio.ensure_future(_chat(client, temperature=0))
    assert await asyncio.to_thread(openai_server.wait_for, 2)
    openai_server.gate.set()
    await asyncio.gather(old_url, new_url)
    await _chat(client)  # the new URL's request: not the old URL's entry
    assert memo.openai.last_call_was_hit() is False
    assert openai_server.count() == 3
    assert len(transforms) == 3


async def test_a_streaming_response_repeat_is_the_full_paths(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, transforms: list[Any]
) -> None:
    """with_streaming_response on the shortcut: the SDK's AsyncAPIResponse, as on a hit."""
    client = memo.openai.cached(openai_client, store=MemoryStore())

    async def respond(client: AsyncOpenAI) -> tuple[Any, dict[str, str], Any]:
        streaming = client.chat.completions.with_streaming_response
        async with streaming.create(model="fake", messages=MESSAGES) as response:
            return type(response), dict(response.headers), await response.parse()

    await respond(client)
    kind, headers, parsed = await respond(client)
    assert len(transforms) == 1
    slow_kind, slow_headers, slow_parsed = await respond(client.with_options())
    assert len(transforms) == 2
    assert openai_server.count() == 1
    assert kind is slow_kind
    assert headers == slow_headers
    _same(parsed, slow_parsed)


async def test_a_messages_list_edited_in_place_is_a_new_request(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """The same list object, grown or edited between calls, is asked about as it is now.

    A conversation kept in one list is the common case: each turn appends to
    it, and an edit inside a message dict changes the request too.
    """
    client = memo.openai.cached(openai_client, store=MemoryStore())
    messages: Any = [{"role": "user", "content": "one"}]

    async def ask() -> str:
        answer = await client.chat.completions.create(model="fake", messages=messages)
        return str(answer.choices[0].message.content)

    assert await ask() == "Echo #1: one"
    assert await ask() == "Echo #1: one"
    messages.append({"role": "user", "content": "two"})
    assert await ask() == "Echo #2: two"
    messages[1]["content"] = "three"
    assert await ask() == "Echo #3: three"
    del messages[1]
    assert await ask() == "Echo #1: one"  # back to the first request: its entry
    assert memo.openai.last_call_was_hit() is True
    messages[0]["content"] = "four"
    assert await ask() == "Echo #4: four"
    assert openai_server.count() == 4
