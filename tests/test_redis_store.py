"""RedisStore beyond the store contract: forms, prefixes, event loops, processes, outages.

Every test talks to a real ``redis-server`` (``tests/redis_server.py``): the
session's shared one (``redis_server``, emptied before each test), or, for the
outages, one of the test's own (``private_redis_server``), because outages are
real too: the server is killed (SIGKILL) or frozen (SIGSTOP) while the test runs.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import textwrap
import time
import weakref
from typing import TYPE_CHECKING, Any

import pytest
import redis
import redis.asyncio
from redis_server import redis_server_binary

from memo import MemoWarning, RedisStore, async_disk_cache
from memo.stores.base import store_key
from memo.stores.redis import RedisUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from redis_server import RedisServer

# Short timeouts keep the outage tests fast; the bounds below allow for a slow CI.
FAST = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}
DEADLINE = 10.0


@pytest.fixture
def raw(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain synchronous client, to look at the server behind the store's back."""
    with redis.Redis.from_url(redis_server.url) as client:
        yield client


def connected_clients(raw: redis.Redis) -> int:
    """How many clients the server sees, this one excluded."""
    return int(raw.info("clients")["connected_clients"]) - 1


def wait_for_clients(raw: redis.Redis, expected: int) -> None:
    """Poll (bounded) until the server sees ``expected`` other clients."""
    deadline = time.monotonic() + DEADLINE
    while connected_clients(raw) != expected:
        assert time.monotonic() < deadline, f"server still sees {connected_clients(raw)} clients"
        time.sleep(0.01)


async def wait_until_answering(store: RedisStore) -> None:
    """Poll (bounded) until the store reaches Redis again after an outage."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            await store.get("probe")
        except (redis.RedisError, RedisUnavailableError):
            assert time.monotonic() < deadline, "the store never reached Redis again"
            await asyncio.sleep(0.02)
        else:
            return


@pytest.mark.slow
def test_import_memo_without_redis() -> None:
    """Without the redis package memo imports, and RedisStore names the install command."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["redis"] = None  # as if the extra were not installed
        import memo
        try:
            memo.RedisStore("redis://127.0.0.1:6379/0")
        except ImportError as exc:
            print(exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert "pip install 'memo-cache[redis]'" in out.stdout


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [
        ("true", pytest.fail.Exception),
        ("True", pytest.fail.Exception),
        ("1", pytest.fail.Exception),
        ("false", pytest.skip.Exception),
        (None, pytest.skip.Exception),
    ],
    ids=["ci-fails", "ci-True-fails", "ci-1-fails", "ci-false-skips", "local-skips"],
)
def test_missing_redis_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str | None, outcome: type[BaseException]
) -> None:
    """Without redis-server, Redis tests fail under CI and skip locally, naming the fix."""
    monkeypatch.setenv("PATH", str(tmp_path))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="apt-get install redis-server"):
        redis_server_binary()


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((), {}, TypeError),
        (("redis://127.0.0.1:1/0",), {"client": object()}, TypeError),
        (("http://127.0.0.1:1/0",), {}, ValueError),
        (("127.0.0.1:6379",), {}, ValueError),
        (("redis://127.0.0.1:1/0",), {"socket_timeout": 0}, ValueError),
        (("redis://127.0.0.1:1/0",), {"retries": -1}, ValueError),
        ((), {"client": object(), "password": "x"}, TypeError),
    ],
    ids=["nothing", "url-and-client", "http-url", "no-scheme", "zero-timeout", "negative-retries",
         "client-with-url-options"],
)  # fmt: skip
def test_bad_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """Wrong arguments fail at construction, not at the first call."""
    with pytest.raises(error):
        RedisStore(*args, **kwargs)


@pytest.mark.parametrize(
    "url",
    [
        "redis://cache:s3cret@10.0.0.1:6379/2",
        "redis://10.0.0.1:6379/2?password=s3cret",
        "rediss://10.0.0.1:6379/2?ssl_cert_reqs=none&password=s3cret&socket_timeout=1",
        "unix:///run/redis.sock?db=2&password=s3cret",
    ],
)
def test_repr_hides_password(url: str) -> None:
    """The repr (and so error messages) never show the URL's password, in it or in its query."""
    store = RedisStore(url)
    assert "s3cret" not in repr(store)
    assert url.partition("?")[0].rpartition("@")[2] in repr(store)


