"""The API key never reaches the cache: not in a key, not in any file of the folder."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest
from fake_openai import API_KEY
from openai import AsyncOpenAI
from pydantic import BaseModel

import memo.openai

if TYPE_CHECKING:
    from pathlib import Path

    from fake_openai import FakeOpenAI


class Answer(BaseModel):
    text: str


def _files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


async def test_api_key_bytes_are_in_no_cache_file(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI, cache_dir: Path
) -> None:
    """After every kind of cached call, no file under the cache folder holds the API key."""
    client = memo.openai.cached(openai_client, key_headers=("X-Team",))
    messages: Any = [{"role": "user", "content": "Hi"}]
    # The key also rides in a header that is not keyed, to show headers stay out.
    leaky = {"X-Team": "a", "X-Copy-Of-Key": API_KEY}
    for _ in range(2):
        await client.chat.completions.create(model="fake", messages=messages, extra_headers=leaky)
        await client.chat.completions.parse(model="fake", messages=messages, response_format=Answer)
        await client.embeddings.create(model="fake-embed", input="Hi")
        await client.responses.create(model="fake", input="Hi")
        stream = await client.chat.completions.create(model="fake", messages=messages, stream=True)
        [chunk async for chunk in stream]
    assert openai_server.count() == 5
    assert all(r.headers["authorization"] == f"Bearer {API_KEY}" for r in openai_server.requests)
    files = _files(cache_dir)
    names = {path.name for path in files}
    assert "cache.db" in names
    needles = [API_KEY.encode(), API_KEY.encode("utf-16-le"), API_KEY[3:].encode()]
    for path in files:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, f"{path.name} holds the API key"
    stored = b"".join(path.read_bytes() for path in files)
    assert b"Echo #1: Hi" in stored, "the scan must see the stored responses"


@pytest.mark.parametrize("header", ["Authorization", "api-key", "X-Api-Key", "Cookie"])
def test_credential_headers_cannot_be_keyed(openai_client: AsyncOpenAI, header: str) -> None:
    """Naming a credential header in key_headers is refused."""
    with pytest.raises(ValueError, match="credentials"):
        memo.openai.cached(openai_client, key_headers=(header,))


async def test_a_keyed_header_carrying_the_api_key_is_never_keyed(
    openai_server: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """A keyed header whose value holds the API key: the call is sent uncached and reported."""
    caplog.set_level(logging.DEBUG, logger="memo")  # repeats of a failure kind log at DEBUG
    async with AsyncOpenAI(
        base_url=openai_server.base_url,
        api_key=API_KEY,
        default_headers={"X-Upstream-Auth": f"Token {API_KEY}"},
    ) as raw:
        client = memo.openai.cached(raw, key_headers=("X-Upstream-Auth",))
        for _ in range(2):
            answer = await client.chat.completions.create(
                model="fake", messages=[{"role": "user", "content": "Hi"}]
            )
    assert answer.id == "chatcmpl-2"
    assert openai_server.count() == 2
    assert "x-upstream-auth carries the API key" in caplog.text
    assert API_KEY not in caplog.text
