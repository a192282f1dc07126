"""A caller that joins an identical request in flight keeps its own timeout.

The request in flight was sent by another caller, with that caller's
timeout. A caller that joins it with ``timeout=0.3`` gets the SDK's
``APITimeoutError`` after 0.3 seconds, as it would without memo; leaving
changes nothing for the others, who get their answer from the one request.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import openai
import pytest

import memo.openai

if TYPE_CHECKING:
    from collections.abc import Callable

    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

MESSAGES: Any = [{"role": "user", "content": "Slow"}]
TIMEOUT = 0.3


def _chat(client: AsyncOpenAI, **options: Any) -> Any:
    return client.chat.completions.create(model="fake", messages=MESSAGES, **options)


def _embed(client: AsyncOpenAI, **options: Any) -> Any:
    return client.embeddings.create(model="fake-embed", input="slow", **options)


def _respond(client: AsyncOpenAI, **options: Any) -> Any:
    return client.responses.create(model="fake", input="Slow", **options)


@pytest.mark.parametrize("call", [_chat, _embed, _respond], ids=["chat", "embeddings", "responses"])
@pytest.mark.parametrize("how", ["timeout=", "with_options"])
async def test_a_joiner_times_out_at_its_own_deadline(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    call: Callable[..., Any],
    how: str,
) -> None:
    """The joiner gets APITimeoutError after its timeout; the others their one answer."""
    client = memo.openai.cached(openai_client)
    openai_server.gate.clear()  # hold the answer back
    first = asyncio.ensure_future(call(client))
    assert await asyncio.to_thread(openai_server.wait_for, 1)
    others = [asyncio.ensure_future(call(client)) for _ in range(3)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    if how == "timeout=":
        joiner = call(client, timeout=TIMEOUT)
    else:
        joiner = call(client.with_options(timeout=TIMEOUT))
    with pytest.raises(openai.APITimeoutError):
        await asyncio.wait_for(joiner, 5)
    waited = loop.time() - started
    assert TIMEOUT * 0.9 <= waited < TIMEOUT + 1.5
    assert not first.done()
    openai_server.gate.set()
    answers = await asyncio.gather(first, *others)
    assert all(answer == answers[0] for answer in answers)
    assert openai_server.count() == 1


async def test_a_hit_is_not_held_to_the_timeout(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """The caller whose request is sent keeps the SDK's own timeout; a hit is never cut."""
    client = memo.openai.cached(openai_client)
    first = await _chat(client, timeout=TIMEOUT)
    assert await _chat(client, timeout=0.000_001) == first
    assert openai_server.count() == 1


async def test_a_stream_joiner_times_out_waiting_for_a_chunk(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A joined stream stalls: the joiner's read times out at its deadline; the others go on."""
    client = memo.openai.cached(openai_client)
    openai_server.stream_gate.clear()  # the stream stalls after its first events
    first = await _chat(client, stream=True)
    patient = await _chat(client, stream=True)
    hasty = await _chat(client, stream=True, timeout=TIMEOUT)
    received = [await first.__anext__(), await first.__anext__()]
    assert [await hasty.__anext__(), await hasty.__anext__()] == received
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(openai.APITimeoutError):
        await asyncio.wait_for(hasty.__anext__(), 5)
    assert TIMEOUT * 0.9 <= loop.time() - started < TIMEOUT + 1.5
    openai_server.stream_gate.set()
    rest = [chunk async for chunk in first]
    assert [chunk async for chunk in patient] == received + rest
    assert rest[-1].choices[0].finish_reason == "stop"
    assert openai_server.count() == 1
