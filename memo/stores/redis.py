"""``RedisStore``: entries in Redis (or Valkey), shared by every machine that reaches it.

redis.asyncio connections belong to the event loop that opened them, while a
store object often outlives loops (``asyncio.run`` twice, a test suite, loops
in worker threads). So a store built from a URL keeps one client per running
loop, opened lazily, and closes it when that loop shuts down: a small idle
task per loop waits to be cancelled, which ``asyncio.run`` (and
``asyncio.Runner``) does to every task it leaves behind, and closes the
client in its ``finally``. A client passed in by the user is used as it is.

A cache must cost bounded time when Redis is down or hung, because memo then
runs the function anyway: short socket timeouts, at most ``retries`` retries
without back-off, and after a connection failure a ``cooldown`` during which
the store fails at once instead of waiting on the same dead server again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import secrets
import threading
import time
import warnings
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from memo._report import MemoWarning
from memo.stores.base import namespace_prefix

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from redis.asyncio import Redis

__all__ = ["RedisStore", "RedisUnavailableError"]

T = TypeVar("T")

INSTALL = "pip install 'memo[redis]'"
_SCHEMES = ("redis", "rediss", "unix")
# Characters that Redis glob patterns (SCAN MATCH) treat specially.
_GLOB = re.compile(r"([\\*?\[\]])")
# Take the lock if it is free or already ours; release it only if it is ours.
_ACQUIRE = """
local holder = redis.call("GET", KEYS[1])
if holder == false or holder == ARGV[1] then
    redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
    return 1
end
return 0
"""
_RELEASE = """
if redis.call("GET", KEYS[1]) == ARGV[1] then
    return redis.call("DEL", KEYS[1])
end
return 0
"""


class RedisUnavailableError(ConnectionError):
    """Redis failed to answer a moment ago; the store is not trying it again yet."""


def _glob_escape(text: str) -> str:
    return _GLOB.sub(r"\\\1", text)


def _masked(url: str) -> str:
    """Return ``url`` without its password, for messages and ``repr``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _client_settings(client: object) -> dict[str, Any]:
    """Return the connection settings of a ``redis.asyncio.Redis`` (empty if unknown)."""
    pool = getattr(client, "connection_pool", None)
    settings = getattr(pool, "connection_kwargs", None)
    return settings if isinstance(settings, dict) else {}


def _import_redis() -> Any:
    try:
        # Imported here, not at the top: memo works without the redis extra.
        import redis.asyncio  # noqa: PLC0415
    except ImportError as exc:
        msg = f"RedisStore needs the 'redis' package: install it with `{INSTALL}`"
        raise ImportError(msg) from exc
    return redis


class _LoopClient:
    """The client of one event loop, and the task that closes it with the loop."""

    __slots__ = ("client", "keeper")

    def __init__(self, client: Redis, keeper: asyncio.Task[None]) -> None:
        self.client = client
        self.keeper = keeper


