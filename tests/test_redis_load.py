"""RedisStore under load: a busy pool is load, not an outage; a dead server still is one.

A store made from a URL queues operations beyond ``max_connections`` in a
blocking pool. redis-py fails a caller that waited the pool's timeout with a
``ConnectionError``, which the store used to take for a dead server: it
cooled down, and the rest of the burst failed with it. Here the server is
real (``tests/redis_server.py``) and busy for real: another client keeps
pausing it (``CLIENT PAUSE``) for less than the store's socket timeout, so
every command is answered in time while the queue behind two connections
waits longer than the pool's timeout.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
import redis
import redis.asyncio
import redis.asyncio.connection
from redis_server import free_port

from memo import RedisStore, async_disk_cache
from memo.stores.redis import RedisBusyError, RedisUnavailableError, _waited_for_pool

if TYPE_CHECKING:
    from collections.abc import Iterator

    from redis_server import RedisServer

BURST = 200
# Each pause is answered well within the socket timeout; the queue waits longer
# than the pool's timeout (socket_connect_timeout + socket_timeout = 1.25 s).
TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 0.25}
PAUSE = 0.2
BUSY = 2.5


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain synchronous client, to look at the server behind the store's back."""
    with redis.Redis.from_url(redis_server.url) as client:
        yield client


# The pauser runs in a process of its own: a thread would share the GIL with the
# event loop serving the burst, and its next pause would come late, leaving the
# server idle between pauses on a loaded machine.
PAUSER = """
import socket, sys, time
port, seconds, pause = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
request = b"*4\\r\\n$6\\r\\nCLIENT\\r\\n$5\\r\\nPAUSE\\r\\n$%d\\r\\n%s\\r\\n$3\\r\\nALL\\r\\n"
ms = str(int(pause * 1000)).encode()
request = request % (len(ms), ms)
pauses = 0
with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        sock.sendall(request)
        assert sock.recv(64).startswith(b"+OK"), "CLIENT PAUSE refused"
        pauses += 1
        if pauses == 1:
            print("paused", flush=True)
        time.sleep(pause)
print(pauses, flush=True)
"""


class Busy:
    """Keep a server busy from another process: back-to-back ``CLIENT PAUSE ALL`` of ``PAUSE`` s."""

    def __init__(self, port: int, seconds: float) -> None:
        self.port = port
        self.seconds = seconds
        self.pauses = 0
        self.process: subprocess.Popen[str] | None = None

    async def __aenter__(self) -> Busy:
        args = [sys.executable, "-c", PAUSER, str(self.port), str(self.seconds), str(PAUSE)]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        first = await asyncio.to_thread(self.process.stdout.readline)
        assert first.strip() == "paused", first
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.process is not None
        out, _ = await asyncio.to_thread(self.process.communicate, timeout=self.seconds + 5.0)
        self.pauses = int(out.split()[-1])


