"""DiskStore after ``fork()``: the child's calls work, the parent's go on unharmed.

gunicorn ``--preload``, Celery's prefork pool and multiprocessing's ``fork``
start method all fork a process that may have used the cache already. The
child has none of the parent's threads, so the store must not queue its work
to the parent's worker thread, nor wait on a lock a parent's thread held at
the fork, nor use (or close) SQLite connections the parent is using.

Every child here is bounded: ``wait_child`` kills it past its time, so a
child that hangs fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

import pytest

import memo._report
import memo.stores.disk
from memo import DiskStore, MemoryStore, RedisStore, async_disk_cache
from memo._report import report_failure
from memo.stores.disk import shared_disk_store

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only"),
    # Python 3.12+ warns that forking a process with threads (memo's worker)
    # may deadlock the child: what these tests show memo does not do.
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
    pytest.mark.filterwarnings(
        "ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning"
    ),
]

CHILD_SECONDS = 30


def in_child(work: Callable[[], Any]) -> Any:
    """Fork; run ``work`` in the child and return what it returned (JSON), or fail the test.

    The child always ends with ``os._exit``: it never runs the rest of pytest.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            os.close(read_end)
            signal.alarm(CHILD_SECONDS)  # a hang ends the child, never the test run
            answer = {"result": work()}
            status = 0
        except BaseException:
            answer = {"error": traceback.format_exc()}
        finally:
            with os.fdopen(write_end, "w") as out:
                json.dump(answer, out)
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end) as answer_file:
        text = answer_file.read()  # until the child exits (or the alarm ends it)
    status = wait_child(pid)
    answer = json.loads(text) if text else {"error": f"no answer; exit status {status}"}
    assert "error" not in answer, answer["error"]
    assert status == 0
    return answer["result"]


def wait_child(pid: int, seconds: float = CHILD_SECONDS + 10) -> int:
    """Wait for child ``pid`` for at most ``seconds``; kill it past that. Return its exit status."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the child {pid} did not finish within {seconds} s")


def make_double(store: DiskStore, namespace: str = "fork") -> Any:
    @async_disk_cache(namespace=namespace, store=store)
    async def double(x: int) -> int:
        return 2 * x

    return double


def counts(fn: Any) -> list[int]:
    info = fn.cache_info()
    return [info.hits, info.misses, info.errors]


def test_a_forked_child_hits_misses_writes_and_invalidates(tmp_path: Path) -> None:
    """os.fork() after use: the child's hits, misses, writes, invalidate and cache_clear work."""
    store = DiskStore(tmp_path / "cache", timeout=2.0)
    double = make_double(store)
    other = make_double(store, namespace="fork-other")

    async def fill() -> None:
        for x in range(5):
            assert await double(x) == 2 * x
            assert await other(x) == 2 * x
        assert await double(0) == 0  # a hit on the loop's thread: its reader is open

    asyncio.run(fill())

    def child() -> dict[str, Any]:
        async def main() -> dict[str, Any]:
            start = counts(double)
            parents = [await double(x) for x in range(5)]  # the parent's entries
            after_hits = counts(double)
            mine = [await double(x) for x in range(5, 10)]  # misses, written here
            again = [await double(x) for x in range(5, 10)]  # hits of what the child wrote
            after_writes = counts(double)
            await double.invalidate(0)
            await other.cache_clear()
            return {
                "start": start,
                "values": parents + mine + again,
                "after_hits": after_hits,
                "after_writes": after_writes,
                "after_invalidate": [await double(0), *counts(double)],
                "other_after_clear": [await other(1), *counts(other)],
            }

        return asyncio.run(main())

    result = in_child(child)
    hits, misses, _ = result["start"]
    assert result["values"] == [2 * x for x in [*range(10), *range(5, 10)]]
    assert result["after_hits"] == [hits + 5, misses, 0]
    assert result["after_writes"] == [hits + 10, misses + 5, 0]
    assert result["after_invalidate"] == [0, hits + 10, misses + 6, 0]
    assert result["other_after_clear"][0] == 2
    assert result["other_after_clear"][2:] == [6, 0]  # 5 in the parent, 1 after the clear

    async def parent_after() -> list[int]:
        before = counts(double)
        values = [await double(x) for x in range(10)]  # the child's writes are here too
        assert values == [2 * x for x in range(10)]
        assert await double(20) == 40  # and the parent still writes
        after = counts(double)
        return [after[0] - before[0], after[1] - before[1], after[2] - before[2]]

    assert asyncio.run(parent_after()) == [10, 1, 0]  # only 20 is new to the folder
    asyncio.run(store.close())