class RedisStore:
    """Entries in Redis, for a cache shared by many processes and machines.

    Values are stored as plain Redis strings under ``prefix + "|" + key``; ``ttl``
    becomes the server's own expiry (``SET ... PX``). ``clear(namespace)``
    walks the namespace's keys with ``SCAN MATCH`` and drops them with
    ``UNLINK`` in batches, so it never blocks the server the way ``KEYS``
    would. Valkey and other servers that speak the Redis protocol work too.

    A store made from a URL opens one client per running event loop and
    closes it when that loop ends, so one store can serve successive
    ``asyncio.run`` calls and loops in several threads. A store given a
    ``client`` uses that client as it is: like every ``redis.asyncio``
    client it must only be used from the event loop it first ran on, and
    closing it is left to its owner.

    When Redis is down or hung, an operation fails within about
    ``(1 + retries) * (socket_connect_timeout + socket_timeout)`` seconds,
    then the store fails at once (``RedisUnavailableError``) for
    ``cooldown`` seconds before it tries the server again. The decorator
    logs and counts these failures and returns the function's result, so a
    Redis outage costs time, never results.

    Args:
        url: a ``redis://``, ``rediss://`` (TLS) or ``unix://`` URL, such as
            ``"redis://cache.internal:6379/0"``. Query options in the URL
            (``?socket_timeout=5``) win over the arguments below.
        client: a ``redis.asyncio.Redis`` to use instead of a URL; it must
            not decode responses. Its own timeouts and retries apply, so give
            it a ``socket_timeout`` (memo warns when it has none).
        prefix: prepended to every key, so that several applications (or
            several caches of one application) can share a Redis database.
            It may not contain ``|``, the separator between prefix and key,
            so even nested prefixes (``"memo:"`` beside ``"memo:staging:"``)
            never reach each other's keys.
        socket_timeout: seconds to wait for an answer (default 1).
        socket_connect_timeout: seconds to wait for a connection (default 1).
        retries: how many times a command that failed on the connection is
            retried at once, on a fresh connection (default 1: enough to
            recover transparently from a Redis restart).
        cooldown: seconds during which the store fails at once after a
            connection failure or timeout; 0 tries the server every time.
        scan_count: keys asked for per ``SCAN`` step, and dropped per
            ``UNLINK``, by ``clear``.
        max_connections: connections per event loop; further concurrent
            operations wait for a free one (at most ``socket_connect_timeout
            + socket_timeout`` seconds).
        lock_timeout: turns on single flight across processes (off by
            default). A ``get`` that misses takes a lock in Redis for this
            many seconds, and the ``set`` of the result releases it; other
            processes that miss the same key meanwhile wait for that result
            instead of computing it too. If the run fails (or its result is
            not stored), they wait until the lock expires, then compute it
            themselves: choose a little more than the function's usual time.
        **options: passed on to the connection pool's ``from_url``
            (``password``, ``ssl_ca_certs``, ``health_check_interval``, ...).

    Raises:
        ImportError: the ``redis`` package is missing (``pip install 'memo[redis]'``).
        TypeError: neither or both of ``url`` and ``client`` were given.
        ValueError: the URL's scheme is not one Redis understands, or a
            number is out of range.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        prefix: str = "memo:",
        socket_timeout: float = 1.0,
        socket_connect_timeout: float = 1.0,
        retries: int = 1,
        cooldown: float = 1.0,
        scan_count: int = 1000,
        max_connections: int = 50,
        lock_timeout: float | None = None,
        **options: Any,
    ) -> None:
        if (url is None) == (client is None):
            msg = (
                "RedisStore needs a URL or a client, not both: RedisStore('redis://host:6379/0') "
                "or RedisStore(client=redis.asyncio.Redis(...))"
            )
            raise TypeError(msg)
        if url is not None:
            if not isinstance(url, str) or urlsplit(url).scheme not in _SCHEMES:
                msg = f"RedisStore needs a redis://, rediss:// or unix:// URL, got {url!r}"
                raise ValueError(msg)
        elif options:
            msg = f"options {sorted(options)} only apply to a URL; configure your client instead"
            raise TypeError(msg)
        elif _client_settings(client).get("socket_timeout", 0) is None:
            # redis-py before 6 waits without limit by default: a frozen server
            # would then hang every cached call, where memo promises bounded time.
            warnings.warn(
                "memo: this Redis client has no socket_timeout, so a hung Redis server "
                "would hang every cached call; create it with socket_timeout=1 and "
                "socket_connect_timeout=1 (or pass RedisStore a URL)",
                MemoWarning,
                stacklevel=2,
            )
        for name, number in (
            ("socket_timeout", socket_timeout),
            ("socket_connect_timeout", socket_connect_timeout),
        ):
            if not number > 0:
                msg = f"{name} must be a positive number of seconds, got {number!r}"
                raise ValueError(msg)
        if lock_timeout is not None and not lock_timeout > 0:
            msg = f"lock_timeout must be a positive number of seconds or None, got {lock_timeout!r}"
            raise ValueError(msg)
        if retries < 0 or cooldown < 0 or scan_count < 1 or max_connections < 1:
            msg = (
                f"retries and cooldown must be >= 0, scan_count and max_connections >= 1; "
                f"got {retries!r}, {cooldown!r}, {scan_count!r}, {max_connections!r}"
            )
            raise ValueError(msg)
        redis = _import_redis()
        self._redis = redis
        self._outages: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )
        self._pool_full: type[BaseException] = redis.exceptions.MaxConnectionsError
        if not isinstance(prefix, str) or "|" in prefix:
            msg = f"prefix must be a str without '|' (memo's separator), got {prefix!r}"
            raise ValueError(msg)
        self.url = url
        self.prefix = prefix
        # The separator no prefix contains: "a" and "a:b" never share keys.
        self._base = prefix + "|"
        self.socket_timeout = socket_timeout
        self.socket_connect_timeout = socket_connect_timeout
        self.retries = retries
        self.cooldown = cooldown
        self.scan_count = scan_count
        self.max_connections = max_connections
        self.lock_timeout = lock_timeout
        # key -> token of the single-flight locks this store object holds.
        self._held: dict[str, str] = {}
        self._options = options
        self._user_client = client
        self._clients: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._lock = threading.Lock()
        self._down_until = 0.0

    # -- clients --------------------------------------------------------------

    def _new_client(self) -> Redis:
        from redis.asyncio.retry import Retry  # noqa: PLC0415 - optional extra
        from redis.backoff import NoBackoff  # noqa: PLC0415 - optional extra

        options: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "retry": Retry(NoBackoff(), self.retries),
            **self._options,
            # Values are bytes; decoding them would corrupt every entry.
            "decode_responses": False,
        }
        # A blocking pool queues callers when every connection is busy instead
        # of failing them, so a burst of concurrent calls is not an outage.
        pool = self._redis.asyncio.BlockingConnectionPool.from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=self.socket_connect_timeout + self.socket_timeout,
            **options,
        )
        client: Redis = self._redis.asyncio.Redis.from_pool(pool)
        return client

    async def _client(self) -> Redis:
        if self._user_client is not None:
            return self._user_client
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.get(loop)
            if entry is not None:
                return entry.client
            # Loops closed without cancelling their tasks never ran our keeper.
            for dead in [other for other in self._clients if other.is_closed()]:
                del self._clients[dead]
            client = self._new_client()
            keeper = loop.create_task(self._keep(loop, client), name="memo-redis-close")
            self._clients[loop] = _LoopClient(client, keeper)
            return client

    async def _keep(self, loop: asyncio.AbstractEventLoop, client: Redis) -> None:
        try:
            await loop.create_future()  # until cancelled: by close() or by the loop's end
        finally:
            with self._lock:
                entry = self._clients.get(loop)
                if entry is not None and entry.client is client:
                    del self._clients[loop]
            # A dead server has nothing left to close.
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _call(self, operation: Callable[[Redis], Awaitable[T]]) -> T:
        if self._down_until and time.monotonic() < self._down_until:
            msg = (
                f"Redis at {self._where()} failed less than {self.cooldown} s ago; "
                f"memo tries it again after the cooldown"
            )
            raise RedisUnavailableError(msg)
        client = await self._client()
        try:
            result = await operation(client)
        except self._outages as exc:
            # A full pool is load, not an outage.
            if self.cooldown and not isinstance(exc, self._pool_full):
                self._down_until = time.monotonic() + self.cooldown
            raise
        self._down_until = 0.0
        return result

    def _where(self) -> str:
        if self.url is not None:
            return _masked(self.url)
        # The client's repr runs to a screen of pool internals: name the server.
        settings = _client_settings(self._user_client)
        if "path" in settings:
            return f"unix://{settings['path']}"
        return f"{settings.get('host', '?')}:{settings.get('port', '?')}/{settings.get('db', 0)}"

    # -- the Store protocol ---------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key``, or None.

        Raises:
            redis.exceptions.RedisError: Redis failed or did not answer in time.
            RedisUnavailableError: Redis failed within the last ``cooldown`` seconds.
            TypeError: the client decodes responses (``decode_responses=True``).
        """
        value = await self._read(key)
        if value is None and self.lock_timeout is not None:
            value = await self._lead_or_wait(key, self.lock_timeout)
        return value

    async def _read(self, key: str) -> bytes | None:
        value = await self._call(lambda client: client.get(self._base + key))
        if value is None or type(value) is bytes:
            return value
        msg = (
            f"Redis returned {type(value).__name__}, not bytes: "
            f"create the client with decode_responses=False"
        )
        raise TypeError(msg)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``; Redis itself drops it after ``ttl`` seconds."""
        name = self._base + key
        if ttl is None:
            await self._call(lambda client: client.set(name, value))
        elif ttl <= 0:
            # Already expired: what a store must not return.
            await self._call(lambda client: client.unlink(name))
        else:
            milliseconds = max(1, math.ceil(ttl * 1000))
            await self._call(lambda client: client.set(name, value, px=milliseconds))
        await self.release(key)

    async def release(self, key: str) -> None:
        """Give up this store's single-flight lock on ``key``: no value is coming.

        memo calls it when the run after a miss stored nothing (the function
        raised or was cancelled, ``cache_if`` said no, the write failed), so
        other processes compute the value themselves instead of waiting for the
        lock to expire. Without ``lock_timeout`` it does nothing.
        """
        token = self._held.pop(key, None)
        if token is not None:
            await self._call(lambda client: client.eval(_RELEASE, 1, self._lock_name(key), token))

    # -- single flight across processes ---------------------------------------

    def _lock_name(self, key: str) -> str:
        # Store keys begin with an escaped namespace, which never starts with
        # "!", so no clear() pattern matches a lock.
        return f"{self.prefix}!lock:{key}"

    async def _lead_or_wait(self, key: str, timeout: float) -> bytes | None:
        """Take the key's lock and return None (compute it), or wait for the holder's value."""
        name = self._lock_name(key)
        milliseconds = max(1, math.ceil(timeout * 1000))
        # A lock still held from an earlier run that stored nothing is taken again.
        token = self._held.get(key) or secrets.token_hex(16)
        deadline = time.monotonic() + timeout
        poll = 0.005
        while True:
            taken = await self._call(
                lambda client: client.eval(_ACQUIRE, 1, name, token, milliseconds)
            )
            if taken:
                self._held[key] = token
                return None
            if time.monotonic() >= deadline:
                return None  # the holder is stuck: compute rather than wait longer
            await asyncio.sleep(poll)
            poll = min(poll * 2, 0.1)
            value = await self._read(key)
            if value is not None:
                return value

    async def delete(self, key: str) -> bool:
        """Drop ``key``; return whether it existed."""
        return bool(await self._call(lambda client: client.unlink(self._base + key)))

    async def clear(self, namespace: str) -> int:
        """Drop every entry of ``namespace`` (``SCAN`` + ``UNLINK``); return how many."""
        pattern = _glob_escape(self._base + namespace_prefix(namespace)) + "*"

        async def drop(client: Redis) -> int:
            dropped = 0
            batch: list[bytes] = []
            async for name in client.scan_iter(match=pattern, count=self.scan_count):
                batch.append(name)
                if len(batch) >= self.scan_count:
                    dropped += await client.unlink(*batch)
                    batch.clear()
            if batch:
                dropped += await client.unlink(*batch)
            return dropped

        return await self._call(drop)

    async def close(self) -> None:
        """Close this event loop's connections; later use opens new ones.

        Connections opened by other event loops close when their loop ends.
        A client passed as ``client=`` is left open: it belongs to its owner.
        """
        if self._user_client is not None:
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._clients.pop(loop, None)
        if entry is not None:
            entry.keeper.cancel()
            # wait() rather than await: the keeper's cancellation is not ours.
            await asyncio.wait([entry.keeper])

    def __repr__(self) -> str:
        return f"RedisStore({self._where()!r}, prefix={self.prefix!r})"
