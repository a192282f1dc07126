"""diskcache's schema, as memo relies on it: the only module that knows it.

``DiskStore`` writes and reads through diskcache with ``SafeDisk``; the
command line looks inside a folder through ``Folder``, read-only SQL on
``cache.db`` that never changes a cache, not even its access times. Both
depend on the same facts about diskcache's ``Cache`` table: its columns,
what each storage mode means, and how diskcache names its value files.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import diskcache
from diskcache.core import MODE_BINARY, MODE_PICKLE, MODE_RAW, MODE_TEXT

from memo.stores.base import namespace_of, namespace_prefix

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path
    from types import TracebackType

__all__ = [
    "MODE_BINARY",
    "MODE_PICKLE",
    "MODE_RAW",
    "MODE_TEXT",
    "SELECT_VALUE",
    "Entry",
    "Folder",
    "FolderError",
    "RefusedEntryError",
    "SafeDisk",
    "own_file",
    "refused_mode",
]

# diskcache's own lookup (Cache.get), minus the columns memo never needs.
SELECT_VALUE = (
    "SELECT mode, value FROM Cache"
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


class RefusedEntryError(ValueError):
    """An entry diskcache would have to unpickle (or decode as text) to read."""


def refused_mode(mode: object) -> RefusedEntryError:
    """Return the error for an entry stored in ``mode``, which memo never decodes."""
    return RefusedEntryError(
        f"refusing to read a diskcache entry stored in mode {mode} (not raw bytes)"
    )


class SafeDisk(diskcache.Disk):  # type: ignore[misc]
    """A diskcache ``Disk`` whose read path only ever returns bytes.

    diskcache unpickles entries stored in its pickle mode when they are read
    (CVE-2025-69872), so anyone who can write the folder could run code in
    every process that reads it. memo only ever stores bytes, so any other
    mode is refused before it is decoded.
    """

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        """Return the stored bytes; refuse any entry that is not raw bytes or its own file."""
        if mode not in (MODE_RAW, MODE_BINARY) or (mode == MODE_RAW and type(value) is not bytes):
            raise refused_mode(mode)
        if mode == MODE_BINARY and not own_file(filename):
            msg = f"refusing to read a diskcache entry whose file {filename!r} is not its own"
            raise RefusedEntryError(msg)
        return super().fetch(mode, filename, value, read)

    def remove(self, file_path: str) -> None:
        """Delete a value file, but only one diskcache named itself."""
        # diskcache deletes the file a row names when the row is replaced or
        # dropped: never follow a crafted row out of the folder.
        if own_file(file_path):
            super().remove(file_path)


# -- the read-only view of a folder --------------------------------------------

_COLUMNS = "key, raw, store_time, expire_time, size, mode, filename"
_SIZE = "CASE WHEN filename IS NULL THEN length(value) ELSE size END"  # bytes of the value
_LAST_TIME = 253402300800  # 10000-01-01: later times cannot be printed as dates


class FolderError(ValueError):
    """A folder is not a memo cache, or an entry could not be read from it."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One row of a cache folder that memo could have written."""

    key: str
    namespace: str
    stored: float
    expires: float | None
    size: int
    mode: int
    filename: str | None

    def expired(self, now: float) -> bool:
        """Return whether the entry's time to live had passed at ``now``."""
        return self.expires is not None and self.expires <= now


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
        sql = f"SELECT {_COLUMNS}, {_SIZE} FROM Cache {where} ORDER BY store_time"  # noqa: S608
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
            return (self.directory / entry.filename).read_bytes()
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
