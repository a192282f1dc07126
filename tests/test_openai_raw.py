"""with_raw_response / with_streaming_response: served and stored like the parsed calls.

LangChain, LiteLLM and the OpenAI Agents SDK call the SDK's raw-response
wrappers. A raw call and a plain call of one request share one entry; a hit
returns the SDK's own raw-response object, built from the stored body and the
few headers memo keeps (never a cookie, the organization or rate limits).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
from fake_openai import COOKIE, ORGANIZATION
from openai import AsyncStream
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from pydantic import BaseModel

import memo.openai
from memo.openai import _client

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

MESSAGES: Any = [{"role": "user", "content": "Raw?"}]


class City(BaseModel):
    name: str


class Chunks(AsyncStream[ChatCompletionChunk]):
    """A stream class of the caller's own, which a replay could not be."""


def _way(resource: Any, how: str) -> Any:
    """The resource itself, or its with_raw_response / with_streaming_response wrapper."""
    return resource if how == "plain" else getattr(resource, f"with_{how}_response")


def _chat(client: AsyncOpenAI, how: str = "plain", **params: Any) -> Any:
    return _way(client.chat.completions, how).create(model="fake", messages=MESSAGES, **params)


def _parse(client: AsyncOpenAI, how: str = "plain") -> Any:
    return _way(client.chat.completions, how).parse(
        model="fake", messages=MESSAGES, response_format=City
    )


def _embed(client: AsyncOpenAI, how: str = "plain") -> Any:
    return _way(client.embeddings, how).create(model="fake-embed", input=["a", "bb"])


def _respond(client: AsyncOpenAI, how: str = "plain") -> Any:
    return _way(client.responses, how).create(model="fake", input="Raw?")


def _respond_parsed(client: AsyncOpenAI, how: str = "plain") -> Any:
    return _way(client.responses, how).parse(model="fake", input="Raw?", text_format=City)


CALLS = [
    pytest.param(_chat, "chat/completions", id="chat-create"),
    pytest.param(_parse, "chat/completions", id="chat-parse"),
    pytest.param(_embed, "embeddings", id="embeddings"),
    pytest.param(_respond, "responses", id="responses-create"),
    pytest.param(_respond_parsed, "responses", id="responses-parse"),
]
# The SDK has no responses.with_streaming_response.parse.
STREAMING_CALLS = CALLS[:-1]


def _check_kept_headers(headers: Any, request_id: str | None) -> None:
    assert headers["x-request-id"] == request_id is not None
    assert headers["openai-version"] == "2020-10-01"
    assert headers["content-type"] == "application/json"
    for dropped in ("set-cookie", "openai-organization", "x-ratelimit-remaining-requests"):
        assert dropped not in headers


@pytest.mark.parametrize(("call", "path"), CALLS)
async def test_with_raw_response_is_a_hit_after_a_plain_call(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    call: Callable[..., Any],
    path: str,
) -> None:
    """A raw call after a plain one sends nothing; parse(), headers, request_id work."""
    client = memo.openai.cached(openai_client)
    plain = await call(client)
    raw = await call(client, "raw")
    assert memo.openai.last_call_was_hit() is True
    assert openai_server.count() == 1
    assert raw.parse() == plain
    assert raw.parse()._request_id == plain._request_id
    assert raw.request_id == plain._request_id
    _check_kept_headers(raw.headers, plain._request_id)
    assert raw.status_code == 200
    assert raw.http_response.request.method == "POST"
    assert raw.http_request.url == raw.url
    assert str(raw.url) == f"{openai_server.base_url}/{path}"


@pytest.mark.parametrize(("call", "path"), STREAMING_CALLS)
async def test_with_streaming_response_is_a_hit_after_a_plain_call(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    call: Callable[..., Any],
    path: str,
) -> None:
    """with_streaming_response on a hit: an AsyncAPIResponse whose parse() is the plain answer."""
    client = memo.openai.cached(openai_client)
    plain = await call(client)
    async with call(client, "streaming") as response:
        assert memo.openai.last_call_was_hit() is True
        parsed = await response.parse()
        assert parsed == plain
        assert response.request_id == plain._request_id
        _check_kept_headers(response.headers, plain._request_id)
        assert (await response.json())["model"] == plain.model  # type: ignore[index]
    assert openai_server.count() == 1


@pytest.mark.parametrize(("call", "path"), CALLS)
async def test_a_raw_miss_is_stored_for_plain_calls(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    call: Callable[..., Any],
    path: str,
) -> None:
    """A raw call that misses gets the HTTP response it received, and fills the entry."""
    client = memo.openai.cached(openai_client)
    raw = await call(client, "raw")
    assert memo.openai.last_call_was_hit() is False
    assert ORGANIZATION in raw.headers["openai-organization"]  # the live response, all of it
    first = raw.parse()
    assert await call(client) == first
    if call is not _respond_parsed:  # the SDK has no responses.with_streaming_response.parse
        async with call(client, "streaming") as response:
            assert await response.parse() == first
    assert openai_server.count() == 1


