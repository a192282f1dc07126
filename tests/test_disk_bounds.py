"""DiskStore's waits are bounded by its ``timeout``, per call, from when the call asked.

Another process holds SQLite's write lock (a long ``memo clear``, a frozen
writer): here, a child process that holds ``BEGIN IMMEDIATE`` on cache.db.
Every call then returns within about ``timeout`` with the function's result,
whether it waited for the lock itself or behind the store's other operations;
an operation still queued at its deadline never runs; and the warning says
what timed out and for how long.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING, Any

import pytest

from memo import DiskStore, async_disk_cache
from memo.stores.disk import DiskTimeoutError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TIMEOUT = 0.5
# A generous bound that still fails when six writes queue behind one another.
BOUND = 3 * TIMEOUT

HOLDER = textwrap.dedent(
    """
    import sqlite3, sys
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    print("holding", flush=True)
    sys.stdin.readline()  # until told, or until the test's end closes stdin
    con.execute("ROLLBACK")
    """
)


class LockHolder:
    """A child process that holds SQLite's write lock on a folder's cache.db until released."""

    def __init__(self, folder: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder / "cache.db")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "holding"

    def release(self) -> None:
        if self.process.poll() is None:
            self.process.communicate("\n", timeout=30)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A cache folder with a database in it (the first use made it)."""
    path = tmp_path / "cache"

    async def create() -> None:
        store = DiskStore(path)
        await store.set("warm:x", b"x")
        await store.close()

    asyncio.run(create())
    return path


@pytest.fixture
def held(folder: Path) -> Iterator[LockHolder]:
    """Another process holds the write lock on ``folder`` for the test's length."""
    holder = LockHolder(folder)
    try:
        yield holder
    finally:
        holder.release()


async def timed(call: Any) -> tuple[Any, float]:
    start = time.monotonic()
    result = await call
    return result, time.monotonic() - start


async def test_six_concurrent_misses_each_return_within_the_timeout(
    folder: Path, held: LockHolder, caplog: pytest.LogCaptureFixture
) -> None:
    """Six misses at once while another process holds the lock: each returns in ~timeout."""
    store = DiskStore(folder, timeout=TIMEOUT)
    runs: list[int] = []

    @async_disk_cache(namespace="six", store=store)
    async def double(x: int) -> int:
        runs.append(x)
        return 2 * x

    with caplog.at_level(logging.WARNING, logger="memo"):
        results = await asyncio.gather(*(timed(double(x)) for x in range(6)))
    assert [value for value, _ in results] == [0, 2, 4, 6, 8, 10]
    waits = sorted(seconds for _, seconds in results)
    assert waits[-1] < BOUND, waits  # before: 0.5, 1.0, 1.5, 2.0, 2.5 and 3.0 s
    info = double.cache_info()
    assert (info.misses, info.errors) == (6, 6)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "memo"]
    assert "DiskTimeoutError" in warning
    assert f"DiskStore({str(folder)!r}) waited" in warning
    assert "(Timeout: )" not in warning
    held.release()
    # Nothing was written: the queued writes never ran, the one that ran failed.
    assert [await store.get(double.cache_key(x)) for x in range(6)] == [None] * 6
    await store.close()


async def test_the_message_says_what_timed_out_and_for_how_long(folder: Path) -> None:
    """A write that waited for the lock says so: which store, how long, what lock, doing what."""
    store = DiskStore(folder, timeout=TIMEOUT)
    await store.set("a:first", b"value")  # opened before the lock is taken
    holder = LockHolder(folder)
    try:
        with pytest.raises(DiskTimeoutError) as caught:
            await store.set("a:b", b"value")
    finally:
        holder.release()
    store_name = re.escape(f"DiskStore({str(folder)!r})")
    assert re.fullmatch(
        rf"{store_name} waited 0\.5[0-9]? s for SQLite's write lock "
        r"\(held by another process\) while writing",
        str(caught.value),
    ), str(caught.value)
    assert isinstance(caught.value, TimeoutError)
    await store.close()