def test_a_store_first_opened_after_the_fork(tmp_path: Path) -> None:
    """A store made before the fork but first used after it works in both processes."""
    store = DiskStore(tmp_path / "cache", timeout=2.0)
    double = make_double(store)

    def child() -> list[int]:
        async def main() -> list[int]:
            values = [await double(x) for x in range(5)]
            values += [await double(x) for x in range(5)]
            return [*values, *counts(double)]

        return asyncio.run(main())

    result = in_child(child)
    assert result == [0, 2, 4, 6, 8, 0, 2, 4, 6, 8, 5, 5, 0]

    async def parent() -> list[int]:
        values = [await double(x) for x in range(5)]  # written by the child
        return [*values, *counts(double)]

    assert asyncio.run(parent()) == [0, 2, 4, 6, 8, 5, 0, 0]
    asyncio.run(store.close())


# -- multiprocessing's fork start method ------------------------------------------

# Set by the test before the pool forks; the workers inherit it.
POOL_FUNCTIONS: dict[str, Any] = {}


def pool_call(x: int) -> list[int]:
    """In a pool worker: call the cached function once; its result and what the call counted."""
    square = POOL_FUNCTIONS["square"]
    before = counts(square)
    value = asyncio.run(square(x))
    after = counts(square)
    return [value, after[0] - before[0], after[1] - before[1], after[2] - before[2]]


@pytest.mark.slow
def test_a_fork_pool_uses_the_parents_entries_and_writes_its_own(tmp_path: Path) -> None:
    """A fork-context multiprocessing.Pool: hits of the parent's entries, misses, writes."""
    store = DiskStore(tmp_path / "cache", timeout=2.0)

    @async_disk_cache(namespace="pool", store=store)
    async def square(x: int) -> int:
        return x * x

    POOL_FUNCTIONS["square"] = square

    async def fill() -> None:
        for x in range(10):
            assert await square(x) == x * x
        assert await square(0) == 0  # a hit: the reader of this thread is open too

    asyncio.run(fill())
    context = multiprocessing.get_context("fork")
    with context.Pool(3) as pool:
        results = pool.map_async(pool_call, range(20), chunksize=1).get(timeout=60)
    assert [value for value, *_ in results] == [x * x for x in range(20)]
    assert [counted for _, *counted in results] == [[1, 0, 0]] * 10 + [[0, 1, 0]] * 10

    async def parent_after() -> list[int]:
        before = counts(square)
        for x in range(20):
            assert await square(x) == x * x
        after = counts(square)
        return [after[0] - before[0], after[1] - before[1], after[2] - before[2]]

    assert asyncio.run(parent_after()) == [20, 0, 0]  # the workers' writes reached the folder
    asyncio.run(store.close())


# -- locks held by another thread at the moment of the fork ----------------------


def test_locks_held_by_another_thread_at_the_fork_are_free_in_the_child(tmp_path: Path) -> None:
    """A lock a parent's thread holds at fork() would stay held in the child: memo's are new."""
    store = DiskStore(tmp_path / "cache", timeout=2.0)
    double = make_double(store)
    asyncio.run(double(1))
    memory = MemoryStore()
    redis = RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.1, socket_connect_timeout=0.1)
    locks = [
        store._lock,
        store._open_lock,
        memo.stores.disk._shared_lock,
        memo._report._reported_lock,
        memory._lock,
        redis._lock,
    ]
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        for lock in locks:
            lock.acquire()
        holding.set()
        done.wait(CHILD_SECONDS)
        for lock in locks:
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(10)
    try:

        def child() -> list[Any]:
            async def main() -> list[Any]:
                await memory.set("k", b"v")
                shared = shared_disk_store(tmp_path / "shared")
                report_failure("fork-locks", "read", RuntimeError("reported from the child"))
                return [
                    await double(1),
                    await double(2),
                    await memory.get("k") == b"v",
                    shared is not None,
                ]

            fresh = [
                store._lock,
                store._open_lock,
                memo.stores.disk._shared_lock,
                memo._report._reported_lock,
                memory._lock,
                redis._lock,
            ]
            free = [lock.acquire(timeout=1) for lock in fresh]
            for lock, got in zip(fresh, free, strict=True):
                if got:
                    lock.release()
            return [free, asyncio.run(main())]

        free, values = in_child(child)
    finally:
        done.set()
        holder.join(10)
    assert free == [True] * 6
    assert values == [2, 4, True, True]
    asyncio.run(store.close())


