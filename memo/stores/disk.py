"""``DiskStore``: the embedded default, on diskcache (SQLite plus files)."""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
import stat
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import diskcache

from memo._report import MemoWarning
from memo.stores._diskcache import (
    MODE_BINARY,
    MODE_RAW,
    SELECT_VALUE,
    VALUE_SIZE,
    BoundedCache,
    RefusedEntryError,
    SafeDisk,
    is_busy,
    own_file,
    refused_mode,
)
from memo.stores.base import StoredEntry, WouldBlock, namespace_of, namespace_prefix

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable

    # asyncio and the thread pool are imported where used: the CLI and a
    # program that never awaits this store do not load them.
    from concurrent.futures import ThreadPoolExecutor

__all__ = [
    "DiskStore",
    "DiskTimeoutError",
    "RefusedEntryError",
    "default_directory",
    "shared_disk_store",
]

T = TypeVar("T")

ENV_DIRECTORY = "MEMO_CACHE_DIR"


def default_directory() -> Path:
    r"""Return the folder memo uses when no ``directory`` is given.

    ``$MEMO_CACHE_DIR`` when set, else the user cache folder: ``$XDG_CACHE_HOME/memo``
    or ``~/.cache/memo`` on Linux, ``~/Library/Caches/memo`` on macOS and
    ``%LOCALAPPDATA%\memo\Cache`` on Windows.
    """
    env = os.environ.get(ENV_DIRECTORY)
    if env:
        return Path(env).expanduser()
    if sys.platform == "win32":  # pragma: no cover - tested on Linux only
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "memo" / "Cache"
    if sys.platform == "darwin":  # pragma: no cover - tested on Linux only
        return Path.home() / "Library" / "Caches" / "memo"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "memo"


def _prepare_directory(path: Path) -> None:
    existed = path.is_dir()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if existed and os.name == "posix":
        mode = path.stat().st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH):
            warnings.warn(
                f"memo: the cache folder {str(path)!r} can be written by other users "
                f"(mode {stat.filemode(mode)}); anyone who can write it can change what "
                f"your cached functions return. Run `chmod 700 {path}`.",
                MemoWarning,
                stacklevel=2,
            )


class DiskTimeoutError(diskcache.Timeout, TimeoutError):  # type: ignore[misc]
    """A ``DiskStore`` operation ran out of its ``timeout``, and says what it waited for.

    What it waited for: SQLite's lock, held by another process (a long
    ``memo clear``, a frozen writer), or this store's earlier operations
    queued before it. memo reports it on the ``memo`` logger, counts it in
    ``cache_info().errors`` and returns the function's result uncached. It is
    a ``TimeoutError``, and a ``diskcache.Timeout`` as diskcache's own was.
    """


