"""Identical concurrent streams make one request, forwarded live to every caller.

The first caller's request is the only one sent. Every other identical
``stream=True`` call made while it is going joins it: it gets each chunk as
it arrives (chunk objects of its own, built from the recorded JSON), and its
leaving early changes nothing for the others. The recording stored is the
same as a single caller's.
"""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING, Any

import openai
import pytest

import memo.openai

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

MESSAGES: Any = [{"role": "user", "content": "Fan out"}]


def _open(client: AsyncOpenAI, kind: str = "chat") -> Any:
    if kind == "responses":
        return client.responses.create(model="fake", input="Fan out", stream=True)
    return client.chat.completions.create(
        model="fake", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )


async def _rest(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


async def _read(client: AsyncOpenAI, kind: str = "chat") -> list[Any]:
    async with await _open(client, kind) as stream:
        return [chunk async for chunk in stream]


@pytest.mark.parametrize("kind", ["chat", "responses"])
async def test_fifty_identical_streams_make_one_request(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, kind: str
) -> None:
    """50 identical stream=True calls at once: 1 request, 50 equal streams of their own."""
    client = memo.openai.cached(openai_client)
    openai_server.gate.clear()  # every caller asks before the answer starts
    calls = asyncio.gather(*(_read(client, kind) for _ in range(50)))
    task = asyncio.ensure_future(calls)
    assert await asyncio.to_thread(openai_server.wait_for, 1)
    await asyncio.sleep(0.05)
    openai_server.gate.set()
    runs = await task
    assert openai_server.count() == 1
    assert all(run == runs[0] for run in runs)
    assert len({id(run[1]) for run in runs}) == 50  # each caller its own chunk objects
    info = memo.openai.cache_info(client)
    assert (info.hits, info.misses) == (49, 1)
    # Stored as one caller's recording would be: a later call replays it.
    assert await _read(memo.openai.cached(openai_client), kind) == runs[0]
    assert openai_server.count() == 1


async def test_chunks_reach_every_caller_as_they_arrive(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """While the server holds the rest of the stream, every caller already has its first chunks."""
    client = memo.openai.cached(openai_client)
    openai_server.stream_gate.clear()  # the server stops after two events
    streams = [await _open(client) for _ in range(3)]
    firsts = [[await s.__anext__(), await s.__anext__()] for s in streams]
    assert firsts[0] == firsts[1] == firsts[2]
    assert firsts[1][0] is not firsts[2][0]
    assert openai_server.count() == 1
    # A caller arriving now gets the chunks so far, then the rest with the others.
    late = await _open(client)
    assert memo.openai.last_call_was_hit() is True
    openai_server.stream_gate.set()
    rests = [await _rest(s) for s in streams]
    assert [chunk async for chunk in late] == firsts[0] + rests[0]
    assert rests[0] == rests[1] == rests[2]
    assert rests[0][-1].usage is not None
    assert openai_server.count() == 1


@pytest.mark.parametrize("who", ["a-joiner", "the-first-caller"])
async def test_a_caller_leaving_early_changes_nothing_for_the_others(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, who: str
) -> None:
    """One caller closes its stream after one chunk; the others read all of it; it is stored."""
    client = memo.openai.cached(openai_client)
    openai_server.stream_gate.clear()
    streams = [await _open(client) for _ in range(3)]
    leaver = streams[0] if who == "the-first-caller" else streams[1]
    await leaver.__anext__()
    await leaver.close()
    openai_server.stream_gate.set()
    runs = [await _rest(s) for s in streams if s is not leaver]
    assert runs[0] == runs[1]
    assert runs[0][-1].usage is not None
    assert await _read(memo.openai.cached(openai_client)) == runs[0]
    assert openai_server.count() == 1


async def test_a_joiner_cancelled_mid_stream_changes_nothing(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A joiner's task cancelled while it waits for a chunk: the others still read to the end."""
    client = memo.openai.cached(openai_client)
    openai_server.stream_gate.clear()
    first, joiner = await _open(client), await _open(client)
    await joiner.__anext__()
    await joiner.__anext__()
    waiting = asyncio.ensure_future(joiner.__anext__())
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    openai_server.stream_gate.set()
    run = [chunk async for chunk in first]
    assert run[-1].usage is not None
    assert await _read(memo.openai.cached(openai_client)) == run
    assert openai_server.count() == 1


async def test_everyone_leaving_stores_nothing(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """All callers close before the end: nothing is stored, the next call is sent."""
    client = memo.openai.cached(openai_client)
    openai_server.stream_gate.clear()
    streams = [await _open(client) for _ in range(3)]
    for stream in streams:
        await stream.__anext__()
        await stream.close()
    openai_server.stream_gate.set()
    assert [chunk async for chunk in await _open(client)]
    assert memo.openai.last_call_was_hit() is False
    assert openai_server.count() == 2


async def test_an_error_mid_stream_reaches_every_caller(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """The stream fails after two chunks: every caller gets the chunks, then the error."""
    client = memo.openai.cached(openai_client)
    streams = [
        await client.chat.completions.create(model="fake-error", messages=MESSAGES, stream=True)
        for _ in range(3)
    ]
    for stream in streams:
        assert len([await stream.__anext__(), await stream.__anext__()]) == 2
        with pytest.raises(openai.APIError, match="boom"):
            await stream.__anext__()
    assert openai_server.count() == 1


@pytest.mark.parametrize("read", [0, 1])
async def test_a_stream_dropped_without_closing_leaves(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, read: int
) -> None:
    """A first caller that drops its stream (read or not) leaves; the joiner reads it all."""
    client = memo.openai.cached(openai_client)
    openai_server.stream_gate.clear()
    dropped, joiner = await _open(client), await _open(client)
    for _ in range(read):
        await dropped.__anext__()
    del dropped
    gc.collect()
    openai_server.stream_gate.set()
    run = await _rest(joiner)
    assert run[-1].usage is not None
    assert await _read(memo.openai.cached(openai_client)) == run
    assert openai_server.count() == 1


async def test_a_stream_nobody_reads_any_more_is_not_joined(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Its only caller drops it midway: it is given up, and the next identical call is sent."""
    client = memo.openai.cached(openai_client)
    openai_server.stream_gate.clear()
    dropped = await _open(client)
    await dropped.__anext__()
    del dropped
    gc.collect()
    for _ in range(5):  # the stream is given up in a task of its own
        await asyncio.sleep(0.01)
    openai_server.stream_gate.set()
    assert await _read(client)
    assert memo.openai.last_call_was_hit() is False
    assert openai_server.count() == 2


async def test_callers_joining_a_stream_given_up_start_afresh(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """The first caller closes its stream before the others could join: they get a whole one."""
    client = memo.openai.cached(openai_client)

    async def close_at_once() -> None:
        stream = await _open(client)
        await stream.close()

    openai_server.gate.clear()
    first = asyncio.ensure_future(close_at_once())
    assert await asyncio.to_thread(openai_server.wait_for, 1)
    calls = asyncio.gather(*(_read(client) for _ in range(3)))
    joiners = asyncio.ensure_future(calls)
    await asyncio.sleep(0.05)
    openai_server.gate.set()
    await first
    runs = await joiners
    assert all(run == runs[0] for run in runs)
    assert runs[0][-1].usage is not None
    assert openai_server.count() == 2
