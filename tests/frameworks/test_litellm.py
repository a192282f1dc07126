"""LiteLLM's acompletion and aembedding given a cached ``client=``: a repeated call sends nothing.

LiteLLM calls the SDK's ``with_raw_response`` for every OpenAI request, plain
or streamed, to read the response headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from _support import require, twice, without

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

litellm = require("litellm")

# LiteLLM's own TypedDicts (its device-code login) make pydantic warn when it
# builds a schema for them; that is LiteLLM's business, not memo's.
pytestmark = pytest.mark.filterwarnings("ignore:.*using the `ReadOnly` qualifier:UserWarning")

MESSAGES = [{"role": "user", "content": "What is caching?"}]


@pytest.fixture(autouse=True)
def quiet_litellm(monkeypatch: pytest.MonkeyPatch) -> None:
    """No cache of LiteLLM's own, no retries, no debug banner.

    LiteLLM 1.110 has no ``litellm.telemetry`` switch left: its telemetry
    belongs to the proxy server, which is not run here (and conftest.py's
    refusing proxy would catch any attempt to phone home).
    """
    monkeypatch.setattr(litellm, "cache", None)
    monkeypatch.setattr(litellm, "num_retries", 0)
    monkeypatch.setattr(litellm, "suppress_debug_info", True)


def options(client: AsyncOpenAI) -> dict[str, Any]:
    return {
        "client": client,
        "api_base": str(client.base_url),
        "api_key": "sk-test",
        "num_retries": 0,
        "max_retries": 0,
    }


async def test_acompletion(client: AsyncOpenAI, openai_server: FakeOpenAI) -> None:
    """`acompletion(model="openai/...", client=cached)` is answered from the cache next time."""

    async def ask() -> Any:
        return await litellm.acompletion(
            model="openai/gpt-4o-mini", messages=MESSAGES, **options(client)
        )

    first, second = await twice(openai_server, ask)
    assert first.choices[0].message.content.startswith("Echo #1")
    assert without(second) == without(first)


async def test_acompletion_stream(client: AsyncOpenAI, openai_server: FakeOpenAI) -> None:
    """`acompletion(..., stream=True)` is replayed chunk by chunk."""

    async def chunks() -> list[Any]:
        stream = await litellm.acompletion(
            model="openai/gpt-4o-mini", messages=MESSAGES, stream=True, **options(client)
        )
        return [chunk async for chunk in stream]

    first, second = await twice(openai_server, chunks)
    assert "".join(c.choices[0].delta.content or "" for c in first).startswith("Echo #1")
    # LiteLLM stamps each chunk's `created` with the time it builds it.
    assert [without(c, "created") for c in second] == [without(c, "created") for c in first]


async def test_aembedding(client: AsyncOpenAI, openai_server: FakeOpenAI) -> None:
    """`aembedding(..., client=cached)` returns the same vectors from the cache."""

    async def embed() -> Any:
        return await litellm.aembedding(
            model="openai/text-embedding-3-small", input=["a", "bc"], **options(client)
        )

    first, second = await twice(openai_server, embed)
    assert len(first.data) == 2
    assert without(second) == without(first)
