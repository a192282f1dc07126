"""Per-call switches: memo.bypass() and memo.refreshing(), and the tasks they follow."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

import memo
from memo import CacheInfo, MemoryStore, async_disk_cache

if TYPE_CHECKING:
    from collections.abc import Callable


def _counted() -> tuple[list[int], memo.CachedFunction[[int], dict[str, int]], MemoryStore]:
    calls: list[int] = []
    store = MemoryStore()

    @async_disk_cache(store=store)
    async def fetch(x: int) -> dict[str, int]:
        calls.append(x)
        return {"x": x, "run": len(calls)}

    return calls, fetch, store


async def test_bypass_neither_reads_nor_writes() -> None:
    """Inside bypass() the function runs, the stored entry is not read, and nothing is written."""
    calls, fetch, store = _counted()
    assert await fetch(1) == {"x": 1, "run": 1}
    stored = await store.get(fetch.cache_key(1))
    with memo.bypass():
        assert await fetch(1) == {"x": 1, "run": 2}
        assert await fetch(2) == {"x": 2, "run": 3}
    assert await store.get(fetch.cache_key(1)) == stored
    assert await store.get(fetch.cache_key(2)) is None
    assert await fetch(1) == {"x": 1, "run": 1}
    assert calls == [1, 1, 2]


async def test_refreshing_runs_and_overwrites() -> None:
    """Inside refreshing() the function runs and its result replaces the entry."""
    calls, fetch, _ = _counted()
    await fetch(1)
    with memo.refreshing():
        assert await fetch(1) == {"x": 1, "run": 2}
        assert await fetch(1) == {"x": 1, "run": 3}
    assert await fetch(1) == {"x": 1, "run": 3}
    assert calls == [1, 1, 1]
    assert fetch.cache_info() == CacheInfo(hits=1, misses=3, errors=0)


async def test_switches_end_with_the_block() -> None:
    """After the with block (even one left by an exception) calls use the cache again."""
    calls, fetch, _ = _counted()
    await fetch(1)
    try:
        with memo.bypass():
            await fetch(1)
            raise KeyError
    except KeyError:
        pass
    await fetch(1)
    assert calls == [1, 1]


async def test_inner_switch_wins_and_outer_is_restored() -> None:
    """Nested blocks: the innermost switch applies, and the outer one comes back."""
    _calls, fetch, _ = _counted()
    await fetch(1)
    with memo.bypass():
        with memo.refreshing():
            assert await fetch(1) == {"x": 1, "run": 2}
        assert await fetch(1) == {"x": 1, "run": 3}
    assert await fetch(1) == {"x": 1, "run": 2}


async def test_tasks_created_inside_follow_the_switch() -> None:
    """A task created inside bypass() bypasses, even when it runs after the block ends."""
    _calls, fetch, _ = _counted()
    await fetch(1)
    release = asyncio.Event()

    async def later() -> dict[str, int]:
        await release.wait()
        return await fetch(1)

    with memo.bypass():
        task = asyncio.create_task(later())
    release.set()
    assert await task == {"x": 1, "run": 2}
    assert await fetch(1) == {"x": 1, "run": 1}


async def test_other_tasks_are_not_affected() -> None:
    """A task started outside the block keeps using the cache while the block is open."""
    calls, fetch, _ = _counted()
    await fetch(1)
    entered = asyncio.Event()
    leave = asyncio.Event()

    async def bypassing() -> None:
        with memo.bypass():
            entered.set()
            await leave.wait()
            await fetch(1)

    task = asyncio.create_task(bypassing())
    await entered.wait()
    assert await fetch(1) == {"x": 1, "run": 1}  # a hit, though the other task bypasses
    leave.set()
    await task
    assert calls == [1, 1]


async def test_refreshing_in_gathered_tasks() -> None:
    """refreshing() covers calls gathered inside it: each runs and overwrites."""
    calls, fetch, _ = _counted()
    await fetch(1)
    await fetch(2)
    with memo.refreshing():
        results = await asyncio.gather(fetch(1), fetch(2))
    assert sorted(r["run"] for r in results) == [3, 4]
    assert [await fetch(1), await fetch(2)] == results
    assert len(calls) == 4


@pytest.mark.parametrize(
    "switch", [memo.offline, memo.bypass, memo.refreshing], ids=lambda s: s.__name__
)
def test_a_switch_refuses_to_decorate_a_function(switch: Callable[[], object]) -> None:
    """@memo.offline() on an async def would cover creating the coroutine, not running it."""

    async def ask() -> int:
        return 1

    with pytest.raises(TypeError, match=rf"memo\.{switch.__name__}\(\) is a context manager"):
        switch()(ask)  # type: ignore[operator]
    with switch():  # as a context manager it still works
        pass
