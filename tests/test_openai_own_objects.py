"""Every caller gets objects of its own: joined to one request or served from the store.

A caller may change what it gets (append to ``messages``, edit a choice); that
must never show in another caller's answer, nor in what later hits return.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel

import memo.openai

if TYPE_CHECKING:
    from collections.abc import Callable

    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

MESSAGES: Any = [{"role": "user", "content": "Mine"}]


class City(BaseModel):
    name: str


async def _create(client: AsyncOpenAI) -> Any:
    return await client.chat.completions.create(model="fake", messages=MESSAGES)


async def _parse(client: AsyncOpenAI) -> Any:
    return await client.chat.completions.parse(
        model="fake", messages=MESSAGES, response_format=City
    )


async def _embed(client: AsyncOpenAI) -> Any:
    return await client.embeddings.create(model="fake-embed", input="mine")


async def _respond(client: AsyncOpenAI) -> Any:
    return await client.responses.create(model="fake", input="Mine")


async def _create_raw(client: AsyncOpenAI) -> Any:
    raw = await client.chat.completions.with_raw_response.create(model="fake", messages=MESSAGES)
    return raw.parse()


async def _create_streamed(client: AsyncOpenAI) -> Any:
    stream = await client.chat.completions.create(model="fake", messages=MESSAGES, stream=True)
    return [chunk async for chunk in stream]


async def _respond_streamed(client: AsyncOpenAI) -> Any:
    stream = await client.responses.create(model="fake", input="Mine", stream=True)
    return [event async for event in stream]


def _inner(answer: Any) -> Any:
    """A nested object a caller might change: a message, an embedding, an output item."""
    if isinstance(answer, list):
        return answer[1]
    if hasattr(answer, "choices"):
        return answer.choices[0].message
    if hasattr(answer, "data"):
        return answer.data[0]
    return answer.output[0]


def _scribble(answer: Any) -> None:
    inner = _inner(answer)
    if isinstance(answer, list):  # a chunk, or a Responses event
        if hasattr(inner, "sequence_number"):
            inner.sequence_number = -1
        else:
            inner.choices[0].delta.content = "scribbled"
    elif hasattr(inner, "embedding"):
        inner.embedding.append(99.0)
    elif hasattr(inner, "content") and isinstance(inner.content, list):
        inner.content.clear()
    else:
        inner.content = "scribbled"


CALLS = [
    pytest.param(_create, id="create"),
    pytest.param(_parse, id="parse"),
    pytest.param(_embed, id="embeddings"),
    pytest.param(_respond, id="responses"),
    pytest.param(_create_raw, id="create-raw"),
    pytest.param(_create_streamed, id="create-streamed"),
    pytest.param(_respond_streamed, id="responses-streamed"),
]


def _check_own(answers: list[Any]) -> None:
    assert all(answer == answers[0] for answer in answers)
    assert len({id(_inner(answer)) for answer in answers}) == len(answers)
    pristine = answers[1:]
    _scribble(answers[0])
    assert all(answer != answers[0] for answer in pristine)
    assert all(answer == pristine[0] for answer in pristine)


@pytest.mark.parametrize("call", CALLS)
async def test_joined_callers_get_their_own_objects(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, call: Callable[..., Any]
) -> None:
    """Three callers of one request in flight: equal answers, no object shared."""
    client = memo.openai.cached(openai_client)
    openai_server.gate.clear()
    calls = asyncio.gather(*(call(client) for _ in range(3)))
    task = asyncio.ensure_future(calls)
    assert await asyncio.to_thread(openai_server.wait_for, 1)
    await asyncio.sleep(0.05)
    openai_server.gate.set()
    answers = list(await task)
    assert openai_server.count() == 1
    _check_own(answers)
    # What the first caller changed did not reach the stored answer either.
    assert await call(client) == answers[1]


@pytest.mark.parametrize("call", CALLS)
async def test_hits_get_their_own_objects(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, call: Callable[..., Any]
) -> None:
    """The first caller and two hits: equal answers, no object shared."""
    client = memo.openai.cached(openai_client)
    answers = [await call(client) for _ in range(3)]
    assert openai_server.count() == 1
    _check_own(answers)