@pytest.mark.parametrize("form", ["url", "client"])
async def test_url_and_client_forms(redis_server: RedisServer, raw: redis.Redis, form: str) -> None:
    """Both forms store plain values under prefix + "|" + key, visible to any Redis client."""
    client = redis.asyncio.Redis.from_url(redis_server.url) if form == "client" else None
    store = RedisStore(redis_server.url) if client is None else RedisStore(client=client)
    try:
        k = store_key("forms", None, "abc")
        await store.set(k, b"\x00value")
        assert raw.get("memo:|" + k) == b"\x00value"
        assert await store.get(k) == b"\x00value"
    finally:
        await store.close()
        if client is not None:
            await client.aclose()


async def test_user_client_is_left_open(redis_server: RedisServer) -> None:
    """close() leaves a client passed in open: its owner closes it."""
    async with redis.asyncio.Redis.from_url(redis_server.url) as client:
        store = RedisStore(client=client)
        await store.set("k", b"v")
        await store.close()
        assert await client.ping() is True
        assert await store.get("k") == b"v"


async def test_decoding_client_is_refused(redis_server: RedisServer) -> None:
    """A client that decodes responses gives a clear error instead of wrong values."""
    async with redis.asyncio.Redis.from_url(redis_server.url, decode_responses=True) as client:
        store = RedisStore(client=client)
        await store.set("k", b"v")
        with pytest.raises(TypeError, match="decode_responses=False"):
            await store.get("k")


def test_a_prefix_with_the_separator_is_refused() -> None:
    """A prefix may not contain '|', the separator that keeps nested prefixes apart."""
    with pytest.raises(ValueError, match="without '\\|'"):
        RedisStore("redis://127.0.0.1:6379/0", prefix="a|b")


async def test_ttl_is_the_server_expiry(redis_server: RedisServer, raw: redis.Redis) -> None:
    """A ttl becomes the key's expiry on the server; no ttl means no expiry."""
    store = RedisStore(redis_server.url)
    await store.set("with-ttl", b"v", ttl=60)
    await store.set("without", b"v")
    assert 59_000 < raw.pttl("memo:|with-ttl") <= 60_000
    assert raw.pttl("memo:|without") == -1
    await store.set("with-ttl", b"v")
    assert raw.pttl("memo:|with-ttl") == -1
    await store.close()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("app1:", "app2:"),
        ("a*", "ab"),
        ("a?", "ab"),
        ("[ab]", "a"),
        ("x\\", "x"),
        ("", "memo:"),
        ("memo:", "memo:shared-name:"),
    ],
    ids=["apps", "star", "question-mark", "brackets", "backslash", "empty-vs-default", "nested"],
)
async def test_prefixes_keep_applications_apart(
    redis_server: RedisServer, raw: redis.Redis, first: str, second: str
) -> None:
    """Two stores with different prefixes share a server but not entries, even with glob text."""
    one = RedisStore(redis_server.url, prefix=first)
    two = RedisStore(redis_server.url, prefix=second)
    k = store_key("shared-name", None, "d")
    await one.set(k, b"one")
    await two.set(k, b"two")
    assert raw.get(first + "|" + k) == b"one"
    assert raw.get(second + "|" + k) == b"two"
    assert await one.clear("shared-name") == 1
    assert await one.get(k) is None
    assert await two.get(k) == b"two"
    await one.close()
    await two.close()


async def test_clear_scans_and_unlinks_in_batches(
    redis_server: RedisServer, raw: redis.Redis
) -> None:
    """Clearing uses SCAN and batched UNLINK, never KEYS, and counts every dropped entry."""
    store = RedisStore(redis_server.url, scan_count=100)
    await asyncio.gather(*(store.set(store_key("big", None, str(i)), b"v") for i in range(1050)))
    raw.config_resetstat()
    assert await store.clear("big") == 1050
    stats = raw.info("commandstats")
    assert "cmdstat_keys" not in stats
    assert stats["cmdstat_scan"]["calls"] >= 2
    assert stats["cmdstat_unlink"]["calls"] >= 11
    assert raw.dbsize() == 0
    await store.close()


