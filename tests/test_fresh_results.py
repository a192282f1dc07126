"""No call gets a value from before an invalidation, another caller's object, or another's error.

- After ``invalidate()``, ``cache_clear()`` or ``refresh()`` returns, no call
  that starts later gets a value computed or read before it, and no run still
  in flight writes its older value over it.
- Every caller gets its own object, a caller joined to a run included.
- A failed run's exception goes only to the callers of that run.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import memo
from memo import CacheInfo, MemoryStore, async_disk_cache

BOUND = 10


class Prices:
    """A price source that changes, and a cached function that reads it, then waits."""

    def __init__(self, *, store: Any = None, **options: Any) -> None:
        self.source = {"x": 1}
        self.runs = 0
        self.read = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        store = MemoryStore() if store is None else store
        # A bound method: the instance (not keyable) is part of a default
        # namespace, so the source names its own.
        self.price = async_disk_cache("prices", store=store, **options)(self._price)

    async def _price(self, item: str) -> dict[str, int]:
        self.runs += 1
        value = self.source[item]  # read now...
        self.read.set()
        await self.gate.wait()  # ...answered later
        return {"price": value}

    async def start_slow_run(self) -> asyncio.Task[dict[str, int]]:
        """Start a run that has read the current source and waits at the gate."""
        self.gate.clear()
        self.read.clear()
        task = asyncio.create_task(self.price("x"))
        await asyncio.wait_for(self.read.wait(), BOUND)
        return task


@pytest.mark.parametrize("how", ["invalidate", "cache_clear", "refresh"])
async def test_no_call_after_an_invalidation_gets_the_run_before_it(how: str) -> None:
    """A run that read the old source is not joined afterwards, nor written over the new value."""
    prices = Prices()
    old_run = await prices.start_slow_run()
    prices.source["x"] = 2
    if how == "invalidate":
        await prices.price.invalidate("x")
    elif how == "cache_clear":
        await prices.price.cache_clear()
    else:
        prices.gate.set()  # refresh runs the function now: let it through
        assert await prices.price.refresh("x") == {"price": 2}
        prices.gate.clear()
    later = asyncio.create_task(prices.price("x"))
    await asyncio.sleep(0)
    prices.gate.set()
    assert await asyncio.wait_for(later, BOUND) == {"price": 2}
    assert await asyncio.wait_for(old_run, BOUND) == {"price": 1}  # its own caller: fine
    # The old run did not write its value over the new one.
    assert await prices.price("x") == {"price": 2}


async def test_a_write_that_lands_after_an_invalidation_is_taken_back() -> None:
    """An invalidation while the result is being written: the stale entry does not stay."""
    written = asyncio.Event()
    proceed = asyncio.Event()

    class SlowWrites(MemoryStore):
        async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
            written.set()
            await proceed.wait()
            await super().set(key, value, ttl=ttl)

    store = SlowWrites()
    prices = Prices(store=store)
    run = asyncio.create_task(prices.price("x"))
    await asyncio.wait_for(written.wait(), BOUND)
    prices.source["x"] = 2
    invalidated = asyncio.create_task(prices.price.invalidate("x"))
    await asyncio.sleep(0)
    proceed.set()
    await asyncio.wait_for(invalidated, BOUND)
    assert await asyncio.wait_for(run, BOUND) == {"price": 1}
    assert await store.get(prices.price.cache_key("x")) is None
    assert await prices.price("x") == {"price": 2}


@pytest.mark.parametrize("stored", [True, False], ids=["stored", "not-stored"])
async def test_callers_joined_to_one_run_get_objects_of_their_own(stored: bool) -> None:
    """Ten callers of one run get equal results, each its own object: a mutation stays local."""
    prices = Prices(cache_if=lambda result: stored)
    prices.gate.clear()
    callers = [asyncio.create_task(prices.price("x")) for _ in range(10)]
    await asyncio.wait_for(prices.read.wait(), BOUND)
    prices.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*callers), BOUND)
    assert prices.runs == 1
    assert prices.price.cache_info() == CacheInfo(hits=9, misses=1, errors=0)
    assert all(result == {"price": 1} for result in results)
    assert len({id(result) for result in results}) == 10
    results[0]["price"] = 99
    assert [result["price"] for result in results[1:]] == [1] * 9


async def test_a_failed_runs_error_goes_only_to_its_callers() -> None:
    """A caller arriving while a failed run gives back its lock starts a new run."""
    releasing = asyncio.Event()
    released = asyncio.Event()

    class SlowRelease(MemoryStore):
        async def release(self, key: str) -> None:
            releasing.set()
            await released.wait()

    attempts = 0

    @async_disk_cache(store=SlowRelease())
    async def flaky(x: int) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            msg = "first attempt fails"
            raise ConnectionError(msg)
        return x

    first = asyncio.create_task(flaky(1))
    await asyncio.wait_for(releasing.wait(), BOUND)
    second = asyncio.create_task(flaky(1))  # the failed run has ended; its lock is not yet back
    await asyncio.sleep(0)
    released.set()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(first, BOUND)
    assert await asyncio.wait_for(second, BOUND) == 1
    assert attempts == 2


async def test_refreshing_mode_supersedes_runs_in_flight() -> None:
    """memo.refreshing() is a refresh: a run that read the old source is not joined after it."""
    prices = Prices()
    old_run = await prices.start_slow_run()
    prices.source["x"] = 2
    prices.gate.set()
    with memo.refreshing():
        assert await prices.price("x") == {"price": 2}
    assert await prices.price("x") == {"price": 2}
    assert await asyncio.wait_for(old_run, BOUND) == {"price": 1}
    assert await prices.price("x") == {"price": 2}


async def test_a_refresh_that_stores_nothing_still_retires_the_old_entry() -> None:
    """refresh() whose result is not stored (cache_if says no) leaves no older value behind."""
    prices = Prices(cache_if=lambda result: result["price"] < 2)
    assert await prices.price("x") == {"price": 1}  # stored
    prices.source["x"] = 2
    assert await prices.price.refresh("x") == {"price": 2}  # not stored
    assert await prices.price("x") == {"price": 2}
    assert prices.runs == 3