async def test_a_structured_raw_hit_parses_into_the_callers_model(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """chat.completions.with_raw_response.parse on a hit: .parsed is the caller's model."""
    client = memo.openai.cached(openai_client)
    await _parse(client)
    raw = await _parse(client, "raw")
    assert openai_server.count() == 1
    parsed = raw.parse().choices[0].message.parsed
    assert isinstance(parsed, City)
    assert parsed.name == "example"


async def test_raw_embeddings_hit_is_decoded_like_a_miss(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """The SDK's base64 embeddings are decoded on a raw hit, as on a miss."""
    client = memo.openai.cached(openai_client)
    miss = (await _embed(client, "raw")).parse()
    hit = (await _embed(client, "raw")).parse()
    assert openai_server.count() == 1
    assert hit.data[0].embedding == miss.data[0].embedding == [1.0, 1.0, 0.0, 0.25]


@pytest.mark.parametrize("first", ["plain", "raw"])
async def test_a_raw_stream_shares_the_entry_of_a_plain_stream(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, first: str
) -> None:
    """stream=True through with_raw_response: stored and replayed with the plain streams."""
    client = memo.openai.cached(openai_client)
    runs = []
    for how in [first, "raw" if first == "plain" else "plain", "raw"]:
        if how == "plain":
            stream = await _chat(client, stream=True)
        else:
            raw = await _chat(client, "raw", stream=True)
            assert raw.headers["content-type"].startswith("text/event-stream")
            assert "set-cookie" not in raw.headers or how == first
            stream = raw.parse()
        assert isinstance(stream, AsyncStream)
        runs.append([chunk async for chunk in stream])
    assert runs[0] == runs[1] == runs[2]
    assert runs[0][-1].choices[0].finish_reason == "stop"
    assert openai_server.count() == 1


async def test_a_streaming_response_stream_reads_as_server_sent_events(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """with_streaming_response(stream=True) on a hit: the same events, line by line, and [DONE]."""
    client = memo.openai.cached(openai_client)
    async with _chat(client, "streaming", stream=True) as response:
        live = [line async for line in response.iter_lines()]
    async with _chat(client, "streaming", stream=True) as response:
        assert response.request_id is not None
        replayed = [line async for line in response.iter_lines()]
    assert memo.openai.last_call_was_hit() is True
    assert openai_server.count() == 1
    events = [line for line in replayed if line.startswith("data: {")]
    assert len(events) == len([line for line in live if line.startswith("data: {")]) > 3
    assert replayed[-2:] == ["data: [DONE]", ""] or replayed[-1] == "data: [DONE]"


async def test_agents_style_responses_stream_is_cached(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """responses.with_streaming_response.create(stream=True), as the Agents SDK calls it."""
    client = memo.openai.cached(openai_client)
    runs = []
    for _ in range(2):
        async with client.responses.with_streaming_response.create(
            model="fake", input="Raw?", stream=True
        ) as response:
            runs.append([event async for event in await response.parse()])
    assert runs[0] == runs[1]
    assert runs[1][-1].type == "response.completed"
    assert openai_server.count() == 1


async def test_no_cookie_or_organization_is_stored(
    openai_client: AsyncOpenAI, cache_dir: Path
) -> None:
    """The headers stored with answers carry neither the cookie nor the organization."""
    client = memo.openai.cached(openai_client)
    await _chat(client)
    await (await _chat(client, "raw", stream=True)).parse().close()
    stream = await _chat(client, stream=True)
    assert [chunk async for chunk in stream]
    stored = b"".join(path.read_bytes() for path in cache_dir.rglob("*") if path.is_file())
    assert b"2020-10-01" in stored  # headers are stored...
    assert COOKIE.encode() not in stored  # ...but not these
    assert ORGANIZATION.encode() not in stored


async def test_a_path_memo_cannot_cache_is_said_once(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stream class of the caller's own is sent uncached, and the memo logger says so once."""
    monkeypatch.setattr(_client, "_told", set())
    client = memo.openai.cached(openai_client)
    body = {"model": "fake", "messages": MESSAGES, "stream": True}
    with caplog.at_level(logging.WARNING, logger="memo"):
        for _ in range(2):
            stream: Any = await client.post(
                "/chat/completions",
                cast_to=ChatCompletion,
                body=body,
                stream=True,
                stream_cls=Chunks,
            )
            assert isinstance(stream, Chunks)
            assert [chunk async for chunk in stream]
    assert openai_server.count() == 2
    warnings = [r for r in caplog.records if r.name == "memo" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "/chat/completions" in warnings[0].getMessage()
    assert "uncached" in warnings[0].getMessage()
