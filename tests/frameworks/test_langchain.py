"""LangChain's ChatOpenAI and OpenAIEmbeddings on a cached client: a repeated call sends nothing.

``astream`` and the embeddings call the SDK directly. A LangChain message
carries an ``id`` made for each run (``lc_run--...``), so results are
compared without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from _support import require, twice, without

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

langchain_openai = require("langchain_openai")
require("langchain_core")


def chat(client: AsyncOpenAI, **options: Any) -> Any:
    """A ChatOpenAI that sends through ``client``, with LangChain's own cache and retries off."""
    return langchain_openai.ChatOpenAI(
        model="gpt-4o-mini",
        root_async_client=client,
        async_client=client.chat.completions,
        api_key="sk-test",
        base_url=str(client.base_url),
        max_retries=0,
        cache=False,
        **options,
    )


async def test_astream(client: AsyncOpenAI, openai_server: FakeOpenAI) -> None:
    """`astream` is replayed chunk by chunk."""
    llm = chat(client)

    async def chunks() -> list[Any]:
        return [chunk async for chunk in llm.astream("What is caching?")]

    first, second = await twice(openai_server, chunks)
    assert "".join(str(chunk.content) for chunk in first).startswith("Echo #1")
    assert [without(c, "id") for c in second] == [without(c, "id") for c in first]


async def test_embeddings(client: AsyncOpenAI, openai_server: FakeOpenAI) -> None:
    """`aembed_documents` returns the same vectors from the cache."""
    embeddings = langchain_openai.OpenAIEmbeddings(
        model="text-embedding-3-small",
        async_client=client.embeddings,
        api_key="sk-test",
        base_url=str(client.base_url),
        max_retries=0,
        # The default tokenizes with tiktoken first, which downloads its encoding.
        check_embedding_ctx_length=False,
    )
    first, second = await twice(openai_server, lambda: embeddings.aembed_documents(["a", "bc"]))
    assert len(first) == 2
    assert second == first
