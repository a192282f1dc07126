"""The Store contract, written once and run against every store memo ships.

``StoreContract`` holds the tests; a subclass supplies a ``store_factory``
fixture returning a callable that makes a fresh, empty store. To check a new
store, add it to ``FACTORIES`` below, or reuse the suite from your own tests::

    from test_store_contract import StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def store_factory(self):
            return lambda: MyStore(...)

Expiry is proven by polling for a bounded time, never by sleeping a fixed
time: each ttl test first sees the entry, then waits until it is gone.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

import pytest

from memo import DiskStore, MemoryStore, RedisStore, Store, async_disk_cache
from memo.stores import namespace_of
from memo.stores.base import store_key

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


EXPIRY_DEADLINE = 10.0  # seconds a short-lived entry may take to disappear
SHORT_TTL = 0.2


def key(
    namespace: str, name: str = "x", version: str | None = None, fingerprint: str | None = None
) -> str:
    """A store key as memo builds it (any text stands in for the digest)."""
    return store_key(namespace, version, name, fingerprint=fingerprint)


async def wait_until_gone(store: Store, k: str) -> float:
    """Poll until ``k`` reads as absent; return how long that took, or fail."""
    start = time.monotonic()
    while await store.get(k) is not None:
        assert time.monotonic() - start < EXPIRY_DEADLINE, f"{k!r} never expired"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def memory_factory(request: pytest.FixtureRequest) -> Callable[[], Store]:
    return MemoryStore


def disk_factory(request: pytest.FixtureRequest) -> Callable[[], Store]:
    folder: Path = request.getfixturevalue("tmp_path") / "disk-store"
    return lambda: DiskStore(folder)


def redis_factory(request: pytest.FixtureRequest) -> Callable[[], Store]:
    server = request.getfixturevalue("redis_server")
    return lambda: RedisStore(server.url)


def redis_single_flight_factory(request: pytest.FixtureRequest) -> Callable[[], Store]:
    server = request.getfixturevalue("redis_server")
    return lambda: RedisStore(server.url, lock_timeout=5.0)


def redis_near_cache_factory(request: pytest.FixtureRequest) -> Callable[[], Store]:
    server = request.getfixturevalue("redis_server")
    return lambda: RedisStore(server.url, near_cache=100)


FACTORIES = {
    "memory": memory_factory,
    "disk": disk_factory,
    "redis": redis_factory,
    "redis-single-flight": redis_single_flight_factory,
    "redis-near-cache": redis_near_cache_factory,
}


class StoreContract:
    """What every ``Store`` must do; subclasses provide ``store_factory``."""

    @pytest.fixture
    async def store(self, store_factory: Callable[[], Store]) -> Any:
        store = store_factory()
        yield store
        await store.close()

    async def test_is_a_store(self, store: Store) -> None:
        """The store satisfies the runtime-checkable Store protocol."""
        assert isinstance(store, Store)

    async def test_get_missing_is_none(self, store: Store) -> None:
        """Reading a key that was never written returns None."""
        assert await store.get(key("ns")) is None

    async def test_set_get_overwrite(self, store: Store) -> None:
        """A value reads back as written, and a second set replaces it."""
        k = key("ns")
        await store.set(k, b"first")
        assert await store.get(k) == b"first"
        await store.set(k, b"second")
        assert await store.get(k) == b"second"

    async def test_delete(self, store: Store) -> None:
        """Delete drops the entry and says whether there was one."""
        k, other = key("ns", "a"), key("ns", "b")
        await store.set(k, b"1")
        await store.set(other, b"2")
        assert await store.delete(k) is True
        assert await store.get(k) is None
        assert await store.delete(k) is False
        assert await store.get(other) == b"2"

    @pytest.mark.parametrize(
        "value",
        [
            b"",
            b"\x00",
            b"a\x00b\x00",
            bytes(range(256)),
            b"\xff\xfe\xfd\x80",
            b"\r\n*1\r\n$4\r\nPING\r\n",
            "é日本".encode("utf-16"),
        ],
        ids=["empty", "nul", "inner-nul", "all-bytes", "high-bytes", "protocol-text", "utf16"],
    )
    async def test_bytes_fidelity(self, store: Store, value: bytes) -> None:
        """Any byte string, NUL and high bytes included, reads back unchanged and as bytes."""
        k = key("bytes")
        await store.set(k, value)
        got = await store.get(k)
        assert type(got) is bytes
        assert got == value

    @pytest.mark.parametrize(
        "namespace",
        ["plain", "a:b", "spaces and/slashes", "glob*?[x]\\", "日本語", "%41", ""],
        ids=["plain", "colon", "spaces-slashes", "glob", "unicode", "percent", "empty"],
    )
    async def test_keys_of_any_namespace(self, store: Store, namespace: str) -> None:
        """Keys of any namespace text round-trip and read their namespace back."""
        k = key(namespace, version="v 1")
        assert namespace_of(k) == namespace
        await store.set(k, b"v")
        assert await store.get(k) == b"v"
        assert await store.clear(namespace) == 1
        assert await store.get(k) is None

    async def test_ttl_expires(self, store: Store) -> None:
        """An entry with a short ttl is readable at first, then gone within a bounded time."""
        k = key("ttl")
        await store.set(k, b"soon gone", ttl=SHORT_TTL)
        assert await store.get(k) == b"soon gone"
        waited = await wait_until_gone(store, k)
        assert waited < EXPIRY_DEADLINE

    async def test_ttl_none_and_overwrite(self, store: Store) -> None:
        """Entries without ttl outlive a short-lived one; a plain set removes an earlier ttl."""
        short, forever, renewed = key("ttl", "short"), key("ttl", "forever"), key("ttl", "renewed")
        await store.set(short, b"s", ttl=SHORT_TTL)
        await store.set(forever, b"f")
        await store.set(renewed, b"old", ttl=SHORT_TTL)
        await store.set(renewed, b"new")
        await wait_until_gone(store, short)
        assert await store.get(forever) == b"f"
        assert await store.get(renewed) == b"new"

    async def test_long_ttl_keeps_entry(self, store: Store) -> None:
        """A ttl far in the future keeps the entry readable."""
        k = key("ttl", "long")
        await store.set(k, b"v", ttl=3600)
        assert await store.get(k) == b"v"

    @pytest.mark.parametrize(
        ("target", "others"),
        [
            ("a", ["a:b", "ab", "b", "A", "a%3Ab", "a:"]),
            ("a:b", ["a", "a:b:c", "a:bc"]),
            ("*", ["a", "ab", "*a", "x*"]),
            ("[a]", ["a", "[a]b", "]"]),
            ("a?", ["ab", "a", "a??"]),
            ("ü", ["u", "üü"]),
        ],
        ids=["a-vs-a:b", "a:b-vs-a", "star", "brackets", "question-mark", "unicode"],
    )
    async def test_clear_one_namespace(self, store: Store, target: str, others: list[str]) -> None:
        """Clear drops every version and code fingerprint of a namespace, nothing of another."""
        doomed = [
            key(target, "1"),
            key(target, "2"),
            key(target, "1", version="2"),
            key(target, "1", fingerprint="0123456789abcdef"),
        ]
        for k in doomed:
            await store.set(k, b"doomed")
        for ns in others:
            await store.set(key(ns, "1"), ns.encode())
            await store.set(key(ns, "1", version="2"), ns.encode())
        assert await store.clear(target) == len(doomed)
        for k in doomed:
            assert await store.get(k) is None
        for ns in others:
            assert await store.get(key(ns, "1")) == ns.encode()
            assert await store.get(key(ns, "1", version="2")) == ns.encode()
        assert await store.clear(target) == 0

    async def test_clear_many(self, store: Store) -> None:
        """Clear drops thousands of entries and counts them all."""
        count = 2500
        await asyncio.gather(*(store.set(key("many", str(i)), b"v") for i in range(count)))
        await store.set(key("kept"), b"k")
        assert await store.clear("many") == count
        assert await store.get(key("many", "0")) is None
        assert await store.get(key("kept")) == b"k"

    async def test_concurrent_writers(self, store: Store) -> None:
        """Concurrent writers of many keys, and of one key, leave whole values behind."""
        values = {key("conc", str(i)): os.urandom(64) + bytes([i]) for i in range(100)}
        shared = key("conc", "shared")
        contenders = [bytes([i]) * 1000 for i in range(50)]
        await asyncio.gather(
            *(store.set(k, v) for k, v in values.items()),
            *(store.set(shared, v) for v in contenders),
        )
        read = await asyncio.gather(*(store.get(k) for k in values))
        assert read == list(values.values())
        assert await store.get(shared) in contenders

    async def test_writers_in_other_event_loops(self, store: Store) -> None:
        """Threads running their own event loops write to the same store object."""

        def write(thread: int) -> None:
            async def run() -> None:
                for i in range(20):
                    await store.set(key("threads", f"{thread}-{i}"), b"%d" % i)

            asyncio.run(run())

        await asyncio.gather(*(asyncio.to_thread(write, t) for t in range(3)))
        for t in range(3):
            for i in range(20):
                assert await store.get(key("threads", f"{t}-{i}")) == b"%d" % i

    async def test_large_value(self, store: Store) -> None:
        """A value of several megabytes reads back byte for byte."""
        value = os.urandom(6 * 2**20)
        k = key("large")
        await store.set(k, value)
        assert await store.get(k) == value

    async def test_close_then_reuse(self, store: Store) -> None:
        """After close (even twice) the store opens again on use and keeps what it held."""
        k = key("reuse")
        await store.set(k, b"kept")
        await store.close()
        await store.close()
        assert await store.get(k) == b"kept"
        await store.set(k, b"again")
        assert await store.get(k) == b"again"

    async def test_entries_lists_live_entries_in_key_order(self, store: Store) -> None:
        """entries() yields every live entry exactly, in key order, with absolute expiries."""
        written = {
            key("b", "2"): (b"\x00\xff binary", None),
            key("a", "1"): (b"text", None),
            key("a:b", "3"): (os.urandom(40_000), None),  # a value file of its own on disk
            key("c", "4", version="v"): (b"soon", 3600.0),
        }
        before = time.time()
        for k, (value, ttl) in written.items():
            await store.set(k, value, ttl=ttl)
        await store.set(key("gone"), b"expired", ttl=SHORT_TTL)
        await wait_until_gone(store, key("gone"))
        listed = [entry async for entry in store.entries()]  # type: ignore[attr-defined]
        assert [entry.key for entry in listed] == sorted(written)
        for entry in listed:
            value, ttl = written[entry.key]
            assert (entry.value, entry.size) == (value, len(value))
            if ttl is None:
                assert entry.expires is None
            else:
                assert before + ttl - 1 <= entry.expires <= time.time() + ttl + 1

    async def test_entries_of_some_namespaces_without_values(self, store: Store) -> None:
        """entries(namespaces, values=False) lists only those namespaces, with sizes."""
        for ns in ("a", "a:b", "ab", "b*"):
            await store.set(key(ns, "1"), ns.encode() * 3)
            await store.set(key(ns, "2", version="2"), b"x")
        entries = store.entries(["a", "b*"], values=False)  # type: ignore[attr-defined]
        listed = [entry async for entry in entries]
        assert sorted(entry.namespace for entry in listed) == ["a", "a", "b*", "b*"]
        assert [entry.key for entry in listed] == sorted(entry.key for entry in listed)
        assert all(entry.value is None for entry in listed)
        sizes = {entry.key: entry.size for entry in listed}
        assert sizes[key("b*", "1")] == 6
        assert sizes[key("a", "2", version="2")] == 1

    async def test_entries_beyond_one_page(self, store: Store) -> None:
        """Listing many entries (more than one page or SCAN step) yields each once."""
        count = 450
        await asyncio.gather(*(store.set(key("many", f"{i:04}"), b"%d" % i) for i in range(count)))
        await store.set(key("other"), b"o")
        listed = [entry async for entry in store.entries(["many"])]  # type: ignore[attr-defined]
        assert [entry.key for entry in listed] == [key("many", f"{i:04}") for i in range(count)]
        assert listed[-1].value == b"449"

    async def test_entries_of_an_empty_store(self, store: Store) -> None:
        """An empty store (a folder never written) lists nothing."""
        assert [entry async for entry in store.entries()] == []  # type: ignore[attr-defined]

    async def test_decorator_uses_store(self, store: Store) -> None:
        """async_disk_cache on this store: a miss, then a hit, then cache_clear drops it."""
        calls = 0

        @async_disk_cache(namespace="contract.double", store=store)
        async def double(x: int) -> int:
            nonlocal calls
            calls += 1
            return 2 * x

        assert await double(21) == 42
        assert await double(21) == 42
        assert calls == 1
        info = double.cache_info()
        assert (info.hits, info.misses, info.errors) == (1, 1, 0)
        assert await double.cache_clear() == 1
        assert await double(21) == 42
        assert calls == 2


class TestStores(StoreContract):
    """The contract, run against MemoryStore, DiskStore and RedisStore (locks, near cache)."""

    @pytest.fixture(params=list(FACTORIES), ids=list(FACTORIES))
    def store_factory(self, request: pytest.FixtureRequest) -> Callable[[], Store]:
        return FACTORIES[request.param](request)