# -- the parent goes on, or goes away ---------------------------------------------

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from memo import DiskStore, async_disk_cache

    store = DiskStore(sys.argv[1], timeout=5)

    @async_disk_cache(namespace="third", store=store)
    async def value(x: int) -> int:
        return x

    async def main():
        for x in range(3):
            await value(x)
        await store.close()

    asyncio.run(main())
    """
)

COUNT = textwrap.dedent(
    """
    import sqlite3, sys
    con = sqlite3.connect(sys.argv[1])
    print(con.execute("SELECT count(*) FROM Cache WHERE tag = ?", (sys.argv[2],)).fetchone()[0])
    print(con.execute("PRAGMA integrity_check").fetchone()[0])
    """
)


@pytest.mark.slow
def test_the_childs_writes_survive_the_parent_closing_its_store(tmp_path: Path) -> None:
    """Parent closes its store and another process comes and goes: no write of the child is lost.

    SQLite keeps one record per file of the locks a process holds: a child
    that kept the parent's connections open would take no lock of its own,
    and the last other process to close the folder would delete the
    write-ahead log under the child's writes.
    """
    folder = tmp_path / "cache"
    store = DiskStore(folder, timeout=5.0)
    double = make_double(store, namespace="child")

    async def use() -> None:
        for x in range(3):
            await double(x)
        await double(0)

    asyncio.run(use())
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        status = 1
        try:
            signal.alarm(CHILD_SECONDS)

            async def write(xs: range) -> None:
                for x in xs:
                    assert await double(x) == 2 * x

            asyncio.run(write(range(100, 110)))
            os.write(to_parent_w, b"1")
            assert os.read(to_child_r, 1) == b"1"  # the parent closed, a third process came
            asyncio.run(write(range(110, 120)))
            status = 0 if counts(double)[2] == 0 else 2
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    try:
        assert os.read(to_parent_r, 1) == b"1"
        asyncio.run(store.close())
        subprocess.run([sys.executable, "-c", WRITER, str(folder)], check=True, timeout=60)
        os.write(to_child_w, b"1")
        assert wait_child(pid) == 0
    finally:
        for fd in (to_child_r, to_child_w, to_parent_r, to_parent_w):
            os.close(fd)
    counted = subprocess.run(
        [sys.executable, "-c", COUNT, str(folder / "cache.db"), "child"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert counted == ["23", "ok"]  # 3 of the parent's, 20 of the child's


class SlowWriteStore(DiskStore):
    """A DiskStore whose writes stay inside their SQLite transaction for a moment."""

    inside = threading.Event()

    @staticmethod
    def _set(cache: Any, key: str, value: bytes, ttl: float | None) -> None:
        with cache.transact():
            DiskStore._set(cache, key, value, ttl)
            SlowWriteStore.inside.set()
            time.sleep(0.5)


@pytest.mark.slow
def test_a_fork_in_the_middle_of_a_write_waits_for_it(tmp_path: Path) -> None:
    """fork() while the worker is inside a write transaction: it waits, and both processes go on."""
    folder = tmp_path / "cache"
    store = SlowWriteStore(folder, timeout=5.0)
    SlowWriteStore.inside.clear()
    writer = threading.Thread(target=lambda: asyncio.run(store.set("parent:x", b"parent")))
    writer.start()
    assert SlowWriteStore.inside.wait(10)
    try:
        plain = DiskStore(folder, timeout=2.0)
        double = make_double(plain, namespace="mid-write")

        def child() -> list[int]:
            async def main() -> list[int]:
                values = [await double(x) for x in range(5)]
                values += [await double(x) for x in range(5)]
                return [*values, *counts(double)]

            return asyncio.run(main())

        assert in_child(child) == [0, 2, 4, 6, 8] * 2 + [5, 5, 0]
    finally:
        writer.join(10)

    async def parent_after() -> list[Any]:
        found = await plain.get("parent:x")
        values = [await double(x) for x in range(5)]
        await plain.close()
        await store.close()
        return [found, *values, *counts(double)]

    assert asyncio.run(parent_after()) == [b"parent", 0, 2, 4, 6, 8, 5, 0, 0]
    counted = subprocess.run(
        [sys.executable, "-c", COUNT, str(folder / "cache.db"), "mid-write"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert counted == ["5", "ok"]
