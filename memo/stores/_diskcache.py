"""diskcache's schema, as memo relies on it: the only module that knows it.

``DiskStore`` writes and reads through diskcache with ``BoundedCache`` and
``SafeDisk``; the command line looks inside a folder through ``Folder``,
read-only SQL on ``cache.db`` that never changes a cache, not even its access
times. Both depend on the same facts about diskcache's ``Cache`` table: its
columns, what each storage mode means, and how diskcache names its value
files. What SQLite's errors mean (a lock held elsewhere, a damaged file) is
told here too.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import re
import sqlite3
import stat
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import diskcache
from diskcache.core import DBNAME, MODE_BINARY, MODE_PICKLE, MODE_RAW, MODE_TEXT, UNKNOWN

from memo.stores.base import namespace_of, namespace_prefix

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path
    from types import TracebackType

__all__ = [
    "MODE_BINARY",
    "MODE_PICKLE",
    "MODE_RAW",
    "MODE_TEXT",
    "SELECT_VALUE",
    "VALUE_SIZE",
    "BoundedCache",
    "Entry",
    "Folder",
    "FolderError",
    "RefusedEntryError",
    "SafeDisk",
    "being_created",
    "damaged_message",
    "is_busy",
    "is_damaged",
    "own_file",
    "read_own_file",
    "refused_mode",
    "remove_value_file",
]

# diskcache's own lookup (Cache.get), minus the columns memo never needs. With
# memo's settings (no statistics, least-recently-stored) it writes nothing.
SELECT_VALUE = (
    "SELECT mode, filename, value FROM Cache"
    " WHERE key = ? AND raw = 1 AND (expire_time IS NULL OR expire_time > ?)"
)

# diskcache names value files "ab/cd/<28 hex digits>.val" (Disk.filename). A
# row naming any other path ("../../.ssh/id_ed25519") was not written by
# diskcache: reading it would leak a file into a result, deleting it on
# overwrite would destroy it.
_OWN_FILE = re.compile(r"[0-9a-f]{2}[/\\][0-9a-f]{2}[/\\][0-9a-f]{28}\.val")


def own_file(filename: object) -> TypeGuard[str]:
    """Return whether ``filename`` is a value file diskcache could have named itself."""
    return isinstance(filename, str) and _OWN_FILE.fullmatch(filename) is not None


def read_own_file(directory: str | os.PathLike[str], filename: str) -> bytes:
    """Return the bytes of the value file ``filename`` in ``directory``, as it is there.

    A link is not followed, nor anything but a regular file read: whoever can
    write the folder could otherwise swap a value file for a link to a private
    file (which ``memo export`` would copy out) or to /dev/zero (read forever).

    Raises:
        OSError: the file is gone, is a link, or is not a regular file.
    """
    path = os.path.join(directory, filename)
    if _NOFOLLOW == 0 and os.path.islink(path):  # a system without O_NOFOLLOW
        raise OSError(errno.ELOOP, "value file is a link", path)
    with open(os.open(path, _READ_FLAGS | _NOFOLLOW), "rb") as reader:
        if not stat.S_ISREG(os.fstat(reader.fileno()).st_mode):
            raise OSError(errno.EINVAL, "value file is not a regular file", path)
        return reader.read()


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Non-blocking: opening a FIFO planted in the folder must not wait for a writer.
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


class RefusedEntryError(ValueError):
    """An entry diskcache would have to unpickle (or decode as text) to read."""


def refused_mode(mode: object) -> RefusedEntryError:
    """Return the error for an entry stored in ``mode``, which memo never decodes."""
    return RefusedEntryError(
        f"refusing to read a diskcache entry stored in mode {mode} (not raw bytes)"
    )


class SafeDisk(diskcache.Disk):  # type: ignore[misc]
    """A diskcache ``Disk`` whose read path only ever returns bytes, and that leaves no stray files.

    diskcache unpickles entries stored in its pickle mode when they are read
    (CVE-2025-69872), so anyone who can write the folder could run code in
    every process that reads it. memo only ever stores bytes, so any other
    mode is refused before it is decoded.

    A value of ``disk_min_file_size`` bytes or more goes to a file of its own,
    written before its row: a file cut short (a full disk) is removed at
    once, and ``written()`` names the file the calling thread wrote last, so
    that a write whose row never commits can remove it too.
    """

    def __init__(self, directory: str, **kwargs: Any) -> None:
        super().__init__(directory, **kwargs)
        self._written = threading.local()

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, str | None, Any]:
        """Turn ``value`` into the row's columns, writing its file first if it needs one."""
        self._written.filename = None
        columns: tuple[int, int, str | None, Any] = super().store(value, read, key=key)
        self._written.filename = columns[2]
        return columns

    def written(self) -> str | None:
        """Return the value file this thread's last ``store`` wrote, if any, and forget it."""
        filename: str | None = getattr(self._written, "filename", None)
        self._written.filename = None
        return filename

    def _write(
        self, full_path: str, iterator: Any, mode: str, encoding: str | None = None
    ) -> int | None:
        try:
            size: int | None = super()._write(full_path, iterator, mode, encoding)
        except FileExistsError:
            raise  # another file's name (diskcache names files at random): not ours to remove
        except BaseException:
            # Opened with "x" (a name of its own) and then cut short: ENOSPC, EFBIG.
            with contextlib.suppress(OSError):
                os.remove(full_path)
            raise
        return size

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        """Return the stored bytes; refuse any entry that is not raw bytes or its own file."""
        if mode not in (MODE_RAW, MODE_BINARY) or (mode == MODE_RAW and type(value) is not bytes):
            raise refused_mode(mode)
        if mode == MODE_BINARY:
            if not own_file(filename):
                msg = f"refusing to read a diskcache entry whose file {filename!r} is not its own"
                raise RefusedEntryError(msg)
            data = read_own_file(self._directory, filename)
            return io.BytesIO(data) if read else data
        return super().fetch(mode, filename, value, read)

    def remove(self, file_path: str) -> None:
        """Delete a value file, but only one diskcache named itself."""
        # diskcache deletes the file a row names when the row is replaced or
        # dropped: never follow a crafted row out of the folder.
        if own_file(file_path):
            super().remove(file_path)


