"""A stored value says what it was written for: another key's value or a damaged one is a miss.

Real diskcache folders: the rows are changed the way a disk, a bug or a hand
with sqlite3 would change them, under a function that already has entries.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import pydantic
import pytest

from memo import CacheInfo, DiskStore, async_disk_cache
from memo._envelope import parse_envelope, seal_envelope

if TYPE_CHECKING:
    from pathlib import Path


def _price_function(store: DiskStore) -> tuple[Any, list[str]]:
    runs: list[str] = []

    @async_disk_cache(namespace="envelope.price", store=store)
    async def price(item: str) -> dict[str, Any]:
        runs.append(item)
        return {"item": item, "price": len(item)}

    return price, runs


def _rows(folder: Path) -> sqlite3.Connection:
    return sqlite3.connect(folder / "cache.db", isolation_level=None)


async def test_swapped_rows_are_misses_not_each_others_values(tmp_path: Path) -> None:
    """Two rows whose values were exchanged: each key misses (an error), runs, and is right."""
    folder = tmp_path / "cache"
    store = DiskStore(folder)
    price, runs = _price_function(store)
    assert await price("tea") == {"item": "tea", "price": 3}
    assert await price("coffee") == {"item": "coffee", "price": 6}
    tea, coffee = price.cache_key("tea"), price.cache_key("coffee")
    await store.close()
    with _rows(folder) as db:
        values = dict(db.execute("SELECT key, value FROM Cache").fetchall())
        db.execute("UPDATE Cache SET value = ? WHERE key = ?", (values[coffee], tea))
        db.execute("UPDATE Cache SET value = ? WHERE key = ?", (values[tea], coffee))
    db.close()
    assert await price("tea") == {"item": "tea", "price": 3}
    assert await price("coffee") == {"item": "coffee", "price": 6}
    assert runs == ["tea", "coffee", "tea", "coffee"]
    assert price.cache_info() == CacheInfo(hits=0, misses=4, errors=2)
    assert await price("tea") == {"item": "tea", "price": 3}  # overwritten with the right value
    await store.close()


async def test_a_bit_flip_that_still_decodes_is_a_miss(tmp_path: Path) -> None:
    """A payload changed on disk into other valid JSON is detected by its checksum."""
    folder = tmp_path / "cache"
    store = DiskStore(folder)
    price, runs = _price_function(store)
    assert await price("tea") == {"item": "tea", "price": 3}
    key = price.cache_key("tea")
    await store.close()
    with _rows(folder) as db:
        (value,) = db.execute("SELECT value FROM Cache WHERE key = ?", (key,)).fetchone()
        damaged = value.replace(b'"price":3', b'"price":7')
        assert damaged != value
        db.execute("UPDATE Cache SET value = ? WHERE key = ?", (damaged, key))
    db.close()
    assert await price("tea") == {"item": "tea", "price": 3}
    assert runs == ["tea", "tea"]
    assert price.cache_info().errors == 1
    await store.close()


async def test_an_entry_written_by_memo_0_1_is_a_miss(tmp_path: Path) -> None:
    """An entry in memo 0.1's envelope (format 1, no digests) is a miss, then replaced."""
    folder = tmp_path / "cache"
    store = DiskStore(folder)
    price, runs = _price_function(store)
    key = price.cache_key("tea")
    await store.set(key, b"M\x01\x04json" + b'{"item":"tea","price":99}')
    assert await price("tea") == {"item": "tea", "price": 3}
    assert price.cache_info() == CacheInfo(hits=0, misses=1, errors=1)
    assert await price("tea") == {"item": "tea", "price": 3}
    assert runs == ["tea"]
    await store.close()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param(lambda key: seal_envelope(b"json", b"{}", key), None, id="intact"),
        pytest.param(
            lambda key: seal_envelope(b"json", b"{}", key + "x"), "another key", id="moved"
        ),
        pytest.param(
            lambda key: seal_envelope(b"json", b"[1]", key).replace(b"[1]", b"[2]"),
            "damaged",
            id="damaged",
        ),
    ],
)
def test_parse_envelope_says_why_a_value_would_not_be_read(data: Any, problem: str | None) -> None:
    """The CLI's view of a stored value names the serializer and any problem."""
    opened = parse_envelope(data("ns::abc"), "ns::abc")
    assert opened is not None
    assert opened.serializer == "json"
    if problem is None:
        assert opened.problem is None
    else:
        assert opened.problem is not None
        assert problem in opened.problem


class Token(pydantic.BaseModel):
    user: str
    secret: pydantic.SecretStr


class Base(pydantic.BaseModel):
    name: str


class Derived(Base):
    extra: int


async def test_a_secret_is_never_stored_masked(tmp_path: Path) -> None:
    """A result holding a SecretStr is returned with its secret every time, and not stored."""
    store = DiskStore(tmp_path / "cache")
    runs = 0

    @async_disk_cache(store=store)
    async def login(user: str) -> Token:
        nonlocal runs
        runs += 1
        return Token(user=user, secret=pydantic.SecretStr("hunter2"))

    for _ in range(2):
        token = await login("ada")
        assert token.secret.get_secret_value() == "hunter2"
    assert runs == 2
    assert await store.get(login.cache_key("ada")) is None
    assert login.cache_info().errors == 2
    await store.close()


async def test_a_subclass_under_a_base_annotation_is_not_cut_down(tmp_path: Path) -> None:
    """A Derived returned as -> Base keeps its class and fields: returned, not stored as a Base."""
    store = DiskStore(tmp_path / "cache")

    @async_disk_cache(store=store)
    async def make(name: str) -> Base:
        return Derived(name=name, extra=1)

    for _ in range(2):
        made = await make("x")
        assert type(made) is Derived
        assert made == Derived(name="x", extra=1)
    assert make.cache_info() == CacheInfo(hits=0, misses=2, errors=2)
    await store.close()
