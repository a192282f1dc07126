"""Single flight: concurrent identical calls run once; cancellation; recursion; event loops."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from memo import CacheInfo, MemoryStore, Store, async_disk_cache
from memo.stores import WouldBlock

# A hang is the way single-flight bugs fail: bound every wait so that one
# shows as a clear failure in seconds, not as the suite's timeout.
BOUND = 10


class Gate:
    """A cached function that starts, then waits until the test opens the gate."""

    def __init__(self, store: Store | None = None) -> None:
        self.runs = 0
        self.started = asyncio.Event()
        self.open = asyncio.Event()
        self.cancelled = 0
        # A bound method: the instance (not keyable) is part of a default
        # namespace, so the gate names its own.
        options: dict[str, Any] = {"store": store or MemoryStore(), "namespace": "gate"}
        self.fn = async_disk_cache(**options)(self.work)

    async def work(self, x: int) -> dict[str, int]:
        """Count the run, then wait for the gate."""
        self.runs += 1
        self.started.set()
        try:
            await self.open.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return {"x": x, "run": self.runs}

    async def joined(self, waiters: int) -> None:
        """Yield to the loop until ``waiters`` callers wait on the flight."""
        for _ in range(1000):
            if self.runs and self.fn.cache_info().hits >= waiters - 1:
                return
            await asyncio.sleep(0)
        msg = f"only {self.fn.cache_info().hits + 1} of {waiters} callers joined"
        raise AssertionError(msg)


@pytest.mark.parametrize("store", ["memory", "disk"])
async def test_hundred_identical_calls_run_once(store: str) -> None:
    """100 gathered identical calls run the function once: hits=99, misses=1."""
    runs = 0

    async def slow(x: int) -> dict[str, int]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0)
        return {"x": x}

    options: dict[str, Any] = {"store": MemoryStore()} if store == "memory" else {}
    cached = async_disk_cache(namespace=f"sf-{store}", **options)(slow)
    results = await asyncio.wait_for(asyncio.gather(*(cached(7) for _ in range(100))), BOUND)
    assert results == [{"x": 7}] * 100
    assert runs == 1
    assert cached.cache_info() == CacheInfo(hits=99, misses=1, errors=0)


async def test_different_keys_run_concurrently() -> None:
    """Calls with different keys do not wait for each other."""
    started = {1: asyncio.Event(), 2: asyncio.Event()}

    @async_disk_cache("meet", store=MemoryStore())  # it captured events: named
    async def meet(x: int) -> int:
        started[x].set()
        await started[3 - x].wait()  # deadlocks if the two runs were serialized
        return x

    assert await asyncio.wait_for(asyncio.gather(meet(1), meet(2)), BOUND) == [1, 2]


async def test_concurrent_callers_share_an_exception() -> None:
    """When the single run raises, every waiter gets that exception and nothing is stored."""
    runs = 0
    gate = asyncio.Event()

    @async_disk_cache("fail", store=MemoryStore())  # it captured an event: named
    async def fail(x: int) -> int:
        nonlocal runs
        runs += 1
        await gate.wait()
        msg = "upstream down"
        raise ConnectionError(msg)

    tasks = [asyncio.create_task(fail(1)) for _ in range(10)]
    for _ in range(100):
        await asyncio.sleep(0)
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), BOUND)
    assert all(isinstance(r, ConnectionError) for r in results)
    assert len({id(r) for r in results}) == 1
    assert runs == 1
    assert fail.cache_info() == CacheInfo(hits=9, misses=1, errors=0)
    gate.clear()
    gate.set()
    with pytest.raises(ConnectionError):
        await fail(1)
    assert runs == 2


@pytest.mark.parametrize("leaver", [0, 1, 4], ids=["first", "second", "last"])
async def test_cancelling_one_waiter_spares_the_others(leaver: int) -> None:
    """Cancelling any one waiter, the first included, leaves the others their result."""
    gate = Gate()
    tasks = [asyncio.create_task(gate.fn(1)) for _ in range(5)]
    await asyncio.wait_for(gate.started.wait(), BOUND)
    await gate.joined(5)
    tasks[leaver].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[leaver]
    gate.open.set()
    others = [task for index, task in enumerate(tasks) if index != leaver]
    results = await asyncio.wait_for(asyncio.gather(*others), BOUND)
    assert results == [{"x": 1, "run": 1}] * 4
    assert gate.runs == 1
    assert gate.cancelled == 0
    assert await gate.fn(1) == {"x": 1, "run": 1}  # and it was stored


async def test_new_caller_joins_after_the_first_left() -> None:
    """A caller arriving after the first waiter left joins the same run: no second run."""
    gate = Gate()
    first = asyncio.create_task(gate.fn(1))
    second = asyncio.create_task(gate.fn(1))
    await asyncio.wait_for(gate.started.wait(), BOUND)
    await gate.joined(2)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    third = asyncio.create_task(gate.fn(1))
    await gate.joined(3)
    gate.open.set()
    assert await asyncio.wait_for(asyncio.gather(second, third), BOUND) == [{"x": 1, "run": 1}] * 2
    assert gate.runs == 1


async def test_cancelling_every_waiter_cancels_the_run() -> None:
    """When the last waiter leaves, the run itself is cancelled and nothing is stored."""
    store = MemoryStore()
    gate = Gate(store)
    tasks = [asyncio.create_task(gate.fn(1)) for _ in range(3)]
    await asyncio.wait_for(gate.started.wait(), BOUND)
    await gate.joined(3)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with pytest.raises(asyncio.CancelledError):
            await task
    for _ in range(100):
        if gate.cancelled:
            break
        await asyncio.sleep(0)
    assert gate.cancelled == 1
    assert await store.get(gate.fn.cache_key(1)) is None
    gate.open.set()
    assert await asyncio.wait_for(gate.fn(1), BOUND) == {"x": 1, "run": 2}


async def test_cancelled_caller_with_wait_for_timeout() -> None:
    """A caller that times out leaves; a patient caller of the same key still gets the result."""
    gate = Gate()
    patient = asyncio.create_task(gate.fn(1))
    await asyncio.wait_for(gate.started.wait(), BOUND)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(gate.fn(1), 0.01)
    gate.open.set()
    assert await asyncio.wait_for(patient, BOUND) == {"x": 1, "run": 1}
    assert gate.runs == 1


async def test_direct_recursion_is_a_recursion_error() -> None:
    """A function that awaits itself with the same arguments gets RecursionError, not a hang."""

    @async_disk_cache(store=MemoryStore())
    async def loop_forever(x: int) -> int:
        return await loop_forever(x)

    with pytest.raises(RecursionError, match="awaits itself"):
        await asyncio.wait_for(loop_forever(1), BOUND)


async def test_indirect_recursion_is_a_recursion_error() -> None:
    """Indirect recursion (f -> g -> f, via a spawned task too) is a RecursionError."""

    @async_disk_cache(store=MemoryStore())
    async def f(x: int) -> int:
        return await g(x)

    @async_disk_cache(store=MemoryStore())
    async def g(x: int) -> int:
        (result,) = await asyncio.gather(f(x))
        return result

    with pytest.raises(RecursionError):
        await asyncio.wait_for(f(1), BOUND)
    with pytest.raises(RecursionError):
        await asyncio.wait_for(g(2), BOUND)


async def test_recursion_with_other_arguments_is_fine() -> None:
    """Recursion on different keys is ordinary memoized recursion."""
    runs = 0

    @async_disk_cache(store=MemoryStore())
    async def fib(n: int) -> int:
        nonlocal runs
        runs += 1
        if n < 2:
            return n
        a, b = await asyncio.gather(fib(n - 1), fib(n - 2))
        return a + b

    assert await asyncio.wait_for(fib(30), BOUND) == 832040
    assert runs == 31


async def test_recursion_error_does_not_poison_later_calls() -> None:
    """After a RecursionError nothing is left in flight: the next call runs normally."""
    depth = 0

    @async_disk_cache(store=MemoryStore())
    async def once(x: int) -> int:
        nonlocal depth
        depth += 1
        if depth == 1:
            return await once(x)
        return x

    with pytest.raises(RecursionError):
        await asyncio.wait_for(once(1), BOUND)
    assert await asyncio.wait_for(once(1), BOUND) == 1


@pytest.mark.parametrize("store", ["memory", "disk"])
def test_asyncio_run_twice(store: str) -> None:
    """The same cached function works in two event loops, one after the other."""
    runs = 0
    options: dict[str, Any] = {"store": MemoryStore()} if store == "memory" else {}

    @async_disk_cache(namespace=f"two-loops-{store}", **options)
    async def answer(x: int) -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0)
        return x

    async def main() -> list[int]:
        # A flight left behind when the loop ends must not haunt the next loop.
        asyncio.get_running_loop().create_task(answer(2))
        return list(await asyncio.gather(answer(1), answer(1)))

    assert asyncio.run(main()) == [1, 1]
    assert asyncio.run(main()) == [1, 1]
    assert asyncio.run(asyncio.wait_for(answer(2), BOUND)) == 2
    assert runs in (2, 3)  # answer(2) may or may not have finished before the first loop closed
    assert answer.cache_info().hits >= 3


async def test_no_task_exception_is_left_unretrieved() -> None:
    """A run that fails after its waiters left does not log 'Task exception was never retrieved'."""
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reports.append(context))
    try:
        # The detector works: an unawaited failing task is reported when collected.
        async def lost() -> None:
            raise ValueError

        control = asyncio.create_task(lost())
        await asyncio.wait([control])
        del control
        gc.collect()
        assert [r["message"] for r in reports] == ["Task exception was never retrieved"]
        reports.clear()

        started = asyncio.Event()

        @async_disk_cache("stubborn", store=MemoryStore())  # it captured an event: named
        async def stubborn(x: int) -> int:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                msg = "failed while being cancelled"
                raise RuntimeError(msg) from None
            return x

        @async_disk_cache(store=MemoryStore())
        async def failing(x: int) -> int:
            await asyncio.sleep(0)
            raise ValueError(x)

        waiter = asyncio.create_task(stubborn(1))
        await asyncio.wait_for(started.wait(), BOUND)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        results = await asyncio.gather(*(failing(2) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)
        for _ in range(100):
            await asyncio.sleep(0)
        del waiter, results
        gc.collect()
        assert reports == []
    finally:
        loop.set_exception_handler(None)


async def test_a_call_while_a_cancelled_run_winds_down_starts_afresh() -> None:
    """A call made while a cancelled run is still winding down runs anew, not into the cancel."""
    started, released = asyncio.Event(), asyncio.Event()
    runs = 0

    @async_disk_cache("fn", store=MemoryStore())  # it captured events: named
    async def fn(x: int) -> int:
        nonlocal runs
        runs += 1
        started.set()
        if runs == 1:
            try:
                await asyncio.Event().wait()  # until cancelled
            finally:
                await released.wait()  # a slow clean-up
        return runs

    first = asyncio.create_task(fn(1))
    await asyncio.wait_for(started.wait(), BOUND)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    second = asyncio.create_task(fn(1))
    for _ in range(5):
        await asyncio.sleep(0)
    released.set()
    assert await asyncio.wait_for(second, BOUND) == 2


async def test_a_task_spawned_by_a_run_may_call_its_key_after_the_run() -> None:
    """A background task started inside a call, calling the same key later, is no recursion."""
    later: list[asyncio.Task[int]] = []
    go = asyncio.Event()

    @async_disk_cache("spawner", store=MemoryStore())  # it captured an event: named
    async def spawner(x: int) -> int:
        async def afterwards() -> int:
            await go.wait()  # until the call that spawned it has returned
            return await spawner(x)

        later.append(asyncio.create_task(afterwards()))
        return x

    assert await spawner(1) == 1
    go.set()
    assert await asyncio.wait_for(later[0], BOUND) == 1
    assert spawner.cache_info().hits == 1


async def test_stacked_cached_functions_with_default_namespaces_run(tmp_path: Any) -> None:
    """Two cached layers share a key; the outer awaiting the inner is no recursion."""

    @async_disk_cache(store=MemoryStore())
    @async_disk_cache(directory=tmp_path / "cache")
    async def two_tier(x: int) -> int:
        return x * 2

    assert await asyncio.wait_for(two_tier(1), BOUND) == 2
    assert await asyncio.wait_for(two_tier(1), BOUND) == 2
    assert two_tier.cache_info().hits == 1


async def test_two_runs_waiting_on_each_other_raise_instead_of_hanging() -> None:
    """a(1) awaits b(1) while b(1)'s run awaits a(1): RecursionError, not a deadlock."""
    both_started = asyncio.Event()
    started = 0

    async def meet() -> None:
        nonlocal started
        started += 1
        if started == 2:
            both_started.set()
        await both_started.wait()

    # Both captured meet(), which captured an event: named.
    @async_disk_cache("xa", store=MemoryStore())
    async def xa(x: int) -> int:
        await meet()
        return await xb(x)

    @async_disk_cache("xb", store=MemoryStore())
    async def xb(x: int) -> int:
        await meet()
        return await xa(x)

    results = await asyncio.wait_for(asyncio.gather(xa(1), xb(1), return_exceptions=True), BOUND)
    assert [type(result) for result in results] == [RecursionError, RecursionError]
    assert "wait for each other forever" in str(results[0])


async def test_a_run_cancelled_while_reading_gives_back_what_the_read_took() -> None:
    """A store whose read takes a lock (RedisStore(lock_timeout=...)) is told to release it."""
    reading = asyncio.Event()
    released: list[str] = []

    class LockingStore(MemoryStore):
        async def get(self, key: str) -> bytes | None:
            reading.set()
            await asyncio.Event().wait()  # a slow server
            return None

        def get_nowait(self, key: str) -> bytes | None:
            raise WouldBlock

        async def release(self, key: str) -> None:
            released.append(key)

    @async_disk_cache(store=LockingStore())
    async def slow(x: int) -> int:
        return x

    caller = asyncio.create_task(slow(1))
    await asyncio.wait_for(reading.wait(), BOUND)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    for _ in range(100):
        if released:
            break
        await asyncio.sleep(0)
    assert released == [slow.cache_key(1)]
