"""A replayed stream's ``.response`` is a real HTTP response with the stored headers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from fake_openai import COOKIE, ORGANIZATION

import memo.openai

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

MESSAGES: Any = [{"role": "user", "content": "Replay"}]


def _open(client: AsyncOpenAI, kind: str) -> Any:
    if kind == "responses":
        return client.responses.create(model="fake", input="Replay", stream=True)
    return client.chat.completions.create(model="fake", messages=MESSAGES, stream=True)


@pytest.mark.parametrize("kind", ["chat", "responses"])
async def test_a_replay_has_the_live_responses_kept_headers_and_request(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, kind: str
) -> None:
    """Same HTTP response class as live; x-request-id and co. kept; method and URL; no cookie."""
    client = memo.openai.cached(openai_client)
    live = await _open(client, kind)
    assert [chunk async for chunk in live]
    replay = await _open(client, kind)
    assert isinstance(replay, memo.openai.ReplayStream)
    response = replay.response
    assert type(response) is type(live.response)
    assert response.status_code == 200
    for name in ("x-request-id", "openai-version", "openai-processing-ms", "content-type"):
        assert response.headers[name] == live.response.headers[name]
    for name in ("set-cookie", "openai-organization", "x-ratelimit-remaining-requests"):
        assert name not in response.headers
    assert COOKIE not in str(response.headers)
    assert ORGANIZATION not in str(response.headers)
    path = "/responses" if kind == "responses" else "/chat/completions"
    assert response.request.method == "POST"
    assert str(response.url) == str(response.request.url) == openai_server.base_url + path
    assert response.is_closed is False
    assert [chunk async for chunk in replay]
    assert response.is_closed is True
    assert openai_server.count() == 1


async def test_a_replay_closed_early_is_closed(openai_client: AsyncOpenAI) -> None:
    """close() before the end closes the replay's response too; nothing more is yielded."""
    client = memo.openai.cached(openai_client)
    assert [chunk async for chunk in await _open(client, "chat")]
    replay = await _open(client, "chat")
    await replay.__anext__()
    await replay.close()
    assert replay.response.is_closed is True
    assert [chunk async for chunk in replay] == []


async def test_a_joiners_stream_has_the_live_headers(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A caller that joined a stream in flight gets a response with the kept headers too."""
    client = memo.openai.cached(openai_client)
    openai_server.stream_gate.clear()
    live, joined = await _open(client, "chat"), await _open(client, "chat")
    openai_server.stream_gate.set()
    assert joined.response.headers["x-request-id"] == live.response.headers["x-request-id"]
    assert "set-cookie" not in joined.response.headers
    assert [c async for c in joined] == [c async for c in live]
    assert joined.response.is_closed is True
    assert openai_server.count() == 1
