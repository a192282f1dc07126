"""A failing cache never costs the caller its result: failures are logged and counted."""

from __future__ import annotations

import errno
import logging
from typing import TYPE_CHECKING, Any

import pytest
from doubles import StoreDouble

from memo import CacheInfo, DiskStore, MemoryStore, async_disk_cache

if TYPE_CHECKING:
    from pathlib import Path


def failing(optional: tuple[str, ...], fail: dict[str, BaseException]) -> StoreDouble:
    """A MemoryStore whose chosen operations raise; a failing get fails get_nowait too."""
    if "get" in fail:
        fail = {"get_nowait": fail["get"], **fail}
    return StoreDouble(fail=fail, optional=optional)


# Reads through get() only, or first through the optional get_nowait() fast path.
STORES = [pytest.param((), id="async-get"), pytest.param(("get_nowait",), id="nowait")]


def _make(store: Any, namespace: str, calls: list[int]) -> Any:
    @async_disk_cache(namespace=namespace, store=store)
    async def compute(x: int) -> dict[str, int]:
        calls.append(x)
        return {"x": x}

    return compute


def _memo_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "memo"]


@pytest.mark.parametrize("optional", STORES)
async def test_store_failing_on_read(
    optional: tuple[str, ...], caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    """A store whose reads raise: every call runs, returns its result, and is counted."""
    caplog.set_level(logging.DEBUG, logger="memo")
    store = failing(optional, {"get": ConnectionError("store is down")})
    calls: list[int] = []
    compute = _make(store, request.node.name, calls)
    assert await compute(1) == {"x": 1}
    assert await compute(1) == {"x": 1}
    assert calls == [1, 1]
    assert compute.cache_info() == CacheInfo(hits=0, misses=2, errors=2)
    records = _memo_records(caplog)
    assert len(records) == 2
    assert records[0].levelno == logging.WARNING
    assert "store is down" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert records[1].levelno == logging.DEBUG  # repeats do not flood the log
    assert await store.inner.get(compute.cache_key(1)) is not None  # writes still work


@pytest.mark.parametrize("optional", STORES)
async def test_store_failing_on_write(
    optional: tuple[str, ...], caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    """A store whose writes raise: the result is returned, nothing is stored, errors counted."""
    caplog.set_level(logging.DEBUG, logger="memo")
    store = failing(optional, {"set": TimeoutError("write timed out")})
    calls: list[int] = []
    compute = _make(store, request.node.name, calls)
    assert await compute(1) == {"x": 1}
    assert await compute(1) == {"x": 1}
    assert calls == [1, 1]
    assert compute.cache_info() == CacheInfo(hits=0, misses=2, errors=2)
    assert "write timed out" in caplog.text
    assert store.count("set") == 2


async def test_full_disk(caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest) -> None:
    """A write failing with ENOSPC (disk full) costs the entry, not the result."""
    caplog.set_level(logging.WARNING, logger="memo")
    full = OSError(errno.ENOSPC, "No space left on device")
    store = StoreDouble(fail={"set": full})
    calls: list[int] = []
    compute = _make(store, request.node.name, calls)
    assert await compute(3) == {"x": 3}
    assert compute.cache_info().errors == 1
    assert "No space left on device" in caplog.text
    store.fail.clear()  # space freed: the next call stores, the one after hits
    await compute(3)
    await compute(3)
    assert calls == [3, 3]
    assert compute.cache_info() == CacheInfo(hits=1, misses=2, errors=1)


async def test_store_failing_everywhere(request: pytest.FixtureRequest) -> None:
    """Reads and writes both failing still return every result."""
    store = StoreDouble(fail={"get": OSError("read"), "set": OSError("write")})
    calls: list[int] = []
    compute = _make(store, request.node.name, calls)
    assert [await compute(x) for x in (1, 2, 1)] == [{"x": 1}, {"x": 2}, {"x": 1}]
    assert compute.cache_info() == CacheInfo(hits=0, misses=3, errors=6)


async def test_refresh_with_a_failing_store(request: pytest.FixtureRequest) -> None:
    """refresh() returns the new result even when the write fails."""
    store = StoreDouble(fail={"set": OSError("write")})
    compute = _make(store, request.node.name, [])
    assert await compute.refresh(1) == {"x": 1}
    assert compute.cache_info().errors == 1


async def test_management_calls_fail_loudly(request: pytest.FixtureRequest) -> None:
    """invalidate() and cache_clear() raise the store's error: there is no result to save."""
    store = StoreDouble(fail={"delete": OSError("delete"), "clear": OSError("clear")})
    compute = _make(store, request.node.name, [])
    with pytest.raises(OSError, match="delete"):
        await compute.invalidate(1)
    with pytest.raises(OSError, match="clear"):
        await compute.cache_clear()


@pytest.mark.parametrize(
    "garbage",
    [
        pytest.param(b"\xff\xfe garbage", id="garbage"),
        pytest.param(b"", id="empty"),
        pytest.param(b"M\x01\x04json{truncated", id="truncated-json"),
        pytest.param(b"M\x01\x04json[1, 2]", id="wrong-shape"),
    ],
)
@pytest.mark.parametrize("where", ["memory", "disk"])
async def test_corrupt_entry_is_a_miss_and_is_overwritten(
    garbage: bytes, where: str, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    """An entry that cannot be read is a miss and an error, and the good result replaces it."""
    caplog.set_level(logging.DEBUG, logger="memo")
    store: Any = MemoryStore() if where == "memory" else DiskStore()
    calls: list[int] = []

    @async_disk_cache(namespace=request.node.name, store=store)
    async def typed(x: int) -> tuple[int, str]:
        calls.append(x)
        return (x, "ok")

    key = typed.cache_key(1)
    await store.set(key, garbage)
    assert await typed(1) == (1, "ok")
    assert typed.cache_info() == CacheInfo(hits=0, misses=1, errors=1)
    assert _memo_records(caplog)
    assert await store.get(key) != garbage
    assert await typed(1) == (1, "ok")
    assert calls == [1]
    assert typed.cache_info() == CacheInfo(hits=1, misses=1, errors=1)
    await store.close()


class FlakySerializer:
    """JSON-ish bytes, failing on demand."""

    memo_id = "flaky"

    def __init__(self) -> None:
        self.fail_dumps = False
        self.fail_loads = False

    def dumps(self, value: int) -> bytes:
        if self.fail_dumps:
            msg = "cannot encode"
            raise ValueError(msg)
        return str(value).encode()

    def loads(self, data: bytes) -> int:
        if self.fail_loads:
            msg = "cannot decode"
            raise ValueError(msg)
        return int(data)


async def test_serializer_failures_are_counted(request: pytest.FixtureRequest) -> None:
    """A serializer that fails to encode or decode costs an entry, never a result."""
    serializer = FlakySerializer()
    calls: list[int] = []

    @async_disk_cache(namespace=request.node.name, store=MemoryStore(), serializer=serializer)
    async def number(x: int) -> int:
        calls.append(x)
        return x

    serializer.fail_dumps = True
    assert await number(5) == 5
    assert await number(5) == 5
    assert number.cache_info() == CacheInfo(hits=0, misses=2, errors=2)
    serializer.fail_dumps = False
    assert await number(5) == 5  # stored now
    serializer.fail_loads = True
    # Unreadable: runs again, and its result, which would not read back, is not stored.
    assert await number(5) == 5
    serializer.fail_loads = False
    assert await number(5) == 5
    assert calls == [5, 5, 5, 5]
    assert number.cache_info() == CacheInfo(hits=1, misses=4, errors=4)


async def test_unusable_cache_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache folder that cannot be created (a file is in the way) still returns results."""
    caplog.set_level(logging.DEBUG, logger="memo")
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("in the way")
    monkeypatch.setenv("MEMO_CACHE_DIR", str(blocker / "cache"))
    calls: list[int] = []

    @async_disk_cache(namespace="unusable-folder")
    async def compute(x: int) -> int:
        calls.append(x)
        return x

    assert await compute(1) == 1
    assert await compute(1) == 1
    assert calls == [1, 1]
    info = compute.cache_info()
    assert (info.hits, info.misses) == (0, 2)
    assert info.errors >= 2
    assert _memo_records(caplog)
