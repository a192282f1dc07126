"""DiskStore holds bounded resources: descriptors of finished threads, stray value files.

Every thread that serves hits on its event loop opens a read connection; a
finished thread's connection is closed with the thread's locals, not kept
until ``close()``. A value big enough for a file of its own (diskcache's
``disk_min_file_size``, 32 KiB) is written before its row: a write that fails
removes its file, and ``memo prune`` removes the files a killed writer left.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from memo import DiskStore, async_disk_cache
from memo._cli import main
from memo.stores._diskcache import Folder

if TYPE_CHECKING:
    from pathlib import Path

BIG = 100_000  # bytes: over diskcache's 32 KiB, so the value gets a file of its own


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd (Linux)")
def test_a_thousand_short_lived_threads_leave_no_descriptors_behind(tmp_path: Path) -> None:
    """1,000 threads each run asyncio.run of a cached call: descriptors end where they began."""
    store = DiskStore(tmp_path / "cache")

    @async_disk_cache(namespace="threads", store=store)
    async def double(x: int) -> int:
        return 2 * x

    async def warm() -> None:
        for x in range(5):
            await double(x)
        await double(0)  # this thread's reader too: the store's own, counted in `before`

    asyncio.run(warm())
    gc.collect()
    before = open_descriptors()
    failures: list[BaseException] = []

    def call(x: int) -> None:
        try:
            assert asyncio.run(double(x % 5)) == 2 * (x % 5)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    for x in range(1000):
        thread = threading.Thread(target=call, args=(x,))
        thread.start()
        thread.join()
    gc.collect()
    after = open_descriptors()
    assert failures == []
    assert double.cache_info().hits >= 1000  # each thread read on its own connection
    assert after - before <= 2, (before, after)  # before: two more per thread (db and WAL)
    asyncio.run(store.close())
    gc.collect()
    assert open_descriptors() < before


async def test_close_closes_the_readers_of_live_threads(tmp_path: Path) -> None:
    """A thread still alive keeps its reader until close(), which closes it from any thread."""
    store = DiskStore(tmp_path / "cache")
    await store.set("a:x", b"x")
    read, finish = threading.Event(), threading.Event()

    def reader() -> None:
        assert store.get_nowait("a:x") == b"x"
        read.set()
        finish.wait(10)

    thread = threading.Thread(target=reader)
    thread.start()
    assert read.wait(10)
    [live] = list(store._resources.readers)
    await store.close()
    with pytest.raises(Exception, match="closed"):
        live.con.execute("SELECT 1")
    finish.set()
    thread.join(10)


# -- value files: a failed write leaves none, prune removes what others left ---

FULL_DISK = textwrap.dedent(
    """
    import asyncio, json, resource, sys
    from memo import DiskStore, async_disk_cache

    store = DiskStore(sys.argv[1])

    @async_disk_cache(namespace="full", store=store)
    async def blob(n: int) -> str:
        return "x" * n

    async def main():
        assert await blob(10) == "x" * 10  # the folder and its database exist
        # No file of this process may grow past 64 KiB from now on: a full disk
        # for the value file (EFBIG), while SQLite's small writes still fit.
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.RLIM_INFINITY))
        values = [await blob(n) for n in (100_000, 200_000, 20)]
        info = blob.cache_info()
        await store.close()
        print(json.dumps({"right": values == ["x" * n for n in (100_000, 200_000, 20)],
                          "errors": info.errors}))

    asyncio.run(main())
    """
)


def value_files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*.val"))


@pytest.mark.slow
def test_a_write_cut_short_by_a_full_disk_leaves_no_file(tmp_path: Path) -> None:
    """RLIMIT_FSIZE in a child: big writes fail (counted), and no partial value file stays."""
    folder = tmp_path / "cache"
    child = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    assert json.loads(child.stdout) == {"right": True, "errors": 2}
    assert value_files(folder) == []  # before: two files cut at 64 KiB


class FullDatabaseStore(DiskStore):
    """A DiskStore whose database may not grow: the value file is written, its row is refused."""

    @staticmethod
    def _set(cache: Any, key: str, value: bytes, ttl: float | None) -> None:
        pages = cache._sql("PRAGMA page_count").fetchone()[0]
        cache._sql(f"PRAGMA max_page_count = {pages}")  # this connection's, per write
        DiskStore._set(cache, key, value, ttl)


async def test_a_row_that_never_commits_leaves_no_file(tmp_path: Path) -> None:
    """SQLite refuses the row after the value file was written: the file goes with it."""
    folder = tmp_path / "cache"
    store = FullDatabaseStore(folder)
    failures: list[str] = []
    for i in range(200):
        try:
            await store.set(f"a:{i}", os.urandom(BIG))
        except Exception as exc:
            failures.append(str(exc))
    assert failures  # the database did fill up
    assert all("full" in failure for failure in failures)
    with Folder(folder.absolute()) as view:
        named = sorted(entry.filename or "" for entry in view.entries())
    assert value_files(folder) == named  # every file on disk is one a row names
    await store.close()


def orphan(folder: Path, name: str, age: float) -> Path:
    """A value file no row names, as a writer killed before its commit leaves, ``age`` s old."""
    path = folder / name[:2] / name[2:4] / f"{name[4:]}.val"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"v" * 1000)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_prune_removes_value_files_no_entry_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`memo prune` removes unnamed value files over a minute old; keeps young ones and entries."""
    folder = tmp_path / "cache"

    async def put() -> None:
        store = DiskStore(folder)
        await store.set("a:kept", os.urandom(BIG))
        await store.close()

    async def get() -> bytes | None:
        store = DiskStore(folder)
        try:
            return await store.get("a:kept")
        finally:
            await store.close()

    asyncio.run(put())
    [kept] = value_files(folder)
    old = orphan(folder, "ab" * 16, age=3600)
    young = orphan(folder, "cd" * 16, age=5)  # may be a write in progress: its row comes next
    stranger = folder / "ab" / "abab" / "notes.txt"  # not a name diskcache gives
    stranger.parent.mkdir(parents=True)
    stranger.write_text("mine")
    capsys.readouterr()
    assert main(["prune", "--dir", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["orphan_files"], report["orphan_bytes"]) == (1, 1000)
    assert not old.exists()
    assert not old.parent.exists()  # its folders went with it, once empty
    assert young.exists()
    assert stranger.read_text() == "mine"
    assert kept in value_files(folder)
    assert main(["prune", "--dir", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "dropped 0 entries (expired)" in text
    assert "value file" not in text  # nothing more to remove
    assert asyncio.run(get()) is not None


@pytest.mark.slow
def test_prune_removes_the_file_of_a_writer_killed_before_its_commit(tmp_path: Path) -> None:
    """A writer SIGKILLed between its value file and its row: prune (past the grace) removes it."""
    folder = tmp_path / "cache"
    killed = textwrap.dedent(
        """
        import asyncio, os, signal, sys
        import diskcache
        from memo import DiskStore

        def die(*args, **kwargs):  # the file is written; the row would come now
            os.kill(os.getpid(), signal.SIGKILL)

        diskcache.Cache._transact = die
        asyncio.run(DiskStore(sys.argv[1]).set("a:x", b"x" * 100_000))
        """
    )

    async def create() -> None:
        store = DiskStore(folder)
        await store.set("a:small", b"small")
        await store.close()

    asyncio.run(create())
    child = subprocess.run(
        [sys.executable, "-c", killed, str(folder)], capture_output=True, timeout=60, check=False
    )
    assert child.returncode == -9, child.stderr
    [left] = value_files(folder)
    then = time.time() - 120
    os.utime(folder / left, (then, then))
    assert main(["prune", "--dir", str(folder)]) == 0
    assert value_files(folder) == []
