"""``MemoryStore``: entries in a dict of this process."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from memo._fork import renew_lock_after_fork
from memo.stores.base import StoredEntry, namespace_prefix

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

__all__ = ["MemoryStore"]


class MemoryStore:
    """An in-process store, for tests and hot data.

    Entries live as long as the store object and are lost with the process.

    Args:
        max_entries: when set, storing a new entry beyond this many drops the
            least recently used one.
    """

    def __init__(self, max_entries: int | None = None) -> None:
        if max_entries is not None and max_entries < 1:
            msg = f"max_entries must be a positive int or None, got {max_entries!r}"
            raise ValueError(msg)
        self.max_entries = max_entries
        # key -> (value, monotonic expiry or None); ordered by last use.
        self._data: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        # Event loops in several threads may share one store.
        self._lock = threading.Lock()
        renew_lock_after_fork(self)

    async def get(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key``, or None."""
        return self.get_nowait(key)

    def get_nowait(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key``, or None, without awaiting."""
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return None
            value, expires = entry
            if expires is not None and expires <= time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (None: no expiry)."""
        expires = None if ttl is None else time.monotonic() + ttl
        with self._lock:
            self._data[key] = (bytes(value), expires)
            self._data.move_to_end(key)
            if self.max_entries is not None:
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)

    async def delete(self, key: str) -> bool:
        """Drop ``key``; return whether it was there (and not expired)."""
        with self._lock:
            entry = self._data.pop(key, None)
        return entry is not None and (entry[1] is None or entry[1] > time.monotonic())

    async def clear(self, namespace: str) -> int:
        """Drop every entry of ``namespace``; return how many were live."""
        prefix = namespace_prefix(namespace)
        now = time.monotonic()
        with self._lock:
            doomed = [key for key in self._data if key.startswith(prefix)]
            entries = [self._data.pop(key) for key in doomed]
        return sum(1 for _, expires in entries if expires is None or expires > now)

    async def entries(
        self, namespaces: Iterable[str] = (), *, values: bool = True
    ) -> AsyncIterator[StoredEntry]:
        """Yield every live entry (of ``namespaces`` when given), in the order of their keys.

        Expiries are given as Unix times, converted from the store's clock
        when the listing starts.

        Args:
            namespaces: the namespaces to list; empty: all of them.
            values: False to leave ``value`` out (None) and give only its size.
        """
        prefixes = tuple(namespace_prefix(namespace) for namespace in namespaces)
        now, wall = time.monotonic(), time.time()
        with self._lock:
            items = [
                (key, value, expires)
                for key, (value, expires) in self._data.items()
                if (expires is None or expires > now) and (not prefixes or key.startswith(prefixes))
            ]
        for key, value, expires in sorted(items, key=lambda item: item[0]):
            at = None if expires is None else wall + (expires - now)
            yield StoredEntry(key, value if values else None, len(value), at)

    async def close(self) -> None:
        """Nothing to release: entries stay until the store is dropped."""

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"MemoryStore(entries={len(self._data)})"
