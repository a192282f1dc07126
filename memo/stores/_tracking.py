"""The listener that keeps ``RedisStore``'s near cache honest: Redis client-side caching.

Redis tracks keys per connection, and the store reads through a pool of
them. Default tracking would need every pooled connection to turn tracking
on, redirected to one listener, and to be re-set whenever the pool opens a
new one; a connection that missed it would read keys nobody tracks. So the
listener uses broadcasting mode instead, on a connection of its own:

    CLIENT TRACKING ON REDIRECT <its own id> BCAST PREFIX <the store's prefix>|
    SUBSCRIBE __redis__:invalidate

With ``BCAST`` the server reports every change of every key under the prefix,
whoever made it and whichever connection read it, so the pool is left as it
is. It costs a message for each write of the store's keys, which a cache
(read far more often than written) can afford. RESP2 with the listener
subscribed to ``__redis__:invalidate`` works with every redis-py and server
that has tracking (Redis 6+, Valkey), whatever protocol the pool speaks.

Tracking lives and dies with the listener's connection, so when that
connection ends (killed, timed out, the server restarted) invalidations may
have been missed: the cache drops everything (``NearCache.lost``) and the
listener connects again. A connection can also die without a word (a
network partition), so a quiet listener sends a ``PING`` every
``HEARTBEAT`` seconds, and the cache serves only while the listener heard
from the server within ``HEARTBEAT + socket_timeout`` seconds.

The listener reads only when its event loop runs it. A loop blocked (sync
work in a coroutine, a loop run now and then with ``run_until_complete``)
leaves the news that arrived meanwhile in the socket, so the cache asks the
connection (``unread``) before it serves a copy: the same check redis-py's
own client-side cache makes before each cached read.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from typing import TYPE_CHECKING, Any

from memo._report import logger

if TYPE_CHECKING:
    from collections.abc import Callable

    from memo.stores._near_cache import NearCache

__all__ = ["CLIENT_NAME", "HEARTBEAT", "Listener", "unread"]

CHANNEL = "__redis__:invalidate"
# The listener's name in CLIENT LIST, for the operator (and the tests) to find it.
CLIENT_NAME = "memo-near-cache"
# Seconds of silence after which the listener asks the server whether it is there.
HEARTBEAT = 1.0
# Seconds between attempts to connect again, doubling from the second failure on.
_RETRY_FIRST = 0.05
_RETRY_MAX = 5.0

_reported: set[type[BaseException]] = set()


def _report(where: str, exc: BaseException, *, refused: bool) -> None:
    # The first failure of a kind is a warning; repeats (a server down for
    # minutes, retried every few seconds) are debug lines. No lock: two
    # loops failing at once at worst both warn.
    first = type(exc) not in _reported
    _reported.add(type(exc))
    log = logger.warning if first else logger.debug
    if refused:
        # Not an outage that ends by itself: say what the server wants.
        log(
            "memo: Redis at %s refused the near cache's tracking connection (%s: %s), so the "
            "near cache serves nothing and every read goes to Redis; it needs Redis 6+ (or "
            "Valkey) and, with an ACL, a user allowed +client|id +client|tracking "
            "+client|setname +subscribe +ping and the channel &__redis__:invalidate",
            where,
            type(exc).__name__,
            exc,
        )
        return
    log(
        "memo: the near cache's invalidation connection to Redis at %s ended (%s: %s); "
        "the near cache was emptied and serves again once tracking is back",
        where,
        type(exc).__name__,
        exc,
    )


def unread(connection: Any) -> Callable[[], bool] | None:
    """Return a check whether bytes wait unread on ``connection``; None if it cannot tell.

    Bytes wait in the socket until the loop next polls it, then in the
    connection's ``asyncio.StreamReader`` until the listener parses them. Both
    are private to redis-py and asyncio (redis-py reads the reader's buffer
    itself), so a connection without them gets no check: copies are then
    served as before, while the listener is confirmed.
    """
    reader = getattr(connection, "_reader", None)
    writer = getattr(connection, "_writer", None)
    if not isinstance(getattr(reader, "_buffer", None), bytearray) or writer is None:
        return None
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    fd = sock.fileno()
    if hasattr(select, "poll"):  # not on Windows
        poller = select.poll()
        poller.register(fd, select.POLLIN)

        def ready() -> bool:
            return bool(poller.poll(0))

    else:

        def ready() -> bool:
            return bool(select.select([fd], [], [], 0)[0])

    def waiting() -> bool:
        if reader._buffer:  # type: ignore[union-attr]
            return True
        try:
            return ready()
        except (OSError, ValueError, RuntimeError):
            # A closed socket, or polled from two threads at once: say so, serve nothing.
            return True

    return waiting


class Listener:
    """Feeds a near cache the invalidations of the keys under a prefix, until stopped.

    Args:
        connect: makes a new, unconnected ``redis.asyncio`` connection.
        prefix: the prefix of every key whose copies ``near`` keeps.
        near: the near cache to confirm, invalidate and flush.
        timeout: seconds to wait for the answer to a ``PING``.
        where: the server, for log messages.
        refused: whether an error is the server refusing tracking for good
            (an ACL, no tracking), which the log explains rather than calls
            an outage.
        encoding: how the store's client encodes key names (redis-py's
            ``encoding``), to read the reported names back the same way.
    """

    def __init__(
        self,
        connect: Callable[[], Any],
        prefix: str,
        near: NearCache,
        *,
        timeout: float,
        where: str,
        refused: Callable[[BaseException], bool] = lambda exc: False,
        encoding: str = "utf-8",
    ) -> None:
        self._connect = connect
        self._prefix = prefix
        self._encoding = encoding
        self._skip = len(prefix.encode(encoding))
        self._near = near
        self._timeout = timeout
        self._where = where
        self._refused = refused
        self._stopped = False

    async def stop(self, task: asyncio.Task[None]) -> None:
        """End ``task``, the one running ``run``, and wait for it.

        redis-py sends commands under ``asyncio.wait_for``, which on Python
        3.10 and 3.11 swallows a cancellation that arrives as the send
        finishes: cancel again until it ends. ``run`` also checks a flag after
        every wait (at least every ``HEARTBEAT`` seconds), so it ends even
        when ``asyncio.run`` cancels it once on its way out.
        """
        self._stopped = True
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.05)

    async def run(self) -> None:
        """Listen, connecting again whenever the connection ends, until stopped."""
        failures = 0
        while not self._stopped:
            session = object()
            connection = None
            try:
                connection = self._connect()
                await self._subscribe(connection)
                self._near.confirm(session, unread(connection), asyncio.get_running_loop())
                failures = 0
                await self._receive(connection, session)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                _report(self._where, exc, refused=self._refused(exc))
            finally:
                self._near.lost(session)
                if connection is not None:
                    # A dead server has nothing left to close.
                    with contextlib.suppress(Exception):
                        await connection.disconnect()
            # At once after a connection that worked (killed, a restart), then slower.
            if failures > 1:
                await asyncio.sleep(min(_RETRY_FIRST * 2 ** (failures - 2), _RETRY_MAX))

    async def _subscribe(self, connection: Any) -> None:
        await connection.connect()
        await connection.send_command("CLIENT", "ID")
        own_id = await connection.read_response()
        await connection.send_command(
            "CLIENT", "TRACKING", "ON", "REDIRECT", own_id, "BCAST", "PREFIX", self._prefix
        )
        await connection.read_response()  # OK, or the server's refusal raised
        await connection.send_command("SUBSCRIBE", CHANNEL)
        reply = await connection.read_response()
        if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
            msg = f"SUBSCRIBE {CHANNEL} was answered with {reply!r}"
            raise ConnectionError(msg)

    async def _receive(self, connection: Any, session: object) -> None:
        near = self._near
        pinged = False
        while not self._stopped:
            # An explicit timeout makes redis-py return None instead of raising,
            # keeping what it had read of a message for the next read.
            message = await connection.read_response(
                timeout=self._timeout if pinged else HEARTBEAT, disconnect_on_error=False
            )
            if message is None:
                if pinged:
                    msg = f"Redis did not answer a PING within {self._timeout} s"
                    raise TimeoutError(msg)
                await connection.send_command("PING")
                pinged = True
                continue
            if message[0] == b"message":
                payload = message[2]
                if payload is None:  # FLUSHDB, FLUSHALL: every key changed
                    near.invalidate(None)
                else:
                    names = payload if isinstance(payload, list) else [payload]
                    skip, encoding = self._skip, self._encoding
                    near.invalidate(
                        [bytes(name)[skip:].decode(encoding, errors="replace") for name in names]
                    )
            elif message[0] == b"pong":
                pinged = False
            near.heard(session)
