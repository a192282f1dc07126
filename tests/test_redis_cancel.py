"""RedisStore and cancellation: writes finish, and a cancelled call stops at once.

On Python 3.10 and 3.11 redis-py sends each command under ``asyncio.wait_for``,
which swallows a cancellation that arrives as the send completes: the task
goes on as if it had not been cancelled. memo's run task is cancelled when its
last caller leaves, so a swallowed cancellation used to let a run call its
function for nobody. The store now raises ``CancelledError`` whatever redis-py
does, except for writes, which finish even when every caller has left.

Every test talks to a real ``redis-server`` (``tests/redis_server.py``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis

from memo import RedisStore, async_disk_cache

if TYPE_CHECKING:
    from collections.abc import Iterator

    from redis_server import RedisServer

SOCKET_TIMEOUT = 0.5


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain synchronous client, to look at the server behind the store's back."""
    with redis.Redis.from_url(redis_server.url) as client:
        yield client


def pause_writes(raw: redis.Redis, seconds: float) -> None:
    """Hold every write on the server for ``seconds`` (reads still answer)."""
    raw.execute_command("CLIENT", "PAUSE", str(int(seconds * 1000)), "WRITE")


async def wait_for_value(raw: redis.Redis, name: str, seconds: float = 5.0) -> bytes | None:
    """Poll (bounded) until Redis holds ``name``; return its value, or None at the deadline."""
    deadline = time.monotonic() + seconds
    while (value := raw.get(name)) is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return value


