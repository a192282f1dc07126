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

Load is not an outage. Operations beyond ``max_connections`` queue in a
blocking pool; redis-py fails a caller that waited the pool's timeout with a
plain ``ConnectionError("No connection available.")`` raised from the wait's
``asyncio.TimeoutError``, which a store that took every ``ConnectionError``
for a dead server turned into a cooldown, failing the rest of the burst.
Here a queued caller keeps waiting while Redis answers the commands ahead of
it (the server is busy, not down), fails alone (``RedisBusyError``) when
nothing was answered for the pool's timeout, and never starts a cooldown for
that: only a failure of the server itself does.

Every command runs in a task of its own, which the caller awaits through
``asyncio.shield``, for two reasons. On Python 3.10 and 3.11 redis-py sends
each command under ``asyncio.wait_for``, which swallows a cancellation that
arrives while the send finishes (fixed in 3.12): a cancelled run went on to
call its function after its last caller had left. Cancelling the caller's
side of a shield always raises ``CancelledError`` there, whatever the command
task does. And writes (``set``, ``release``) are not cancelled with their
caller: a finished result is stored even when every caller has left, and a
write that ``asyncio.run`` cancels on its way out is sent again before the
loop's connections are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import re
import secrets
import threading
import time
import warnings
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from memo._fork import renew_lock_after_fork
from memo._report import MemoWarning
from memo.stores._near_cache import NearCache
from memo.stores._tracking import CLIENT_NAME, HEARTBEAT, Listener
from memo.stores.base import StoredEntry, WouldBlock, namespace_of, namespace_prefix

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

    from redis.asyncio import Redis

__all__ = ["RedisBusyError", "RedisStore", "RedisUnavailableError"]

T = TypeVar("T")

INSTALL = "pip install 'memo-cache[redis]'"
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


class RedisBusyError(ConnectionError):
    """No connection of the store's pool came free in time: load, not an outage.

    Only the operation that waited fails; the store does not cool down, and
    the next operation waits for a connection afresh. Raise
    ``max_connections`` if it happens under your usual load.
    """


def _waited_for_pool(exc: BaseException, redis: Any) -> bool:
    """Whether ``exc`` says the pool had no free connection, rather than that Redis failed.

    redis-py's ``BlockingConnectionPool`` (5.0.1 to 8.x at least) raises a plain
    ``ConnectionError("No connection available.")`` *from* the
    ``asyncio.TimeoutError`` of its wait; no failure of the server itself is a
    ``ConnectionError`` caused by a timeout (a connect or read timeout is a
    redis ``TimeoutError``). Its non-blocking pool raises ``MaxConnectionsError``,
    or, in older releases (5.0.1 included), a plain ``ConnectionError("Too many
    connections")``.
    """
    if not isinstance(exc, redis.exceptions.ConnectionError):
        return False
    if isinstance(exc, redis.exceptions.MaxConnectionsError):
        return True
    if isinstance(exc.__cause__, asyncio.TimeoutError):
        return True
    # redis-py 5's non-blocking pool: neither a class nor a cause to go by.
    return bool(exc.args == ("Too many connections",))


@functools.cache
def _retries_pipelines(redis: Any) -> bool:
    """Whether redis-py retries a pipeline whose connection broke (5.0.8 and later)."""
    try:
        version = tuple(int(part) for part in redis.__version__.split(".")[:3])
    except ValueError:  # a development build: assume a recent one
        return True
    return version >= (5, 0, 8)


def _bytes(value: object) -> bytes | None:
    if value is None or type(value) is bytes:
        return value
    msg = (
        f"Redis returned {type(value).__name__}, not bytes: "
        f"create the client with decode_responses=False"
    )
    raise TypeError(msg)


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A command task whose caller left: mark its outcome seen, as the caller would have.
    if not task.cancelled():
        task.exception()


# The pool whose get_connection the current task is in, on redis-py 5.0.1 (see below).
_locked_in: ContextVar[object] = ContextVar("memo_redis_locked_in", default=None)


