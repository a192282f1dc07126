"""A failing disk never costs the caller a result: full, read-only, deleted or corrupt.

Each case checks three things over many calls: every call returns the
function's own result, each failure is counted in ``cache_info().errors``, and
the ``memo`` logger warns once per kind of failure (repeats go to DEBUG).
"""

from __future__ import annotations

import errno
import logging
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from memo import DiskStore, async_disk_cache
from memo._envelope import envelope_header

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

CALLS = 40


def expected(i: int) -> str:
    return f"value-{i}-" + "x" * (i % 7) * 300


def make_cached(store: DiskStore) -> tuple[Any, list[int]]:
    """A cached function on ``store`` with a namespace of its own, and its run log."""
    runs: list[int] = []

    @async_disk_cache(namespace=f"faults-{uuid.uuid4().hex}", store=store)
    async def value(i: int) -> str:
        runs.append(i)
        return expected(i)

    return value, runs


async def call_many(value: Any) -> None:
    """Call for CALLS distinct arguments, then all of them again; check every result."""
    for i in [*range(CALLS), *range(CALLS)]:
        assert await value(i) == expected(i)


def warnings_of(caplog: pytest.LogCaptureFixture, namespace: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "memo" and r.levelno == logging.WARNING and namespace in r.getMessage()
    ]


def debug_of(caplog: pytest.LogCaptureFixture, namespace: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "memo" and r.levelno == logging.DEBUG and namespace in r.getMessage()
    ]


@pytest.fixture
def caplog_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="memo")
    return caplog


class NoSpaceStore(DiskStore):
    """A real DiskStore whose writes fail as on a full disk (ENOSPC)."""

    def _set(self, cache: Any, key: str, value: bytes, ttl: float | None) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class SqliteFullStore(DiskStore):
    """A real DiskStore whose SQLite file may grow by only a few pages.

    ``PRAGMA max_page_count`` makes SQLite itself answer "database or disk is
    full" (SQLITE_FULL) once the file reaches the limit, through diskcache's
    own transaction and rollback.
    """

    limit = 0

    def _set(self, cache: Any, key: str, value: bytes, ttl: float | None) -> None:
        # Per connection, and diskcache has one per thread: set it on this one.
        cache._sql(f"PRAGMA max_page_count = {self.limit}")
        DiskStore._set(cache, key, value, ttl)


class NoPermissionStore(DiskStore):
    """A DiskStore whose every read and write fails as on a folder it may not touch."""

    def _get(self, cache: Any, key: str) -> bytes | None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self.directory))

    def get_nowait(self, key: str) -> bytes | None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self.directory))

    def _set(self, cache: Any, key: str, value: bytes, ttl: float | None) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self.directory))


async def test_full_disk_enospc(tmp_path: Path, caplog_debug: pytest.LogCaptureFixture) -> None:
    """ENOSPC on every write: all results returned, every write counted, one warning."""
    store = NoSpaceStore(tmp_path / "cache")
    value, runs = make_cached(store)
    await call_many(value)
    info = value.cache_info()
    assert runs == [*range(CALLS), *range(CALLS)]  # nothing was stored
    assert (info.hits, info.misses, info.errors) == (0, 2 * CALLS, 2 * CALLS)
    [warning] = warnings_of(caplog_debug, value.namespace)
    assert "write failed" in warning.getMessage()
    assert "OSError" in warning.getMessage()
    assert len(debug_of(caplog_debug, value.namespace)) == 2 * CALLS - 1
    await store.close()


