"""What makes two OpenAI requests one cache entry: the request as the SDK sends it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest
from fake_openai import FakeOpenAI
from openai import NOT_GIVEN, AsyncOpenAI, Omit
from openai.types.chat import ChatCompletionUserMessageParam

import memo.openai

if TYPE_CHECKING:
    from collections.abc import Iterator

# openai.omit is Omit() in the SDKs that export it; older ones only export the class.
omit = Omit()

BASE: dict[str, Any] = {"model": "fake", "messages": [{"role": "user", "content": "Hi"}]}
TOOL = {
    "type": "function",
    "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
}

# Each changes what is sent, so each must be another entry.
DIFFERENT = {
    "model": {"model": "fake-2"},
    "messages": {"messages": [{"role": "user", "content": "Hello"}]},
    "system-message": {"messages": [{"role": "system", "content": "Be brief"}, *BASE["messages"]]},
    "temperature": {"temperature": 0.7},
    "temperature-zero": {"temperature": 0},
    "top_p": {"top_p": 0.5},
    "n": {"n": 2},
    "seed": {"seed": 7},
    "max_tokens": {"max_tokens": 5},
    "max_completion_tokens": {"max_completion_tokens": 5},
    "stop": {"stop": ["\n"]},
    "presence_penalty": {"presence_penalty": 0.1},
    "frequency_penalty": {"frequency_penalty": 0.1},
    "logit_bias": {"logit_bias": {"50256": -100}},
    "logprobs": {"logprobs": True},
    "response_format": {"response_format": {"type": "json_object"}},
    "tools": {"tools": [TOOL]},
    "tool_choice": {"tools": [TOOL], "tool_choice": "none"},
    "reasoning_effort": {"reasoning_effort": "low"},
    "user": {"user": "alice"},
    "metadata": {"metadata": {"run": "1"}},
    "store": {"store": True},
    "service_tier": {"service_tier": "flex"},
    "prompt_cache_key": {"prompt_cache_key": "k1"},
    "safety_identifier": {"safety_identifier": "s1"},
    "extra_body": {"extra_body": {"provider_option": 1}},
    "extra_query": {"extra_query": {"api-version": "2024-10-21"}},
}

# Each sends the same request as BASE (or is not part of the request), so each
# must be the same entry.
SAME = {
    "keyword-order": {"messages": BASE["messages"], "model": "fake"},
    "NOT_GIVEN": {"temperature": NOT_GIVEN},
    "omit": {"seed": omit},
    "tuple-messages": {"messages": tuple(BASE["messages"])},
    "generator-messages": {"messages": "generator"},
    "typed-dict-message": {"messages": [ChatCompletionUserMessageParam(role="user", content="Hi")]},
    "timeout": {"timeout": 12.5},
    "extra_headers": {"extra_headers": {"X-Trace": "abc"}},
    "extra_body-merged": {"extra_body": {"model": "fake"}},
    "extra_body-omit": {"extra_body": {"seed": omit}},
}


def _params(change: dict[str, Any]) -> dict[str, Any]:
    params = {**BASE, **change}
    if params["messages"] == "generator":
        params["messages"] = (message for message in BASE["messages"])
    return params


@pytest.mark.parametrize("change", DIFFERENT.values(), ids=DIFFERENT.keys())
async def test_each_request_parameter_changes_the_key(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, change: dict[str, Any]
) -> None:
    """Changing any one parameter of the request makes another entry (another HTTP request)."""
    client = memo.openai.cached(openai_client)
    await client.chat.completions.create(**BASE)
    changed = await client.chat.completions.create(**_params(change))
    assert memo.openai.last_call_was_hit() is False
    assert openai_server.count() == 2
    assert changed.id == "chatcmpl-2"


@pytest.mark.parametrize("change", SAME.values(), ids=SAME.keys())
async def test_the_same_request_written_differently_is_one_key(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, change: dict[str, Any]
) -> None:
    """Spellings of one request, and options that are not sent, share an entry."""
    client = memo.openai.cached(openai_client)
    first = await client.chat.completions.create(**BASE)
    second = await client.chat.completions.create(**_params(change))
    assert memo.openai.last_call_was_hit() is True
    assert openai_server.count() == 1
    assert second == first


async def test_extra_body_is_the_same_as_the_parameter_it_sends(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """seed=1 and extra_body={"seed": 1} send the same body, so they share an entry."""
    client = memo.openai.cached(openai_client)
    await client.chat.completions.create(**BASE, seed=1)
    await client.chat.completions.create(**BASE, extra_body={"seed": 1})
    assert openai_server.count() == 1


@pytest.mark.parametrize("value", [math.nan, math.inf], ids=["nan", "inf"])
async def test_a_value_the_sdk_cannot_send_never_hits(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, value: float
) -> None:
    """temperature=nan is never answered with temperature=None's entry (JSON has no NaN)."""
    client = memo.openai.cached(openai_client)
    await client.chat.completions.create(**BASE, temperature=None)
    try:
        answer = await client.chat.completions.create(**BASE, temperature=value)
    except ValueError as exc:  # recent SDKs refuse to send it; older ones send it as is
        assert "JSON" in str(exc)  # noqa: PT017 - which of the two depends on the SDK
        assert openai_server.count() == 1
    else:
        assert answer.id == "chatcmpl-2"
    assert memo.openai.last_call_was_hit() is False


