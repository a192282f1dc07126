"""instructor on a cached client: a repeated extraction sends nothing.

instructor makes a new class for each call's ``response_model``, and sets
the raw completion on the object it returns, so results are compared as data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from _support import require, twice
from pydantic import BaseModel, field_validator

import memo
import memo.openai

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

instructor = require("instructor")
InstructorRetryException = require("instructor.core").InstructorRetryException

MESSAGES = [{"role": "user", "content": "Jason is 25 years old"}]


class User(BaseModel):
    name: str
    age: int


class Minor(BaseModel):
    name: str
    age: int

    @field_validator("age")
    @classmethod
    def under_18(cls, age: int) -> int:
        if age >= 18:
            msg = f"{age} is not under 18"
            raise ValueError(msg)
        return age


async def test_response_model(client: AsyncOpenAI, openai_server: FakeOpenAI) -> None:
    """`create(response_model=...)` returns the same object from the cache."""
    patched = instructor.from_openai(client)

    async def extract() -> Any:
        return await patched.chat.completions.create(
            model="gpt-4o-mini", response_model=User, messages=MESSAGES, max_retries=0
        )

    first, second = await twice(openai_server, extract)
    assert isinstance(first, User)
    assert second.model_dump() == first.model_dump()


async def test_create_with_completion(client: AsyncOpenAI, openai_server: FakeOpenAI) -> None:
    """`create_with_completion` returns the same object and the same completion from the cache."""
    patched = instructor.from_openai(client)

    async def extract() -> Any:
        return await patched.chat.completions.create_with_completion(
            model="gpt-4o-mini", response_model=User, messages=MESSAGES, max_retries=0
        )

    (first, first_completion), (second, second_completion) = await twice(openai_server, extract)
    assert second.model_dump() == first.model_dump()
    assert second_completion == first_completion
    assert first_completion.id == "chatcmpl-1"


async def test_refused_answer_is_cached_until_refreshed(
    client: AsyncOpenAI, openai_server: FakeOpenAI
) -> None:
    """An answer the response model refuses is a fine HTTP answer: cached, until refreshed."""
    patched = instructor.from_openai(client)

    async def extract() -> Any:
        return await patched.chat.completions.create(
            model="gpt-4o-mini", response_model=Minor, messages=MESSAGES, max_retries=0
        )

    for _ in range(2):
        with pytest.raises(InstructorRetryException):
            await extract()
    assert openai_server.count() == 1  # the refused answer came back from the cache
    assert memo.openai.last_call_was_hit()
    with memo.refreshing(), pytest.raises(InstructorRetryException):
        await extract()  # asked again: the fake server answers 42 again
    assert openai_server.count() == 2
