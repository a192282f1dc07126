"""RedisStore's near cache: hits from memory, and never a copy the server has invalidated.

Every test runs against a real ``redis-server`` (``tests/redis_server.py``).
Other processes and other clients change keys behind the store's back; the
tests wait for the invalidation by polling with a deadline, never by
sleeping. Whether a read reached Redis is read from the server's own
``INFO commandstats``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis
from test_disk_fork import in_child

from memo import RedisStore, async_disk_cache
from memo.stores import WouldBlock, _tracking
from memo.stores._near_cache import NearCache
from memo.stores._tracking import CLIENT_NAME, Listener
from memo.stores.base import store_key

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from redis_server import RedisServer

DEADLINE = 10.0
FAST = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}
K = store_key("near", None, "k")


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """Another client of the server: what another process would change keys with."""
    with redis.Redis.from_url(redis_server.url) as client:
        yield client


def gets(raw: redis.Redis) -> int:
    """How many GET commands the server has run since the test began."""
    stats = raw.info("commandstats").get("cmdstat_get", {})
    return int(stats.get("calls", 0))


def listeners(raw: redis.Redis) -> list[dict[str, Any]]:
    """The near cache listeners connected to the server."""
    return [c for c in raw.client_list() if c.get("name") == CLIENT_NAME]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the event loop run (the listener with it) until ``condition`` holds, or fail."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.002)


def near(store: RedisStore) -> NearCache:
    assert store._near is not None
    return store._near


def kept(store: RedisStore, key: str) -> bool:
    """Whether the near cache holds a copy of ``key``, served or not: no news of a change read."""
    return key in near(store)._entries


async def serving(store: RedisStore) -> None:
    """Open the store's connections and wait until its listener is confirmed."""
    await store.get("probe")
    await until(near(store).serving, "the near cache serves")


async def filled(store: RedisStore, key: str) -> bytes | None:
    """Read ``key`` from Redis, so that the near cache keeps it; check that it did."""
    value = await store.get(key)
    assert store.get_nowait(key) == value
    return value


@pytest.fixture
async def store(redis_server: RedisServer) -> Any:
    store = RedisStore(redis_server.url, near_cache=100)
    yield store
    await store.close()


# -- hits -----------------------------------------------------------------------


async def test_a_second_read_never_reaches_redis(store: RedisStore, raw: redis.Redis) -> None:
    """Once a key was read, its reads are answered in memory: the server runs no GET."""
    await store.set(K, b"value")
    await serving(store)
    assert await filled(store, K) == b"value"
    before = gets(raw)
    for _ in range(50):
        assert store.get_nowait(K) == b"value"
        assert await store.get(K) == b"value"
    assert gets(raw) == before


async def test_a_decorated_function_hits_in_memory(store: RedisStore, raw: redis.Redis) -> None:
    """The decorator's read path takes the near copy without awaiting; results are unchanged."""
    calls = 0

    @async_disk_cache(namespace="near-decorated", store=store)
    async def double(x: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"double": 2 * x}

    await serving(store)
    assert await double(21) == {"double": 42}  # a miss: computed and written
    assert await double(21) == {"double": 42}  # read from Redis, kept
    before = gets(raw)
    for _ in range(20):
        assert await double(21) == {"double": 42}
    assert gets(raw) == before
    assert calls == 1
    assert double.cache_info().hits == 21


async def test_nothing_is_served_before_the_listener_is_confirmed(
    redis_server: RedisServer,
) -> None:
    """A new store answers from Redis until its tracking connection is set up."""
    store = RedisStore(redis_server.url, near_cache=10)
    with pytest.raises(WouldBlock):
        store.get_nowait(K)
    assert not near(store).serving()
    assert near(store).ticket(K) is None  # a read now keeps nothing
    await store.close()


