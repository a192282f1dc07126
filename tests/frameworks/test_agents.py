"""The OpenAI Agents SDK on a cached client: a repeated run sends nothing, tool loop included.

Each test runs with both of the SDK's OpenAI models, chat completions and the
Responses API. A run's result holds objects made for that run (the agent,
its context), so runs are compared by what the model answered: each model
response's output, usage and response id, and the final output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from _support import require, twice

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

agents = require("agents")

MODELS = {
    "chat_completions": agents.OpenAIChatCompletionsModel,
    "responses": agents.OpenAIResponsesModel,
}


@pytest.fixture(autouse=True)
def no_tracing() -> None:
    """Traces would be exported to api.openai.com: the SDK's switch, besides the env variable."""
    agents.set_tracing_disabled(disabled=True)


@pytest.fixture(params=sorted(MODELS))
def model(request: pytest.FixtureRequest, client: AsyncOpenAI) -> Any:
    """Each of the SDK's OpenAI models, sending through the cached client."""
    return MODELS[request.param](model="gpt-4o-mini", openai_client=client)


def answers(result: Any) -> list[Any]:
    """What the model answered in a run, turn by turn, and what the run made of it."""
    turns = [(r.output, r.usage, r.response_id) for r in result.raw_responses]
    return [*turns, result.final_output]


async def test_run(model: Any, openai_server: FakeOpenAI) -> None:
    """`Runner.run` is answered from the cache the second time."""
    agent = agents.Agent(name="assistant", instructions="Answer briefly.", model=model)
    first, second = await twice(openai_server, lambda: agents.Runner.run(agent, "Hi"))
    assert first.final_output.startswith("Echo #1")
    assert answers(second) == answers(first)


async def test_run_streamed(model: Any, openai_server: FakeOpenAI) -> None:
    """`Runner.run_streamed` replays the same events and the same final output."""
    agent = agents.Agent(name="assistant", instructions="Answer briefly.", model=model)

    async def run() -> tuple[Any, list[Any]]:
        result = agents.Runner.run_streamed(agent, "Hi")
        # With chat completions the SDK makes Responses events of the chunks,
        # stamped with the time it makes them: compare what they carry.
        events = [
            (event.data.type, getattr(event.data, "delta", None))
            async for event in result.stream_events()
            if isinstance(event, agents.RawResponsesStreamEvent)
        ]
        return result, events

    (first, first_events), (second, second_events) = await twice(openai_server, run)
    assert first.final_output.startswith("Echo #1")
    assert "response.output_text.delta" in {kind for kind, _ in first_events}
    assert second_events == first_events
    assert answers(second) == answers(first)


async def test_tool_loop(model: Any, openai_server: FakeOpenAI) -> None:
    """A run that calls a tool (two model calls) is answered from the cache the second time.

    The tool itself runs in both runs: memo caches the model's answers, not the tools.
    """
    calls: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Return the weather in a city."""
        calls.append(city)
        return f"sunny in {city}"

    agent = agents.Agent(
        name="forecaster", instructions="Use the tool.", model=model, tools=[get_weather]
    )
    first, second = await twice(openai_server, lambda: agents.Runner.run(agent, "Paris?"))
    assert openai_server.count() == 2  # the tool call, then the answer
    assert calls == ["example", "example"]
    assert first.final_output.startswith("Echo #2")
    assert answers(second) == answers(first)