@functools.cache
def _patient_pool(redis: Any) -> Any:
    """Return the class of a ``BlockingConnectionPool`` whose callers wait while Redis answers.

    redis-py's pool fails a caller once it waited ``timeout`` seconds in all,
    however busy the server merely is: behind a long queue on a healthy server
    that is an outage in appearance only. Here a caller that waited
    ``timeout`` seconds waits again if the store got an answer from Redis
    meanwhile and is not cooling down. If Redis is down or hung, the commands
    holding the connections time out and start the cooldown, and a caller
    that gets a connection then fails at once instead of connecting: waiting
    stays bounded.
    """
    connection_error = redis.exceptions.ConnectionError
    # redis-py 5.0.1 checks (and may open) a connection while holding the pool's
    # condition, and gives it back through release(), which takes the condition
    # again: a connect that fails, or that the pool's timeout interrupts, then
    # deadlocks the pool for good (redis/redis-py#3056, fixed in 5.0.2).
    checks_under_lock = not hasattr(redis.asyncio.ConnectionPool, "get_available_connection")

    class PatientPool(redis.asyncio.BlockingConnectionPool):  # type: ignore[misc]
        """A blocking pool whose callers wait as long as Redis keeps answering."""

        store: RedisStore

        async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
            while True:
                began = time.monotonic()
                token = _locked_in.set(self) if checks_under_lock else None
                try:
                    return await super().get_connection(*args, **kwargs)
                except connection_error as exc:
                    if not _waited_for_pool(exc, redis):
                        raise
                    if not self.store._answering():
                        raise self.store._unavailable() from exc
                    if self.store._answered_at < began:
                        raise
                    # Redis answered while we waited: busy, not down.
                finally:
                    if token is not None:
                        _locked_in.reset(token)

        async def ensure_connection(self, connection: Any) -> None:
            # Redis failed while we waited for this connection: do not connect again.
            if not self.store._answering():
                raise self.store._unavailable()
            await super().ensure_connection(connection)

        async def release(self, connection: Any) -> None:
            if _locked_in.get() is self:  # redis-py 5.0.1: we hold the condition already
                await redis.asyncio.ConnectionPool.release(self, connection)
                self._condition.notify()
            else:
                await super().release(connection)

    return PatientPool


_QUERY_PASSWORD = re.compile(r"((?:^|[&;])password=)[^&;]*", re.IGNORECASE)


def _glob_escape(text: str) -> str:
    return _GLOB.sub(r"\\\1", text)


def _masked(url: str) -> str:
    """Return ``url`` without its password (``user:password@`` or ``?password=``), for messages."""
    base, mark, query = url.partition("?")
    # redis-py reads a password from the query too.
    query = _QUERY_PASSWORD.sub(r"\1***", query)
    parts = urlsplit(base)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        base = urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    return base + mark + query


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


