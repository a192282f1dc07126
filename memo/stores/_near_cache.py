"""The near cache: copies of a remote store's hot entries in this process's memory.

A copy is only as good as the news of its changes, so the cache serves
nothing unless a listener that receives every invalidation is confirmed: it
told the cache it is subscribed (``confirm``), and it heard from the server
within the last ``grace`` seconds (``heard``). Whenever a listener that was
confirmed ends, for whatever reason, every copy goes (``lost``): an
invalidation it might have missed can never leave a stale copy behind.

A read that fills the cache races with the invalidations of its key: the
server may change the key after answering the read but before the copy is
kept. So a fill takes a ``ticket`` before it sends its read, and the copy is
kept only if no invalidation of that key, and no flush, came since. The
count of invalidations is kept only for keys with a fill in flight, so the
bookkeeping stays as small as the cache.

A listener runs only when its event loop does: news that reached its socket
while the loop was blocked waits there, unread. So each listener also gives
a check of its connection (``confirm(session, waiting, loop)``), and a read
in that loop is served no copy while it says that news waits. Every listener
hears every change, so a loop's own check is enough: a loop stopped for good
elsewhere does not stop the hits of the others. A read in a loop without a
listener of its own asks every check.

Entries are bounded by count and by the bytes of their values, least
recently used first out; an entry with an expiry is dropped at it, whether
or not the server's own expiry has been heard of yet.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from memo._fork import reset_after_fork

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["NearCache", "Ticket"]


class Ticket:
    """A fill's claim to keep its key's copy, valid while nothing invalidated it."""

    __slots__ = ("epoch", "key", "version")

    def __init__(self, key: str, epoch: int, version: int) -> None:
        self.key = key
        self.epoch = epoch
        self.version = version


class NearCache:
    """Bounded copies of remote entries, served only while invalidations are confirmed to flow.

    Args:
        max_entries: entries kept at most; the least recently used go first.
        max_bytes: bytes of values kept at most; a larger value is not kept.
        grace: seconds after the listener last heard from the server during
            which copies are served; past it the cache answers nothing
            until the listener hears again.
    """

    def __init__(self, max_entries: int, max_bytes: int, grace: float) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.grace = grace
        # key -> (value, monotonic expiry or None); ordered by last use.
        self._entries: OrderedDict[str, tuple[bytes, float | None]] = OrderedDict()
        self._bytes = 0
        # Bumped by every flush: a ticket from an older epoch keeps nothing.
        self._epoch = 0
        # key -> [fills in flight, invalidations of the key since the first began].
        self._fills: dict[str, list[int]] = {}
        # Listeners confirmed now (several event loops may each run one).
        self._sessions: set[object] = set()
        # Session -> (its event loop, whether news waits unread on its connection);
        # _checks, by loop, is replaced whole, to read without the lock.
        self._unread: dict[object, tuple[object, Callable[[], bool]]] = {}
        self._checks: dict[object, Callable[[], bool]] = {}
        self._confirmed_until = 0.0
        # Event loops in several threads may share one store.
        self._lock = threading.Lock()
        reset_after_fork(self)

    def __len__(self) -> int:
        return len(self._entries)

    def serving(self) -> bool:
        """Whether a listener is confirmed now, so that copies may be served."""
        return time.monotonic() < self._confirmed_until

    def get(self, key: str) -> bytes | None:
        """Return the copy of ``key``, or None: none kept, expired, or not serving now."""
        now = time.monotonic()
        if now >= self._confirmed_until:
            return None
        checks = self._checks
        if checks and self._unread_news(checks):
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            value, expires = entry
            if expires is not None and expires <= now:
                self._pop(key)
                return None
            self._entries.move_to_end(key)
            return value

    # -- fills ------------------------------------------------------------------

    def ticket(self, key: str) -> Ticket | None:
        """Claim a fill of ``key``, before its read is sent; None when not serving now.

        Every ticket must be given back, by ``fill`` or ``cancel``.
        """
        with self._lock:
            # Under the lock: a listener lost meanwhile has bumped the epoch already.
            if time.monotonic() >= self._confirmed_until:
                return None
            slot = self._fills.get(key)
            if slot is None:
                slot = self._fills[key] = [0, 0]
            slot[0] += 1
            return Ticket(key, self._epoch, slot[1])

    def fill(self, ticket: Ticket, value: bytes | None, expires: float | None) -> None:
        """Keep ``value`` as the copy of the ticket's key, unless invalidated since the ticket.

        ``expires`` is the monotonic time when the server drops the entry, or
        None if it never does; a None ``value`` keeps nothing.
        """
        key = ticket.key
        with self._lock:
            slot = self._fills.get(key)
            if slot is None:  # the fork reset forgot it: stale by definition
                return
            slot[0] -= 1
            if slot[0] == 0:
                del self._fills[key]
            if value is None or slot[1] != ticket.version or ticket.epoch != self._epoch:
                return
            if len(value) > self.max_bytes:
                return
            if expires is not None and expires <= time.monotonic():
                return
            self._pop(key)
            self._entries[key] = (value, expires)
            self._bytes += len(value)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, (dropped, _) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)

    def cancel(self, ticket: Ticket) -> None:
        """Give the ticket back without keeping anything (the read failed)."""
        self.fill(ticket, None, None)

    # -- invalidation -------------------------------------------------------------

    def invalidate(self, keys: list[str] | None) -> None:
        """Drop the copies of ``keys`` (None: of every key), and spoil their fills in flight."""
        with self._lock:
            if keys is None:
                self._flush()
                return
            for key in keys:
                self._pop(key)
                slot = self._fills.get(key)
                if slot is not None:
                    slot[1] += 1

    def flush(self) -> None:
        """Drop every copy, and spoil every fill in flight."""
        with self._lock:
            self._flush()

    def confirm(
        self,
        session: object,
        waiting: Callable[[], bool] | None = None,
        loop: object = None,
    ) -> None:
        """A listener is subscribed, its tracking on: copies may be kept and served.

        Copies kept before it are dropped, since nothing vouches for them.
        ``waiting`` tells, from any thread, whether news waits unread on the
        listener's connection, which ``loop`` reads; no copy is served in that
        loop (or in one without a listener) while it does.
        """
        with self._lock:
            self._flush()
            self._sessions.add(session)
            if waiting is not None:
                self._unread[session] = (loop, waiting)
                self._checks = dict(self._unread.values())
            self._confirmed_until = time.monotonic() + self.grace

    def heard(self, session: object) -> None:
        """A confirmed listener heard from the server: serve for another ``grace`` seconds."""
        if session in self._sessions:
            self._confirmed_until = time.monotonic() + self.grace

    def lost(self, session: object) -> None:
        """A listener ended: if it was confirmed, drop everything and stop serving.

        Another listener still running (in another event loop) confirms again
        when it next hears from the server.
        """
        with self._lock:
            if session not in self._sessions:
                return
            self._sessions.discard(session)
            if self._unread.pop(session, None) is not None:
                self._checks = dict(self._unread.values())
            self._confirmed_until = 0.0
            self._flush()

    # -- internals --------------------------------------------------------------

    @staticmethod
    def _unread_news(checks: dict[object, Callable[[], bool]]) -> bool:
        """Whether news waits that the listener of this read's loop has not read yet."""
        try:
            loop: object = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        own = checks.get(loop)
        if own is not None:
            return own()
        return any(waiting() for waiting in checks.values())

    def _pop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[0])

    def _flush(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._epoch += 1

    def _reset_after_fork(self) -> None:
        # The child has none of the parent's listeners: nothing vouches for the
        # copies, and a listener task copied with a running loop must not
        # confirm through the parent's connection.
        self._lock = threading.Lock()
        self._entries.clear()
        self._bytes = 0
        self._epoch += 1
        self._fills.clear()
        self._sessions.clear()
        self._unread.clear()
        self._checks = {}
        self._confirmed_until = 0.0
