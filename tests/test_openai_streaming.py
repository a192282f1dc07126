"""stream=True: forwarded live while recorded, stored once finished, replayed chunk by chunk."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import openai
import pytest
from openai import AsyncStream

import memo
import memo.openai
from memo.openai._streams import Broadcast

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

MESSAGES: Any = [{"role": "user", "content": "Tell me"}]


async def _chat_stream(client: AsyncOpenAI, model: str = "fake", **params: Any) -> list[Any]:
    stream = await client.chat.completions.create(
        model=model, messages=MESSAGES, stream=True, **params
    )
    return [chunk async for chunk in stream]


async def test_a_finished_stream_replays_the_same_chunks(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """The second identical stream makes no request and yields equal chunks in order."""
    client = memo.openai.cached(openai_client)
    first = await _chat_stream(client, stream_options={"include_usage": True})
    assert memo.openai.last_call_was_hit() is False
    second = await _chat_stream(client, stream_options={"include_usage": True})
    assert memo.openai.last_call_was_hit() is True
    assert openai_server.count() == 1
    assert len(first) > 3
    assert second == first
    assert second[-1].usage == first[-1].usage is not None
    info = memo.openai.cache_info(client)
    assert (info.hits, info.misses) == (1, 1)


async def test_a_replay_behaves_like_the_sdk_stream(openai_client: AsyncOpenAI) -> None:
    """A replay is an AsyncStream: async with, async for, close() ends it."""
    client = memo.openai.cached(openai_client)
    expected = await _chat_stream(client)
    replay = await client.chat.completions.create(model="fake", messages=MESSAGES, stream=True)
    assert isinstance(replay, AsyncStream)
    assert isinstance(replay, memo.openai.ReplayStream)
    async with replay as stream:
        assert await stream.__anext__() == expected[0]
        await stream.close()
        assert [chunk async for chunk in stream] == []
    assert replay.response.status_code == 200
    replay = await client.chat.completions.create(model="fake", messages=MESSAGES, stream=True)
    async with replay:
        assert [chunk async for chunk in replay] == expected


@pytest.mark.parametrize(
    "stop_after",
    [pytest.param(0, id="closed-unread"), pytest.param(2, id="closed-midway")],
)
async def test_a_stream_left_early_is_not_stored(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, stop_after: int
) -> None:
    """A consumer that stops before the end leaves nothing behind: the next call is sent."""
    client = memo.openai.cached(openai_client)
    stream = await client.chat.completions.create(model="fake", messages=MESSAGES, stream=True)
    async with stream:
        for _ in range(stop_after):
            await stream.__anext__()
    assert len(await _chat_stream(client)) > stop_after
    assert openai_server.count() == 2
    assert memo.openai.last_call_was_hit() is False
    await _chat_stream(client)
    assert openai_server.count() == 2


async def test_a_stream_that_fails_is_not_stored(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """An error event mid-stream reaches the caller each time and is never stored."""
    client = memo.openai.cached(openai_client)
    for _ in range(2):
        with pytest.raises(openai.APIError, match="boom"):
            await _chat_stream(client, model="fake-error")
    assert openai_server.count() == 2


async def test_a_stream_cut_short_is_not_stored(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A stream whose connection ends without a finish reason is forwarded but not stored."""
    client = memo.openai.cached(openai_client)
    first = await _chat_stream(client, model="fake-truncated")
    assert first
    assert all(chunk.choices[0].finish_reason is None for chunk in first)
    await _chat_stream(client, model="fake-truncated")
    assert openai_server.count() == 2


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"n": 2}, id="second-choice-missing"),
        pytest.param({"stream_options": {"include_usage": True}}, id="usage-chunk-missing"),
    ],
)
async def test_a_stream_cut_after_a_finish_reason_is_not_stored(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, params: dict[str, Any]
) -> None:
    """A stream that ends before its other choices or its usage chunk is forwarded, not stored."""
    client = memo.openai.cached(openai_client)
    for _ in range(2):
        chunks = await _chat_stream(client, model="fake-cut-after-finish", **params)
        assert chunks[-1].choices[0].finish_reason == "stop"
    assert openai_server.count() == 2


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"n": 2}, id="two-choices"),
        pytest.param({"n": 2, "stream_options": {"include_usage": True}}, id="two-choices-usage"),
    ],
)
async def test_a_complete_stream_of_several_choices_replays(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, params: dict[str, Any]
) -> None:
    """n=2: a stream in which both choices finish is stored and replayed."""
    client = memo.openai.cached(openai_client)
    first = await _chat_stream(client, **params)
    second = await _chat_stream(client, **params)
    assert {c.choices[0].index for c in first if c.choices} == {0, 1}
    assert second == first
    assert openai_server.count() == 1