def test_successive_event_loops(redis_server: RedisServer, raw: redis.Redis) -> None:
    """One store serves several asyncio.run calls, and closes each loop's connections with it."""
    store = RedisStore(redis_server.url)
    loops = []

    async def step(i: int) -> bytes | None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        previous = await store.get("counter")
        await store.set("counter", b"%d" % i)
        return previous

    assert asyncio.run(step(1)) is None
    wait_for_clients(raw, 0)
    assert asyncio.run(step(2)) == b"1"
    assert asyncio.run(step(3)) == b"2"
    wait_for_clients(raw, 0)
    gc.collect()  # an unclosed connection would warn here, and warnings are errors
    assert [ref() for ref in loops] == [None, None, None], "the store keeps dead loops alive"


async def test_close_releases_connections(redis_server: RedisServer, raw: redis.Redis) -> None:
    """close() closes this loop's connections; the next call opens a new one."""
    store = RedisStore(redis_server.url)
    await asyncio.gather(*(store.set(f"k{i}", b"v") for i in range(20)))
    assert connected_clients(raw) >= 1
    await store.close()
    wait_for_clients(raw, 0)
    assert await store.get("k3") == b"v"
    assert connected_clients(raw) == 1
    await store.close()


WORKER = """
import asyncio, json, os, sys
from memo import MemoWarning, RedisStore, async_disk_cache

@async_disk_cache(namespace="shared.square", store=RedisStore(os.environ["REDIS_URL"]))
async def square(x: int) -> int:
    with open(os.environ["CALLS_FILE"], "a") as calls:
        calls.write(f"{os.getpid()} {x}\\n")
    return x * x

async def main() -> None:
    results = [await square(x) for x in (2, 3)]
    info = square.cache_info()
    print(json.dumps({"results": results, "hits": info.hits, "misses": info.misses,
                      "errors": info.errors}))

asyncio.run(main())
"""


def test_the_shared_server_refuses_outages(redis_server: RedisServer, raw: redis.Redis) -> None:
    """Killing, pausing or restarting the session's shared server fails the test, naming the fix."""
    for outage in (redis_server.kill, redis_server.pause, redis_server.restart):
        with pytest.raises(pytest.fail.Exception, match="private_redis_server"):
            outage()
    assert raw.ping() is True


def test_the_shared_server_is_emptied_for_each_test(redis_server: RedisServer) -> None:
    """flush() leaves no key and no other client, as on a fresh server."""
    with redis.Redis.from_url(redis_server.url) as left_behind:
        left_behind.set("left-behind", b"v")
        redis_server.flush()
        with redis.Redis.from_url(redis_server.url) as fresh:
            assert fresh.dbsize() == 0
            assert connected_clients(fresh) == 0  # left_behind's connection was closed


