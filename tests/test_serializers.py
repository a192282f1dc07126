"""Serializers: round-trips, the choice made from the return annotation, and the envelope."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import pickle
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import json_values, key_values, strictly_equal, typed_values

from memo import (
    JsonSerializer,
    MemoryStore,
    PickleSerializer,
    PydanticSerializer,
    Serializer,
    async_disk_cache,
)
from memo._envelope import seal_envelope
from memo._serializers import serializer_id


class Item(pydantic.BaseModel):
    name: str
    price: float
    tags: list[str] = []


class Order(pydantic.BaseModel):
    id: int
    items: list[Item]
    note: str | None = None
    placed: datetime.datetime


@dataclasses.dataclass
class Point:
    x: int
    y: int


items = st.builds(
    Item,
    name=st.text(max_size=10),
    price=st.floats(allow_nan=False, allow_infinity=False),
    tags=st.lists(st.text(max_size=5), max_size=3),
)
orders = st.builds(
    Order,
    id=st.integers(-(2**63), 2**63 - 1),
    items=st.lists(items, max_size=3),
    note=st.none() | st.text(max_size=10),
    placed=st.datetimes(timezones=st.sampled_from([None, datetime.timezone.utc])),
)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_json_round_trips(value: Any) -> None:
    """JsonSerializer gives back an equal value for anything JSON holds."""
    serializer = JsonSerializer()
    data = serializer.dumps(value)
    assert isinstance(data, bytes)
    assert strictly_equal(serializer.loads(data), value)


@settings(max_examples=100, deadline=None)
@given(value=orders)
def test_pydantic_round_trips_models(value: Order) -> None:
    """PydanticSerializer(Model) gives back an equal model of the same class."""
    serializer: PydanticSerializer[Order] = PydanticSerializer(Order)
    loaded = serializer.loads(serializer.dumps(value))
    assert type(loaded) is Order
    assert loaded == value


@settings(max_examples=100, deadline=None)
@given(value=st.lists(items, max_size=4) | st.none())
def test_pydantic_round_trips_containers_of_models(value: list[Item] | None) -> None:
    """PydanticSerializer(list[Model] | None) keeps the list, the models and None."""
    serializer: PydanticSerializer[list[Item] | None] = PydanticSerializer(list[Item] | None)
    assert serializer.loads(serializer.dumps(value)) == value


@settings(max_examples=200, deadline=None)
@given(pair=typed_values)
def test_pydantic_round_trips_types_json_loses(pair: tuple[Any, Any]) -> None:
    """Tuples, sets, datetimes, bytes and int keys come back as themselves."""
    tp, value = pair
    serializer: PydanticSerializer[Any] = PydanticSerializer(tp)
    loaded = serializer.loads(serializer.dumps(value))
    assert type(loaded) is type(value)
    assert loaded == value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_pydantic_keeps_non_finite_floats(value: float) -> None:
    """PydanticSerializer(float) keeps NaN and infinities instead of turning them into None."""
    serializer: PydanticSerializer[float] = PydanticSerializer(float)
    loaded = serializer.loads(serializer.dumps(value))
    assert strictly_equal(loaded, value)


@settings(max_examples=200, deadline=None)
@given(value=key_values)
def test_pickle_round_trips(value: Any) -> None:
    """PickleSerializer gives back a strictly equal value (NaN, bytes, sets, tuples...)."""
    serializer = PickleSerializer()
    assert strictly_equal(serializer.loads(serializer.dumps(value)), value)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(math.nan, id="nan"),
        pytest.param({"x": [math.inf]}, id="nested-inf"),
        pytest.param(datetime.datetime(2024, 1, 1), id="datetime"),
        pytest.param(Point(1, 2), id="dataclass"),
        pytest.param({1: "a"}, id="int-keys"),
        pytest.param(2**64, id="huge-int"),
        pytest.param(Item(name="a", price=1.0), id="model"),
    ],
)
def test_json_refuses_what_it_would_change(value: Any) -> None:
    """JsonSerializer raises rather than store a value it would give back changed."""
    with pytest.raises((TypeError, ValueError)):
        JsonSerializer().dumps(value)


def test_serializers_satisfy_the_protocol() -> None:
    """The three serializers are Serializer instances, and so is any dumps/loads object."""

    class Upper:
        def dumps(self, value: str) -> bytes:
            return value.upper().encode()

        def loads(self, data: bytes) -> str:
            return data.decode()

    for serializer in (JsonSerializer(), PydanticSerializer(Item), PickleSerializer(), Upper()):
        assert isinstance(serializer, Serializer)


# -- inference from the return annotation -------------------------------------


async def _stored(fn: Any, store: MemoryStore, *args: Any) -> bytes:
    data = await store.get(fn.cache_key(*args))
    assert data is not None, "the call stored nothing"
    return data


async def _returns_dict() -> dict[str, int]:
    return {"a": 1}


async def _returns_list_of_str() -> list[str]:
    return ["a", "b"]


async def _returns_any() -> Any:
    return {"a": [1, None]}


async def _returns_none() -> None:
    return None


async def _no_annotation():  # type: ignore[no-untyped-def]
    return [1, 2.5, "x"]


async def _returns_optional_str() -> str | None:
    return "x"


@pytest.mark.parametrize(
    "fn",
    [
        _returns_dict,
        _returns_list_of_str,
        _returns_any,
        _returns_none,
        _no_annotation,
        _returns_optional_str,
    ],
    ids=["dict", "list[str]", "Any", "None", "no-annotation", "str|None"],
)
async def test_json_types_are_stored_as_json(fn: Any) -> None:
    """Plain JSON return types, Any, None and no annotation get JsonSerializer."""
    store = MemoryStore()
    cached = async_disk_cache(store=store)(fn)
    value = await cached()
    expected = seal_envelope(b"json", JsonSerializer().dumps(value), cached.cache_key())
    assert await _stored(cached, store) == expected
    assert await cached() == value
    assert cached.cache_info().hits == 1


async def _returns_item() -> Item:
    return Item(name="a", price=1.5, tags=["x"])


async def _returns_items() -> list[Item]:
    return [Item(name="a", price=1.5), Item(name="b", price=2.0)]


async def _returns_item_or_none() -> Item | None:
    return Item(name="a", price=1.5)


async def _returns_tuple() -> tuple[int, str]:
    return (1, "a")


async def _returns_set() -> set[str]:
    return {"a", "b"}


async def _returns_datetime() -> datetime.datetime:
    return datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)


async def _returns_dataclass() -> Point:
    return Point(1, 2)


async def _returns_path() -> Path:
    return Path("/tmp/x")


async def _returns_int_keys() -> dict[int, str]:
    return {1: "a"}


async def _returns_bytes() -> bytes:
    return b"\x00\xff\x80 not utf-8"


@pytest.mark.parametrize(
    ("fn", "annotation"),
    [
        pytest.param(_returns_item, Item, id="Model"),
        pytest.param(_returns_items, list[Item], id="list[Model]"),
        pytest.param(_returns_item_or_none, Item | None, id="Model|None"),
        pytest.param(_returns_tuple, tuple[int, str], id="tuple[int,str]"),
        pytest.param(_returns_set, set[str], id="set[str]"),
        pytest.param(_returns_datetime, datetime.datetime, id="datetime"),
        pytest.param(_returns_dataclass, Point, id="dataclass"),
        pytest.param(_returns_path, Path, id="Path"),
        pytest.param(_returns_int_keys, dict[int, str], id="dict[int,str]"),
        pytest.param(_returns_bytes, bytes, id="bytes"),
    ],
)
async def test_other_types_are_stored_with_pydantic(fn: Any, annotation: Any) -> None:
    """Models, dataclasses and types JSON loses get PydanticSerializer; hits keep the type."""
    store = MemoryStore()
    cached = async_disk_cache(store=store)(fn)
    value = await cached()
    serializer: PydanticSerializer[Any] = PydanticSerializer(annotation)
    expected = seal_envelope(serializer_id(serializer), serializer.dumps(value), cached.cache_key())
    assert await _stored(cached, store) == expected
    hit = await cached()
    assert cached.cache_info().hits == 1
    assert hit == value
    assert type(hit) is type(value)
    if isinstance(value, list):
        assert [type(item) for item in hit] == [type(item) for item in value]


async def test_explicit_serializer_wins_over_the_annotation() -> None:
    """serializer= is used even when the annotation would choose another."""
    store = MemoryStore()

    @async_disk_cache(store=store, serializer=PickleSerializer())
    async def item() -> Item:
        return Item(name="a", price=1.0)

    value = await item()
    expected = seal_envelope(b"pickle", pickle.dumps(value, 5), item.cache_key())
    assert await _stored(item, store) == expected
    assert await item() == value


@async_disk_cache(store=MemoryStore())
async def later() -> LaterModel:
    return LaterModel(when=datetime.date(2024, 1, 2))


class LaterModel(pydantic.BaseModel):
    """Defined after the function that returns it: a forward reference."""

    when: datetime.date


async def test_forward_reference_is_resolved_at_first_call() -> None:
    """A return annotation naming a class defined later is resolved when first called."""
    first = await later()
    hit = await later()
    assert later.cache_info().hits == 1
    assert type(hit) is LaterModel
    assert hit == first


async def test_unresolvable_annotation_falls_back_to_json(caplog: pytest.LogCaptureFixture) -> None:
    """An annotation that never resolves is logged once and stored as JSON."""

    class Local(pydantic.BaseModel):  # a local class: invisible to get_type_hints
        x: int

    store = MemoryStore()

    @async_disk_cache(store=store)
    async def local() -> Local:  # the string "Local" cannot be resolved
        return {"x": 1}  # type: ignore[return-value]

    with caplog.at_level(logging.WARNING, logger="memo"):
        assert await local() == {"x": 1}
    assert "cannot be resolved" in caplog.text
    assert await _stored(local, store) == seal_envelope(b"json", b'{"x":1}', local.cache_key())
    assert await local() == {"x": 1}


# -- the envelope ---------------------------------------------------------------


class _Marker:
    """Unpickling it would create a file: proof that it was never unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize(
    "foreign",
    [
        pytest.param(
            lambda tmp, key: seal_envelope(b"pickle", pickle.dumps(_Marker(tmp)), key), id="pickle"
        ),
        pytest.param(
            lambda tmp, key: seal_envelope(b"pydantic:x.Y", b'{"a": 1}', key), id="other-pydantic"
        ),
        pytest.param(lambda tmp, key: b'{"a": 1}', id="no-envelope"),
        pytest.param(lambda tmp, key: pickle.dumps(_Marker(tmp)), id="bare-pickle"),
        pytest.param(lambda tmp, key: b"M\x03\x04json{}", id="future-format"),
        pytest.param(lambda tmp, key: b"M\x01\x04json" + b'{"a": 1}', id="memo-0.1-format"),
        pytest.param(lambda tmp, key: b"", id="empty"),
        pytest.param(lambda tmp, key: seal_envelope(b"json", b"{not json", key), id="corrupt-json"),
        pytest.param(
            lambda tmp, key: seal_envelope(b"json", b'{"a": 7}', key + "0"), id="another-keys-value"
        ),
        pytest.param(
            lambda tmp, key: seal_envelope(b"json", b'{"a": 7}', key).replace(b"7", b"3"),
            id="damaged-but-decodable",
        ),
    ],
)
async def test_foreign_value_is_a_miss_and_an_error(foreign: Any, tmp_path: Path) -> None:
    """A value another serializer (or format) wrote is a miss, counted, then overwritten."""
    store = MemoryStore()
    marker = tmp_path / "unpickled"
    calls = 0

    @async_disk_cache(store=store)
    async def fetch(n: int) -> dict[str, int]:
        nonlocal calls
        calls += 1
        return {"a": n}

    await store.set(fetch.cache_key(1), foreign(marker, fetch.cache_key(1)))
    assert await fetch(1) == {"a": 1}
    info = fetch.cache_info()
    assert (info.hits, info.misses, info.errors) == (0, 1, 1)
    assert not marker.exists()
    assert await _stored(fetch, store, 1) == seal_envelope(b"json", b'{"a":1}', fetch.cache_key(1))
    assert await fetch(1) == {"a": 1}
    assert calls == 1
    assert fetch.cache_info().hits == 1


async def test_pickle_entry_is_refused_by_a_pydantic_reader(tmp_path: Path) -> None:
    """A typed function never unpickles, even a value sealed as pickle under its own key."""
    store = MemoryStore()
    marker = tmp_path / "unpickled"

    @async_disk_cache(store=store)
    async def item() -> Item:
        return Item(name="a", price=1.0)

    planted = seal_envelope(b"pickle", pickle.dumps(_Marker(marker)), item.cache_key())
    await store.set(item.cache_key(), planted)
    assert await item() == Item(name="a", price=1.0)
    assert item.cache_info().errors == 1
    assert not marker.exists()
