"""Structured outputs: .parsed comes back as the caller's model; the schema sent is in the key."""

from __future__ import annotations

from typing import TYPE_CHECKING

import openai
import pydantic
import pytest
from pydantic import BaseModel, field_validator

import memo.openai

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Weather in Paris?"}]


class Step(BaseModel):
    explanation: str


class Weather(BaseModel):
    city: str
    celsius: float
    steps: list[Step]


class Known(BaseModel):
    city: str

    @field_validator("city")
    @classmethod
    def known(cls, value: str) -> str:
        if value == "example":  # what the test server puts in every string
            msg = "unknown city"
            raise ValueError(msg)
        return value


@pytest.mark.parametrize(
    ("model", "response_format", "error"),
    [
        pytest.param("fake", Known, pydantic.ValidationError, id="fails-the-model"),
        pytest.param("fake-length", Weather, openai.LengthFinishReasonError, id="cut-short"),
    ],
)
async def test_an_answer_the_parser_refuses_is_not_stored(
    openai_server: FakeOpenAI,
    openai_client: AsyncOpenAI,
    model: str,
    response_format: type[BaseModel],
    error: type[Exception],
) -> None:
    """An answer parse() raises for is raised each time, as without memo, and never stored."""
    client = memo.openai.cached(openai_client)
    for _ in range(2):
        with pytest.raises(error):
            await client.chat.completions.parse(
                model=model, messages=MESSAGES, response_format=response_format
            )
    assert openai_server.count() == 2


async def test_parse_hit_returns_the_callers_model(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """chat.completions.parse twice: one request, and .parsed is a Weather both times."""
    client = memo.openai.cached(openai_client)
    first = await client.chat.completions.parse(
        model="fake", messages=MESSAGES, response_format=Weather
    )
    second = await client.chat.completions.parse(
        model="fake", messages=MESSAGES, response_format=Weather
    )
    assert memo.openai.last_call_was_hit() is True
    assert openai_server.count() == 1
    parsed = second.choices[0].message.parsed
    assert isinstance(parsed, Weather)
    assert isinstance(parsed.steps[0], Step)
    assert parsed == first.choices[0].message.parsed
    assert second == first
    assert second._request_id == first._request_id is not None


async def test_parse_keeps_the_request_id(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Parsed results carry the API's request id, as the SDK's own parse results do."""
    client = memo.openai.cached(openai_client)
    chat = await client.chat.completions.parse(
        model="fake", messages=MESSAGES, response_format=Weather
    )
    response = await client.responses.parse(model="fake", input="Paris?", text_format=Weather)
    uncached = await openai_client.chat.completions.parse(
        model="fake", messages=MESSAGES, response_format=Weather
    )
    assert uncached._request_id is not None
    assert chat._request_id is not None
    assert response._request_id is not None
    assert openai_server.count() == 3


async def test_editing_the_model_changes_the_key(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A model with another field sends another JSON schema, so it is another entry."""
    client = memo.openai.cached(openai_client)

    class Weather(BaseModel):  # the same name, edited
        city: str
        celsius: float
        steps: list[Step]
        wind: str

    await client.chat.completions.parse(model="fake", messages=MESSAGES, response_format=Weather)
    edited = await client.chat.completions.parse(
        model="fake", messages=MESSAGES, response_format=globals()["Weather"]
    )
    assert openai_server.count() == 2
    schemas = [r.body["response_format"]["json_schema"]["schema"] for r in openai_server.requests]
    assert "wind" in schemas[0]["properties"]
    assert "wind" not in schemas[1]["properties"]
    assert not hasattr(edited.choices[0].message.parsed, "wind")


async def test_parsed_tool_arguments_come_back_typed(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """pydantic_function_tool arguments are parsed into the tool's model on a hit."""
    client = memo.openai.cached(openai_client)
    tools = [openai.pydantic_function_tool(Weather, name="report")]
    for _ in range(2):
        completion = await client.chat.completions.parse(
            model="fake", messages=MESSAGES, tools=tools
        )
    calls = completion.choices[0].message.tool_calls
    assert calls is not None
    assert isinstance(calls[0].function.parsed_arguments, Weather)
    assert calls[0].id == "call_1_0"
    assert openai_server.count() == 1


async def test_responses_parse_returns_the_callers_model(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """responses.parse(text_format=...) gives output_parsed as the caller's model on a hit."""
    client = memo.openai.cached(openai_client)
    first = await client.responses.parse(model="fake", input="Paris?", text_format=Weather)
    second = await client.responses.parse(model="fake", input="Paris?", text_format=Weather)
    assert openai_server.count() == 1
    assert isinstance(second.output_parsed, Weather)
    assert second.output_parsed == first.output_parsed


async def test_parse_and_create_with_the_same_body_share_an_entry(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """parse() stores the API's answer, so a create() sending the same body reads it."""
    client = memo.openai.cached(openai_client)
    parsed = await client.chat.completions.parse(
        model="fake", messages=MESSAGES, response_format=Weather
    )
    body = openai_server.last.body
    raw = await client.chat.completions.create(
        model="fake", messages=MESSAGES, response_format=body["response_format"], stream=False
    )
    assert openai_server.count() == 1
    assert raw.choices[0].message.content == parsed.choices[0].message.content
