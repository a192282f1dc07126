"""Entry I/O on its own (memo._entries): fail-open reads and writes, counted once each."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from memo import CacheInfo, DiskStore, JsonSerializer, MemoryStore, PickleSerializer
from memo._entries import NOT_NOW, Entries, Found, StoreSlot
from memo._envelope import Codec

if TYPE_CHECKING:
    from pathlib import Path

    from memo.stores.base import Store


def _entries(
    store: Store | None = None, directory: Any = None, namespace: str = "ns", **options: Any
) -> Entries:
    slot = StoreSlot(namespace, "tests.fn", store=store, directory=directory)
    options.setdefault("serializer", JsonSerializer())
    return Entries(slot, **options)


async def test_a_written_value_reads_back_both_ways() -> None:
    """write() stores through the codec; read_nowait() and read() find it, each a hit."""
    entries = _entries(MemoryStore())
    opened = entries.open()
    assert await opened.write("k", {"a": [1, 2]}) is not None
    found = entries.read_nowait("k")
    assert isinstance(found, Found)
    assert found.value == {"a": [1, 2]}
    found = await opened.read("k")
    assert found is not None
    assert found.value == {"a": [1, 2]}
    assert entries.counters.info() == CacheInfo(hits=2, misses=0, errors=0)


async def test_a_stored_none_is_found() -> None:
    """None is a value like any other: Found(None), not a miss."""
    entries = _entries(MemoryStore())
    assert await entries.open().write("k", None) is not None
    found = entries.read_nowait("k")
    assert isinstance(found, Found)
    assert found.value is None


async def test_absent_keys_are_misses_without_errors() -> None:
    """An absent key is None from both reads, and counts nothing."""
    entries = _entries(MemoryStore())
    assert entries.read_nowait("absent") is None
    assert await entries.open().read("absent") is None
    assert entries.counters.info() == CacheInfo(hits=0, misses=0, errors=0)


async def test_a_store_that_cannot_answer_at_once_says_not_now(tmp_path: Path) -> None:
    """A DiskStore not yet opened cannot read without blocking: NOT_NOW, nothing counted."""
    entries = _entries(DiskStore(tmp_path / "cache"))
    assert entries.read_nowait("k") is NOT_NOW
    assert await entries.open().read("k") is None
    assert entries.counters.info() == CacheInfo(hits=0, misses=0, errors=0)


@pytest.mark.parametrize("nowait", [True, False], ids=["read_nowait", "read"])
async def test_an_unreadable_entry_is_a_miss_and_an_error(
    nowait: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes the codec refuses are a miss (None), one error, reported on the memo logger."""
    store = MemoryStore()
    await store.set("k", b"not an envelope")
    # Reported once per kind and namespace: a namespace of its own for each case.
    namespace = f"unreadable-{nowait}"
    entries = _entries(store, namespace=namespace)
    with caplog.at_level(logging.WARNING, logger="memo"):
        result = entries.read_nowait("k") if nowait else await entries.open().read("k")
    assert result is None
    assert entries.counters.info() == CacheInfo(hits=0, misses=0, errors=1)
    assert f"decode failed for namespace {namespace!r}" in caplog.text


async def test_cache_if_decides_what_is_written() -> None:
    """A result cache_if rejects is not written; write() returns no bytes for it."""
    store = MemoryStore()
    entries = _entries(store, cache_if=lambda result: result != "skip")
    opened = entries.open()
    assert await opened.write("skipped", "skip") is None
    assert await opened.write("kept", "keep") is not None
    assert await store.get("skipped") is None
    assert await store.get("kept") is not None
    assert entries.counters.info() == CacheInfo(hits=0, misses=0, errors=0)


async def test_a_value_the_serializer_refuses_is_an_error_not_a_write() -> None:
    """A value JSON cannot hold is not written: one error, nothing stored."""
    store = MemoryStore()
    entries = _entries(store)
    assert await entries.open().write("k", float("nan")) is None
    assert await store.get("k") is None
    assert entries.counters.info() == CacheInfo(hits=0, misses=0, errors=1)


async def test_a_store_that_cannot_be_opened_is_reported_once() -> None:
    """A folder that cannot be named is one error at open(); the run reads and writes nothing."""
    entries = _entries(directory="~no-such-user-for-memo/cache")
    assert entries.read_nowait("k") is NOT_NOW  # left to open(), which reports it
    opened = entries.open()
    assert await opened.read("k") is None
    assert await opened.write("k", 1) is None
    await opened.release("k")
    assert entries.counters.info() == CacheInfo(hits=0, misses=0, errors=1)


async def test_a_view_with_another_codec_shares_store_and_counters() -> None:
    """with_codec() reads and writes the same store, counts in the same counters, no cache_if."""
    store = MemoryStore()
    entries = _entries(store, cache_if=lambda result: False)
    pickled = entries.with_codec(Codec(PickleSerializer()))
    assert await pickled.open().write("k", {1, 2}) is not None  # cache_if is the decorator's
    found = pickled.read_nowait("k")
    assert isinstance(found, Found)
    assert found.value == {1, 2}
    assert entries.read_nowait("k") is None  # another serializer's entry: a miss
    assert entries.counters.info() == CacheInfo(hits=1, misses=0, errors=1)


async def test_the_serializer_is_inferred_at_first_use() -> None:
    """Without a serializer, the function's return annotation chooses it when first needed."""

    async def fn() -> tuple[int, int]:
        return (1, 2)

    store = MemoryStore()
    slot = StoreSlot("ns", "tests.fn", store=store, directory=None)
    entries = Entries(slot, serializer=None, fn=fn)
    assert await entries.open().write("k", (1, 2)) is not None
    found = entries.read_nowait("k")
    assert isinstance(found, Found)
    assert found.value == (1, 2)  # a tuple again: pydantic, not JSON
    assert type(entries.codec.serializer).__name__ == "PydanticSerializer"


async def test_a_subclass_that_overrides_get_is_read_through_it() -> None:
    """A store subclass overriding get (not get_nowait) is never read behind its back."""
    seen: list[str] = []

    class Counting(MemoryStore):
        async def get(self, key: str) -> bytes | None:
            seen.append(key)
            return await super().get(key)

    entries = _entries(Counting())
    await entries.open().write("k", 1)
    assert entries.read_nowait("k") is NOT_NOW
    found = await entries.open().read("k")
    assert found is not None
    assert found.value == 1
    assert seen == ["k"]


async def test_a_subclass_that_overrides_both_reads_is_read_at_once() -> None:
    """A subclass overriding get and get_nowait keeps the fast path."""

    class Both(MemoryStore):
        async def get(self, key: str) -> bytes | None:
            return await super().get(key)

        def get_nowait(self, key: str) -> bytes | None:
            return super().get_nowait(key)

    entries = _entries(Both())
    await entries.open().write("k", 1)
    assert isinstance(entries.read_nowait("k"), Found)