@pytest.mark.slow
def test_hits_across_processes(redis_server: RedisServer, tmp_path: Path) -> None:
    """A result computed by one process is a hit in another one that shares the Redis."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    calls = tmp_path / "calls.txt"
    env = {**os.environ, "REDIS_URL": redis_server.url, "CALLS_FILE": str(calls)}
    reports = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, str(script)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        reports.append(json.loads(done.stdout))
    first, second = reports
    assert first == {"results": [4, 9], "hits": 0, "misses": 2, "errors": 0}
    assert second == {"results": [4, 9], "hits": 2, "misses": 0, "errors": 0}
    assert len(calls.read_text().splitlines()) == 2


async def test_errors_are_raised_quickly(private_redis_server: RedisServer) -> None:
    """With Redis gone the store raises at once, then fails fast during the cooldown."""
    store = RedisStore(private_redis_server.url, cooldown=60, **FAST)
    await store.set("k", b"v")
    private_redis_server.kill()
    start = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        await store.get("k")
    with pytest.raises(RedisUnavailableError, match="cooldown"):
        await store.get("k")
    assert time.monotonic() - start < 2.0
    await store.close()


async def test_restart_between_calls_is_transparent(private_redis_server: RedisServer) -> None:
    """A Redis restart between two calls costs no error: the stale connection is replaced."""
    store = RedisStore(private_redis_server.url, **FAST)
    await store.set("before", b"v")
    private_redis_server.restart()
    assert await store.get("before") is None  # the restarted server is empty
    await store.set("after", b"w")
    assert await store.get("after") == b"w"
    await store.close()


async def test_fail_open_when_server_killed(private_redis_server: RedisServer) -> None:
    """Callers get their results while Redis is dead, errors are counted, the cache returns."""
    store = RedisStore(private_redis_server.url, cooldown=0.2, **FAST)
    runs = 0

    @async_disk_cache(namespace="failopen.triple", store=store)
    async def triple(x: int) -> int:
        nonlocal runs
        runs += 1
        return 3 * x

    assert await triple(1) == 3
    assert await triple(1) == 3
    assert (runs, triple.cache_info().errors) == (1, 0)

    private_redis_server.kill()
    start = time.monotonic()
    assert [await triple(x) for x in (1, 2, 3, 4, 5)] == [3, 6, 9, 12, 15]
    elapsed = time.monotonic() - start
    assert elapsed < 5.0, f"five calls took {elapsed:.1f} s with Redis down"
    assert runs == 6
    info = triple.cache_info()
    assert info.errors == 10  # a failed read and a failed write per call

    private_redis_server.restart()
    await wait_until_answering(store)
    assert await triple(7) == 21
    assert await triple(7) == 21
    assert runs == 7
    after = triple.cache_info()
    assert (after.hits - info.hits, after.errors) == (1, 10)
    await store.close()


async def test_hung_server_costs_bounded_time(private_redis_server: RedisServer) -> None:
    """A frozen Redis costs one timeout, then calls skip it until the cooldown ends."""
    store = RedisStore(private_redis_server.url, cooldown=1.5, **FAST)

    @async_disk_cache(namespace="hung.inc", store=store)
    async def inc(x: int) -> int:
        return x + 1

    assert await inc(0) == 1
    private_redis_server.pause()
    start = time.monotonic()
    assert await inc(1) == 2
    first = time.monotonic() - start
    # Read and write each wait at most (1 + retries) * timeouts; one timeout trips the cooldown.
    assert first < 3.0, f"the first call took {first:.1f} s"
    start = time.monotonic()
    assert [await inc(x) for x in range(2, 12)] == list(range(3, 13))
    rest = time.monotonic() - start
    assert rest < 0.5, f"ten calls during the cooldown took {rest:.2f} s"
    assert inc.cache_info().errors == 22
    private_redis_server.resume()
    await wait_until_answering(store)
    assert await inc(0) == 1
    assert inc.cache_info().hits == 1
    await store.close()


@pytest.mark.parametrize(
    ("timeout", "warns"), [(None, True), (1.0, False)], ids=["no-timeout", "timeout"]
)
async def test_client_without_socket_timeout_warns(timeout: float | None, warns: bool) -> None:
    """A client that would wait forever on a hung Redis gets a MemoWarning naming the fix."""
    client = redis.asyncio.Redis(host="127.0.0.1", port=1, socket_timeout=timeout)
    try:
        if warns:
            with pytest.warns(MemoWarning, match="socket_timeout=1"):
                RedisStore(client=client)
        else:
            RedisStore(client=client)  # filterwarnings=error: any warning fails here
    finally:
        await client.aclose()


async def test_user_client_errors_name_the_server(private_redis_server: RedisServer) -> None:
    """With a user's client, the cooldown error names host, port and db, not pool internals."""
    client = redis.asyncio.Redis.from_url(
        private_redis_server.url, socket_timeout=0.25, socket_connect_timeout=0.25
    )
    store = RedisStore(client=client, cooldown=60)
    private_redis_server.kill()
    with pytest.raises(redis.ConnectionError):
        await store.get("k")
    with pytest.raises(RedisUnavailableError) as caught:
        await store.get("k")
    message = str(caught.value)
    assert f"Redis at 127.0.0.1:{private_redis_server.port}/0 failed" in message
    assert "ConnectionPool" not in message
    await client.aclose()