class BoundedCache(diskcache.Cache):  # type: ignore[misc]
    """diskcache's ``Cache``, with every wait for SQLite's lock bounded and every connection known.

    - Opening the folder writes diskcache's settings, and diskcache retries a
      locked database for a fixed 60 s there: here it retries until
      ``deadline`` (a ``time.monotonic()`` time), then raises SQLite's
      "database is locked".
    - ``bound_waits(deadline)`` gives the calling thread's next operation
      what is left until ``deadline`` as SQLite's busy timeout, renewed before
      each transaction of an operation that goes in batches (``per_batch``
      seconds each instead, when given).
    - No connection reads through a memory map (``PRAGMA mmap_size = 0``,
      whatever the folder's settings say): a file cut short under a mapping
      kills the process with SIGBUS, where a plain read fails with an error.
    - Connections may be closed from any thread, and ``connections`` holds
      every one opened, so that a store can close them all, and a child
      process after ``fork()`` can tell them apart from its own.

    Args:
        directory: the folder.
        deadline: when to stop retrying while opening (``time.monotonic()``).
        settings: diskcache's own arguments (``timeout``, ``disk``, ...).
    """

    def __init__(self, directory: str, *, deadline: float, **settings: Any) -> None:
        self.connections: list[sqlite3.Connection] = []
        self._open_deadline = deadline
        try:
            super().__init__(directory, **settings)
        except BaseException:
            # diskcache connects before it can fail (a cache.db that is not a
            # database, a lock held past the deadline): close, or every retry
            # would leave one more connection open.
            self.close_connections()
            raise

    @property
    def _con(self) -> sqlite3.Connection:
        # diskcache's own, minus its check of the process id (DiskStore starts
        # afresh in a child after fork() instead), plus the memory map off, a
        # connection any thread may close, and the list of all of them.
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(
                os.path.join(self._directory, DBNAME),
                timeout=self._timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            self.connections.append(con)
            self._local.con = con
            try:
                settings = con.execute("SELECT key, value FROM Settings").fetchall()
            except sqlite3.OperationalError:
                pass
            else:
                for key, value in settings:
                    if key.startswith("sqlite_"):
                        self.reset(key, value, update=False)
            con.execute("PRAGMA mmap_size = 0")
        return con

    @property
    def _sql_retry(self) -> Callable[..., Any]:
        sql = self._sql
        deadline = getattr(self._local, "deadline", None) or self._open_deadline

        def execute(statement: str, *args: Any, **kwargs: Any) -> Any:
            while True:
                try:
                    return sql(statement, *args, **kwargs)
                except sqlite3.OperationalError as exc:
                    if not is_busy(exc) or time.monotonic() >= deadline:
                        raise
                    time.sleep(0.001)

        return execute

    def bound_waits(self, deadline: float, *, per_batch: float | None = None) -> None:
        """Bound the calling thread's waits for SQLite's lock from now on.

        Args:
            deadline: no wait lasts past it (a ``time.monotonic()`` time).
            per_batch: instead, each transaction may wait this many seconds.
        """
        self._local.deadline = deadline
        self._local.per_batch = per_batch
        self._limit_wait()

    def _limit_wait(self) -> None:
        per_batch: float | None = getattr(self._local, "per_batch", None)
        deadline: float | None = getattr(self._local, "deadline", None)
        if per_batch is not None:
            seconds = per_batch
        elif deadline is not None:
            seconds = max(0.0, deadline - time.monotonic())
        else:
            return
        self._sql(f"PRAGMA busy_timeout = {math.ceil(seconds * 1000)}")

    @contextlib.contextmanager
    def _transact(self, retry: bool = False, filename: str | None = None) -> Iterator[Any]:
        if self._txn_id != threading.get_ident():  # a transaction of its own: it waits for the lock
            self._limit_wait()
        with super()._transact(retry, filename) as transaction:
            yield transaction

    def set(  # noqa: PLR0917 - diskcache's own signature
        self,
        key: Any,
        value: Any,
        expire: float | None = None,
        read: bool = False,
        tag: str | None = None,
        retry: bool = False,
    ) -> bool:
        """Store ``value`` under ``key``; a value file written for a row never committed goes."""
        disk: SafeDisk = self._disk
        disk.written()
        try:
            stored: bool = super().set(key, value, expire=expire, read=read, tag=tag, retry=retry)
        except BaseException:
            filename = disk.written()
            if filename is not None:
                disk.remove(filename)
            raise
        return stored

    def close_connections(self) -> None:
        """Close every connection this cache opened, whichever thread opened it."""
        for con in self.connections:
            con.close()
        self.connections = []
        self._local = threading.local()


# -- what SQLite's errors mean ---------------------------------------------------

_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_BUSY_MESSAGES = ("database is locked", "database table is locked", "database schema is locked")
_DAMAGED_MESSAGES = ("file is not a database", "database disk image is malformed", "malformed")


def _error_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return code & 0xFF if isinstance(code, int) else None


def is_busy(exc: BaseException) -> bool:
    """Return whether ``exc`` is SQLite saying that a lock is held elsewhere."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = _error_code(exc)
    return code in _BUSY if code is not None else str(exc).startswith(_BUSY_MESSAGES)


def is_damaged(exc: BaseException) -> bool:
    """Return whether ``exc`` is SQLite saying that a database file is damaged (or not one)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = _error_code(exc)
    return code in _DAMAGED if code is not None else str(exc).startswith(_DAMAGED_MESSAGES)


def damaged_message(directory: Path, exc: BaseException) -> str:
    """Say that the folder's database is damaged, and how to start afresh."""
    return (
        f"{directory} holds a damaged cache database: SQLite says {str(exc)!r} about "
        f"{DBNAME}, so it is not a memo cache that memo can read or repair (`memo clear --all` "
        f"cannot help). To start afresh, remove the folder (rm -r '{directory}'); "
        f"memo creates it again on first use"
    )


def remove_value_file(directory: Path, filename: str) -> None:
    """Remove the value file ``filename`` of ``directory``, and its sub-folders once empty.

    Only a name diskcache could have given its own file is ever removed.
    """
    if not own_file(filename):
        return
    path = directory / filename
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    for parent in (path.parent, path.parent.parent):
        try:
            parent.rmdir()
        except OSError:  # not empty, or already gone
            break


# -- the read-only view of a folder --------------------------------------------

_COLUMNS = "key, raw, store_time, expire_time, size, mode, filename"
VALUE_SIZE = "CASE WHEN filename IS NULL THEN length(value) ELSE size END"  # bytes of the value
_LAST_TIME = 253402300800  # 10000-01-01: later times cannot be printed as dates


class FolderError(ValueError):
    """A folder is not a memo cache, or an entry could not be read from it."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of a cache folder that memo could have written (or an entry of a Redis view).

    ``stored`` is when it was written, or None where that is not recorded (Redis).
    """

    key: str
    namespace: str
    stored: float | None
    expires: float | None
    size: int
    mode: int
    filename: str | None

    def expired(self, now: float) -> bool:
        """Return whether the entry's time to live had passed at ``now``."""
        return self.expires is not None and self.expires <= now


def being_created(database: Path) -> bool:
    """Return whether ``database`` is a cache.db that diskcache has begun and not finished.

    diskcache creates the file, then its Settings table, then Cache, each
    committed on its own: another process's first use may be caught in
    between. A database with a table of another name is someone else's.
    """
    try:
        with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    except sqlite3.Error:
        return False
    return {name for (name,) in rows} <= {"Settings"}


class Folder:
    """A memo cache folder, opened read-only; a context manager that closes it.

    Args:
        directory: the folder, absolute (SQLite opens it through a file: URI).

    Raises:
        FolderError: the folder is missing or is not a memo cache.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        if not directory.exists():
            msg = f"no cache folder at {directory} (memo creates it on first use; pass --dir)"
            raise FolderError(msg)
        if not directory.is_dir():
            msg = f"{directory} is not a folder; pass --dir with a memo cache folder"
            raise FolderError(msg)
        database = directory / "cache.db"
        if not database.is_file():
            msg = f"{directory} is not a memo cache (no cache.db in it)"
            raise FolderError(msg)
        try:
            self._db = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            msg = f"cannot open {database} ({exc})"
            raise FolderError(msg) from None
        try:
            # diskcache's tables, with every column memo reads or writes: `clear`
            # and `prune` open the folder with diskcache, which would otherwise
            # add its tables to some other program's cache.db.
            self._db.execute(f"SELECT {_COLUMNS}, value, tag FROM Cache LIMIT 0")  # noqa: S608
            self._db.execute("SELECT key, value FROM Settings LIMIT 0")
        except sqlite3.Error as exc:
            self._db.close()
            if is_damaged(exc):
                raise FolderError(damaged_message(directory, exc)) from None
            msg = f"{directory} is not a memo cache ({database.name}: {exc})"
            raise FolderError(msg) from None
        self.other = 0  # rows memo did not write (non-text keys), as of entries()

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> Folder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _rows(self, where: str = "", args: Sequence[Any] = ()) -> Iterator[Entry]:
        # `where` is one of this module's fixed clauses; values are bound parameters.
        sql = f"SELECT {_COLUMNS}, {VALUE_SIZE} FROM Cache {where} ORDER BY store_time"  # noqa: S608
        for key, raw, stored, expires, _, mode, filename, size in self._db.execute(sql, args):
            # SQLite keeps whatever type a row was given: a row that diskcache
            # did not write for memo may hold text where times belong.
            stored_at = _timestamp(stored)
            expires_at = None if expires is None else _timestamp(expires)
            if (
                not raw
                or not isinstance(key, str)
                or ":" not in key
                or stored_at is None
                or (expires is not None and expires_at is None)
                or not (size is None or type(size) is int)
                or type(mode) is not int
                or not (filename is None or isinstance(filename, str))
            ):
                self.other += 1
                continue
            yield Entry(key, namespace_of(key), stored_at, expires_at, size or 0, mode, filename)

    def entries(self) -> list[Entry]:
        """Return every entry memo could have written, oldest first; count the rest in ``other``."""
        self.other = 0
        return list(self._rows())

    def namespace(self, namespace: str) -> list[Entry]:
        """Return the entries of ``namespace``, oldest first."""
        prefix = namespace_prefix(namespace)
        rows = self._rows("WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
        return [entry for entry in rows if entry.namespace == namespace]

    def matching(self, key: str) -> list[Entry]:
        """Return the entry whose key is ``key``, else every entry whose key starts with it."""
        exact = list(self._rows("WHERE key = ?", (key,)))
        if exact:
            return exact
        return list(self._rows("WHERE substr(key, 1, ?) = ?", (len(key), key)))

    def unreferenced_files(self, written_before: float) -> list[tuple[str, int]]:
        """Return the value files that no row names, last written before ``written_before``.

        diskcache writes a value's file before the row that names it, so a
        writer killed in between (or a full disk) can leave a file that no
        entry will ever read. A file younger than ``written_before`` may
        belong to a write still in progress, and is left out. Only names
        diskcache could have given its own files are considered, and only
        regular files (never what a symbolic link points to).

        Args:
            written_before: a Unix time.

        Returns:
            ``(filename, size)`` pairs, ``filename`` relative to the folder.
        """
        found: dict[str, int] = {}
        # Files first, rows second: a row committed in between is seen.
        for path in self.directory.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*.val"):
            filename = os.path.join(path.parent.parent.name, path.parent.name, path.name)
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            if own_file(filename) and stat.S_ISREG(info.st_mode) and info.st_mtime < written_before:
                found[filename] = info.st_size
        named = self._db.execute("SELECT filename FROM Cache WHERE filename IS NOT NULL")
        for (filename,) in named:
            found.pop(filename, None)
        return sorted(found.items())

    def read(self, entry: Entry) -> bytes:
        """Return the stored bytes of ``entry``: its value file in binary mode, else its row.

        Raises:
            FolderError: the entry names a file diskcache did not name, or is gone.
        """
        # The same rule as diskcache's Disk.fetch: only binary mode reads a
        # file, so a crafted raw row cannot point the view at one.
        if entry.mode == MODE_BINARY:
            if not own_file(entry.filename):
                msg = f"the entry {entry.key!r} names the file {entry.filename!r}; not read"
                raise FolderError(msg)
            return read_own_file(self.directory, entry.filename)
        row = self._db.execute("SELECT value FROM Cache WHERE key = ?", (entry.key,)).fetchone()
        if row is None:
            msg = f"the entry {entry.key!r} was removed while being read"
            raise FolderError(msg)
        value = row[0]
        return value if isinstance(value, bytes) else str(value).encode()


def _timestamp(value: object) -> float | None:
    """Return ``value`` as a Unix time that can be printed, or None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < _LAST_TIME:
        return float(value)
    return None
