"""The app under test: it asks an LLM, through a cached OpenAI client."""

from __future__ import annotations

from openai import AsyncOpenAI

import memo
import memo.openai

MODEL = "gpt-4o-mini"

# Reads OPENAI_API_KEY and OPENAI_BASE_URL. The base URL is part of every key:
# record and replay against the same one.
client = memo.openai.cached(AsyncOpenAI())


async def summarize(text: str) -> str:
    """Return a one-line summary of ``text``."""
    completion = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Summarize in one line: {text}"}],
        temperature=0,
    )
    return completion.choices[0].message.content or ""


async def tell(topic: str) -> list[str]:
    """Return a streamed answer about ``topic``, as the pieces it arrived in."""
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": f"Tell me about {topic}"}], stream=True
    )
    return [chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices]


@memo.async_disk_cache
async def headline(text: str) -> str:
    """Return a headline for ``text``: a cached function of the app's own."""
    summary = await summarize(text)
    return summary.split(".")[0][:80]
