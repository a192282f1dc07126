"""A stream is stored as soon as it is complete, even if its consumer stops reading there.

Consumers often stop at the final event (``response.completed``, the chunk
that finishes the last choice, the usage chunk) without reading on to the
end of the HTTP response (``[DONE]``). The recording is stored the moment
it is complete; a stream left before that is still never stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

import memo.openai

if TYPE_CHECKING:
    from collections.abc import Callable

    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

MESSAGES: Any = [{"role": "user", "content": "Finish"}]


def _finishes_every_choice(n: int) -> Callable[[Any, list[Any]], bool]:
    def final(_chunk: Any, seen: list[Any]) -> bool:
        finished = {c.index for chunk in seen for c in chunk.choices if c.finish_reason}
        return finished == set(range(n))

    return final


def _is_usage(chunk: Any, _seen: list[Any]) -> bool:
    return chunk.usage is not None


def _is_completed(chunk: Any, _seen: list[Any]) -> bool:
    return bool(chunk.type == "response.completed")


CASES = [
    pytest.param({}, _finishes_every_choice(1), id="chat-finish-reason"),
    pytest.param({"n": 2}, _finishes_every_choice(2), id="chat-two-choices"),
    pytest.param({"stream_options": {"include_usage": True}}, _is_usage, id="chat-usage-chunk"),
    pytest.param(None, _is_completed, id="responses-completed"),
]


async def _open(client: AsyncOpenAI, params: dict[str, Any] | None) -> Any:
    if params is None:
        return await client.responses.create(model="fake", input="Finish", stream=True)
    return await client.chat.completions.create(
        model="fake", messages=MESSAGES, stream=True, **params
    )


async def _read_to_final(stream: Any, final: Callable[[Any, list[Any]], bool]) -> list[Any]:
    seen: list[Any] = []
    async for chunk in stream:
        seen.append(chunk)
        if final(chunk, seen):
            break  # the consumer has its answer: it reads no further
    return seen


@pytest.mark.parametrize(("params", "final"), CASES)
@pytest.mark.parametrize("then", ["kept-open", "closed"])
async def test_a_stream_left_after_its_final_event_is_stored(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    params: dict[str, Any] | None,
    final: Callable[[Any, list[Any]], bool],
    then: str,
) -> None:
    """Stopping right after the final event: the same request again sends nothing."""
    client = memo.openai.cached(openai_client)
    stream = await _open(client, params)
    seen = await _read_to_final(stream, final)
    if then == "closed":
        await stream.close()
    # Another cached client on the same folder: the answer comes from the store.
    again = memo.openai.cached(openai_client)
    replayed = [chunk async for chunk in await _open(again, params)]
    assert memo.openai.last_call_was_hit() is True
    assert openai_server.count() == 1
    assert replayed[: len(seen)] == seen
    assert final(replayed[-1], replayed)
    await stream.close()


@pytest.mark.parametrize(("params", "final"), CASES)
async def test_a_stream_left_one_event_before_its_final_event_is_not_stored(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    params: dict[str, Any] | None,
    final: Callable[[Any, list[Any]], bool],
) -> None:
    """Closed one event short of complete: nothing is stored, the next call is sent."""
    client = memo.openai.cached(openai_client)
    everything = [chunk async for chunk in await _open(memo.openai.cached(openai_client), params)]
    assert openai_server.count() == 1
    await memo.openai.cache_clear(client)
    stream = await _open(client, params)
    async with stream:
        for _ in range(len(everything) - 1):
            await stream.__anext__()
    async with await _open(memo.openai.cached(openai_client), params):
        assert memo.openai.last_call_was_hit() is False
    assert openai_server.count() == 3
