"""The frameworks' calls through with_raw_response / with_streaming_response are cached.

LangChain's ``ainvoke`` (and structured output, tools, the Responses API),
LiteLLM's ``acompletion`` and the Agents SDK's streamed Responses run ask the
SDK for the HTTP response along with the answer. A repeated call sends nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from _support import require, twice, without
from pydantic import BaseModel

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

langchain_openai = require("langchain_openai")
litellm = require("litellm")
agents = require("agents")


class City(BaseModel):
    """A city, for structured output."""

    name: str


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


def get_weather(city: str) -> str:
    """Return the weather in a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("responses_api", [False, True], ids=["chat", "responses"])
async def test_langchain_ainvoke(
    client: AsyncOpenAI, openai_server: FakeOpenAI, responses_api: bool
) -> None:
    """`ainvoke` (with_raw_response) is answered from the cache the second time."""
    llm = chat(client, use_responses_api=responses_api)
    first, second = await twice(openai_server, lambda: llm.ainvoke("What is caching?"))
    assert "Echo #1" in str(first.content)
    assert second.content == first.content
    assert second.response_metadata["id"] == first.response_metadata["id"]


async def test_langchain_structured_output_and_tools(
    client: AsyncOpenAI, openai_server: FakeOpenAI
) -> None:
    """`with_structured_output` and `bind_tools` go through the same cached raw calls."""
    structured = chat(client).with_structured_output(City)
    first, second = await twice(openai_server, lambda: structured.ainvoke("Which city?"))
    assert first == second == City(name="example")
    tooled = chat(client).bind_tools([get_weather])
    first, second = await twice(openai_server, lambda: tooled.ainvoke("Weather in Paris?"))
    assert second.tool_calls == first.tool_calls
    assert first.tool_calls[0]["name"] == "get_weather"


# LiteLLM's own TypedDicts use ReadOnly, which pydantic warns about on first use, and
# its streaming reads model_fields off instances: so it does without memo too.
@pytest.mark.filterwarnings("ignore:Items? .* the `ReadOnly` qualifier:UserWarning")
@pytest.mark.filterwarnings("ignore:Accessing the 'model_.*fields' attribute:DeprecationWarning")
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_litellm_acompletion(
    client: AsyncOpenAI, openai_server: FakeOpenAI, stream: bool
) -> None:
    """`acompletion(client=...)`, plain and streamed, is answered from the cache."""
    messages = [{"role": "user", "content": "What is caching?"}]

    async def ask() -> Any:
        reply = await litellm.acompletion(
            model="openai/gpt-4o-mini", messages=messages, client=client, stream=stream
        )
        if not stream:
            return reply
        return "".join([chunk.choices[0].delta.content or "" async for chunk in reply])

    first, second = await twice(openai_server, ask)
    if stream:
        assert second == first
        assert first.startswith("Echo #1")
    else:
        assert second.choices[0].message.content == first.choices[0].message.content
        assert second.id == first.id


async def test_agents_streamed_responses_run(
    client: AsyncOpenAI, openai_server: FakeOpenAI
) -> None:
    """`Runner.run_streamed` with the Responses model (with_streaming_response) replays."""
    agents.set_tracing_disabled(disabled=True)
    model = agents.OpenAIResponsesModel(model="gpt-4o-mini", openai_client=client)
    agent = agents.Agent(name="assistant", instructions="Answer briefly.", model=model)

    async def run() -> tuple[Any, list[Any]]:
        result = agents.Runner.run_streamed(agent, "Hi")
        events = [
            without(event.data, "sequence_number")
            async for event in result.stream_events()
            if isinstance(event, agents.RawResponsesStreamEvent)
        ]
        return result.final_output, events

    (first, first_events), (second, second_events) = await twice(openai_server, run)
    assert first.startswith("Echo #1")
    assert second == first
    assert second_events == first_events