def _near_cache(
    entries: int | None, max_bytes: int, client: object, socket_timeout: float
) -> NearCache | None:
    """Return the near cache ``RedisStore``'s arguments ask for, or None."""
    if entries is None:
        return None
    for name, number in (("near_cache", entries), ("near_cache_bytes", max_bytes)):
        if isinstance(number, bool) or not isinstance(number, int):
            msg = f"{name} must be a positive int, got {number!r}"
            raise TypeError(msg)
        if number < 1:
            msg = f"{name} must be a positive int, got {number!r}"
            raise ValueError(msg)
    if client is not None:
        msg = (
            "near_cache needs RedisStore(url): the store opens a tracking connection "
            "of its own to the server, which it cannot do for a client of yours"
        )
        raise TypeError(msg)
    # The listener pings after HEARTBEAT quiet seconds and waits socket_timeout.
    return NearCache(entries, max_bytes, grace=HEARTBEAT + socket_timeout)


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

    A cancelled call raises ``CancelledError`` at once, on every Python
    version, except that ``set`` (and the release of a single-flight lock)
    run to their end: a finished result is stored even when every caller
    has left, and ``asyncio.run`` waits for it before closing the loop.

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
            operations queue for a free one, as long as Redis keeps answering
            the others. One that waited ``socket_connect_timeout +
            socket_timeout`` seconds while nothing was answered fails alone
            (``RedisBusyError``), without a cooldown: load is not an outage.
        lock_timeout: turns on single flight across processes (off by
            default). A ``get`` that misses takes a lock in Redis for this
            many seconds, and the ``set`` of the result releases it; other
            processes that miss the same key meanwhile wait for that result
            instead of computing it too. If the run fails (or its result is
            not stored), they wait until the lock expires, then compute it
            themselves: choose a little more than the function's usual time.
        near_cache: turns on the near cache (off by default): up to this many
            hot entries are also kept in this process's memory and served from
            there without a round trip, as fast as a ``MemoryStore``. Redis
            tells the store about every change of its keys, by any process
            (client-side caching, ``CLIENT TRACKING``, Redis 6 or later), and
            a changed key's copy is dropped as soon as the news arrives. The
            copies are dropped, and reads go to Redis, whenever the store
            cannot be sure it hears every change: until its tracking
            connection is set up, when that connection ends, and when it has
            not heard from Redis for about ``1 + socket_timeout`` seconds.
            Needs a URL, not a ``client``.
        near_cache_bytes: the most bytes of values the near cache keeps
            (default 64 MiB); least recently used entries go first, and a
            larger value is not kept at all.
        **options: passed on to the connection pool's ``from_url``
            (``password``, ``ssl_ca_certs``, ``health_check_interval``, ...).

    Raises:
        ImportError: the ``redis`` package is missing (``pip install 'memo-cache[redis]'``).
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
        near_cache: int | None = None,
        near_cache_bytes: int = 64 * 2**20,
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
        # Shared by the loops; each loop's client runs a listener that feeds it.
        self._near = _near_cache(near_cache, near_cache_bytes, client, socket_timeout)
        redis = _import_redis()
        self._redis = redis
        self._outages: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )
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
        renew_lock_after_fork(self)
        self._down_until = 0.0
        # When Redis last answered: a caller waiting for a connection meanwhile waits on.
        self._answered_at = 0.0
        # Commands under way, in every loop: the loop's client closes after them.
        self._commands: set[asyncio.Task[Any]] = set()
        # Whether the server has PEXPIRETIME (Redis 7+), once entries() has asked.
        self._expiretime: bool | None = None

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
        pool = _patient_pool(self._redis).from_url(
            self.url,
            max_connections=self.max_connections,
            timeout=self.socket_connect_timeout + self.socket_timeout,
            **options,
        )
        pool.store = self
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
            listening = None
            if self._near is not None:
                listener = Listener(
                    functools.partial(self._tracking_connection, client),
                    self._base,
                    self._near,
                    timeout=self.socket_timeout,
                    where=self._where(),
                    refused=self._refuses_tracking,
                    # Names come back as the bytes the client sent: read them its way.
                    encoding=client.connection_pool.connection_kwargs.get("encoding", "utf-8"),
                )
                task = loop.create_task(listener.run(), name="memo-redis-near-cache")
                listening = (listener, task)
            keeper = loop.create_task(self._keep(loop, client, listening), name="memo-redis-close")
            self._clients[loop] = _LoopClient(client, keeper)
            return client

    def _refuses_tracking(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the server refusing tracking until someone changes it.

        An ACL (``NOPERM``), or a server without tracking (an unknown
        subcommand); not a busy or out-of-memory server, which may answer later.
        """
        errors = self._redis.exceptions
        return isinstance(exc, errors.NoPermissionError) or (
            isinstance(exc, errors.ResponseError) and "unknown" in str(exc).lower()
        )

    def _tracking_connection(self, client: Redis) -> Any:
        """Return a new connection to the client's server, for the near cache's listener."""
        pool = client.connection_pool
        settings = {
            **pool.connection_kwargs,
            # Subscribed, it reads pushed messages: RESP2, and no health check
            # PING whose reply a subscribed connection words differently.
            "protocol": 2,
            "health_check_interval": 0,
            "client_name": CLIENT_NAME,
        }
        # redis-py 7+: its pool's maintenance notifications need RESP3.
        for name in ("maint_notifications_config", "maint_notifications_pool_handler"):
            if name in settings:
                settings[name] = None
        return pool.connection_class(**settings)

    async def _keep(
        self,
        loop: asyncio.AbstractEventLoop,
        client: Redis,
        listening: tuple[Listener, asyncio.Task[None]] | None,
    ) -> None:
        try:
            await loop.create_future()  # until cancelled: by close() or by the loop's end
        finally:
            if listening is not None:
                await listening[0].stop(listening[1])
            with self._lock:
                entry = self._clients.get(loop)
                if entry is not None and entry.client is client:
                    del self._clients[loop]
            try:
                # Commands under way end first, lest one open a connection after
                # the close. asyncio.run cancels every task at its end, this one
                # and the commands too: reads stop, writes send again.
                while pending := self._commands_in(loop):
                    await asyncio.wait(pending)
            finally:
                # A dead server has nothing left to close.
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _commands_in(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
        return [task for task in list(self._commands) if task.get_loop() is loop]

    def _answering(self) -> bool:
        """Whether the store would try Redis now: it is not cooling down after a failure."""
        return not (self._down_until and time.monotonic() < self._down_until)

    def _unavailable(self) -> RedisUnavailableError:
        msg = (
            f"Redis at {self._where()} failed less than {self.cooldown} s ago; "
            f"memo tries it again after the cooldown"
        )
        return RedisUnavailableError(msg)

    async def _call(self, operation: Callable[[Redis], Awaitable[T]], *, finish: bool = False) -> T:
        """Run ``operation`` in a task of its own; ``finish``: even if the caller leaves.

        The caller awaits the task through a shield, so its cancellation is
        raised here at once (redis-py can swallow it on Python 3.10 and 3.11);
        the task is then cancelled too, unless it is a write to finish.
        """
        if not self._answering():
            raise self._unavailable()
        client = await self._client()
        command = self._finish(client, operation) if finish else self._attempt(client, operation)
        task = asyncio.get_running_loop().create_task(command)
        task.add_done_callback(_retrieve)
        self._commands.add(task)
        task.add_done_callback(self._commands.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not finish:
                task.cancel()
            raise

    async def _attempt(self, client: Redis, operation: Callable[[Redis], Awaitable[T]]) -> T:
        try:
            result = await operation(client)
        except self._outages as exc:
            if _waited_for_pool(exc, self._redis):
                msg = (
                    f"no connection to Redis at {self._where()} came free in time "
                    f"(max_connections={self.max_connections}); a busy pool is load, not "
                    f"an outage, so the store does not cool down: raise max_connections "
                    f"if this recurs"
                )
                raise RedisBusyError(msg) from exc
            if self.cooldown:
                self._down_until = time.monotonic() + self.cooldown
            if self._near is not None:
                # Out of touch with Redis: the copies may be out of date.
                self._near.flush()
            raise
        self._down_until = 0.0
        self._answered_at = time.monotonic()
        return result

    async def _finish(self, client: Redis, operation: Callable[[Redis], Awaitable[T]]) -> T:
        try:
            return await self._attempt(client, operation)
        except asyncio.CancelledError:
            # Cancelled itself, not through its caller's shield: asyncio.run
            # cancels every task left when it ends. redis-py dropped the
            # connection, whether or not Redis got the command; writes are
            # idempotent, so send it again, once.
            uncancel = getattr(asyncio.current_task(), "uncancel", None)
            if uncancel is not None:  # Python 3.11+: asyncio.timeout counts cancellations
                uncancel()
            return await self._attempt(client, operation)

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
        near = self._near
        if near is None:
            value = await self._read(key)
        else:
            value = near.get(key)
            if value is None:
                value = await self._read_near(key, near)
        if value is None and self.lock_timeout is not None:
            value = await self._lead_or_wait(key, self.lock_timeout)
        return value

    def get_nowait(self, key: str) -> bytes | None:
        """Return the near cache's copy of ``key`` without awaiting.

        Raises:
            WouldBlock: no near cache, or no copy of ``key`` it may serve now:
                the answer needs Redis (``get``).
        """
        near = self._near
        if near is not None:
            value = near.get(key)
            if value is not None:
                return value
        raise WouldBlock

    async def _read(self, key: str) -> bytes | None:
        return _bytes(await self._call(lambda client: client.get(self._base + key)))

    async def _read_near(self, key: str, near: NearCache) -> bytes | None:
        """Read ``key`` from Redis, and keep a copy unless it changed meanwhile."""
        ticket = near.ticket(key)
        if ticket is None:  # the listener is not confirmed: keep nothing
            return await self._read(key)
        name = self._base + key

        async def pipeline(client: Redis) -> list[Any]:
            # Not a transaction: a change between the two commands is
            # reported, so the ticket keeps nothing anyway.
            async with client.pipeline(transaction=False) as pipe:
                pipe.get(name)
                pipe.pttl(name)
                answer: list[Any] = await pipe.execute()
                return answer

        async def read(client: Redis) -> list[Any]:
            if not _retries_pipelines(self._redis):
                # As redis-py retries a command on a broken connection (a
                # restarted server), which it does for pipelines from 5.0.8.
                for _ in range(self.retries):
                    try:
                        return await pipeline(client)
                    except self._redis.exceptions.ConnectionError as exc:
                        if _waited_for_pool(exc, self._redis):
                            raise
            return await pipeline(client)

        # Before the send: the copy expires no later than the entry itself.
        sent = time.monotonic()
        try:
            answer = await self._call(read)
            value = _bytes(answer[0])
        except BaseException:
            near.cancel(ticket)
            raise
        milliseconds = answer[1]
        if value is None or milliseconds == -2:  # -2: gone since the GET
            near.cancel(ticket)
        else:
            expires = None if milliseconds < 0 else sent + milliseconds / 1000
            near.fill(ticket, value, expires)
        return value

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``; Redis itself drops it after ``ttl`` seconds.

        Once called, the write (and the release of this store's single-flight
        lock on ``key`` after it) happens even if the caller is cancelled, as
        memo's run is when its last caller leaves and as ``asyncio.run`` does
        to leftover tasks on exit.
        """
        name = self._base + key
        # Taken now: whatever becomes of the caller, this write ends our lead.
        token = self._held.pop(key, None)
        milliseconds = None if ttl is None else max(1, math.ceil(ttl * 1000))

        async def write(client: Redis) -> None:
            try:
                if ttl is not None and ttl <= 0:
                    # Already expired: what a store must not return.
                    await client.unlink(name)
                else:
                    await client.set(name, value, px=milliseconds)
            except self._outages:
                raise  # Redis is out of reach, and so is the lock: it expires
            except Exception:
                # Redis refused the value (out of memory, a read-only replica):
                # nothing is coming, so the waiting processes compute it.
                await self._give_back(client, key, token)
                raise
            finally:
                self._forget(key)
            await self._give_back(client, key, token)

        await self._call(write, finish=True)

    def _forget(self, key: str) -> None:
        """Drop the near copy of ``key`` after this process changed it.

        Its invalidation is on its way, but a read that follows the change
        at once must not find the old copy before the news arrives; a fill
        in flight keeps nothing either.
        """
        if self._near is not None:
            self._near.invalidate([key])

    async def _give_back(self, client: Redis, key: str, token: str | None) -> None:
        if token is not None:
            # Best effort: waiters also read the value as they poll, and a lock
            # left behind costs nothing but its expiry.
            with contextlib.suppress(self._redis.exceptions.RedisError):
                await client.eval(_RELEASE, 1, self._lock_name(key), token)

    async def release(self, key: str) -> None:
        """Give up this store's single-flight lock on ``key``: no value is coming.

        memo calls it when the run after a miss stored nothing (the function
        raised or was cancelled, ``cache_if`` said no, the write failed), so
        other processes compute the value themselves instead of waiting for the
        lock to expire. Without ``lock_timeout`` it does nothing. Like ``set``,
        it finishes even if the caller is cancelled.
        """
        token = self._held.pop(key, None)
        if token is not None:
            lock = self._lock_name(key)
            await self._call(lambda client: client.eval(_RELEASE, 1, lock, token), finish=True)

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

        async def drop(client: Redis) -> int:
            try:
                dropped: int = await client.unlink(self._base + key)
            finally:
                self._forget(key)
            return dropped

        return bool(await self._call(drop))

    async def clear(self, namespace: str) -> int:
        """Drop every entry of ``namespace`` (``SCAN`` + ``UNLINK``); return how many."""
        return await self._drop_matching(_glob_escape(self._base + namespace_prefix(namespace)))

    async def _drop_matching(self, prefix_pattern: str) -> int:
        """``UNLINK`` the keys that ``SCAN MATCH prefix_pattern*`` finds, in batches; count them."""
        pattern = prefix_pattern + "*"

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

        try:
            return await self._call(drop)
        finally:
            # Rare enough to drop every copy rather than find the namespace's.
            if self._near is not None:
                self._near.flush()

    # -- listing, for the command line and for moving caches --------------------

    async def entries(
        self, namespaces: Iterable[str] = (), *, values: bool = True
    ) -> AsyncIterator[StoredEntry]:
        """Yield every entry under the prefix (of ``namespaces`` when given), in key order.

        The keys are gathered first with ``SCAN MATCH`` (never ``KEYS``, which
        blocks the server), ``scan_count`` at a step, then sorted and read in
        pipelined batches: ``GET`` (or ``STRLEN`` without values) and the
        absolute expiry (``PEXPIRETIME``, Redis 7 or newer; ``PTTL`` from the
        time of reading before that). A key that expires or is dropped in
        between is left out. Only the names are held in memory at once.

        Args:
            namespaces: the namespaces to list; empty: all of them.
            values: False to leave ``value`` out (None) and give only its size.
        """
        wanted = set(namespaces)
        patterns = [
            _glob_escape(self._base + namespace_prefix(namespace)) + "*" for namespace in wanted
        ] or [_glob_escape(self._base) + "*"]
        names: set[bytes] = set()  # SCAN may return a key more than once
        for pattern in patterns:
            cursor: int | None = None
            while cursor != 0:
                step = functools.partial(self._scan_step, cursor=cursor or 0, pattern=pattern)
                cursor, found = await self._call(step)
                names.update(found)
        base = self._base.encode()
        keys = []
        for name in names:
            with contextlib.suppress(UnicodeDecodeError):
                key = name[len(base) :].decode()
                if ":" in key and (not wanted or namespace_of(key) in wanted):
                    keys.append(key)
        keys.sort()
        batch = 100 if values else self.scan_count
        for start in range(0, len(keys), batch):
            read = functools.partial(self._read_batch, keys=keys[start : start + batch])
            for entry in await self._call(functools.partial(read, values=values)):
                yield entry

    async def _scan_step(
        self, client: Redis, *, cursor: int, pattern: str
    ) -> tuple[int, list[bytes]]:
        """One ``SCAN`` step: the next cursor (0 at the end) and the names found."""
        cursor, found = await client.scan(cursor, match=pattern, count=self.scan_count)
        return cursor, [name for name in found if isinstance(name, bytes)]

    async def _read_batch(
        self, client: Redis, *, keys: list[str], values: bool
    ) -> list[StoredEntry]:
        """Read the values (or sizes) and absolute expiries of ``keys`` in one round trip."""
        exact = self._expiretime is not False
        pipe = client.pipeline(transaction=False)
        for key in keys:
            name = self._base + key
            pipe.get(name) if values else pipe.strlen(name)
            pipe.pexpiretime(name) if exact else pipe.pttl(name)
        # Errors come back as replies: one key of another type (WRONGTYPE) is skipped alone.
        replies = await pipe.execute(raise_on_error=False)
        error = self._redis.exceptions.ResponseError
        if exact and replies and isinstance(replies[1], error) and "unknown" in str(replies[1]):
            self._expiretime = False  # before Redis 7: no PEXPIRETIME
            return await self._read_batch(client, keys=keys, values=values)
        self._expiretime = exact
        now = time.time()
        found = []
        for key, data, expiry in zip(keys, replies[::2], replies[1::2], strict=True):
            if isinstance(data, error) or isinstance(expiry, error):
                continue  # not a string: nothing memo wrote
            if data is None or expiry == -2:
                continue  # expired or dropped since the SCAN
            at = None if expiry < 0 else expiry / 1000 if exact else now + expiry / 1000
            value = data if values else None
            found.append(StoredEntry(key, value, len(data) if values else int(data), at))
        return found

    async def clear_all(self) -> int:
        """Drop every entry under the store's prefix, in all namespaces; return how many.

        Like ``clear``, it walks the keys with ``SCAN`` and drops them with
        ``UNLINK`` in batches. Keys of other prefixes (and single-flight locks)
        are left alone.
        """
        return await self._drop_matching(_glob_escape(self._base))

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