async def test_reads_never_wait_for_the_write_lock(folder: Path, held: LockHolder) -> None:
    """While another process holds the write lock, a fresh store still reads, small and large."""
    store = DiskStore(folder, timeout=TIMEOUT)
    start = time.monotonic()
    assert store.get_nowait("warm:x") == b"x"
    assert await store.get("warm:x") == b"x"
    assert await store.get("warm:absent") is None
    assert time.monotonic() - start < TIMEOUT
    with pytest.raises(DiskTimeoutError, match="while opening the cache before writing"):
        await store.set("a:b", b"value")
    await store.close()


class SlowDiskStore(DiskStore):
    """A DiskStore whose writes take a second of work once they hold the lock (a slow disk)."""

    @staticmethod
    def _set(cache: Any, key: str, value: bytes, ttl: float | None) -> None:
        if key == "a:slow":
            time.sleep(1.0)
        DiskStore._set(cache, key, value, ttl)


async def test_a_queued_operation_past_its_deadline_never_runs(folder: Path) -> None:
    """Behind a slow write, a queued one gives up at its deadline, says why, and never runs."""
    store = SlowDiskStore(folder, timeout=TIMEOUT)
    slow = asyncio.ensure_future(store.set("a:slow", b"1"))
    await asyncio.sleep(0.1)
    second, waited = await timed(
        asyncio.gather(store.set("a:queued", b"2"), return_exceptions=True)
    )
    [error] = second
    assert isinstance(error, DiskTimeoutError)
    assert "behind its earlier operations and gave up before writing" in str(error)
    assert waited < BOUND
    await slow  # work, not a wait for a lock: it finishes
    assert await store.get("a:slow") == b"1"
    assert await store.get("a:queued") is None
    await store.close()


@pytest.mark.parametrize(
    "operation",
    ["invalidate", "cache_clear", "clear_all", "expire"],
)
async def test_management_calls_raise_within_the_timeout(
    folder: Path, held: LockHolder, operation: str
) -> None:
    """invalidate, cache_clear, clear_all and expire raise DiskTimeoutError in ~timeout."""
    store = DiskStore(folder, timeout=TIMEOUT)

    @async_disk_cache(namespace="manage", store=store)
    async def double(x: int) -> int:
        return 2 * x

    calls = {
        "invalidate": lambda: double.invalidate(1),
        "cache_clear": double.cache_clear,
        "clear_all": store.clear_all,
        "expire": store.expire,
    }
    start = time.monotonic()
    with pytest.raises(DiskTimeoutError):
        await calls[operation]()
    assert time.monotonic() - start < BOUND
    await store.close()


FIRST_CALL = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from memo import DiskStore, async_disk_cache

    store = DiskStore(sys.argv[1], timeout=float(sys.argv[2]))

    @async_disk_cache(namespace="first", store=store)
    async def double(x: int) -> int:
        return 2 * x

    async def main():
        late = 0.0
        stop = asyncio.Event()

        async def tick():  # how late a 10 ms timer fires: the loop is never blocked
            nonlocal late
            while not stop.is_set():
                start = time.monotonic()
                await asyncio.sleep(0.01)
                late = max(late, time.monotonic() - start - 0.01)

        ticker = asyncio.ensure_future(tick())
        await asyncio.sleep(0.05)
        timings = []
        for x in (1, 2):  # a miss in a fresh process, then another
            start = time.monotonic()
            value = await double(x)
            timings.append([value, time.monotonic() - start])
        stop.set()
        await ticker
        info = double.cache_info()
        print(json.dumps({"timings": timings, "late": late, "errors": info.errors}))

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_a_fresh_processs_first_call_waits_at_most_the_timeout(
    folder: Path, held: LockHolder
) -> None:
    """A new process's first miss, opening the folder under a held lock: ~timeout, loop free.

    diskcache retries a locked database for 60 s while opening a folder; memo
    stops at the store's timeout, on its worker thread.
    """
    start = time.monotonic()
    child = subprocess.run(
        [sys.executable, "-c", FIRST_CALL, str(folder), str(TIMEOUT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - start
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert [value for value, _ in report["timings"]] == [2, 4]
    assert all(seconds < BOUND for _, seconds in report["timings"]), report
    assert report["late"] < 0.2, report  # the event loop kept running meanwhile
    assert report["errors"] == 2  # each write timed out, counted
    assert "while opening the cache" in child.stderr
    assert elapsed < 30  # before: about 60 s for the first call alone
