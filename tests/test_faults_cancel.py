"""Cancellation at every await point of a miss: nothing half-written, nobody left waiting.

A miss is driven one event-loop step at a time (``await asyncio.sleep(0)`` in
the test yields exactly one step), and cancelled after 0, 1, ... N steps, where
N is how many steps a whole miss takes. The store and the function await at
every stage (read, run, write), so every await point of a miss is hit.
"""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from doubles import StoreDouble

from memo import DiskStore, MemoryStore, async_disk_cache
from memo._envelope import envelope_header, open_envelope

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

HEADER = envelope_header(b"json")


def expected(i: int) -> dict[str, Any]:
    return {"i": i, "double": 2 * i, "text": "v" * i}


def stepping() -> StoreDouble:
    """A MemoryStore that takes a loop step around every read and write, with no shortcut read.

    Each write lands in one step (as a real store's single command does), so a
    cancelled write leaves the old entry or the new one, never a piece.
    """
    return StoreDouble(step=("get", "set"))


def make(store: Any) -> tuple[Any, list[int]]:
    runs: list[int] = []

    @async_disk_cache(namespace="cancel", store=store)
    async def value(i: int) -> dict[str, Any]:
        runs.append(i)
        for _ in range(3):
            await asyncio.sleep(0)
        return expected(i)

    return value, runs


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Everything the event loop reports to its exception handler during the test.

    A "Task exception was never retrieved" or "exception in callback" lands
    here (after a garbage collection); the test fails if anything did.
    """
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    gc.collect()
    loop.set_exception_handler(previous)
    assert errors == [], [c.get("message") for c in errors]


async def steps(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def steps_of_a_miss() -> int:
    """How many loop steps one uncancelled miss takes from the call to its result."""
    value, _ = make(stepping())
    task = asyncio.ensure_future(value(1))
    count = 0
    while not task.done():
        await asyncio.sleep(0)
        count += 1
    assert task.result() == expected(1)
    return count


async def stored(store: StoreDouble, value: Any, i: int) -> Any:
    key = value.cache_key(i)
    raw = await store.inner.get(key)
    return None if raw is None else orjson.loads(open_envelope(HEADER, raw, key))


async def drain(task: asyncio.Future[Any]) -> None:
    """Wait for a cancelled caller to finish, however it ended."""
    await asyncio.gather(task, return_exceptions=True)


async def test_the_loop_error_check_can_fail() -> None:
    """The exception-handler check used here does see a never-retrieved task exception."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))

    async def boom() -> None:
        msg = "nobody looks at me"
        raise ValueError(msg)

    task = asyncio.ensure_future(boom())
    await steps(2)
    del task
    gc.collect()
    loop.set_exception_handler(previous)
    assert [c["message"] for c in errors] == ["Task exception was never retrieved"]


async def test_a_miss_takes_several_steps() -> None:
    """The stepping store and function make a miss long enough to cancel at many points."""
    assert await steps_of_a_miss() >= 10


async def test_cancel_the_only_caller_at_every_step(loop_errors: list[Any]) -> None:
    """Cancelling the only caller after k steps: entry absent or whole; the next call works."""
    total = await steps_of_a_miss()
    outcomes = set()
    for k in range(total + 2):
        store = stepping()
        value, runs = make(store)
        task = asyncio.ensure_future(value(5))
        await steps(k)
        task.cancel()
        await drain(task)
        outcomes.add("cancelled" if task.cancelled() else "finished")
        if not task.cancelled():
            assert task.result() == expected(5)
        entry = await stored(store, value, 5)
        assert entry in (None, expected(5)), k
        # No flight is left behind: a new call runs (or hits) and returns.
        assert await asyncio.wait_for(value(5), timeout=10) == expected(5)
        assert await stored(store, value, 5) == expected(5)
        assert len(runs) <= 2
        assert store.done["set"] <= 2
    assert outcomes == {"cancelled", "finished"}


async def test_cancel_one_of_two_callers_at_every_step(loop_errors: list[Any]) -> None:
    """Cancelling the first of two callers after k steps: the other gets the result, one run."""
    total = await steps_of_a_miss()
    for k in range(total + 2):
        store = stepping()
        value, runs = make(store)
        first = asyncio.ensure_future(value(6))
        second = asyncio.ensure_future(value(6))
        await steps(k)
        first.cancel()
        assert await asyncio.wait_for(second, timeout=10) == expected(6)
        await drain(first)
        assert runs == [6], k  # the cancelled caller neither stopped nor repeated the run
        assert await stored(store, value, 6) == expected(6)


async def test_cancel_every_caller_at_every_step(loop_errors: list[Any]) -> None:
    """Cancelling all three callers after k steps cancels the run: no half entry, no hang."""
    total = await steps_of_a_miss()
    for k in range(total + 2):
        store = stepping()
        value, runs = make(store)
        callers = [asyncio.ensure_future(value(7)) for _ in range(3)]
        await steps(k)
        for caller in callers:
            caller.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        assert await stored(store, value, 7) in (None, expected(7))
        assert len(runs) <= 1
        assert await asyncio.wait_for(value(7), timeout=10) == expected(7)


async def test_cancel_refresh_at_every_step(loop_errors: list[Any]) -> None:
    """Cancelling refresh() after k steps leaves the old entry or the new one, never a piece."""
    total = await steps_of_a_miss()
    for k in range(total + 2):
        store = stepping()
        value, runs = make(store)
        assert await value(8) == expected(8)
        before = await stored(store, value, 8)
        task = asyncio.ensure_future(value.refresh(8))
        await steps(k)
        task.cancel()
        await drain(task)
        assert await stored(store, value, 8) == before == expected(8)
        assert len(runs) <= 2


async def test_exceptions_of_abandoned_runs_are_retrieved(loop_errors: list[Any]) -> None:
    """A run that fails after its only caller left reports nothing to the loop."""
    release = asyncio.Event()

    @async_disk_cache(namespace="cancel-raise", store=MemoryStore())
    async def fails(i: int) -> int:
        try:
            await release.wait()
        finally:
            msg = "failed while nobody waited"
            raise ValueError(msg)  # raising even when cancelled is the point

    task = asyncio.ensure_future(fails(1))
    await steps(3)
    task.cancel()
    await drain(task)
    release.set()
    await steps(5)
    assert task.cancelled()


async def test_cancel_with_disk_store_at_every_step(tmp_path: Path, loop_errors: list[Any]) -> None:
    """With the real DiskStore (writes on its thread pool): absent or whole, never a piece."""
    store = DiskStore(tmp_path / "cache")
    value, runs = make(store)
    for k in range(0, 40, 2):
        task = asyncio.ensure_future(value(k))
        await steps(k)
        task.cancel()
        await drain(task)
        key = value.cache_key(k)
        raw = await store.get(key)
        assert raw is None or orjson.loads(open_envelope(HEADER, raw, key)) == expected(k)
        assert await asyncio.wait_for(value(k), timeout=10) == expected(k)
        assert await asyncio.wait_for(value(k), timeout=10) == expected(k)
        assert runs.count(k) <= 2
    assert value.cache_info().errors == 0
    await store.close()