async def test_a_store_without_near_cache_never_answers_at_once(
    redis_server: RedisServer,
) -> None:
    """Without near_cache, get_nowait always sends memo to get."""
    store = RedisStore(redis_server.url)
    await store.set(K, b"value")
    assert await store.get(K) == b"value"
    with pytest.raises(WouldBlock):
        store.get_nowait(K)
    await store.close()


# -- invalidation by others ---------------------------------------------------------


async def test_another_client_overwrites_and_deletes(store: RedisStore, raw: redis.Redis) -> None:
    """A change by another client drops the copy once its invalidation arrives."""
    name = store._base + K
    await store.set(K, b"old")
    await serving(store)
    await filled(store, K)
    raw.set(name, b"new")
    await until(lambda: not kept(store, K), "the overwrite is heard of")
    assert await filled(store, K) == b"new"
    raw.delete(name)
    await until(lambda: not kept(store, K), "the delete is heard of")
    assert await store.get(K) is None


@pytest.mark.slow
async def test_another_process_overwrites_and_deletes(
    store: RedisStore, redis_server: RedisServer
) -> None:
    """Two processes: a child's RedisStore.set and delete reach this process's near cache."""
    await store.set(K, b"old")
    await serving(store)
    await filled(store, K)

    def child(action: str) -> None:
        code = textwrap.dedent(
            f"""
            import asyncio
            from memo import RedisStore

            async def main():
                other = RedisStore({redis_server.url!r})
                if {action!r} == "set":
                    await other.set({K!r}, b"from the child")
                else:
                    await other.delete({K!r})
                await other.close()

            asyncio.run(main())
            """
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

    # The child runs in a thread: this loop keeps running, and the listener with it.
    await asyncio.to_thread(child, "set")
    await until(lambda: not kept(store, K), "the child's write is heard of")
    assert await filled(store, K) == b"from the child"
    await asyncio.to_thread(child, "delete")
    await until(lambda: not kept(store, K), "the child's delete is heard of")
    assert await store.get(K) is None


async def test_flushdb_by_another_client_drops_every_copy(
    store: RedisStore, raw: redis.Redis
) -> None:
    """FLUSHDB is announced with no key at all: the near cache drops everything."""
    keys = [store_key("near", None, f"k{i}") for i in range(5)]
    for k in keys:
        await store.set(k, b"value")
    await serving(store)
    for k in keys:
        await filled(store, k)
    raw.flushdb()
    await until(lambda: len(near(store)) == 0, "the flush is heard of")
    for k in keys:
        assert await store.get(k) is None


async def test_a_store_of_another_database_hears_of_its_keys(redis_server: RedisServer) -> None:
    """A store of db 1 drops its copy when db 1's key changes.

    Redis tracks key names per server, not per database: a change of the same
    name in db 0 may drop the copy too, which costs a read and nothing else.
    """
    store = RedisStore(redis_server.url + "/1", near_cache=10)
    name = store._base + K
    try:
        await store.set(K, b"old")
        await serving(store)
        await filled(store, K)
        with redis.Redis.from_url(redis_server.url + "/1") as db1:
            db1.set(name, b"new")
            await until(lambda: not kept(store, K), "db 1's write is heard of")
            assert await filled(store, K) == b"new"
            with redis.Redis.from_url(redis_server.url + "/0") as db0:
                db0.set(name, b"db 0's own")
                assert await store.get(K) == b"new"
                db0.delete(name)
            db1.delete(name)
    finally:
        await store.close()


async def test_a_store_with_another_encoding_hears_of_its_keys(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """Keys encoded with the client's ``encoding`` are read back from the reports the same way.

    Decoded as UTF-8, a report of the Latin-1 name of ``é`` named no copy, and
    the old value was served until it left the near cache.
    """
    store = RedisStore(redis_server.url, near_cache=10, encoding="latin-1", prefix="caf\xe9")
    key = "n:cl\xe9"
    name = (store._base + key).encode("latin-1")
    try:
        await store.set(key, b"old")
        assert raw.get(name) == b"old"
        await serving(store)
        await filled(store, key)
        raw.set(name, b"new")
        await until(lambda: not kept(store, key), "the overwrite is heard of")
        assert await store.get(key) == b"new"
    finally:
        await store.close()


async def test_copies_agree_with_redis_after_concurrent_writes(
    store: RedisStore, redis_server: RedisServer
) -> None:
    """Reads racing another client's writes: once the writes are heard of, no copy is stale."""
    keys = [store_key("near", None, f"race{i}") for i in range(4)]
    sentinel = store_key("near", None, "sentinel")
    for k in keys:
        await store.set(k, b"0")
    await store.set(sentinel, b"0")
    await serving(store)
    await filled(store, sentinel)
    stop = threading.Event()

    def write() -> None:
        with redis.Redis.from_url(redis_server.url) as other:
            n = 0
            while not stop.is_set():
                n += 1
                other.set(store._base + keys[n % len(keys)], str(n).encode())
            # The last write: invalidations arrive in order, so once this
            # one is heard of, every earlier one was too.
            other.set(store._base + sentinel, b"done")

    writer = asyncio.ensure_future(asyncio.to_thread(write))
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:
        await asyncio.gather(*(store.get(k) for k in keys))
    stop.set()
    await writer
    await until(lambda: not kept(store, sentinel), "the last write is heard of")
    with redis.Redis.from_url(redis_server.url) as other:
        for k in keys:
            copy = near(store).get(k)
            assert copy is None or copy == other.get(store._base + k)


# -- the tracking connection -------------------------------------------------------


async def test_killing_the_tracking_connection_drops_every_copy(
    store: RedisStore,
    raw: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CLIENT KILL of the listener: copies dropped, reads from Redis, then tracking again."""
    monkeypatch.setattr(_tracking, "_reported", set())  # as in a process that never failed
    caplog.set_level(logging.WARNING, logger="memo")
    await store.set(K, b"old")
    await serving(store)
    await filled(store, K)
    (first,) = listeners(raw)
    raw.client_kill_filter(_id=first["id"])
    # Changed while nobody listens: this invalidation is lost for good.
    raw.set(store._base + K, b"new")
    await until(lambda: len(near(store)) == 0, "the near cache is emptied")
    assert await store.get(K) == b"new"
    # Tracking is back, on a new connection, and invalidations flow again.
    await until(near(store).serving, "the near cache serves again")
    (second,) = listeners(raw)
    assert second["id"] != first["id"]
    assert "t" in second["flags"]  # tracking on
    assert await filled(store, K) == b"new"
    raw.set(store._base + K, b"newer")
    await until(lambda: not kept(store, K), "the write is heard of")
    assert await store.get(K) == b"newer"
    (record,) = [r for r in caplog.records if "invalidation connection" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "near cache was emptied" in record.getMessage()


async def test_a_user_not_allowed_tracking_reads_from_redis_and_is_told_why(
    redis_server: RedisServer,
    raw: redis.Redis,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ACL without CLIENT: every read goes to Redis, and the log names what the user needs.

    The log said the connection "ended" and that the near cache "serves again
    once tracking is back", which it never does until the ACL changes.
    """
    monkeypatch.setattr(_tracking, "_reported", set())  # as in a process that never failed
    caplog.set_level(logging.WARNING, logger="memo")
    raw.acl_setuser("memo-no-client", enabled=True, passwords=["+pw"], keys=["*"])
    raw.execute_command("ACL", "SETUSER", "memo-no-client", "&*", "+@all", "-client")
    url = redis_server.url.replace("redis://", "redis://memo-no-client:pw@")
    store = RedisStore(url, near_cache=10)
    try:
        await store.set(K, b"old")
        await until(
            lambda: any("refused" in r.getMessage() for r in caplog.records), "the refusal is told"
        )
        (record,) = [r for r in caplog.records if r.name == "memo"]
        assert record.levelno == logging.WARNING
        assert "+client|tracking" in record.getMessage()
        assert "NoPermissionError" in record.getMessage()
        assert await store.get(K) == b"old"
        raw.set(store._base + K, b"new")
        assert await store.get(K) == b"new"
        assert not near(store).serving()
    finally:
        await store.close()
        raw.acl_deluser("memo-no-client")


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (redis.exceptions.NoPermissionError("this user has no permissions"), True),
        (redis.exceptions.ResponseError("Unknown subcommand 'TRACKING'. Try CLIENT HELP."), True),
        (redis.exceptions.ResponseError("BUSY Redis is busy running a script"), False),
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory"), False),
        (redis.exceptions.ConnectionError("max number of clients reached"), False),
    ],
)
def test_only_a_lasting_refusal_is_told_as_one(error: Exception, refused: bool) -> None:
    """An ACL or a server without tracking is a refusal; a busy or full server is an outage."""
    store = RedisStore("redis://127.0.0.1:1", near_cache=10)
    assert store._refuses_tracking(error) is refused


async def test_a_restarted_server_drops_every_copy(private_redis_server: RedisServer) -> None:
    """A restart ends the tracking connection: copies go, and the empty server is believed."""
    store = RedisStore(private_redis_server.url, near_cache=10, **FAST)
    await store.set(K, b"value")
    await serving(store)
    await filled(store, K)
    private_redis_server.restart()
    await until(lambda: len(near(store)) == 0, "the near cache is emptied")
    await until(near(store).serving, "the near cache serves again")
    assert await store.get(K) is None
    await store.close()


async def test_a_blocked_loop_serves_no_copy_whose_news_has_arrived(
    store: RedisStore, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write another client made while the loop was blocked is never hidden by the copy.

    The loop blocks (sync work in a coroutine) until the invalidation has reached
    the listener's socket; the next read must not return the old value. The
    listener had not read it yet, and the copy was served for up to
    ``1 + socket_timeout`` seconds after the write.
    """
    opened: list[Any] = []
    connect = store._tracking_connection

    def recorded(client: Any) -> Any:
        opened.append(connect(client))
        return opened[-1]

    monkeypatch.setattr(store, "_tracking_connection", recorded)
    await store.set(K, b"old")
    await serving(store)
    await filled(store, K)
    sock = opened[-1]._writer.transport.get_extra_info("socket")
    raw.set(store._base + K, b"new")  # the loop is blocked from here on
    deadline = time.monotonic() + DEADLINE
    while not select.select([sock.fileno()], [], [], 0.01)[0]:
        assert time.monotonic() < deadline, "the invalidation never reached the listener"
    assert near(store).serving()
    assert await store.get(K) == b"new"


async def test_a_loop_stopped_elsewhere_leaves_the_hits_of_this_one(
    store: RedisStore, raw: redis.Redis
) -> None:
    """News unread by another thread's stopped loop does not stop this loop's hits.

    A loop run once with ``run_until_complete`` and left open keeps its
    listener, which never reads again; this loop's own listener hears the
    same news.
    """
    other = asyncio.new_event_loop()

    async def open_one() -> None:
        await serving(store)

    try:
        await asyncio.to_thread(other.run_until_complete, open_one())
        await store.set(K, b"old")
        await serving(store)
        await filled(store, K)
        raw.set(store._base + "elsewhere", b"news for every listener")
        await until(lambda: near(store).get(K) == b"old", "this loop has read the news")
        assert store.get_nowait(K) == b"old"
        raw.set(store._base + K, b"new")
        await until(lambda: not kept(store, K), "the write is heard of")
        assert await filled(store, K) == b"new"
    finally:
        await asyncio.to_thread(other.run_until_complete, store.close())
        other.close()


async def test_a_frozen_server_stops_the_near_cache(private_redis_server: RedisServer) -> None:
    """A server that stops answering (SIGSTOP) cannot vouch for copies: none are served."""
    store = RedisStore(private_redis_server.url, near_cache=10, **FAST)
    await store.set(K, b"value")
    await serving(store)
    await filled(store, K)
    private_redis_server.pause()
    try:
        await until(lambda: near(store).get(K) is None, "the near cache stops serving")
        # Then the unanswered PING ends the tracking connection.
        await until(lambda: len(near(store)) == 0, "the near cache is emptied")
    finally:
        private_redis_server.resume()
    await until(near(store).serving, "the near cache serves again")
    assert await filled(store, K) == b"value"
    await store.close()


async def test_close_ends_the_tracking_connection(store: RedisStore, raw: redis.Redis) -> None:
    """close() ends the listener, and the next use starts one again."""
    await serving(store)
    assert len(listeners(raw)) == 1
    await store.close()
    assert not near(store).serving()
    await until(lambda: listeners(raw) == [], "the server sees the listener leave")
    await serving(store)
    assert len(listeners(raw)) == 1


# -- expiry, own writes, bounds ---------------------------------------------------


async def test_a_copy_is_never_served_past_its_ttl(store: RedisStore) -> None:
    """A copy expires with the entry's ttl, read from Redis when it was kept."""
    await serving(store)
    await store.set(K, b"short-lived", ttl=0.5)
    sent = time.monotonic()
    await filled(store, K)
    kept = near(store)._entries[K][1]
    assert kept is not None
    assert sent < kept <= time.monotonic() + 0.5
    while True:
        now = time.monotonic()
        try:
            assert store.get_nowait(K) == b"short-lived"
        except WouldBlock:
            break
        assert now < kept, "served past its expiry"
        await asyncio.sleep(0.01)
    assert await store.get(K) is None


def test_the_near_cache_drops_a_copy_at_its_expiry() -> None:
    """With no server involved: a copy with an expiry is dropped at it."""
    cache = NearCache(10, 1000, grace=60)
    cache.confirm(session := object())
    ticket = cache.ticket("k")
    assert ticket is not None
    expires = time.monotonic() + 0.05
    cache.fill(ticket, b"v", expires)
    assert cache.get("k") == b"v"
    deadline = time.monotonic() + DEADLINE
    while cache.get("k") is not None:
        assert time.monotonic() < deadline
    assert time.monotonic() >= expires
    cache.lost(session)


class Unheard:
    """A near cache as its listener sees it, where no invalidation arrives (they are held)."""

    def __init__(self, near: NearCache, held: list[list[str] | None]) -> None:
        self._near = near
        self._held = held

    def invalidate(self, keys: list[str] | None) -> None:
        self._held.append(keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._near, name)


@pytest.fixture
def unheard(monkeypatch: pytest.MonkeyPatch) -> list[list[str] | None]:
    """Listeners started from now on hold back every invalidation: here is what they got."""
    held: list[list[str] | None] = []
    original = Listener.__init__

    def init(self: Listener, connect: Any, prefix: str, near: Any, **options: Any) -> None:
        original(self, connect, prefix, Unheard(near, held), **options)

    monkeypatch.setattr(Listener, "__init__", init)
    return held


async def test_own_writes_drop_the_copy_at_once(
    store: RedisStore, unheard: list[list[str] | None]
) -> None:
    """set, delete and clear of this process: the next read sees them, not waiting for Redis."""
    await store.set(K, b"old")
    await serving(store)
    await filled(store, K)
    await store.set(K, b"new")
    with pytest.raises(WouldBlock):
        store.get_nowait(K)
    assert await filled(store, K) == b"new"
    assert await store.delete(K)
    with pytest.raises(WouldBlock):
        store.get_nowait(K)
    assert await store.get(K) is None
    await store.set(K, b"again")
    await filled(store, K)
    assert await store.clear("near") == 1
    assert len(near(store)) == 0
    assert await store.get(K) is None
    assert [K] in unheard  # the server did announce them: it was not what dropped the copies


async def test_clear_all_drops_every_copy_at_once(
    store: RedisStore, unheard: list[list[str] | None]
) -> None:
    """clear_all (what `memo clear --all --redis` runs) empties the near cache without Redis."""
    await store.set(K, b"value")
    await serving(store)
    await filled(store, K)
    assert await store.clear_all() == 1
    assert len(near(store)) == 0
    with pytest.raises(WouldBlock):
        store.get_nowait(K)
    assert await store.get(K) is None


async def test_the_near_cache_keeps_the_most_recently_used(redis_server: RedisServer) -> None:
    """near_cache=N keeps N copies at most, the least recently used going first."""
    store = RedisStore(redis_server.url, near_cache=3)
    keys = [store_key("near", None, f"k{i}") for i in range(5)]
    for k in keys:
        await store.set(k, k.encode())
    await serving(store)
    for k in keys[:3]:
        await filled(store, k)
    store.get_nowait(keys[0])  # used: now the most recent
    for k in keys[3:]:
        await filled(store, k)
    assert len(near(store)) == 3
    assert list(near(store)._entries) == [keys[0], keys[3], keys[4]]
    await store.close()


async def test_the_near_cache_keeps_bytes_within_its_bound(redis_server: RedisServer) -> None:
    """near_cache_bytes bounds the bytes of the copies; a larger value is not kept at all."""
    store = RedisStore(redis_server.url, near_cache=100, near_cache_bytes=10)
    a, b, big = (store_key("near", None, name) for name in ("a", "b", "big"))
    await store.set(a, b"123456")
    await store.set(b, b"abcdef")
    await store.set(big, b"x" * 11)
    await serving(store)
    await filled(store, a)
    await filled(store, b)
    assert list(near(store)._entries) == [b]
    assert await store.get(big) == b"x" * 11
    with pytest.raises(WouldBlock):
        store.get_nowait(big)
    await store.close()


# -- the race between a fill and an invalidation -----------------------------------


def confirmed() -> tuple[NearCache, object]:
    cache = NearCache(10, 1000, grace=60)
    session = object()
    cache.confirm(session)
    return cache, session


def test_an_invalidation_during_a_fill_keeps_nothing() -> None:
    """A key invalidated while its read was in flight is not kept: the read may be stale."""
    cache, _ = confirmed()
    ticket = cache.ticket("k")
    assert ticket is not None
    cache.invalidate(["k"])
    cache.fill(ticket, b"maybe stale", None)
    assert cache.get("k") is None


def test_overlapping_fills_keep_only_the_one_after_the_invalidation() -> None:
    """Of two reads in flight, only the one sent after the invalidation is kept."""
    cache, _ = confirmed()
    before = cache.ticket("k")
    cache.invalidate(["k"])
    after = cache.ticket("k")
    assert before is not None
    assert after is not None
    cache.fill(after, b"fresh", None)
    cache.fill(before, b"stale", None)
    assert cache.get("k") == b"fresh"
    assert cache._fills == {}  # the bookkeeping is gone with the fills


def test_an_invalidation_of_another_key_spoils_nothing() -> None:
    """Invalidations of other keys leave a fill alone."""
    cache, _ = confirmed()
    ticket = cache.ticket("k")
    assert ticket is not None
    cache.invalidate(["other"])
    cache.fill(ticket, b"v", None)
    assert cache.get("k") == b"v"


@pytest.mark.parametrize("event", ["flush", "lost", "flushdb"])
def test_a_flush_during_a_fill_keeps_nothing(event: str) -> None:
    """A flush, a lost listener or a FLUSHDB while a read is in flight: it keeps nothing."""
    cache, session = confirmed()
    ticket = cache.ticket("k")
    assert ticket is not None
    if event == "flush":
        cache.flush()
    elif event == "lost":
        cache.lost(session)
        cache.confirm(object())  # a new listener confirmed before the read is back
    else:
        cache.invalidate(None)
    cache.fill(ticket, b"maybe stale", None)
    assert cache.get("k") is None


def test_a_silent_listener_stops_the_serving() -> None:
    """Copies are served only within ``grace`` seconds of the listener last hearing the server."""
    cache = NearCache(10, 1000, grace=0.05)
    session = object()
    cache.confirm(session)
    ticket = cache.ticket("k")
    assert ticket is not None
    cache.fill(ticket, b"v", None)
    assert cache.get("k") == b"v"
    deadline = time.monotonic() + DEADLINE
    while cache.get("k") is not None:
        assert time.monotonic() < deadline
    assert cache.ticket("k") is None
    cache.heard(session)
    assert cache.get("k") == b"v"  # the listener heard again: nothing was missed
    cache.heard(object())  # a listener that was never confirmed vouches for nothing
    cache.lost(session)
    cache.heard(session)
    assert cache.get("k") is None


def test_news_waiting_unread_stops_the_serving() -> None:
    """While a listener's connection holds unread bytes, no copy is served; its end forgets it."""
    cache = NearCache(10, 1000, grace=60)
    news = [False]
    session = object()
    cache.confirm(session, lambda: news[0])
    ticket = cache.ticket("k")
    assert ticket is not None
    cache.fill(ticket, b"v", None)
    assert cache.get("k") == b"v"
    news[0] = True
    assert cache.get("k") is None
    assert len(cache) == 1  # kept until the listener reads what the news says
    news[0] = False
    assert cache.get("k") == b"v"
    news[0] = True
    cache.lost(session)
    other = object()
    cache.confirm(other)  # a listener that offers no check (news is only its old one's)
    ticket = cache.ticket("k")
    assert ticket is not None
    cache.fill(ticket, b"w", None)
    assert cache.get("k") == b"w"


# -- fork -------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX only")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning")
async def test_a_forked_child_starts_with_an_empty_near_cache(
    store: RedisStore, raw: redis.Redis
) -> None:
    """A child forked after the parent filled its near cache reads from Redis, then its own."""
    await store.set(K, b"old")
    await serving(store)
    await filled(store, K)
    raw.set(store._base + K, b"new")  # the parent may not have heard yet; the child must not care

    def child() -> list[Any]:
        seen: list[Any] = [len(near(store))]
        try:
            store.get_nowait(K)
            seen.append("served a copy")
        except WouldBlock:
            seen.append("would block")

        async def main() -> None:
            seen.append((await store.get(K) or b"").decode())
            await serving(store)
            seen.append((await filled(store, K) or b"").decode())
            await store.close()

        # This thread's loop is the parent's, copied: run one of our own.
        thread = threading.Thread(target=asyncio.run, args=(main(),))
        thread.start()
        thread.join()
        return seen

    assert in_child(child) == [0, "would block", "new", "new"]
    await until(lambda: near(store).get(K) is None, "the parent hears of the write")
    assert await store.get(K) == b"new"


# -- arguments --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"near_cache": 0}, ValueError),
        ({"near_cache": -1}, ValueError),
        ({"near_cache": True}, TypeError),
        ({"near_cache": "100"}, TypeError),
        ({"near_cache": 10, "near_cache_bytes": 0}, ValueError),
        ({"near_cache": 10, "near_cache_bytes": 1.5}, TypeError),
    ],
    ids=["zero", "negative", "bool", "str", "zero-bytes", "float-bytes"],
)
def test_bad_near_cache_arguments_are_refused(options: dict[str, Any], error: type) -> None:
    """near_cache and near_cache_bytes must be positive ints."""
    with pytest.raises(error, match="near_cache"):
        RedisStore("redis://127.0.0.1:1/0", **options)


async def test_near_cache_needs_a_url(redis_server: RedisServer) -> None:
    """A client of the user's cannot carry the tracking connection: the error says so."""
    client = redis.asyncio.Redis.from_url(redis_server.url, socket_timeout=1)
    with pytest.raises(TypeError, match=r"near_cache needs RedisStore\(url\)"):
        RedisStore(client=client, near_cache=10)
    await client.aclose()