async def test_max_retries_is_not_in_the_key(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A client copied with other retries and timeout answers from the same entries."""
    client = memo.openai.cached(openai_client)
    await client.chat.completions.create(**BASE)
    await client.with_options(max_retries=5, timeout=3).chat.completions.create(**BASE)
    assert openai_server.count() == 1


@pytest.fixture
def other_server() -> Iterator[FakeOpenAI]:
    """A second OpenAI-compatible server, at another base URL."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


async def test_another_base_url_is_another_key(
    openai_server: FakeOpenAI, other_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """The same request to another base URL is sent there, not answered from the first."""
    await memo.openai.cached(openai_client).chat.completions.create(**BASE)
    async with AsyncOpenAI(base_url=other_server.base_url, api_key="sk-test-x") as raw:
        other = memo.openai.cached(raw)
        completion = await other.chat.completions.create(**BASE)
    assert (openai_server.count(), other_server.count()) == (1, 1)
    assert memo.openai.last_call_was_hit() is False
    assert completion.id == "chatcmpl-1"


async def test_another_api_key_is_the_same_key(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """The API key is not part of the key: another key reads the same entry."""
    first = await memo.openai.cached(openai_client).chat.completions.create(**BASE)
    async with AsyncOpenAI(base_url=openai_server.base_url, api_key="sk-test-other") as raw:
        second = await memo.openai.cached(raw).chat.completions.create(**BASE)
    assert second == first
    assert openai_server.count() == 1


async def test_headers_join_the_key_only_when_asked(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """extra_headers are not keyed, unless named in key_headers."""
    plain = memo.openai.cached(openai_client, namespace="plain")
    for beta in ("a", "b"):
        await plain.chat.completions.create(**BASE, extra_headers={"OpenAI-Beta": beta})
    assert openai_server.count() == 1
    keyed = memo.openai.cached(openai_client, namespace="keyed", key_headers=("openai-beta",))
    for beta in ("a", "b", "a"):
        await keyed.chat.completions.create(**BASE, extra_headers={"OpenAI-Beta": beta})
    assert openai_server.count() == 3


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param({"input": "a"}, {"input": "b"}, id="input"),
        pytest.param({"input": "a"}, {"input": ["a"]}, id="str-vs-list"),
        pytest.param({"input": "a"}, {"input": "a", "dimensions": 2}, id="dimensions"),
        pytest.param({"input": "a"}, {"input": "a", "encoding_format": "float"}, id="encoding"),
        pytest.param({"input": "a"}, {"input": "a", "model": "fake-embed-2"}, id="model"),
    ],
)
async def test_embedding_parameters_change_the_key(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    first: dict[str, Any],
    second: dict[str, Any],
) -> None:
    """Embedding requests that differ in what they send are two entries."""
    client = memo.openai.cached(openai_client)
    await client.embeddings.create(**{"model": "fake-embed", **first})
    await client.embeddings.create(**{"model": "fake-embed", **second})
    assert openai_server.count("/v1/embeddings") == 2


async def test_endpoints_never_share_entries(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A chat request and a Responses request with the same words are two entries."""
    client = memo.openai.cached(openai_client)
    await client.chat.completions.create(**BASE)
    await client.responses.create(model="fake", input=BASE["messages"])
    assert openai_server.count() == 2


async def test_version_and_namespace_separate_entries(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Another version or namespace does not read the entries of the first."""
    await memo.openai.cached(openai_client).chat.completions.create(**BASE)
    await memo.openai.cached(openai_client, version=2).chat.completions.create(**BASE)
    await memo.openai.cached(openai_client, namespace="other").chat.completions.create(**BASE)
    assert openai_server.count() == 3


async def test_distinct_samples_with_a_keyed_unsent_argument(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """K distinct samples of one prompt: a keyed sample header keeps each apart, and replays."""
    client = memo.openai.cached(openai_client, key_headers=("X-Sample",))
    answers = [
        await client.chat.completions.create(
            **BASE, temperature=1, extra_headers={"X-Sample": str(i)}
        )
        for i in (0, 1, 2, 0)
    ]
    assert [a.id for a in answers] == ["chatcmpl-1", "chatcmpl-2", "chatcmpl-3", "chatcmpl-1"]
