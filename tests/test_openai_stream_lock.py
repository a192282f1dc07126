"""A stream that stores nothing gives back the cross-process lock its miss took.

With ``RedisStore(lock_timeout=...)`` a miss takes a lock in Redis that the
write of the result releases. A stream cut short, closed early or ending
unfinished stores nothing, so memo must release the lock itself: otherwise
every other process asking for the same stream waits until the lock expires.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
import redis
from openai import AsyncOpenAI

import memo.openai
from memo import RedisStore

if TYPE_CHECKING:
    from pathlib import Path

    from fake_openai import FakeOpenAI
    from redis_server import RedisServer

# Far longer than the second process is allowed to take: waiting for the lock
# to expire shows as a timeout, not as a slow pass.
LOCK_TIMEOUT = 60
SECOND_PROCESS_TIMEOUT = 30

MESSAGES: Any = [{"role": "user", "content": "Tell me"}]

SECOND_PROCESS = """
import asyncio, json, os
from openai import AsyncOpenAI
import memo.openai
from memo import RedisStore

async def main() -> None:
    store = RedisStore(os.environ["REDIS_URL"], lock_timeout=float(os.environ["LOCK_TIMEOUT"]))
    plain = AsyncOpenAI(base_url=os.environ["BASE_URL"], api_key="sk-test", max_retries=0)
    client = memo.openai.cached(plain, store=store)
    stream = await client.chat.completions.create(
        model=os.environ["MODEL"], messages=[{"role": "user", "content": "Tell me"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    print(json.dumps({"chunks": len(chunks), "errors": memo.openai.cache_info(client).errors}))
    await plain.close()
    await store.close()

asyncio.run(main())
"""


def _locks(server: RedisServer) -> list[bytes]:
    with redis.Redis.from_url(server.url) as raw:
        return list(raw.scan_iter(match="memo:!lock:*"))


async def _cut_short(client: AsyncOpenAI, how: str) -> None:
    model = "fake-truncated" if how == "unfinished" else "fake"
    if how == "helper-closed-early":
        async with client.chat.completions.stream(model=model, messages=MESSAGES) as events:
            async for _ in events:
                break
        return
    stream = await client.chat.completions.create(model=model, messages=MESSAGES, stream=True)
    if how == "closed-early":
        async with stream:
            async for _ in stream:
                break  # the consumer has what it needs
    elif how == "closed-unread":
        await stream.close()
    else:
        assert [chunk async for chunk in stream]  # read to the end of what was sent


@pytest.mark.slow
@pytest.mark.parametrize(
    "how", ["closed-early", "closed-unread", "helper-closed-early", "unfinished"]
)
async def test_a_stream_that_stores_nothing_releases_the_lock(
    redis_server: RedisServer, openai_server: FakeOpenAI, tmp_path: Path, how: str
) -> None:
    """Cut short or unfinished: the lock is gone, and another process streams at once."""
    store = RedisStore(redis_server.url, lock_timeout=LOCK_TIMEOUT)
    plain = AsyncOpenAI(base_url=openai_server.base_url, api_key="sk-test", max_retries=0)
    client = memo.openai.cached(plain, store=store)
    try:
        await _cut_short(client, how)
        assert _locks(redis_server) == []
        assert memo.openai.cache_info(client).errors == 0
    finally:
        await plain.close()
        await store.close()

    script = tmp_path / "second.py"
    script.write_text(SECOND_PROCESS)
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "BASE_URL": openai_server.base_url,
        "LOCK_TIMEOUT": str(LOCK_TIMEOUT),
        "MODEL": "fake-truncated" if how == "unfinished" else "fake",
    }
    second = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=SECOND_PROCESS_TIMEOUT,
        check=False,
    )
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["chunks"] > 1
    assert report["errors"] == 0
    assert openai_server.count() == 2  # the second process sent its own request
