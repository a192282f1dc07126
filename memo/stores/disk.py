"""``DiskStore``: the embedded default, on diskcache (SQLite plus files)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import stat
import sys
import threading
import time
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import diskcache

from memo._report import MemoWarning
from memo.stores._diskcache import (
    MODE_BINARY,
    MODE_RAW,
    SELECT_VALUE,
    RefusedEntryError,
    SafeDisk,
    refused_mode,
)
from memo.stores.base import WouldBlock, namespace_of

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DiskStore", "RefusedEntryError", "default_directory", "shared_disk_store"]

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


class DiskStore:
    """Entries in a diskcache folder: survives restarts, shared by processes.

    The folder is created with mode 0o700 on first use. Writes, deletes, clears
    and large reads run on one worker thread; a read of a small entry runs on
    the caller's thread (``get_nowait``) only because it can never wait: SQLite
    in WAL mode never makes readers wait for writers, and its busy timeout is
    zero, so a locked database sends the read to the worker instead. Values are
    read back as bytes only: entries in diskcache's pickle mode are refused,
    never unpickled.

    Args:
        directory: the folder; default ``default_directory()``.
        size_limit: bytes on disk before the oldest stored entries are culled.
        timeout: seconds an operation waits for SQLite's lock (held by a writer
            in another process) before it fails; memo then returns the
            function's result uncached.
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
        self._lock = threading.Lock()
        self._directory_ready = False
        self._resources = _Resources()
        # Closes the connections of a store dropped without close(), which
        # Python 3.13 would otherwise report as unclosed databases.
        self._finalizer = weakref.finalize(self, self._resources.release)
        # One read connection per thread for get_nowait, tagged with the
        # generation it belongs to so that close() retires them all.
        self._local = threading.local()
        self._generation = 0

    @property
    def _cache(self) -> diskcache.Cache | None:
        return self._resources.cache

    def _ensure_directory(self) -> None:
        # On the caller's thread, once: a MemoWarning about the folder's mode
        # then points at the caller, and is not swallowed by a worker thread.
        if not self._directory_ready:
            _prepare_directory(self.directory)
            self._directory_ready = True

    def _open(self, resources: _Resources) -> diskcache.Cache:
        with self._lock:
            if resources.cache is None:
                cache = diskcache.Cache.__new__(diskcache.Cache)
                try:
                    cache.__init__(
                        str(self.directory),
                        timeout=self.timeout,
                        disk=SafeDisk,
                        size_limit=self.size_limit,
                        eviction_policy="least-recently-stored",
                        statistics=False,
                        tag_index=True,
                    )
                except BaseException:
                    # diskcache opens its connection before it can fail (a
                    # cache.db that is not a database): close it, or every
                    # retry would leave one more open.
                    with contextlib.suppress(Exception):
                        cache.close()
                    raise
                resources.cache = cache
            return resources.cache

    @property
    def cache(self) -> diskcache.Cache:
        """The underlying ``diskcache.Cache``, opened (and the folder created) on first use."""
        self._ensure_directory()
        return self._open(self._resources)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
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
        loop = asyncio.get_running_loop()
        # The job opens the cache of the resources it was queued with, so a
        # connection it opens is closed with them, even if close() ran since.
        job = functools.partial(self._in_worker, resources, fn, args)
        return await loop.run_in_executor(executor, job)

    def _in_worker(self, resources: _Resources, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        return fn(resources.cache or self._open(resources), *args)

    @staticmethod
    def _get(cache: diskcache.Cache, key: str) -> bytes | None:
        value = cache.get(key, default=None, retry=False)
        if value is None or type(value) is bytes:
            return value
        msg = f"diskcache returned {type(value).__name__}, not bytes"  # pragma: no cover
        raise RefusedEntryError(msg)  # pragma: no cover

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
        return int(cache.expire(now=now, retry=True))

    @staticmethod
    def _clear_all(cache: diskcache.Cache) -> int:
        return int(cache.clear(retry=True))

    def _reader(self) -> sqlite3.Connection:
        reader: tuple[int, sqlite3.Connection] | None = getattr(self._local, "con", None)
        if reader is not None and reader[0] == self._generation:
            return reader[1]
        if self._cache is None:
            raise WouldBlock  # the first use opens (and creates) the cache off the loop
        path = self.directory / "cache.db"
        # timeout=0: a locked database answers "busy" at once instead of
        # waiting on the loop's thread; the caller then reads on the pool.
        # check_same_thread=False only so that close() may close it from
        # another thread; it is used by the thread that opened it alone.
        con = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA query_only = ON")
        # diskcache's own settings for its connections: a page cache and a
        # memory map large enough that a big cache's index stays in memory.
        con.execute("PRAGMA cache_size = 8192")
        con.execute("PRAGMA mmap_size = 67108864")
        self._local.con = (self._generation, con)
        with self._lock:
            self._resources.readers.append(con)
        return con

    def get_nowait(self, key: str) -> bytes | None:
        """Read a small entry on the calling thread, without waiting on a lock.

        The lookup is one indexed SELECT on SQLite in WAL mode, where readers
        never wait for writers; if SQLite still answers busy, or the value
        lives in a file of its own (large values), or the cache is not open
        yet, it raises ``WouldBlock`` and memo reads through ``get`` instead.

        Raises:
            WouldBlock: the read would have to wait or touch more than the row.
            RefusedEntryError: the entry is not raw bytes (never decoded).
        """
        try:
            row = self._reader().execute(SELECT_VALUE, (key, time.time())).fetchone()
        except sqlite3.OperationalError as exc:
            raise WouldBlock from exc
        if row is None:
            return None
        mode, value = row
        if mode == MODE_RAW and type(value) is bytes:
            return value
        if mode == MODE_BINARY:
            raise WouldBlock
        raise refused_mode(mode)

    async def get(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key``, or None.

        Raises:
            RefusedEntryError: the entry is not raw bytes (never decoded).
        """
        return await self._run(self._get, key)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (None: no expiry).

        Once called, the write happens even if the caller is cancelled (as
        ``asyncio.run`` does to leftover tasks on exit): SQLite commits it whole
        or not at all, and the thread pool finishes it before the process ends.
        """
        await asyncio.shield(self._run(self._set, key, value, ttl))

    async def delete(self, key: str) -> bool:
        """Drop ``key``; return whether it existed."""
        return await self._run(self._delete, key)

    async def clear(self, namespace: str) -> int:
        """Drop every entry of ``namespace``; return how many."""
        return await self._run(self._clear, namespace)

    async def expire(self) -> int:
        """Drop every expired entry of the folder now, in all namespaces.

        An expired entry already reads as a miss, but it stays on disk until
        it is overwritten or culled; this frees its space now. Entries go in
        batches, so other processes can write in between; where ``get`` and
        ``set`` fail once SQLite's lock is held past ``timeout``, this tries
        again until done.

        Returns:
            How many entries were dropped.
        """
        return await self._run(self._expire, time.time())

    async def clear_all(self) -> int:
        """Drop every entry of the folder: all namespaces, every function that uses it.

        Like ``expire``, it goes in batches and tries again while SQLite's
        lock is held by another process, instead of failing.

        Returns:
            How many entries were dropped.
        """
        return await self._run(self._clear_all)

    async def close(self) -> None:
        """Close the SQLite connections and the thread pool; later use reopens them."""
        with self._lock:
            old, self._resources = self._resources, _Resources()
            self._generation += 1
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, self._resources.release)
        if old.executor is not None:
            # diskcache keeps a connection per thread: close the worker's on
            # the worker, after every job queued before (which may open it).
            await asyncio.wrap_future(old.executor.submit(old.close_cache))
        old.release()

    def __repr__(self) -> str:
        return f"DiskStore({str(self.directory)!r})"


class _Resources:
    """What a DiskStore opens lazily, kept apart so that a finalizer can close it."""

    __slots__ = ("cache", "executor", "readers")

    def __init__(self) -> None:
        self.cache: diskcache.Cache | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.readers: list[sqlite3.Connection] = []

    def close_cache(self) -> None:
        """Close the calling thread's connection of the cache, if it has one."""
        if self.cache is not None:
            self.cache.close()

    def release(self) -> None:
        """Close the readers and the cache, and let the worker thread end."""
        for con in self.readers:
            con.close()
        self.readers = []
        if self.executor is not None:
            # The worker's own connection; the job runs before the worker exits.
            with contextlib.suppress(RuntimeError):  # the interpreter is exiting
                self.executor.submit(self.close_cache)
            self.executor.shutdown(wait=False)
            self.executor = None
        self.close_cache()  # the calling thread's, if it opened one


_shared: dict[Path, DiskStore] = {}
_shared_lock = threading.Lock()


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
