"""Whatever happens to the files under a running process, it never dies and recovers.

SQLite used to read cache.db through a memory map, so a cache.db cut short
by another process killed the reading process with SIGBUS. memo turns the map
off for every connection it opens: a file truncated, its write-ahead log
deleted, or garbage in its place is an error memo counts and logs, and the
call still returns its own result. Once the files are sane again (the folder
removed, as the command line says to do for a damaged database) the process
goes back to hitting.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from memo import DiskStore, async_disk_cache
from memo._cli import main

if TYPE_CHECKING:
    from pathlib import Path

DAMAGE = textwrap.dedent(
    """
    import asyncio, json, logging, os, shutil, sqlite3, sys, threading
    from pathlib import Path
    from memo import DiskStore, async_disk_cache

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    folder = Path(sys.argv[1])
    N = 2000
    store = DiskStore(folder, timeout=2)

    @async_disk_cache(namespace="damage", store=store)
    async def value(i: int) -> str:
        return f"value-{i}-" + "x" * 200

    async def one_pass():
        wrong = 0
        for i in range(N):
            wrong += await value(i) != f"value-{i}-" + "x" * 200
        return wrong

    def in_a_new_thread():
        # A thread of its own: a connection of its own, nothing in its page cache.
        out = []
        thread = threading.Thread(target=lambda: out.append(asyncio.run(one_pass())))
        thread.start()
        thread.join()
        return out[0]

    def checkpoint():
        con = sqlite3.connect(folder / "cache.db")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()

    async def main():
        wrong = {}
        wrong["fill"] = await one_pass()
        checkpoint()  # every entry now in cache.db itself
        wrong["read"] = await one_pass()  # through this thread's reader
        size = (folder / "cache.db").stat().st_size
        for cut in (size // 2, 4096, 0):
            with open(folder / "cache.db", "r+b") as db:
                db.truncate(cut)
            # Before: SIGBUS here, reading through a memory map of the old size.
            wrong[f"truncated to {cut}"] = await one_pass()
            wrong[f"truncated to {cut}, new thread"] = in_a_new_thread()
        (folder / "cache.db-wal").unlink(missing_ok=True)
        wrong["wal deleted"] = await one_pass()
        wrong["wal deleted, new thread"] = in_a_new_thread()
        (folder / "cache.db").write_bytes(os.urandom(size))
        wrong["garbage"] = await one_pass()
        wrong["garbage, new thread"] = in_a_new_thread()
        garbage = folder.parent / "garbage.db"
        garbage.write_bytes(os.urandom(size))
        os.replace(garbage, folder / "cache.db")
        wrong["replaced by garbage"] = await one_pass()
        wrong["replaced by garbage, new thread"] = in_a_new_thread()
        errors = value.cache_info().errors
        shutil.rmtree(folder)  # what memo says to do with a damaged database
        wrong["after removal"] = in_a_new_thread()
        before = value.cache_info()
        wrong["again"] = in_a_new_thread()
        wrong["again, this thread"] = await one_pass()
        after = value.cache_info()
        await store.close()
        print(json.dumps({
            "wrong": wrong,
            "errors": errors,
            "hits_again": after.hits - before.hits,
            "errors_again": after.errors - before.errors,
            "mode": oct(folder.stat().st_mode & 0o777),
        }))

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_files_changed_under_a_running_process_never_kill_it(tmp_path: Path) -> None:
    """Truncated, WAL deleted, garbage, replaced: the child lives, every result right, recovers."""
    child = subprocess.run(
        [sys.executable, "-c", DAMAGE, str(tmp_path / "cache")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Before: exit status -7 (SIGBUS) at the first pass after the truncation.
    assert child.returncode == 0, (child.returncode, child.stderr[-3000:])
    report = json.loads(child.stdout)
    assert set(report["wrong"].values()) == {0}, report
    assert report["errors"] > 0  # the damage was noticed, counted ...
    assert "WARNING:memo:memo: " in child.stderr  # ... and logged
    assert report["hits_again"] == 4000  # recovered: a new folder, hits again
    assert report["errors_again"] == 0
    assert report["mode"] == "0o700"  # created again private


async def test_a_running_process_follows_the_folder_being_removed(tmp_path: Path) -> None:
    """The folder removed while a store is open: its next write goes to the new folder."""
    folder = tmp_path / "cache"
    store = DiskStore(folder)

    @async_disk_cache(namespace="follow", store=store)
    async def double(x: int) -> int:
        return 2 * x

    assert [await double(x) for x in range(3)] == [0, 2, 4]
    for path in sorted(folder.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    folder.rmdir()
    assert await double(10) == 20  # a miss, written to a new cache.db
    assert await double(10) == 20  # read back from it
    info = double.cache_info()
    assert (info.hits, info.misses, info.errors) == (1, 4, 0)
    other = DiskStore(folder)  # what another process would see
    assert await other.get(double.cache_key(10)) is not None
    assert await other.get(double.cache_key(1)) is None
    await other.close()
    await store.close()


# -- the command line on a damaged database ---------------------------------------


def damage_deep(folder: Path) -> None:
    """Fill a folder, then overwrite cache.db past its first pages: opens fine, reads fail."""

    async def fill() -> None:
        store = DiskStore(folder)
        for i in range(300):
            await store.set(f"deep:{i}", os.urandom(600))
        await store.close()

    asyncio.run(fill())
    con = sqlite3.connect(folder / "cache.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    size = (folder / "cache.db").stat().st_size
    with open(folder / "cache.db", "r+b") as db:
        db.seek(8 * 4096)
        db.write(os.urandom(size - 8 * 4096))


@pytest.mark.parametrize(
    ("damage", "command"),
    [
        pytest.param("garbage", ("stats",), id="garbage-stats"),
        pytest.param("garbage", ("clear", "--all", "--yes"), id="garbage-clear"),
        pytest.param("deep", ("stats",), id="deep-stats"),
        pytest.param("deep", ("prune",), id="deep-prune"),
        pytest.param("deep", ("clear", "--all", "--yes"), id="deep-clear"),
    ],
)
def test_a_damaged_database_gets_a_message_that_says_how_to_start_afresh(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: str,
    command: tuple[str, ...],
) -> None:
    """SQLite says the database is damaged: one line that says so, names the folder, says rm -r."""
    folder = tmp_path / "cache"
    if damage == "garbage":
        folder.mkdir()
        (folder / "cache.db").write_bytes(os.urandom(50_000))
    else:
        damage_deep(folder)
    capsys.readouterr()
    assert main([*command, "--dir", str(folder)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.splitlines()
    assert "holds a damaged cache database" in line
    assert "memo clear --all` cannot help" in line
    assert f"rm -r '{folder}'" in line
    assert "file is not a database" in line or "malformed" in line