def _seconds(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")  # 0.5 -> "0.5", 5.0 -> "5"


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _nothing() -> None:
    """A job that does nothing: once it ran, every job queued before it has finished."""


class DiskStore:
    """Entries in a diskcache folder: survives restarts, shared by processes.

    The folder is created with mode 0o700 on first use. Writes, deletes, clears
    and large reads run on one worker thread; a read of a small entry runs on
    the caller's thread (``get_nowait``) only because it can never wait: SQLite
    in WAL mode never makes readers wait for writers, and its busy timeout is
    zero, so a locked database sends the read to the worker instead. Values are
    read back as bytes only: entries in diskcache's pickle mode are refused,
    never unpickled.

    Every operation has a deadline, ``timeout`` seconds after it was asked:
    time spent queued behind the store's earlier operations counts, an
    operation still queued at its deadline never runs, and one that starts
    gets what is left as SQLite's busy timeout. No connection reads through a
    memory map, so a file cut short by another process is an error, never a
    SIGBUS. In a child process after ``fork()`` the store starts afresh: a
    worker thread, connections and locks of its own.

    Args:
        directory: the folder; default ``default_directory()``.
        size_limit: bytes on disk before the oldest stored entries are culled.
        timeout: seconds an operation may take to start and get SQLite's lock,
            from when it is asked (held by a writer in another process, or
            behind this store's earlier operations); past it, it fails with
            ``DiskTimeoutError`` and memo returns the function's result
            uncached. ``expire`` and ``clear_all`` go in batches, each of
            which may wait this long.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        size_limit: int = 2**30,
        timeout: float = 5.0,
    ) -> None:
        self.directory = Path(directory).expanduser() if directory else default_directory()
        self.size_limit = size_limit
        self.timeout = timeout
        # Guards _resources and _generation; never held while anything waits.
        self._lock = threading.Lock()
        # One opening of the folder at a time; held while SQLite may wait.
        self._open_lock = threading.Lock()
        self._directory_ready = False
        self._resources = _Resources()
        # Closes the connections of a store dropped without close(), which
        # Python 3.13 would otherwise report as unclosed databases.
        self._finalizer = weakref.finalize(self, self._resources.release)
        # One read connection per thread for get_nowait, tagged with the
        # generation it belongs to so that close() retires them all.
        self._local = threading.local()
        self._generation = 0
        # Reads a value file as diskcache would, refusing what is not raw bytes.
        self._disk = SafeDisk(str(self.directory))
        _stores.add(self)

    def _ensure_directory(self) -> None:
        # On the caller's thread, once: a MemoWarning about the folder's mode
        # then points at the caller, and is not swallowed by a worker thread.
        if not self._directory_ready:
            _prepare_directory(self.directory)
            self._directory_ready = True

    def _open(self, resources: _Resources, asked: float, what: str) -> BoundedCache:
        with self._open_lock:
            if resources.cache is None:
                # Again, not only on first use: the folder may have been removed
                # since, and diskcache would create it with mode 0o755.
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                try:
                    cache = BoundedCache(
                        str(self.directory),
                        deadline=asked + self.timeout,
                        timeout=self.timeout,
                        disk=SafeDisk,
                        size_limit=self.size_limit,
                        eviction_policy="least-recently-stored",
                        statistics=False,
                        tag_index=True,
                        sqlite_mmap_size=0,
                    )
                except sqlite3.OperationalError as exc:
                    if is_busy(exc):
                        doing = f"opening the cache {what}".strip()
                        raise self._timed_out(doing, asked) from exc
                    raise
                resources.caches.append(cache)
                resources.identity = _identity(self.directory / "cache.db")
                resources.cache = cache
            return resources.cache

    @property
    def cache(self) -> diskcache.Cache:
        """The underlying ``diskcache.Cache``, opened (and the folder created) on first use."""
        self._ensure_directory()
        return self._open(self._resources, time.monotonic(), "")

    def _timed_out(self, what: str, asked: float, *, queued: bool = False) -> DiskTimeoutError:
        waited = _seconds(time.monotonic() - asked)
        if queued:
            msg = (
                f"{self!r} waited {waited} s (its timeout is {_seconds(self.timeout)} s) "
                f"behind its earlier operations and gave up before {what}"
            )
        else:
            lock = "lock" if what == "reading" else "write lock"
            msg = (
                f"{self!r} waited {waited} s for SQLite's {lock} (held by another process) "
                f"while {what}"
            )
        return DiskTimeoutError(msg)

    async def _run(
        self,
        what: str,
        fn: Callable[..., T],
        *args: Any,
        per_batch: bool = False,
        reads: bool = False,
    ) -> T:
        import asyncio  # noqa: PLC0415 - loaded by the running loop already
        from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - loaded by asyncio

        asked = time.monotonic()
        self._ensure_directory()
        with self._lock:
            resources = self._resources
            if resources.executor is None:
                # One worker: SQLite takes one writer at a time anyway, reads
                # mostly happen on the caller's thread (get_nowait), and one
                # thread means one diskcache connection that close() can reach.
                resources.executor = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="memo-disk"
                )
            executor = resources.executor
        # The job opens the cache of the resources it was queued with, so a
        # connection it opens is closed with them, even if close() ran since.
        future = executor.submit(
            self._in_worker,
            resources,
            fn,
            args,
            what=what,
            asked=asked,
            per_batch=per_batch,
            reads=reads,
        )
        waiter = asyncio.wrap_future(future)
        try:
            await asyncio.wait((waiter,), timeout=asked + self.timeout - time.monotonic())
        except asyncio.CancelledError:
            waiter.cancel()  # a job that has not started never will
            raise
        if not waiter.done() and future.cancel():
            raise self._timed_out(what, asked, queued=True)
        # Started in time: SQLite's busy timeout, what was left, bounds its waits.
        return await waiter

    def _in_worker(
        self,
        resources: _Resources,
        fn: Callable[..., T],
        args: tuple[Any, ...],
        *,
        what: str,
        asked: float,
        per_batch: bool,
        reads: bool,
    ) -> T:
        deadline = asked + self.timeout
        if time.monotonic() >= deadline:
            raise self._timed_out(what, asked, queued=True)
        try:
            # Held while the job may touch SQLite, so that fork() can wait for it.
            with resources.running:
                if reads:  # through a read-only connection: no need to open diskcache
                    return fn(deadline, *args)
                self._reopen_if_replaced(resources)
                cache = resources.cache or self._open(resources, asked, f"before {what}")
                cache.bound_waits(deadline, per_batch=self.timeout if per_batch else None)
                return fn(cache, *args)
        except DiskTimeoutError:
            raise
        except diskcache.Timeout as exc:
            # diskcache's: a transaction that did not begin. SQLite's own error
            # is in the context; only "locked" is a timeout.
            cause = _sqlite_error_in(exc)
            if cause is not None and not is_busy(cause):
                self._reopen_if_replaced(resources)
                raise cause from None
            if exc.args and isinstance(exc.args[0], int) and exc.args[0]:
                what = f"{what} ({exc.args[0]} entries dropped before)"
            raise self._timed_out(what, asked) from exc
        except sqlite3.Error as exc:
            if is_busy(exc):
                raise self._timed_out(what, asked) from exc
            self._reopen_if_replaced(resources)
            raise

    def _reopen_if_replaced(self, resources: _Resources) -> None:
        """If cache.db is not the file the store opened any more, open the new one next.

        Checked before each write and after each error. The folder removed
        (to start afresh) or created again, cache.db replaced: the open
        connections would go on with the old file, which no other process
        sees. A file damaged in place is left as it is (memo never repairs a
        database): the store fails open on it until it is replaced.
        """
        cache = resources.cache
        if cache is None or _identity(self.directory / "cache.db") == resources.identity:
            return
        with self._open_lock:
            resources.cache = None
        with self._lock:
            self._generation += 1  # every thread's reader reconnects too
        cache.close()  # the worker's connection; any other closes with the resources

    def _get(self, deadline: float, key: str) -> bytes | None:
        # diskcache's Cache.get, on the worker's read connection: opening
        # diskcache writes its settings, which would wait for a writer's lock.
        if not (self.directory / "cache.db").exists():
            return None  # nothing was ever stored here
        try:
            con = self._reader(wait=deadline - time.monotonic())
            wait = math.ceil(max(0.0, deadline - time.monotonic()) * 1000)
            con.execute(f"PRAGMA busy_timeout = {wait}")
            row = con.execute(SELECT_VALUE, (key, time.time())).fetchone()
        except sqlite3.Error as exc:
            if _not_created_yet(exc):
                return None  # another process has made cache.db but not its tables yet
            if not is_busy(exc):
                self._drop_reader_if_replaced()
            raise
        if row is None:
            return None
        mode, filename, value = row
        try:
            data = self._disk.fetch(mode, filename, value, False)
        except OSError:
            return None  # its file is gone (the entry was dropped meanwhile): absent
        if type(data) is bytes:
            return data
        msg = f"diskcache returned {type(data).__name__}, not bytes"  # pragma: no cover
        raise RefusedEntryError(msg)  # pragma: no cover

    def _page(
        self, deadline: float, prefix: str, after: str | None, now: float, values: bool
    ) -> tuple[list[StoredEntry], str | None]:
        """Read the next page of live entries whose keys start with ``prefix``, after ``after``.

        Returns the entries and the last key read (None when there were no more rows).
        """
        if not (self.directory / "cache.db").exists():
            return [], None
        column = "value" if values else VALUE_SIZE
        # Keys are ordered with the (key, raw) index; the prefix test only filters.
        sql = (
            f"SELECT key, expire_time, mode, filename, {column} FROM Cache"  # noqa: S608
            " WHERE raw = 1 AND key > ? AND substr(key, 1, ?) = ?"
            " AND (expire_time IS NULL OR expire_time > ?) ORDER BY key LIMIT ?"
        )
        try:
            con = self._reader(wait=deadline - time.monotonic())
            wait = math.ceil(max(0.0, deadline - time.monotonic()) * 1000)
            con.execute(f"PRAGMA busy_timeout = {wait}")
            rows = con.execute(sql, (after or "", len(prefix), prefix, now, _PAGE)).fetchall()
        except sqlite3.Error as exc:
            if _not_created_yet(exc):
                return [], None
            if not is_busy(exc):
                self._drop_reader_if_replaced()
            raise
        listed = (self._listed(*row, values=values) for row in rows)
        return [entry for entry in listed if entry is not None], (rows[-1][0] if rows else None)

    def _listed(
        self,
        key: object,
        expires: object,
        mode: Any,
        filename: Any,
        data: object,
        *,
        values: bool,
    ) -> StoredEntry | None:
        """Return a row as an entry, or None for a row memo did not write or cannot read."""
        if not isinstance(key, str) or ":" not in key:
            return None
        if expires is not None and (
            not isinstance(expires, (int, float)) or isinstance(expires, bool)
        ):
            return None
        if mode not in (MODE_RAW, MODE_BINARY) or (mode == MODE_BINARY and not own_file(filename)):
            return None  # refused like get() refuses it: never decoded
        at = None if expires is None else float(expires)
        if not values:
            return StoredEntry(key, None, data if type(data) is int else 0, at)
        try:
            value = self._disk.fetch(mode, filename, data, False)
        except (OSError, RefusedEntryError):
            return None  # its file is gone (dropped meanwhile), or not raw bytes
        return StoredEntry(key, value, len(value), at)

    async def entries(
        self, namespaces: Iterable[str] = (), *, values: bool = True
    ) -> AsyncIterator[StoredEntry]:
        """Yield every live entry (of ``namespaces`` when given), in the order of their keys.

        Entries are read in pages on the store's worker, each within the
        store's ``timeout``, through a read-only connection: listing never
        changes the folder. Rows memo could not have written (diskcache's
        pickle mode, a file that is not the cache's own) are left out.

        Args:
            namespaces: the namespaces to list; empty: all of them.
            values: False to leave ``value`` out (None) and give only its size.

        Raises:
            DiskTimeoutError: a page could not be read within ``timeout``.
        """
        # Distinct namespace prefixes never contain one another, so listing
        # them one after the other in sorted order keeps every key in order.
        prefixes = sorted({namespace_prefix(namespace) for namespace in namespaces}) or [""]
        now = time.time()
        for prefix in prefixes:
            after: str | None = None
            while True:
                page, after = await self._run(
                    "listing entries", self._page, prefix, after, now, values, reads=True
                )
                if after is None:
                    break
                for entry in page:
                    yield entry

    @staticmethod
    def _set(cache: diskcache.Cache, key: str, value: bytes, ttl: float | None) -> None:
        cache.set(key, bytes(value), expire=ttl, tag=namespace_of(key), retry=False)

    @staticmethod
    def _delete(cache: diskcache.Cache, key: str) -> bool:
        return bool(cache.delete(key, retry=False))

    @staticmethod
    def _clear(cache: diskcache.Cache, namespace: str) -> int:
        return int(cache.evict(namespace, retry=False))

    @staticmethod
    def _expire(cache: diskcache.Cache, now: float) -> int:
        return int(cache.expire(now=now, retry=False))

    @staticmethod
    def _clear_all(cache: diskcache.Cache) -> int:
        return int(cache.clear(retry=False))

    def _reader(self, wait: float = 0.0) -> sqlite3.Connection:
        reader: _Reader | None = getattr(self._local, "reader", None)
        if reader is not None and reader.generation == self._generation:
            return reader.con
        return self._open_reader(wait)

    def _open_reader(self, wait: float) -> sqlite3.Connection:
        self._ensure_directory()
        database = (self.directory / "cache.db").absolute()
        # mode=rw: never create cache.db; the first write does, off the loop.
        # wait=0 on the loop's thread: a locked database answers "busy" at
        # once (its schema is read right here), and the caller then reads on
        # the worker, whose connection waits what is left of the read's time.
        # check_same_thread=False only so that close(), or the end of its
        # thread, may close it from another thread; only its thread uses it.
        con = sqlite3.connect(
            f"{database.as_uri()}?mode=rw",
            uri=True,
            timeout=max(0.0, wait),
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            con.execute("PRAGMA query_only = ON")
            # diskcache's page cache, but no memory map: a cache.db cut short
            # under a map kills the process (SIGBUS) where a read fails.
            con.execute("PRAGMA cache_size = 8192")
            con.execute("PRAGMA mmap_size = 0")
            con.execute("PRAGMA busy_timeout = 0")
        except BaseException:
            con.close()
            raise
        identity = _identity(database)
        with self._lock:
            reader = _Reader(con, self._generation, identity)
            self._resources.readers.add(reader)
        self._local.reader = reader
        return con

    def _drop_reader_if_replaced(self) -> None:
        # After an error: a reader of a cache.db since replaced (or removed)
        # reconnects on its next read; one damaged in place goes on failing.
        reader: _Reader | None = getattr(self._local, "reader", None)
        if reader is not None and _identity(self.directory / "cache.db") != reader.identity:
            del self._local.reader
            reader.close()

    def get_nowait(self, key: str) -> bytes | None:
        """Read a small entry on the calling thread, without waiting on a lock.

        The lookup is one indexed SELECT on SQLite in WAL mode, where readers
        never wait for writers; if SQLite still answers busy, or the value
        lives in a file of its own (large values), or there is no cache.db
        yet, it raises ``WouldBlock`` and memo reads through ``get`` instead.

        Raises:
            WouldBlock: the read would have to wait or touch more than the row.
            RefusedEntryError: the entry is not raw bytes (never decoded).
        """
        try:
            row = self._reader().execute(SELECT_VALUE, (key, time.time())).fetchone()
        except sqlite3.Error as exc:
            if not is_busy(exc):
                self._drop_reader_if_replaced()
            if isinstance(exc, (sqlite3.OperationalError, sqlite3.ProgrammingError)):
                raise WouldBlock from exc
            raise
        if row is None:
            return None
        mode, _, value = row
        if mode == MODE_RAW and type(value) is bytes:
            return value
        if mode == MODE_BINARY:
            raise WouldBlock
        raise refused_mode(mode)

    async def get(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key``, or None.

        Raises:
            RefusedEntryError: the entry is not raw bytes (never decoded).
            DiskTimeoutError: the read could not start within ``timeout``.
        """
        return await self._run("reading", self._get, key, reads=True)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (None: no expiry).

        Once called, the write happens even if the caller is cancelled (as
        ``asyncio.run`` does to leftover tasks on exit), unless it cannot
        start before its deadline: SQLite commits it whole or not at all, and
        the thread pool finishes it before the process ends.

        Raises:
            DiskTimeoutError: SQLite's lock stayed held past ``timeout``.
        """
        import asyncio  # noqa: PLC0415 - loaded by the running loop already

        await asyncio.shield(self._run("writing", self._set, key, value, ttl))

    async def delete(self, key: str) -> bool:
        """Drop ``key``; return whether it existed."""
        return await self._run("deleting an entry", self._delete, key)

    async def clear(self, namespace: str) -> int:
        """Drop every entry of ``namespace``; return how many."""
        return await self._run(f"clearing namespace {namespace!r}", self._clear, namespace)

    async def expire(self) -> int:
        """Drop every expired entry of the folder now, in all namespaces.

        An expired entry already reads as a miss, and each write drops up to
        ten expired entries; this drops them all now and frees their space.
        Entries go in batches, so other processes can write in between; each
        batch may wait up to ``timeout`` for SQLite's lock.

        Returns:
            How many entries were dropped.

        Raises:
            DiskTimeoutError: a batch waited ``timeout`` for the lock; the
                message says how many entries were dropped before.
        """
        return await self._run(
            "dropping expired entries", self._expire, time.time(), per_batch=True
        )

    async def clear_all(self) -> int:
        """Drop every entry of the folder: all namespaces, every function that uses it.

        Like ``expire``, it goes in batches, each of which may wait up to
        ``timeout`` for SQLite's lock.

        Returns:
            How many entries were dropped.

        Raises:
            DiskTimeoutError: a batch waited ``timeout`` for the lock.
        """
        return await self._run("clearing the folder", self._clear_all, per_batch=True)

    async def close(self) -> None:
        """Close the SQLite connections and the thread pool; later use reopens them."""
        with self._lock:
            old, self._resources = self._resources, _Resources()
            self._generation += 1
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, self._resources.release)
        if old.executor is not None:
            import asyncio  # noqa: PLC0415 - loaded by the running loop already

            # The jobs queued before (each within its deadline) finish first.
            await asyncio.wrap_future(old.executor.submit(_nothing))
        old.release()

    def _start_afresh_after_fork(self) -> None:
        """In a child process, just after ``fork()``: locks, worker and connections of its own."""
        # A lock that a thread of the parent held at the fork stays held here.
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()
        # The parent's connections are the parent's: no finalizer of the
        # child's may close them, and no thread here runs the parent's jobs.
        self._finalizer.detach()
        inherited, self._resources = self._resources, _Resources()
        self._finalizer = weakref.finalize(self, self._resources.release)
        self._generation += 1
        self._local = threading.local()
        inherited.let_go_after_fork()

    def __repr__(self) -> str:
        return f"DiskStore({str(self.directory)!r})"


# Rows read per step of entries(): a short read between other processes' writes.
_PAGE = 200


def _sqlite_error_in(exc: BaseException) -> sqlite3.Error | None:
    """Return the SQLite error behind ``exc`` (its cause or context), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlite3.Error):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class _Reader:
    """One thread's read connection; closed when that thread's locals go (the thread ended)."""

    __slots__ = ("__weakref__", "close", "con", "generation", "identity")

    def __init__(
        self, con: sqlite3.Connection, generation: int, identity: tuple[int, int] | None
    ) -> None:
        self.con = con
        self.generation = generation
        self.identity = identity  # of the cache.db it opened
        # Holds the connection, not the reader: runs once, when the reader is
        # collected (its thread ended), at close(), or at exit, whichever is first.
        self.close = weakref.finalize(self, con.close)


def _not_created_yet(exc: sqlite3.Error) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)


