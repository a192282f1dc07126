"""cached_chat_completion(client, model=..., messages=..., **params): the notebook's helper."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

import memo.openai
from memo import MemoryStore
from memo.openai import cached_chat_completion

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI

MESSAGES: Any = [{"role": "user", "content": "What is caching in software engineering?"}]


async def test_repeated_call_is_one_request(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """The helper answers a repeated request from the cache with an equal ChatCompletion."""
    first = await cached_chat_completion(
        openai_client, model="fake", messages=MESSAGES, max_completion_tokens=1000
    )
    second = await cached_chat_completion(
        openai_client, messages=MESSAGES, max_completion_tokens=1000, model="fake"
    )
    assert isinstance(second, ChatCompletion)
    assert second == first
    assert memo.openai.last_call_was_hit() is True
    assert openai_server.count() == 1


async def test_parameters_are_part_of_the_key(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Extra parameters are sent and keyed: another temperature is another request."""
    await cached_chat_completion(openai_client, model="fake", messages=MESSAGES, temperature=0)
    await cached_chat_completion(openai_client, model="fake", messages=MESSAGES, temperature=1)
    assert openai_server.count() == 2
    assert openai_server.last.body["temperature"] == 1


async def test_a_new_client_reads_the_same_entries(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A restart (a new client, same key and base URL) is answered from disk."""
    first = await cached_chat_completion(openai_client, model="fake", messages=MESSAGES)
    async with AsyncOpenAI(base_url=openai_server.base_url, api_key="sk-test-restart") as again:
        second = await cached_chat_completion(again, model="fake", messages=MESSAGES)
    assert second == first
    assert openai_server.count() == 1


async def test_a_cached_client_keeps_its_options(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Given a client from cached(), the helper uses that client's store."""
    store = MemoryStore()
    client = memo.openai.cached(openai_client, store=store)
    await cached_chat_completion(client, model="fake", messages=MESSAGES)
    await cached_chat_completion(client, model="fake", messages=MESSAGES)
    assert openai_server.count() == 1
    assert memo.openai.cache_info(client).hits == 1
    assert await store.clear("memo.openai") == 1


async def test_stream_is_refused(openai_server: FakeOpenAI, openai_client: AsyncOpenAI) -> None:
    """stream=True is refused before any request, pointing at the cached client."""
    with pytest.raises(TypeError, match="cached\\(client\\)"):
        await cached_chat_completion(openai_client, model="fake", messages=MESSAGES, stream=True)
    assert openai_server.count() == 0
