"""What the command line looks at besides a cache folder: the entries of a Redis store.

``RedisView`` answers the questions the command line asks a ``Folder``
(``entries``, ``namespace``, ``matching``, ``read``) from a ``RedisStore``,
so that ``stats``, ``ls`` and ``show`` print a shared cache the way they
print a folder. Listing walks the keys with ``SCAN`` through
``RedisStore.entries``; nothing here writes.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any, TypeVar

from memo.stores._diskcache import MODE_RAW, Entry, FolderError
from memo.stores.base import namespace_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from types import TracebackType

    from memo.stores.redis import RedisStore

__all__ = ["Progress", "RedisView", "redis_store"]

T = TypeVar("T")

# The command line waits longer than a cache call would: a SCAN step or a
# batch of large values over a slow link is not an outage.
_SOCKET_TIMEOUT = 10.0


def redis_store(url: str, prefix: str | None) -> RedisStore:
    """Return the store the command line reads and writes a Redis cache through.

    Args:
        url: the server's URL.
        prefix: the store's prefix; None: ``RedisStore``'s default.
    """
    options: dict[str, Any] = {} if prefix is None else {"prefix": prefix}
    from memo.stores.redis import RedisStore  # noqa: PLC0415 - Redis only

    return RedisStore(url, socket_timeout=_SOCKET_TIMEOUT, cooldown=0, **options)


class Progress:
    r"""A count of entries on stderr, rewritten in place (``\r``), when stderr is a terminal.

    Args:
        what: what is counted ("listed", "exported", ...).
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self.shown = False
        self._enabled = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, count: int) -> None:
        """Show ``count``, at most ten times a second."""
        now = time.monotonic()
        if self._enabled and now - self._last >= 0.1:
            self._last = now
            self.shown = True
            print(f"\r{self.what} {count} entries", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        """Erase the count, so that what follows starts on a clean line."""
        if self.shown:
            print("\r\x1b[K", end="", file=sys.stderr, flush=True)
            self.shown = False


class RedisView:
    """The entries under one prefix of a Redis server; a context manager, like ``Folder``.

    Args:
        url: the server's URL.
        prefix: the ``RedisStore`` prefix the entries were written with (None: its default).
    """

    def __init__(self, url: str, prefix: str | None) -> None:
        self.store = redis_store(url, prefix)
        from memo.stores.redis import _masked  # noqa: PLC0415 - Redis only

        self.url = _masked(url)
        self.prefix = self.store.prefix
        self.other = 0  # Redis holds nothing under the prefix that memo cannot list

    def _run(self, work: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            try:
                return await work()
            finally:
                await self.store.close()

        import asyncio  # noqa: PLC0415 - the disk commands never need it

        return asyncio.run(run())

    def _list(self, namespaces: Iterable[str] = ()) -> list[Entry]:
        progress = Progress("listed")

        async def collect() -> list[Entry]:
            found = []
            async for entry in self.store.entries(tuple(namespaces), values=False):
                found.append(
                    Entry(
                        entry.key, entry.namespace, None, entry.expires, entry.size, MODE_RAW, None
                    )
                )
                progress(len(found))
            return found

        try:
            return self._run(collect)
        finally:
            progress.done()

    def entries(self) -> list[Entry]:
        """Return every entry under the prefix, in key order."""
        return self._list()

    def namespace(self, namespace: str) -> list[Entry]:
        """Return the entries of ``namespace``, in key order."""
        return self._list([namespace])

    def matching(self, key: str) -> list[Entry]:
        """Return the entry whose key is ``key``, else every entry whose key starts with it."""
        # A key's namespace ends at its first ':': given one, only it is listed.
        entries = self._list([namespace_of(key)] if ":" in key else [])
        exact = [entry for entry in entries if entry.key == key]
        return exact or [entry for entry in entries if entry.key.startswith(key)]

    def read(self, entry: Entry) -> bytes:
        """Return the stored bytes of ``entry``.

        Raises:
            FolderError: the entry was dropped (or expired) since it was listed.
        """
        value = self._run(lambda: self.store.get(entry.key))
        if value is None:
            msg = f"the entry {entry.key!r} was removed while being read"
            raise FolderError(msg)
        return value

    def close(self) -> None:
        """Nothing to close: every command closes its connections as it ends."""

    def __enter__(self) -> RedisView:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisView({self.url!r}, prefix={self.prefix!r})"


def describe(view: Any) -> str:
    """Name where a view's entries live, for messages."""
    if isinstance(view, RedisView):
        return f"{view.url} (prefix {view.prefix!r})"
    return str(view.directory)
