"""The shared store double (tests/doubles.py) does what the tests that use it rely on."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from doubles import StoreDouble

from memo import DiskStore, MemoryStore, Store, async_disk_cache

if TYPE_CHECKING:
    from pathlib import Path


async def test_chosen_operations_fail_and_the_rest_reach_the_real_store() -> None:
    """A failing set raises a copy of its exception and stores nothing; get still reads."""
    error = OSError("disk on fire")
    store = StoreDouble(fail={"set": error})
    with pytest.raises(OSError, match="disk on fire") as raised:
        await store.set("k", b"v")
    assert raised.value is not error
    assert await store.inner.get("k") is None
    store.fail.clear()
    await store.set("k", b"v")
    assert await store.get("k") == b"v"
    assert store.calls == [("set", "k"), ("set", "k"), ("get", "k")]
    assert (store.count("set"), store.done["set"]) == (2, 1)
    assert isinstance(store, Store)


async def test_optional_operations_exist_only_when_offered() -> None:
    """get_nowait and release are absent unless asked for, and must exist on the real store."""
    assert getattr(StoreDouble(), "get_nowait", None) is None
    assert getattr(StoreDouble(), "release", None) is None
    store = StoreDouble(optional=("get_nowait",), fail={"get_nowait": ConnectionError("down")})
    with pytest.raises(ConnectionError, match="down"):
        store.get_nowait("k")
    with pytest.raises(TypeError, match="no release"):
        StoreDouble(MemoryStore(), optional=("release",))
    with pytest.raises(ValueError, match="cannot fail"):
        StoreDouble(fail={"gte": OSError()})


async def test_memo_takes_the_offered_get_nowait_path() -> None:
    """A cached function reads through get_nowait first when, and only when, it is offered."""
    for optional, nowait_reads in (((), 0), (("get_nowait",), 3)):
        store = StoreDouble(optional=optional)

        @async_disk_cache(namespace="doubles", store=store)
        async def double(x: int) -> int:
            return 2 * x

        assert [await double(4) for _ in range(3)] == [8, 8, 8]
        assert store.done["get_nowait"] == nowait_reads, optional


async def test_a_blocked_operation_waits_until_unblocked() -> None:
    """block() holds a set before it reaches the real store; unblock() lets it finish."""
    store = StoreDouble()
    store.block("set")
    writing = asyncio.ensure_future(store.set("k", b"v"))
    await store.held("set")
    assert not writing.done()
    assert await store.get("k") is None
    store.unblock("set")
    await writing
    assert await store.get("k") == b"v"


async def test_a_stepped_operation_takes_a_loop_step_on_each_side() -> None:
    """A stepped get finishes on the second loop step after it starts, not before."""
    store = StoreDouble(step=("get",))
    reading = asyncio.ensure_future(store.get("k"))
    await asyncio.sleep(0)  # the task starts and takes its first step
    await asyncio.sleep(0)
    assert not reading.done()
    await asyncio.sleep(0)
    assert reading.done()
    assert reading.result() is None


async def test_wraps_any_store(tmp_path: Path) -> None:
    """The double wraps a DiskStore as well as the default MemoryStore."""
    store = StoreDouble(DiskStore(tmp_path / "cache"), optional=("get_nowait",))
    await store.set("k", b"v")
    assert await store.get("k") == b"v"
    await store.close()
    assert store.count("close") == 1
