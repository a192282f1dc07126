"""The `memo` command line on a Redis cache (`--redis URL`), against a real redis-server.

Entries are written by decorated functions through ``RedisStore``; the
command line runs in this process (``in_process`` from ``test_cli``).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis
from test_cli import in_process

from memo import RedisStore, async_disk_cache

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from redis_server import RedisServer
    from test_cli import MemoCli

    from memo.stores.base import Store


@pytest.fixture
def memo_cli(capsys: pytest.CaptureFixture[str]) -> MemoCli:
    """Run `memo ARGS` in this process (as in ``test_cli``)."""
    return in_process(capsys)


class Functions:
    """Decorated functions on one store, counting their runs."""

    def __init__(self, store: Store) -> None:
        self.runs = 0

        @async_disk_cache(namespace="weather", store=store)
        async def weather(city: str) -> dict[str, Any]:
            self.runs += 1
            return {"city": city, "highs_c": [21, 23]}

        @async_disk_cache(namespace="weather:typed", store=store, ttl=3600)
        async def typed(city: str) -> list[str]:
            self.runs += 1
            return [city, "sunny"]

        self.weather = weather
        self.calls: list[Callable[[], Any]] = [
            lambda: weather("Paris"),
            lambda: weather("Lyon"),
            lambda: typed("Oslo"),
        ]
        self.store = store

    async def results(self) -> list[Any]:
        """Call every function once; return the results."""
        try:
            return [await call() for call in self.calls]
        finally:
            await self.store.close()


def run(functions: Functions) -> list[Any]:
    return asyncio.run(functions.results())


def as_json(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def commands_called(server: RedisServer) -> dict[str, int]:
    """How many times each command ran on the server since the test began."""
    with redis.Redis.from_url(server.url) as client:
        stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


@pytest.fixture
def filled(redis_server: RedisServer) -> list[Any]:
    """Three entries under the default prefix, one under another prefix."""
    results = run(Functions(RedisStore(redis_server.url)))
    run(Functions(RedisStore(redis_server.url, prefix="staging:")))  # another cache
    return results


def test_stats_ls_show(filled: list[Any], redis_server: RedisServer, memo_cli: MemoCli) -> None:
    """stats, ls and show read the entries of one prefix, with SCAN and never KEYS."""
    url = redis_server.url
    stats = as_json(memo_cli("stats", "--redis", url, "--json"))
    assert (stats["redis"], stats["prefix"], stats["entries"]) == (url, "memo:", 3)
    counts = {ns["namespace"]: ns["entries"] for ns in stats["namespaces"]}
    assert counts == {"weather": 2, "weather:typed": 1}
    text = memo_cli("stats", "--redis", url).stdout
    assert f"redis         {url}" in text
    assert "prefix        memo:" in text
    assert "entries       3\n" in text  # nothing shows as expired: Redis drops them itself

    listed = as_json(memo_cli("ls", "weather", "--redis", url, "--json"))
    assert len(listed) == 2
    assert all(row["stored"] is None and row["expires"] is None for row in listed)
    key = Functions(RedisStore(url)).weather.cache_key("Paris")
    assert key in [row["key"] for row in listed]
    typed = as_json(memo_cli("ls", "weather:typed", "--redis", url, "--json"))
    assert typed[0]["expires"] is not None

    shown = as_json(memo_cli("show", key[:40], "--redis", url, "--json"))
    assert shown["key"] == key
    assert shown["value"] == {"city": "Paris", "highs_c": [21, 23]}
    assert (
        "stored      - (Redis does not record it)" in memo_cli("show", key, "--redis", url).stdout
    )

    staging = as_json(memo_cli("stats", "--redis", url, "--prefix", "staging:", "--json"))
    assert staging["entries"] == 3
    calls = commands_called(redis_server)
    assert calls.get("keys", 0) == 0
    assert calls["scan"] >= 4


def test_clear_on_redis(filled: list[Any], redis_server: RedisServer, memo_cli: MemoCli) -> None:
    """Clear drops one namespace, then --all the rest of the prefix; other prefixes stay."""
    url = redis_server.url
    cleared = as_json(memo_cli("clear", "weather", "--redis", url, "--yes", "--json"))
    assert cleared == {"redis": url, "prefix": "memo:", "namespace": "weather", "cleared": 2}
    assert as_json(memo_cli("stats", "--redis", url, "--json"))["entries"] == 1
    everything = memo_cli("clear", "--all", "--redis", url, "--yes")
    assert everything.returncode == 0, everything.stderr
    assert f"dropped 1 entry (all namespaces) from {url} (prefix 'memo:')" in everything.stdout
    assert as_json(memo_cli("stats", "--redis", url, "--json"))["entries"] == 0
    staging = as_json(memo_cli("stats", "--redis", url, "--prefix", "staging:", "--json"))
    assert staging["entries"] == 3


def test_move_a_disk_cache_to_redis_and_back(
    redis_server: RedisServer, tmp_path: Path, memo_cli: MemoCli
) -> None:
    """Disk -> export -> Redis: calls through RedisStore hit; Redis -> export -> disk: they hit."""
    from memo import DiskStore

    url = redis_server.url
    results = run(Functions(DiskStore(tmp_path / "laptop")))
    from_disk = tmp_path / "from-disk.jsonl"
    assert (
        memo_cli("export", "--dir", str(tmp_path / "laptop"), "-o", str(from_disk)).returncode == 0
    )
    imported = as_json(memo_cli("import", str(from_disk), "--redis", url, "--json"))
    assert (imported["imported"], imported["expired"], imported["redis"]) == (3, 0, url)

    shared = Functions(RedisStore(url))
    assert run(shared) == results
    assert shared.runs == 0

    from_redis = memo_cli("export", "--redis", url)
    lines = from_redis.stdout.splitlines()
    original = from_disk.read_text().splitlines()
    assert len(lines) == len(original) == 5  # the header, three entries, the end line
    # The same file, but for the expiry of the entry with a ttl (Redis keeps milliseconds).
    assert [line for line in lines if '"expires": null' in line] == [
        line for line in original if '"expires": null' in line
    ]
    back = tmp_path / "back.jsonl"
    back.write_text(from_redis.stdout)
    assert memo_cli("import", str(back), "--dir", str(tmp_path / "server")).returncode == 0
    again = Functions(DiskStore(tmp_path / "server"))
    assert run(again) == results
    assert again.runs == 0


def test_a_bad_file_writes_nothing_to_redis(
    filled: list[Any], redis_server: RedisServer, tmp_path: Path, memo_cli: MemoCli
) -> None:
    """A file cut short is refused before Redis is written."""
    url = redis_server.url
    before = memo_cli("export", "--redis", url).stdout
    file = tmp_path / "cut.jsonl"
    file.write_text(before.replace("weather", "elsewhere")[:-20])
    result = memo_cli("import", str(file), "--redis", url)
    assert result.returncode == 1
    assert "was cut short; nothing was written" in result.stderr
    assert memo_cli("export", "--redis", url).stdout == before


def test_many_entries_are_scanned_in_batches(redis_server: RedisServer, memo_cli: MemoCli) -> None:
    """Thousands of entries: SCAN in several steps, never KEYS; export has them all in order."""
    count = 2500

    async def write() -> None:
        store = RedisStore(redis_server.url)
        try:
            await asyncio.gather(*(store.set(f"bulk::{i:05}", b"%d" % i) for i in range(count)))
        finally:
            await store.close()

    asyncio.run(write())
    url = redis_server.url
    assert as_json(memo_cli("stats", "--redis", url, "--json"))["entries"] == count
    exported = memo_cli("export", "--redis", url).stdout.splitlines()[1:-1]
    assert [json.loads(line)["key"] for line in exported] == [f"bulk::{i:05}" for i in range(count)]
    calls = commands_called(redis_server)
    assert calls.get("keys", 0) == 0
    assert calls["scan"] >= 4  # at least two steps for each of the two listings


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("prune",), "Redis drops expired entries itself", id="prune"),
        pytest.param(("stats", "--dir", "x"), "give --dir or --redis, not both", id="both"),
        pytest.param(("ls", "nowhere"), "no entries in namespace 'nowhere'", id="no-namespace"),
        pytest.param(("show", "weather::nope"), "no entry with key", id="no-key"),
    ],
)
def test_bad_input_on_redis(
    filled: list[Any],
    redis_server: RedisServer,
    args: tuple[str, ...],
    message: str,
    memo_cli: MemoCli,
) -> None:
    """Bad input on Redis is one line on stderr, exit status 1."""
    result = memo_cli(*args, "--redis", redis_server.url)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]


def test_prefix_needs_redis(memo_cli: MemoCli) -> None:
    """--prefix without --redis is refused: a folder has no prefix."""
    result = memo_cli("stats", "--prefix", "x:")
    assert result.returncode == 1
    assert "--prefix goes with --redis URL" in result.stderr


# -- RedisStore.entries beyond the store contract ---------------------------------


async def test_entries_skip_keys_of_other_types(redis_server: RedisServer) -> None:
    """A hash or list under the prefix (not memo's) is left out; memo's entries are listed."""
    store = RedisStore(redis_server.url)
    await store.set("a::1", b"one")
    with redis.Redis.from_url(redis_server.url) as client:
        client.hset("memo:|a::hash", "field", "value")
        client.rpush("memo:|a::list", "x")
        client.set("memo:|no-colon", b"x")
    try:
        listed = [(entry.key, entry.value) async for entry in store.entries()]
        sizes = [entry.size async for entry in store.entries(values=False)]
    finally:
        await store.close()
    assert listed == [("a::1", b"one")]
    assert sizes == [3]


async def test_entries_without_pexpiretime(redis_server: RedisServer) -> None:
    """On a server without PEXPIRETIME (before Redis 7), expiries come from PTTL."""
    store = RedisStore(redis_server.url)
    await store.set("a::1", b"one", ttl=600)
    await store.set("a::2", b"two")
    store._expiretime = False  # what the store concludes on an older server
    try:
        listed = [entry async for entry in store.entries()]
    finally:
        await store.close()
    calls = commands_called(redis_server)
    assert "pexpiretime" not in calls
    assert calls["pttl"] == 2
    assert listed[1].expires is None
    expires = listed[0].expires
    assert expires is not None
    assert time.time() + 590 < expires <= time.time() + 600


def test_an_export_from_a_redis_that_is_down_cannot_be_imported(
    tmp_path: Path, memo_cli: MemoCli
) -> None:
    """`memo export --redis DOWN | memo import -` fails at both ends, and imports nothing.

    What export printed before it failed must not read as an export of an
    empty cache: the import that reads it refuses it as cut short.
    """
    from redis_server import free_port

    down = f"redis://127.0.0.1:{free_port()}/0"
    exported = memo_cli("export", "--redis", down)
    assert exported.returncode == 1
    assert "ConnectionError" in exported.stderr
    target = tmp_path / "target"
    stdin = io.TextIOWrapper(io.BytesIO(exported.stdout.encode()))
    imported = memo_cli("import", "-", "--dir", str(target), stdin=stdin)
    assert imported.returncode == 1
    assert "cut short" in imported.stderr or "is empty" in imported.stderr
    assert not target.exists()


def test_an_expiry_redis_cannot_hold_writes_nothing(
    filled: list[Any], redis_server: RedisServer, tmp_path: Path, memo_cli: MemoCli
) -> None:
    """An expiry edited to 1e300 is refused while checking, not by Redis halfway through."""
    url = redis_server.url
    before = memo_cli("export", "--redis", url).stdout
    lines = before.replace("weather", "elsewhere").splitlines(keepends=True)
    last = json.loads(lines[-2])  # the last entry, before the end line
    lines[-2] = json.dumps({**last, "expires": 1e300}) + "\n"
    file = tmp_path / "far.jsonl"
    file.write_text("".join(lines))
    result = memo_cli("import", str(file), "--redis", url)
    assert result.returncode == 1
    assert f"line {len(lines) - 1} has the expiry 1e+300" in result.stderr
    assert "nothing was written" in result.stderr
    assert memo_cli("export", "--redis", url).stdout == before


def test_a_password_in_the_query_is_never_printed(
    filled: list[Any], redis_server: RedisServer, memo_cli: MemoCli
) -> None:
    """`--redis URL?password=...` (which redis-py reads) prints the URL without the password."""
    url = redis_server.url + "?password=s3cret"
    for args, status in ((("stats",), 0), (("stats", "--json"), 0), (("clear", "nowhere"), 1)):
        result = memo_cli(*args, "--redis", url)
        assert result.returncode == status, result.stderr
        shown = result.stdout + result.stderr
        assert redis_server.url + "?password=***" in shown
        assert "s3cret" not in shown
