"""A cached chat helper: the use case memo grew from.

Ask the same question twice; the second answer comes from the cache, costs
nothing, and equals the first (same id, same usage). Run it twice: the cache
is on disk, so the second run makes no request at all.

    OPENAI_API_KEY=sk-... python examples/cached_chat.py "What is caching?"

OPENAI_BASE_URL points it at another OpenAI-compatible server; MEMO_CACHE_DIR
chooses the cache folder (default: ~/.cache/memo).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

MODEL = os.environ.get("MEMO_EXAMPLE_MODEL", "gpt-4o-mini")

HOW_TO_RUN = """\
This example calls the OpenAI API, so it needs a key:

    pip install 'memo-cache[openai]'
    OPENAI_API_KEY=sk-... python examples/cached_chat.py "What is caching?"

Set OPENAI_BASE_URL as well to use another OpenAI-compatible server, and
MEMO_EXAMPLE_MODEL to pick the model (default: gpt-4o-mini)."""


async def main(question: str) -> None:
    # Imported here so the how-to-run message shows even without openai installed.
    from openai import AsyncOpenAI  # noqa: PLC0415

    import memo.openai  # noqa: PLC0415

    async with AsyncOpenAI() as raw:  # reads OPENAI_API_KEY and OPENAI_BASE_URL
        client = memo.openai.cached(raw)
        messages = [{"role": "user", "content": question}]
        for attempt in (1, 2):
            started = time.perf_counter()
            completion = await client.chat.completions.create(
                model=MODEL, messages=messages, max_completion_tokens=300
            )
            elapsed = time.perf_counter() - started
            source = "cache" if memo.openai.last_call_was_hit() else "API"
            usage = completion.usage.total_tokens if completion.usage else "?"
            print(
                f"call {attempt}: from the {source} in {elapsed * 1000:.1f} ms "
                f"(id {completion.id}, {usage} tokens)"
            )
        print()
        print(completion.choices[0].message.content)
        print()
        print(memo.openai.cache_info(client))


if __name__ == "__main__":
    if not os.environ.get("OPENAI_API_KEY"):
        print(HOW_TO_RUN)
        sys.exit(0)
    asyncio.run(main(" ".join(sys.argv[1:]) or "What is caching in software engineering?"))
