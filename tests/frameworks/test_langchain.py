"""LangChain's ChatOpenAI and OpenAIEmbeddings on a cached client: a repeated call sends nothing.

ChatOpenAI calls ``with_raw_response`` (to read the response headers) for
``ainvoke``, structured output, tools and the Responses API; ``astream`` and
the embeddings call the SDK directly. A LangChain message carries an ``id``
made for each run (``lc_run--...``), so results are compared without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from _support import require, twice, without
from pydantic import BaseModel

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

langchain_openai = require("langchain_openai")
require("langchain_core")


class Person(BaseModel):
    name: str
    age: int


def get_weather(city: str) -> str:
    """Return the weather in a city."""
    return f"sunny in {city}"


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


async def test_ainvoke(client: AsyncOpenAI, openai_server: FakeOpenAI) -> None:
    """`ainvoke` (LangChain reads the raw response) is answered from the cache the second time."""
    llm = chat(client)
    first, second = await twice(openai_server, lambda: llm.ainvoke("What is caching?"))
    assert first.content.startswith("Echo #1")
    assert without(second, "id") == without(first, "id")


async def test_astream(client: AsyncOpenAI, openai_server: FakeOpenAI) -> None:
    """`astream` is replayed chunk by chunk."""
    llm = chat(client)

    async def chunks() -> list[Any]:
        return [chunk async for chunk in llm.astream("What is caching?")]

    first, second = await twice(openai_server, chunks)
    assert "".join(str(chunk.content) for chunk in first).startswith("Echo #1")
    assert [without(c, "id") for c in second] == [without(c, "id") for c in first]


async def test_with_structured_output(client: AsyncOpenAI, openai_server: FakeOpenAI) -> None:
    """`with_structured_output(Model)` (json_schema) returns the same object from the cache."""
    structured = chat(client).with_structured_output(Person)
    first, second = await twice(openai_server, lambda: structured.ainvoke("Jason is 25"))
    assert "json_schema" in str(openai_server.requests[0].body.get("response_format"))
    assert isinstance(first, Person)
    assert second == first


async def test_bind_tools(client: AsyncOpenAI, openai_server: FakeOpenAI) -> None:
    """A model with tools bound gets the same tool call, with the same id, from the cache."""
    llm = chat(client).bind_tools([get_weather])
    first, second = await twice(openai_server, lambda: llm.ainvoke("Weather in Paris?"))
    assert [call["name"] for call in first.tool_calls] == ["get_weather"]
    assert without(second, "id") == without(first, "id")


async def test_responses_api(client: AsyncOpenAI, openai_server: FakeOpenAI) -> None:
    """`use_responses_api=True` sends to /v1/responses, once."""
    llm = chat(client, use_responses_api=True)
    first, second = await twice(openai_server, lambda: llm.ainvoke("What is caching?"))
    assert openai_server.requests[0].path == "/v1/responses"
    assert "Echo #1" in first.text
    assert without(second, "id") == without(first, "id")


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
