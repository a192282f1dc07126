"""The decorator caches a coroutine on the default disk store."""

from __future__ import annotations

import asyncio

from memo import async_disk_cache


async def test_second_call_is_a_hit() -> None:
    """The same call twice runs the function once and returns an equal result."""
    calls = 0

    @async_disk_cache
    async def add(a: int, b: int = 2) -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return {"sum": a + b}

    assert await add(1) == {"sum": 3}
    assert await add(a=1, b=2) == {"sum": 3}
    assert calls == 1
    info = add.cache_info()
    assert (info.hits, info.misses, info.errors) == (1, 1, 0)