async def test_full_sqlite_database(tmp_path: Path, caplog_debug: pytest.LogCaptureFixture) -> None:
    """SQLite's own "database or disk is full": what fits is cached, the rest is returned."""
    store = SqliteFullStore(tmp_path / "cache")
    store.limit = store.cache._sql("PRAGMA page_count").fetchone()[0] + 8
    value, runs = make_cached(store)
    await call_many(value)
    info = value.cache_info()
    stored = CALLS - (info.errors // 2)  # a failed key fails on both passes
    assert 0 < stored < CALLS
    assert info.hits == stored
    assert info.misses == len(runs) == 2 * CALLS - stored
    [warning] = warnings_of(caplog_debug, value.namespace)
    assert "database or disk is full" in warning.getMessage()
    await store.close()


async def test_tiny_size_limit(tmp_path: Path, caplog_debug: pytest.LogCaptureFixture) -> None:
    """A 1-byte size_limit culls entries as they come: results are right, nothing fails."""
    store = DiskStore(tmp_path / "cache", size_limit=1)
    value, _runs = make_cached(store)
    await call_many(value)
    assert value.cache_info().errors == 0
    assert warnings_of(caplog_debug, value.namespace) == []
    assert len(store.cache) <= 10  # diskcache's cull_limit: the folder stays small
    await store.close()


async def test_permission_error_store(
    tmp_path: Path, caplog_debug: pytest.LogCaptureFixture
) -> None:
    """PermissionError on every read and write: results returned, one warning per kind."""
    store = NoPermissionStore(tmp_path / "cache")
    value, runs = make_cached(store)
    await call_many(value)
    info = value.cache_info()
    assert len(runs) == 2 * CALLS
    assert info.errors == 4 * CALLS  # a read and a write per call
    messages = sorted(
        w.getMessage().split(" failed")[0] for w in warnings_of(caplog_debug, value.namespace)
    )
    assert messages == ["memo: read", "memo: write"]
    await store.close()


# -- a folder the process may not write, checked by the kernel ----------------

NOBODY = pwd.getpwnam("nobody") if "nobody" in {p.pw_name for p in pwd.getpwall()} else None

READ_ONLY_CHILD = textwrap.dedent(
    """
    import asyncio, json, logging, os, sys
    # Import as root what the child uses (memo imports lazily): the interpreter lives in /root.
    import memo, memo._decorator, memo.stores.disk
    import concurrent.futures.thread, hashlib, sqlite3, diskcache, orjson

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    phase, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if uid >= 0:  # run as root: become nobody; the kernel then checks every access
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    runs = []

    @memo.async_disk_cache(namespace="read-only")
    async def value(i: int) -> str:
        runs.append(i)
        return f"value-{i}"

    async def main():
        wrong = 0
        for i in [*range(20), *range(20)]:
            wrong += await value(i) != f"value-{i}"
        info = value.cache_info()
        print(json.dumps(dict(wrong=wrong, runs=len(runs), hits=info.hits,
                              misses=info.misses, errors=info.errors)))

    asyncio.run(main())
    """
)


@pytest.fixture
def nobody_folder() -> Iterator[Path]:
    """A cache folder path in a directory the unprivileged user ``nobody`` can reach."""
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="memo-nobody-"))
    try:
        base.chmod(0o755)
        if NOBODY is not None and os.geteuid() == 0:
            os.chown(base, NOBODY.pw_uid, NOBODY.pw_gid)
        yield base / "cache"
    finally:
        shutil.rmtree(base)