class _Resources:
    """What a DiskStore opens lazily, kept apart so that a finalizer can close it."""

    __slots__ = ("cache", "caches", "executor", "identity", "idle_at_fork", "readers", "running")

    def __init__(self) -> None:
        self.cache: BoundedCache | None = None
        # Every cache opened (the current one last), and what cache.db was then.
        self.caches: list[BoundedCache] = []
        self.identity: tuple[int, int] | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.readers: weakref.WeakSet[_Reader] = weakref.WeakSet()
        # Held by the worker while a job runs; taken by the fork() handler, so
        # that a child knows whether the parent was in the middle of one.
        self.running = threading.Lock()
        self.idle_at_fork = False

    def release(self) -> None:
        """Close the readers and the caches' connections, and let the worker thread end."""
        for reader in list(self.readers):
            reader.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False)
            self.executor = None
        for cache in self.caches:
            cache.close_connections()
        self.caches = []
        self.cache = None

    def let_go_after_fork(self) -> None:
        """In a child after ``fork()``: let go of the parent's connections without harm.

        SQLite forbids using a connection in a process it was not opened in.
        Closing one that was idle at the fork is safe, and needed: SQLite keeps
        one record per file of the locks a process holds, so connections the
        child opens while inherited ones stay open would share the parent's
        record and take no lock of their own; once the parent closed its
        connections, another process could then reset the write-ahead log
        under the child's writes, which would be lost. A connection that was
        in the middle of a job (the fork did not wait for it: see
        ``_before_fork``) is never closed, because closing would roll back
        the parent's transaction in memory both processes share: it is kept,
        unused, until the process ends.
        """
        for reader in list(self.readers):
            reader.close()  # read-only: closing drops nothing but this process's view
        for cache in self.caches:
            connections, cache.connections = cache.connections, []
            if self.idle_at_fork:
                for con in connections:
                    con.close()
            else:
                _keep_forever(connections)
        self.caches = []
        self.cache = None
        self.executor = None  # its thread was the parent's