async def test_a_write_finishes_when_its_last_caller_leaves(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """The only caller is cancelled while the SET waits on the server: the value still lands."""
    store = RedisStore(redis_server.url, socket_timeout=2.0)
    runs = 0

    @async_disk_cache(namespace="cancel.leave", store=store)
    async def answer(x: int) -> int:
        nonlocal runs
        runs += 1
        pause_writes(raw, 0.4)  # the SET that follows waits on the server
        return 2 * x

    caller = asyncio.create_task(answer(21))
    await asyncio.sleep(0.15)
    assert runs == 1
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    name = "memo:|" + answer.cache_key(21)
    assert await wait_for_value(raw, name) is not None
    assert await answer(21) == 42
    assert (runs, answer.cache_info().hits) == (1, 1)
    await store.close()


def test_a_write_finishes_when_asyncio_run_ends(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """asyncio.run ends (cancelling every task) while a SET waits: the value is there after."""
    store = RedisStore(redis_server.url, socket_timeout=2.0)

    @async_disk_cache(namespace="cancel.exit", store=store)
    async def answer(x: int) -> int:
        pause_writes(raw, 0.4)
        return 2 * x

    async def main() -> None:
        asyncio.get_running_loop().create_task(answer(21))  # left behind on purpose
        await asyncio.sleep(0.15)

    asyncio.run(main())
    assert raw.get("memo:|" + answer.cache_key(21)) is not None
    assert asyncio.run(answer(21)) == 42
    assert answer.cache_info().hits == 1


async def test_a_refused_write_gives_the_lock_back(private_redis_server: RedisServer) -> None:
    """A SET that Redis refuses (out of memory) still releases the single-flight lock."""
    store = RedisStore(private_redis_server.url, lock_timeout=60)
    with redis.Redis.from_url(private_redis_server.url) as server:
        assert await store.get("k") is None  # a miss: this store now holds the lock
        assert server.exists("memo:!lock:k")
        server.config_set("maxmemory-policy", "noeviction")
        server.config_set("maxmemory", 1)
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            await store.set("k", b"v" * 1000)
        assert not server.exists("memo:!lock:k")
    await store.close()


@pytest.mark.parametrize("operation", ["get", "set", "delete"])
async def test_a_cancelled_operation_raises_cancelled_error(
    redis_server: RedisServer, operation: str
) -> None:
    """Cancelled at any step of a command, a store call raises CancelledError, never returns."""
    store = RedisStore(redis_server.url)
    await store.set("k", b"v")
    call = {"get": lambda: store.get("k"), "set": lambda: store.set("k", b"v"),
            "delete": lambda: store.delete("nothing")}[operation]  # fmt: skip
    outcomes: collections.Counter[str] = collections.Counter()
    for attempt in range(600):
        task = asyncio.create_task(call())
        for _ in range(attempt % 8):  # cancel after 0 to 7 turns of the event loop
            await asyncio.sleep(0)
        if not task.cancel():
            await task
            outcomes["done before"] += 1
            continue
        try:
            await task
        except asyncio.CancelledError:
            outcomes["cancelled"] += 1
        else:
            outcomes["went on"] += 1
    assert outcomes["went on"] == 0, outcomes
    assert outcomes["cancelled"] >= 200, outcomes
    await store.close()


class TimedStore(RedisStore):
    """A RedisStore that notes when each read and write of a run ends, and how."""

    log: Any

    async def get(self, key: str) -> bytes | None:
        try:
            value = await super().get(key)
        except asyncio.CancelledError:
            self.log("get cancelled", key)
            raise
        self.log("get", key)
        return value

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        try:
            await super().set(key, value, ttl=ttl)
        except asyncio.CancelledError:
            self.log("set cancelled", key)
            raise
        self.log("set", key)


Event = tuple[int, float, str, int]  # (order, time, what, key)


def read_timeline(
    events: list[Event],
) -> tuple[collections.Counter[str], dict[str, float], int, int]:
    """Walk every key's timeline; return problems, overruns (s), runs, keys run twice.

    An overrun is how long after its key's callers had all left an event of
    a run came. A key whose result is stored runs twice if a second run
    completes that started later than the socket timeout after the first one
    ended (by then the first one's write had landed).
    """
    waiting: collections.Counter[int] = collections.Counter()
    alone_since: dict[int, float] = {}
    running: collections.Counter[int] = collections.Counter()
    problems: collections.Counter[str] = collections.Counter()
    overrun: dict[str, float] = collections.defaultdict(float)  # the longest, per event
    completed: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)
    started: dict[int, list[float]] = collections.defaultdict(list)
    for _, moment, what, key in sorted(events):
        if what == "arrive":
            waiting[key] += 1
            alone_since.pop(key, None)
        elif what == "leave":
            waiting[key] -= 1
            if not waiting[key]:
                alone_since[key] = moment
        else:
            if key in alone_since:
                overrun[what] = max(overrun[what], moment - alone_since[key])
                if what in ("start", "get", "set"):
                    problems[f"{what} with no caller"] += 1
            if what == "start":
                if running[key]:
                    problems["two runs of one key at once"] += 1
                running[key] += 1
                started[key].append(moment)
            elif what in ("end", "stop"):
                running[key] -= 1
                if what == "end":
                    completed[key].append((started[key][-1], moment))
    twice = sum(
        1
        for key, ends in completed.items()
        if key % 2 == 0
        for (_, first_end), (second_start, _) in itertools.pairwise(ends)
        if second_start - first_end > SOCKET_TIMEOUT
    )
    return problems, overrun, sum(len(s) for s in started.values()), twice


CALLS = 10_000
KEYS = 100
CANCELLED = 0.6  # the share of callers cancelled, at a random moment
IN_FLIGHT = 200  # callers at a time


async def test_cancellation_storm(redis_server: RedisServer) -> None:
    """10,000 calls over 100 keys, most cancelled at random: no run goes on for nobody.

    A caller leaving last cancels its run. Checked on the timeline of every
    key (callers arriving and leaving, the function starting and ending, the
    store's reads and writes ending): no function starts, and no read or write
    returns, while the key has no caller; no run ends more than the socket
    timeout after its key's callers all left (plus the event loop's own longest
    stall, measured alongside); no key runs twice at once; and a
    key whose result is stored runs to completion once (a second run may start
    only before the first one's write can have landed).
    """
    rng = random.Random(20240611)
    ticks = itertools.count()
    events: list[Event] = []

    def note(what: str, key: int) -> None:
        events.append((next(ticks), time.monotonic(), what, key))

    store = TimedStore(redis_server.url, socket_timeout=SOCKET_TIMEOUT)
    keys: dict[str, int] = {}
    store.log = lambda what, store_key: note(what, keys[store_key])

    # Even keys are stored; odd ones never are, so their every flight runs the function.
    @async_disk_cache(namespace="storm", store=store, cache_if=lambda result: result % 2 == 0)
    async def work(key: int) -> int:
        note("start", key)
        try:
            await asyncio.sleep(0.001 * (key % 5))
        except asyncio.CancelledError:
            note("stop", key)
            raise
        note("end", key)
        return key

    for key in range(KEYS):
        keys[work.cache_key(key)] = key

    async def caller(key: int) -> None:
        note("arrive", key)
        try:
            assert await work(key) == key
        finally:
            note("leave", key)

    loop = asyncio.get_running_loop()
    stalls = [0.0]  # how late the loop ran a 1 ms sleep: time nobody's cancellation could use

    async def watch_the_loop() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.001)
            stalls[0] = max(stalls[0], time.monotonic() - before - 0.001)

    watcher = loop.create_task(watch_the_loop())
    callers = []
    pending: set[asyncio.Task[None]] = set()
    began = time.monotonic()
    for _ in range(CALLS):
        # A busy service, not a jammed loop: a loop with thousands of ready tasks
        # delays every cancellation by its own turn, which is not what is measured.
        while len(pending) >= IN_FLIGHT:
            _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        task = loop.create_task(caller(rng.randrange(KEYS)))
        callers.append(task)
        pending.add(task)
        if rng.random() < CANCELLED:
            # Mostly while the store reads, sometimes while the function runs or writes.
            delay = rng.uniform(0, 0.002) if rng.random() < 0.6 else rng.uniform(0, 0.02)
            loop.call_later(delay, task.cancel)
    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    stormed = time.monotonic() - began
    watcher.cancel()
    await asyncio.sleep(2 * SOCKET_TIMEOUT)  # whatever still runs ends in the log
    await store.close()
    assert all(o is None or isinstance(o, asyncio.CancelledError) for o in outcomes)

    problems, overrun, runs, twice = read_timeline(events)
    cancelled = sum(isinstance(o, asyncio.CancelledError) for o in outcomes)
    report = (
        f"{CALLS} calls ({cancelled} cancelled) in {stormed:.1f} s, "
        f"{runs} runs; problems {dict(problems)}, "
        f"longest past its callers (ms) { {k: round(v * 1000, 1) for k, v in overrun.items()} }, "
        f"(the loop stalled up to {stalls[0] * 1000:.1f} ms), keys run twice {twice}"
    )
    print(report)
    assert not problems, report
    assert max(overrun.values(), default=0) <= SOCKET_TIMEOUT + stalls[0], report
    assert twice == 0, report
    assert cancelled > CALLS // 3, report