async def test_stream_and_plain_requests_are_separate_entries(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """stream=True is never answered with a stored ChatCompletion, nor the reverse."""
    client = memo.openai.cached(openai_client)
    plain = await client.chat.completions.create(model="fake", messages=MESSAGES)
    chunks = await _chat_stream(client)
    again = await client.chat.completions.create(model="fake", messages=MESSAGES)
    replay = await client.chat.completions.create(model="fake", messages=MESSAGES, stream=True)
    assert isinstance(replay, AsyncStream)
    assert [chunk async for chunk in replay] == chunks
    assert again == plain
    assert openai_server.count() == 2


async def test_responses_stream_replays(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """responses.create(stream=True) replays the same typed events, ending in response.completed."""
    client = memo.openai.cached(openai_client)
    runs = []
    for _ in range(2):
        stream = await client.responses.create(model="fake", input="Tell me", stream=True)
        runs.append([event async for event in stream])
    assert runs[1] == runs[0]
    assert [type(e).__name__ for e in runs[1]][-1] == "ResponseCompletedEvent"
    assert openai_server.count() == 1


async def test_responses_stream_helper_works_on_a_replay(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """responses.stream() builds the same events and final response from a replay."""
    client = memo.openai.cached(openai_client)
    runs = []
    for _ in range(2):
        async with client.responses.stream(model="fake", input="Tell me") as stream:
            kinds = [event.type async for event in stream]
            runs.append((kinds, await stream.get_final_response()))
    assert memo.openai.last_call_was_hit() is True
    assert runs[1] == runs[0]
    assert runs[0][1].output_text == "Echo #1: Tell me"
    assert "response.output_text.delta" in runs[0][0]
    assert openai_server.count() == 1


async def test_sdk_stream_helper_works_on_a_replay(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """chat.completions.stream() accumulates a replayed stream into the same final completion."""
    client = memo.openai.cached(openai_client)
    finals = []
    for _ in range(2):
        async with client.chat.completions.stream(model="fake", messages=MESSAGES) as stream:
            texts = [event.delta async for event in stream if event.type == "content.delta"]
            finals.append((texts, await stream.get_final_completion()))
    assert finals[1] == finals[0]
    assert finals[0][1].choices[0].message.content == "Echo #1: Tell me "
    assert openai_server.count() == 1


async def test_bypass_streams_live_and_leaves_the_entry(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Under memo.bypass() a stream is sent; the stored recording still answers later."""
    client = memo.openai.cached(openai_client)
    first = await _chat_stream(client)
    with memo.bypass():
        live = await _chat_stream(client)
    assert live[0].id != first[0].id
    assert await _chat_stream(client) == first
    assert openai_server.count() == 2


async def test_a_chunk_that_cannot_be_recorded_still_reaches_the_caller() -> None:
    """Recording never costs a chunk: one it cannot turn into JSON ends the recording only."""

    async def live() -> AsyncIterator[Any]:
        for chunk in ("not", "a", "model"):
            yield chunk

    saved: list[list[Any]] = []
    errors: list[Exception] = []
    released: list[bool] = []

    async def store(chunks: list[Any]) -> bool:
        saved.append(chunks)
        return True

    async def release() -> None:
        released.append(True)

    async def close() -> None:
        pass

    broadcast = Broadcast(
        live(),
        headers={},
        complete=lambda chunks: True,
        store=store,
        release=release,
        failed=errors.append,
        close=close,
    )
    consumer = broadcast.follow(takes_objects=True)
    received = [chunk async for chunk in consumer.chunks(lambda i: broadcast.take(i, str))]
    assert received == ["not", "a", "model"]
    assert saved == []
    assert [type(error) for error in errors] == [TypeError]
    assert released == [True]  # nothing stored: a lock taken for it is given back