# Connections a child inherited in the middle of a transaction: never closed.
_inherited: list[sqlite3.Connection] = []


def _keep_forever(connections: list[sqlite3.Connection]) -> None:
    _inherited.extend(connections)
    # The interpreter clears module globals when it exits, which would close
    # them then: one reference more that nothing ever drops.
    with contextlib.suppress(Exception):
        import ctypes  # noqa: PLC0415 - only ever needed here, in a forked child

        for con in connections:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(con))


_shared: dict[Path, DiskStore] = {}
_shared_lock = threading.Lock()
_stores: weakref.WeakSet[DiskStore] = weakref.WeakSet()


def shared_disk_store(directory: str | os.PathLike[str] | None) -> DiskStore:
    """Return this process's ``DiskStore`` for ``directory`` (default folder when None).

    Functions decorated with the same folder share one store, so they share
    its SQLite connections and thread pool.
    """
    path = Path(directory).expanduser() if directory else default_directory()
    path = path.absolute()
    with _shared_lock:
        store = _shared.get(path)
        if store is None:
            store = _shared[path] = DiskStore(path)
        return store


# The resources whose worker the fork() handler found idle, and holds.
_held_for_fork: list[_Resources] = []


def _live_stores() -> list[DiskStore]:
    while True:
        try:
            return list(_stores)
        except RuntimeError:  # another thread made a store meanwhile
            continue


def _before_fork() -> None:
    # Wait (up to each store's timeout) for a job in progress, and hold the
    # worker idle until the fork is done: the child then inherits no
    # connection in the middle of a transaction, and can close them all.
    for store in _live_stores():
        resources = store._resources
        if resources.caches and resources.running.acquire(timeout=max(store.timeout, 0.0)):
            resources.idle_at_fork = True
            _held_for_fork.append(resources)


def _after_fork_in_parent() -> None:
    while _held_for_fork:
        resources = _held_for_fork.pop()
        resources.idle_at_fork = False
        resources.running.release()


def _after_fork_in_child() -> None:
    # A lock that a thread of the parent held at the fork stays held in the
    # child, forever: replace them all, before anything here can wait on one.
    global _shared_lock  # noqa: PLW0603 - replacing the lock is the point
    _shared_lock = threading.Lock()
    for store in _live_stores():
        store._start_afresh_after_fork()
    _held_for_fork.clear()


if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork()
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
