"""Pickles planted in the disk store are never unpickled unless PickleSerializer was chosen.

The payload's unpickling would create a marker folder (``os.mkdir``), so
"never unpickled" is checked by the marker's absence, not by trusting memo.
"""

from __future__ import annotations

import os
import pickle
from typing import TYPE_CHECKING, Any

import diskcache
import pytest

from memo import DiskStore, JsonSerializer, PickleSerializer, PydanticSerializer, async_disk_cache
from memo._envelope import seal_envelope
from memo.stores import RefusedEntryError

if TYPE_CHECKING:
    from pathlib import Path


class Payload:
    """Unpickling this calls ``os.mkdir(marker)``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def payload_bytes(marker: Path, padding: int = 0) -> bytes:
    """The pickle of a Payload, padded after its STOP opcode to ``padding`` more bytes."""
    data = pickle.dumps(Payload(marker))
    if padding:
        # A pickle ignores what follows its STOP opcode: pad to force a file.
        data += b"\x00" * padding
    return data


SERIALIZERS = {
    "json": JsonSerializer(),
    "pydantic": PydanticSerializer(dict[str, int]),
}


def make(store: DiskStore, serializer: Any) -> tuple[Any, list[int]]:
    runs: list[int] = []

    @async_disk_cache(namespace="pickle-abuse", store=store, serializer=serializer)
    async def value(i: int) -> dict[str, int]:
        runs.append(i)
        return {"i": i}

    return value, runs


@pytest.mark.parametrize("size", [0, 100_000], ids=["row", "file"])
@pytest.mark.parametrize("serializer", ["json", "pydantic", "pickle"])
async def test_diskcache_pickle_mode_row_is_refused(
    tmp_path: Path, serializer: str, size: int
) -> None:
    """A row planted in diskcache's pickle mode is refused by every serializer, pickle included."""
    folder, marker = tmp_path / "cache", tmp_path / "pwned"
    store = DiskStore(folder)
    chosen = PickleSerializer() if serializer == "pickle" else SERIALIZERS[serializer]
    value, runs = make(store, chosen)
    key = value.cache_key(1)
    with diskcache.Cache(str(folder)) as plain:  # diskcache's default Disk pickles
        plain.set(key, [Payload(marker), "x" * size])
        assert plain.get(key, default=None, retry=False) is not None  # it *would* load...
    assert marker.exists()  # ...as diskcache itself just proved by loading it
    os.rmdir(marker)

    with pytest.raises(RefusedEntryError):
        await store.get(key)
    assert await value(1) == {"i": 1}
    assert await value(1) == {"i": 1}
    assert not marker.exists()
    assert runs == [1]  # a miss, overwritten by memo's own entry, then a hit
    assert value.cache_info().errors == 1
    await store.close()


@pytest.mark.parametrize("padding", [0, 100_000], ids=["row", "file"])
@pytest.mark.parametrize("enveloped", [False, True], ids=["bare", "in-memo-envelope"])
@pytest.mark.parametrize("serializer", ["json", "pydantic"])
async def test_raw_pickle_bytes_under_the_key_are_never_loaded(
    tmp_path: Path, serializer: str, enveloped: bool, padding: int
) -> None:
    """Pickle bytes stored as the raw value of the exact key: a miss for a non-pickle serializer."""
    folder, marker = tmp_path / "cache", tmp_path / "pwned"
    store = DiskStore(folder)
    value, runs = make(store, SERIALIZERS[serializer])
    key = value.cache_key(2)
    raw = payload_bytes(marker, padding)
    if enveloped:
        raw = seal_envelope(b"pickle", raw, key)  # as if PickleSerializer had written it
    with diskcache.Cache(str(folder)) as plain:
        plain.set(key, raw)  # bytes: stored raw, exactly as memo stores values
    assert await store.get(key) == raw
    assert await value(2) == {"i": 2}
    assert await value(2) == {"i": 2}
    assert not marker.exists()
    assert runs == [2]
    assert value.cache_info().errors == 1
    await store.close()


async def test_pickle_serializer_does_load_the_raw_row(tmp_path: Path) -> None:
    """With PickleSerializer chosen, a planted row is unpickled: why it is opt-in and unsafe."""
    folder, marker = tmp_path / "cache", tmp_path / "pwned"
    store = DiskStore(folder)
    value, runs = make(store, PickleSerializer())
    key = value.cache_key(3)
    with diskcache.Cache(str(folder)) as plain:
        plain.set(key, seal_envelope(b"pickle", payload_bytes(marker), key))
    result = await value(3)
    assert marker.exists()  # the planted code ran
    assert result is None  # and the caller got what the planted pickle chose
    assert runs == []
    await store.close()


@pytest.mark.parametrize("enveloped", [False, True], ids=["bare", "in-memo-envelope"])
async def test_pickle_planted_in_redis_is_never_loaded(
    redis_server: Any, tmp_path: Path, enveloped: bool
) -> None:
    """Pickle bytes SET in Redis under the exact key are a miss for a JSON-cached function."""
    import redis.asyncio

    from memo.stores.redis import RedisStore

    marker = tmp_path / "pwned"
    store = RedisStore(redis_server.url)
    runs: list[int] = []

    @async_disk_cache(namespace="pickle-abuse-redis", store=store)
    async def value(i: int) -> dict[str, int]:
        runs.append(i)
        return {"i": i}

    raw = payload_bytes(marker)
    if enveloped:
        raw = seal_envelope(b"pickle", raw, value.cache_key(4))
    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.set(store.prefix + "|" + value.cache_key(4), raw)
    assert await value(4) == {"i": 4}
    assert await value(4) == {"i": 4}
    assert not marker.exists()
    assert runs == [4]  # a miss, overwritten, then a hit
    assert value.cache_info().errors == 1
    await client.aclose()
    await store.close()