def run_as_nobody(folder: Path, phase: str) -> tuple[dict[str, int], str]:
    """Run the child as ``nobody`` when the tests run as root, else as the (unprivileged) user."""
    import json

    if os.geteuid() == 0:
        assert NOBODY is not None, "running as root, the test needs the user nobody"
        uid, gid = NOBODY.pw_uid, NOBODY.pw_gid
    else:
        uid = gid = -1
    child = subprocess.run(
        [sys.executable, "-c", READ_ONLY_CHILD, phase, str(uid), str(gid)],
        capture_output=True,
        text=True,
        env={**os.environ, "MEMO_CACHE_DIR": str(folder), "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout), child.stderr


@pytest.mark.slow
def test_read_only_folder_as_an_unprivileged_user(nobody_folder: Path) -> None:
    """As ``nobody``, a read-only cache folder: results right, failures counted, logged once."""
    first, err = run_as_nobody(nobody_folder, "fill")
    assert first == {"wrong": 0, "runs": 20, "hits": 20, "misses": 20, "errors": 0}, err

    # Read-only for its owner, as `chmod -R a-w` would make it.
    for root, dirs, files in os.walk(nobody_folder):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o555)
    nobody_folder.chmod(0o555)

    second, err = run_as_nobody(nobody_folder, "read-only")
    assert second["wrong"] == 0
    assert second["hits"] + second["misses"] == 40
    assert second["runs"] == second["misses"]
    assert second["errors"] > 0  # the folder did refuse something
    warnings = [line for line in err.splitlines() if line.startswith("WARNING:memo:")]
    kinds = [line.split(" failed")[0] for line in warnings]
    # diskcache writes when it opens a folder, so a read-only one serves no hits
    # either; what matters is that each kind of failure is logged once.
    assert kinds, err
    assert len(kinds) == len(set(kinds)) < second["errors"], err


# -- the database file itself, deleted, truncated or replaced -----------------


async def fill(value: Any) -> None:
    """Store an entry for each of CALLS arguments."""
    for i in range(CALLS):
        assert await value(i) == expected(i)


async def test_cache_db_deleted_while_in_use(
    tmp_path: Path, caplog_debug: pytest.LogCaptureFixture
) -> None:
    """Deleting cache.db under an open store: results stay right; a new store starts clean."""
    folder = tmp_path / "cache"
    store = DiskStore(folder)
    value, runs = make_cached(store)
    await fill(value)
    for name in ("cache.db", "cache.db-wal", "cache.db-shm"):
        (folder / name).unlink(missing_ok=True)
    await call_many(value)
    # The open connections keep the deleted file: entries still read, nothing fails.
    assert value.cache_info().errors == 0
    assert runs == list(range(CALLS))
    await store.close()

    reopened = DiskStore(folder)
    again, runs = make_cached(reopened)
    await call_many(again)
    assert again.cache_info().errors == 0
    assert runs == list(range(CALLS))  # a fresh, empty, working database
    assert warnings_of(caplog_debug, value.namespace) == []
    assert warnings_of(caplog_debug, again.namespace) == []
    await reopened.close()


@pytest.mark.parametrize("size", [0, 4096, 20_000], ids=["empty", "one-page", "partial"])
async def test_cache_db_truncated_while_in_use(
    tmp_path: Path, caplog_debug: pytest.LogCaptureFixture, size: int
) -> None:
    """Truncating cache.db under an open store: every result right, two warnings in all."""
    folder = tmp_path / "cache"
    store = DiskStore(folder)
    value, runs = make_cached(store)
    await fill(value)
    # Move every entry from the write-ahead log into cache.db, then cut cache.db.
    con = sqlite3.connect(folder / "cache.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    with (folder / "cache.db").open("r+b") as db:
        db.truncate(size)
    runs.clear()
    await call_many(value)
    info = value.cache_info()
    assert runs == [*range(CALLS), *range(CALLS)]  # nothing could be read
    assert info.errors == 4 * CALLS  # a failed read and a failed write per call
    messages = sorted(
        w.getMessage().split(" failed")[0] for w in warnings_of(caplog_debug, value.namespace)
    )
    assert messages == ["memo: read", "memo: write"]
    await store.close()


async def test_garbage_cache_db(tmp_path: Path, caplog_debug: pytest.LogCaptureFixture) -> None:
    """A cache.db of random bytes: every call runs and returns, two warnings in all."""
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    (folder / "cache.db").write_bytes(os.urandom(50_000))
    store = DiskStore(folder)
    value, runs = make_cached(store)
    await call_many(value)
    info = value.cache_info()
    assert len(runs) == 2 * CALLS
    assert info.errors == 4 * CALLS  # the read and the write of every call
    messages = sorted(
        w.getMessage().split(" failed")[0] for w in warnings_of(caplog_debug, value.namespace)
    )
    assert messages == ["memo: read", "memo: write"]
    await store.close()


# -- garbage in one entry ------------------------------------------------------

JSON_HEADER = envelope_header(b"json")


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"", id="empty"),
        pytest.param(os.urandom(64), id="random-bytes"),
        pytest.param(os.urandom(100_000), id="random-bytes-in-a-file"),
        pytest.param(JSON_HEADER + b'"value-3-xxx', id="truncated-json"),
        pytest.param(JSON_HEADER[:3], id="truncated-envelope"),
        pytest.param(envelope_header(b"pickle") + b"\x80\x05K\x03.", id="other-serializer"),
        pytest.param(b"M\x09" + JSON_HEADER[2:] + b'"x"', id="future-envelope-format"),
        pytest.param(JSON_HEADER + b"\xff\xfe", id="invalid-utf8"),
    ],
)
async def test_garbage_entry_is_a_miss_and_is_overwritten(
    tmp_path: Path, caplog_debug: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    """Garbage stored under the exact key: the result is returned, counted, then overwritten."""
    store = DiskStore(tmp_path / "cache")
    value, runs = make_cached(store)
    store.cache.set(value.cache_key(3), garbage)
    assert await value(3) == expected(3)
    assert await value(3) == expected(3)
    info = value.cache_info()
    assert runs == [3]
    assert (info.hits, info.misses, info.errors) == (1, 1, 1)
    [warning] = warnings_of(caplog_debug, value.namespace)
    assert "decode failed" in warning.getMessage()
    await store.close()


@pytest.mark.parametrize("damage", ["garbage", "deleted"])
async def test_damaged_value_file(tmp_path: Path, damage: str) -> None:
    """A big entry whose value file is overwritten or deleted: a miss, then a fresh entry."""
    store = DiskStore(tmp_path / "cache")
    runs: list[int] = []

    @async_disk_cache(namespace=f"faults-{uuid.uuid4().hex}", store=store)
    async def big(i: int) -> str:
        runs.append(i)
        return str(i) * 100_000  # kept by diskcache in a file of its own

    assert await big(7) == "7" * 100_000
    [path] = list((tmp_path / "cache").rglob("*.val"))
    if damage == "garbage":
        path.write_bytes(os.urandom(100_000))
    else:
        path.unlink()
    assert await big(7) == "7" * 100_000
    assert await big(7) == "7" * 100_000
    info = big.cache_info()
    assert runs == [7, 7]
    assert (info.hits, info.misses) == (1, 2)
    assert info.errors == (1 if damage == "garbage" else 0)  # a missing file is just absent
    await store.close()