async def test_a_burst_on_a_busy_server_is_all_stored(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """200 calls on two connections of a busy server: all answered, all stored, no cooldown."""
    store = RedisStore(redis_server.url, max_connections=2, cooldown=60, **TIMEOUTS)
    runs = 0

    @async_disk_cache(namespace="load.busy", store=store)
    async def double(x: int) -> int:
        nonlocal runs
        runs += 1
        return 2 * x

    try:
        async with Busy(redis_server.port, BUSY) as busy:
            start = time.monotonic()
            results = await asyncio.gather(*(double(x) for x in range(BURST)))
            waited = time.monotonic() - start
        assert results == [2 * x for x in range(BURST)]
        # The queue did outlast the pool's timeout: today's store cooled down here.
        assert waited > 1.25 + PAUSE, f"the burst took only {waited:.2f} s"
        assert busy.pauses >= 5
        assert double.cache_info().errors == 0  # no failed read or write, no cooldown
        assert len(raw.keys("memo:|*")) == BURST
        assert await asyncio.gather(*(double(x) for x in range(BURST))) == results
        assert (runs, double.cache_info().hits) == (BURST, BURST)
    finally:
        await store.close()


async def test_a_burst_on_an_idle_server_is_all_stored(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """200 distinct concurrent calls through two connections: every result stored, none failed."""
    store = RedisStore(redis_server.url, max_connections=2, cooldown=60)

    @async_disk_cache(namespace="load.idle", store=store)
    async def square(x: int) -> int:
        await asyncio.sleep(0.001)
        return x * x

    try:
        assert await asyncio.gather(*(square(x) for x in range(BURST))) == [
            x * x for x in range(BURST)
        ]
        assert square.cache_info().errors == 0
        assert len(raw.keys("memo:|*")) == BURST
        await asyncio.gather(*(square(x) for x in range(BURST)))
        assert square.cache_info().hits == BURST
    finally:
        await store.close()


async def test_a_dead_server_still_trips_the_cooldown(private_redis_server: RedisServer) -> None:
    """The control: a burst against a killed server fails open, and the store cools down."""
    store = RedisStore(private_redis_server.url, max_connections=2, cooldown=60, **TIMEOUTS)

    @async_disk_cache(namespace="load.dead", store=store)
    async def double(x: int) -> int:
        return 2 * x

    assert await double(-1) == -2
    private_redis_server.kill()
    start = time.monotonic()
    assert await asyncio.gather(*(double(x) for x in range(BURST))) == [2 * x for x in range(BURST)]
    assert time.monotonic() - start < 5.0
    assert double.cache_info().errors == 2 * BURST  # a read and a write per call
    with pytest.raises(RedisUnavailableError, match="cooldown"):
        await store.get("anything")
    await store.close()


async def test_a_new_store_on_a_dead_server_cools_down() -> None:
    """Connecting to nothing is an outage, not a busy pool (redis-py 5.0.1 made it one)."""
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", cooldown=60, **TIMEOUTS)
    start = time.monotonic()
    with pytest.raises(redis.ConnectionError) as refused:
        await store.get("k")
    assert not isinstance(refused.value, RedisBusyError)
    with pytest.raises(RedisUnavailableError, match="cooldown"):
        await store.get("k")
    assert time.monotonic() - start < 1.0
    await store.close()


async def test_a_hung_server_does_not_hold_the_queue(private_redis_server: RedisServer) -> None:
    """Waiting for a connection stays bounded when Redis hangs: the queue fails once it cools."""
    store = RedisStore(private_redis_server.url, max_connections=2, cooldown=60, **TIMEOUTS)

    @async_disk_cache(namespace="load.hung", store=store)
    async def double(x: int) -> int:
        return 2 * x

    assert await double(-1) == -2
    private_redis_server.pause()
    try:
        start = time.monotonic()
        results = await asyncio.gather(*(double(x) for x in range(BURST)))
        elapsed = time.monotonic() - start
    finally:
        private_redis_server.resume()
    assert results == [2 * x for x in range(BURST)]
    # Two reads time out, (1 + retries) socket timeouts each; everyone else then fails
    # fast, instead of taking the freed connections to the hung server again (4 s).
    assert elapsed < 3.5, f"a burst against a hung Redis took {elapsed:.1f} s"
    with pytest.raises(RedisUnavailableError):
        await store.get("anything")
    await store.close()


async def test_a_user_pool_that_times_out_fails_one_call(redis_server: RedisServer) -> None:
    """With a user's pool, an operation that found no connection fails alone: no cooldown."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        redis_server.url, max_connections=1, timeout=0.05, socket_timeout=2.0
    )
    client = redis.asyncio.Redis.from_pool(pool)
    store = RedisStore(client=client, cooldown=60)
    # A blocking pop that times out holds the pool's only connection for half a second.
    holder = asyncio.create_task(client.blpop(["nothing"], timeout=0.5))
    await asyncio.sleep(0.05)
    with pytest.raises(RedisBusyError, match="max_connections"):
        await store.get("k")
    assert await holder is None
    await store.set("k", b"v")  # no cooldown: the next operation goes through
    assert await store.get("k") == b"v"
    await client.aclose()


async def test_pool_timeouts_are_told_apart_from_failures(
    private_redis_server: RedisServer,
) -> None:
    """The installed redis-py's pool timeout is recognised; hung and dead servers are not."""
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        private_redis_server.url, max_connections=1, timeout=0.05, socket_timeout=2.0
    )
    client = redis.asyncio.Redis.from_pool(pool)
    holder = asyncio.create_task(client.blpop(["nothing"], timeout=0.5))
    await asyncio.sleep(0.05)
    with pytest.raises(redis.ConnectionError) as full:
        await client.get("k")
    await holder
    await client.aclose()
    client = redis.asyncio.Redis.from_url(private_redis_server.url, socket_timeout=0.25)
    await client.ping()
    private_redis_server.pause()
    try:
        with pytest.raises(redis.TimeoutError) as hung:
            await client.get("k")
    finally:
        private_redis_server.resume()
    private_redis_server.kill()
    with pytest.raises(redis.ConnectionError) as dead:
        await client.get("k")
    await client.aclose()
    assert _waited_for_pool(full.value, redis)
    assert not _waited_for_pool(hung.value, redis)
    assert not _waited_for_pool(dead.value, redis)
