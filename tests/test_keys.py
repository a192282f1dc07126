"""Cache keys: which calls share a key, which never do, and what cannot be a key."""

from __future__ import annotations

import array
import collections
import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import math
import pathlib
import struct
import types
import uuid
import zoneinfo
from collections import OrderedDict, namedtuple
from typing import Any

import pydantic
import pytest

from memo import MemoryStore, async_disk_cache
from memo._keys import MAX_DEPTH, canonical_json


@async_disk_cache(namespace="keys.f", store=MemoryStore())
async def f(a: int, b: int = 2) -> int:
    return a + b


@async_disk_cache(namespace="keys.one", store=MemoryStore())
async def one(x: Any) -> None:
    return None


class Color(enum.Enum):
    RED = 1


class Shade(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass(frozen=True)
class PointA:
    x: int
    y: int


@dataclasses.dataclass(frozen=True)
class PointB:
    x: int
    y: int


class UserA(pydantic.BaseModel):
    name: str
    age: int


class UserB(pydantic.BaseModel):
    name: str
    age: int


class Open(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    name: str


class Client:
    """Has a stable identity of its own: the base URL."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __memo_key__(self) -> str:
        return self.url


class OtherClient:
    def __init__(self, url: str) -> None:
        self.url = url

    def __memo_key__(self) -> str:
        return self.url


class BrokenKey:
    def __memo_key__(self) -> str:
        msg = "no identity"
        raise RuntimeError(msg)


Pair = namedtuple("Pair", "a b")


class Tag(str):
    __slots__ = ()


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        pytest.param((1, 2), {}, id="f(1,2)"),
        pytest.param((1,), {"b": 2}, id="f(1,b=2)"),
        pytest.param((), {"a": 1, "b": 2}, id="f(a=1,b=2)"),
        pytest.param((), {"b": 2, "a": 1}, id="f(b=2,a=1)"),
        pytest.param((1,), {}, id="f(1)"),
        pytest.param((), {"a": 1}, id="f(a=1)"),
    ],
)
def test_call_forms_share_one_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Every way of spelling f(1, 2), default included, gives the key of f(1, 2)."""
    assert f.cache_key(*args, **kwargs) == f.cache_key(1, 2)


async def test_call_forms_share_one_entry() -> None:
    """The key equivalence is real: six spellings run the function once."""
    calls = 0

    @async_disk_cache(store=MemoryStore())
    async def g(a: int, b: int = 2) -> int:
        nonlocal calls
        calls += 1
        return a + b

    results = [await g(1, 2), await g(1, b=2), await g(a=1, b=2), await g(b=2, a=1)]
    results += [await g(1), await g(a=1)]
    assert results == [3] * 6
    assert calls == 1
    assert g.cache_info().hits == 5


def test_different_arguments_give_different_keys() -> None:
    """Changing any argument, or a default, changes the key."""
    keys = {f.cache_key(1), f.cache_key(1, 3), f.cache_key(2), f.cache_key(2, 1)}
    assert len(keys) == 4


def test_positional_only_parameters_are_bound() -> None:
    """Positional-only parameters and their defaults are part of the key."""

    @async_disk_cache(store=MemoryStore())
    async def g(a: int, b: int = 2, /, c: int = 3) -> int:
        return a + b + c

    assert g.cache_key(1) == g.cache_key(1, 2) == g.cache_key(1, 2, 3) == g.cache_key(1, c=3)
    assert g.cache_key(1) != g.cache_key(1, 5)


def test_var_positional_is_bound() -> None:
    """*args are bound as one ordered value: order counts, count counts."""

    @async_disk_cache(store=MemoryStore())
    async def g(a: int, *rest: int) -> int:
        return a

    assert g.cache_key(1, 2, 3) == g.cache_key(1, 2, 3)
    assert len({g.cache_key(1), g.cache_key(1, 2), g.cache_key(1, 2, 3), g.cache_key(1, 3, 2)}) == 4


def test_var_keyword_is_bound_without_order() -> None:
    """**kwargs are bound as a dict: their order is dropped, their values are kept."""

    @async_disk_cache(store=MemoryStore())
    async def g(a: int, **options: Any) -> int:
        return a

    assert g.cache_key(1, x=1, y=2) == g.cache_key(a=1, y=2, x=1)
    assert g.cache_key(1) != g.cache_key(1, x=1)
    assert g.cache_key(1, x=1) != g.cache_key(1, x=2)
    assert g.cache_key(1, x=1) != g.cache_key(1, y=1)


def test_var_keyword_named_like_an_argument_does_not_collide() -> None:
    """f(1, b=2) with b as a parameter and b inside **kwargs are different calls."""

    @async_disk_cache(namespace="kw", store=MemoryStore())
    async def g(a: int, **options: Any) -> int:
        return a

    @async_disk_cache(namespace="kw2", store=MemoryStore())
    async def h(a: int, b: int = 0, **options: Any) -> int:
        return a

    assert h.cache_key(1, b=2) != h.cache_key(1, c=2)
    assert g.cache_key(1, options=2) != g.cache_key(1)


# Pairs Python tells apart; DESIGN.md "Keys" item 5 and a few more of the same kind.
NON_COLLIDING = [
    pytest.param(None, float("nan"), id="None-vs-nan"),
    pytest.param(1, 1.0, id="1-vs-1.0"),
    pytest.param(1, True, id="1-vs-True"),
    pytest.param(1, "1", id="1-vs-'1'"),
    pytest.param(1.0, True, id="1.0-vs-True"),
    pytest.param(1.0, "1", id="1.0-vs-'1'"),
    pytest.param(True, "1", id="True-vs-'1'"),
    pytest.param(True, "true", id="True-vs-'true'"),
    pytest.param(0, False, id="0-vs-False"),
    pytest.param(None, "null", id="None-vs-'null'"),
    pytest.param(float("inf"), float("-inf"), id="inf-vs--inf"),
    pytest.param(float("inf"), None, id="inf-vs-None"),
    pytest.param(float("nan"), "nan", id="nan-vs-'nan'"),
    pytest.param(2**64, str(2**64), id="huge-int-vs-its-text"),
    pytest.param(2**64, float(2**64), id="huge-int-vs-float"),
    pytest.param({1: "x"}, {"1": "x"}, id="{1:x}-vs-{'1':x}"),
    pytest.param({True: "x"}, {1.5: "x"}, id="{True:x}-vs-{1.5:x}"),
    pytest.param(b"a", "a", id="b'a'-vs-'a'"),
    pytest.param(b"a", bytearray(b"a"), id="bytes-vs-bytearray"),
    pytest.param([1, 2], (1, 2), id="list-vs-tuple"),
    pytest.param([], (), id="empty-list-vs-empty-tuple"),
    pytest.param([], {}, id="empty-list-vs-empty-dict"),
    pytest.param({1, 2}, frozenset({1, 2}), id="set-vs-frozenset"),
    pytest.param({1, 2}, [1, 2], id="set-vs-list"),
    pytest.param([[1], 2], [1, [2]], id="nesting"),
    pytest.param(UserA(name="a", age=1), UserB(name="a", age=1), id="two-models-same-fields"),
    pytest.param(UserA(name="a", age=1), {"name": "a", "age": 1}, id="model-vs-dict"),
    pytest.param(PointA(1, 2), PointB(1, 2), id="two-dataclasses-same-fields"),
    pytest.param(PointA(1, 2), (1, 2), id="dataclass-vs-tuple"),
    pytest.param(Color.RED, Shade.RED, id="two-enums-same-value"),
    pytest.param(Color.RED, 1, id="enum-vs-its-value"),
    pytest.param(Level.LOW, 1, id="int-enum-vs-int"),
    pytest.param(Client("u"), OtherClient("u"), id="two-memo-key-classes"),
    pytest.param(Client("u"), "u", id="memo-key-vs-its-value"),
    pytest.param(Pair(1, 2), (1, 2), id="namedtuple-vs-tuple"),
    pytest.param(Tag("a"), "a", id="str-subclass-vs-str"),
    pytest.param(OrderedDict(a=1), {"a": 1}, id="ordereddict-vs-dict"),
    pytest.param({"\x00tuple": [1, 2]}, (1, 2), id="user-dict-with-NUL-key-vs-tagged-tuple"),
    pytest.param({"\x00bytes": "YQ=="}, b"a", id="user-dict-with-NUL-key-vs-tagged-bytes"),
    pytest.param({"\x00dict": [[1, "x"]]}, {1: "x"}, id="user-dict-vs-tagged-dict"),
    pytest.param({"\x00int": str(2**64)}, 2**64, id="user-dict-vs-tagged-int"),
    pytest.param(["\x00tuple", [1]], (1,), id="NUL-string-in-list-vs-tuple"),
    pytest.param(uuid.UUID(int=1), str(uuid.UUID(int=1)), id="uuid-vs-str"),
    pytest.param(decimal.Decimal("1.5"), 1.5, id="decimal-vs-float"),
    pytest.param(decimal.Decimal("1.5"), "1.5", id="decimal-vs-str"),
    pytest.param(pathlib.PurePosixPath("a"), "a", id="path-vs-str"),
    pytest.param(pathlib.PurePosixPath("a"), pathlib.PureWindowsPath("a"), id="path-flavours"),
    pytest.param(datetime.date(2024, 1, 2), "2024-01-02", id="date-vs-str"),
    pytest.param(datetime.datetime(2024, 1, 2), datetime.date(2024, 1, 2), id="datetime-vs-date"),
    pytest.param(
        datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc),
        datetime.datetime(2024, 1, 2),
        id="aware-vs-naive",
    ),
    pytest.param(datetime.time(1, 2), datetime.timedelta(hours=1, minutes=2), id="time-vs-delta"),
    pytest.param(Open(name="a", x=1), Open(name="a"), id="model-extra-fields"),
    pytest.param(Open(name="a", x=1), Open(name="a", y=1), id="model-extra-names"),
]


@pytest.mark.parametrize(("left", "right"), NON_COLLIDING)
def test_distinct_values_never_share_a_key(left: Any, right: Any) -> None:
    """Values Python tells apart (by type or value) give different keys."""
    assert one.cache_key(left) != one.cache_key(right)


@pytest.mark.parametrize(("left", "right"), NON_COLLIDING)
def test_distinct_values_never_share_a_key_when_nested(left: Any, right: Any) -> None:
    """The same pairs stay apart inside lists, dict values and dict keys."""
    assert one.cache_key([left]) != one.cache_key([right])
    assert one.cache_key({"k": left}) != one.cache_key({"k": right})
    assert one.cache_key({"k": [0, {"j": (left,)}]}) != one.cache_key({"k": [0, {"j": (right,)}]})


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param({"a": 1, "b": 2}, {"b": 2, "a": 1}, id="dict-order"),
        pytest.param({1: "a", "x": 2}, {"x": 2, 1: "a"}, id="mixed-key-dict-order"),
        pytest.param({(1, 2): 0, (0,): 1}, {(0,): 1, (1, 2): 0}, id="tuple-key-dict-order"),
        pytest.param({3, 1, 2}, {2, 3, 1}, id="set-order"),
        pytest.param(set(map(str, range(50))), set(map(str, reversed(range(50)))), id="str-set"),
        pytest.param(frozenset({"b", "a"}), frozenset({"a", "b"}), id="frozenset-order"),
        pytest.param({"\x00k": 1, "z": 2}, {"z": 2, "\x00k": 1}, id="NUL-key-dict-order"),
        pytest.param(UserA(name="a", age=1), UserA(age=1, name="a"), id="model-field-order"),
        pytest.param(Open(name="a", x=1, y=2), Open(name="a", y=2, x=1), id="model-extra-order"),
        pytest.param(float("nan"), float("-nan"), id="every-nan"),
    ],
)
def test_meaningless_order_is_dropped(left: Any, right: Any) -> None:
    """Dict key order and set member order never change the key."""
    assert one.cache_key(left) == one.cache_key(right)


SUPPORTED = [
    pytest.param(None, id="None"),
    pytest.param(True, id="bool"),
    pytest.param(7, id="int"),
    pytest.param(-(2**63), id="int64-min"),
    pytest.param(2**64 - 1, id="uint64-max"),
    pytest.param(10**40, id="huge-int"),
    pytest.param(-(10**40), id="huge-negative-int"),
    pytest.param(1.5, id="float"),
    pytest.param(float("nan"), id="nan"),
    pytest.param(float("-inf"), id="-inf"),
    pytest.param("text é \x00", id="str"),
    pytest.param([1, "a", None], id="list"),
    pytest.param((1, "a"), id="tuple"),
    pytest.param({"a": [1]}, id="dict"),
    pytest.param({1: "a", (1, 2): "b", frozenset({3}): "c", None: "d"}, id="dict-hashable-keys"),
    pytest.param({Color.RED: 1, datetime.date(2024, 1, 1): 2}, id="dict-enum-date-keys"),
    pytest.param({1, 2, 3}, id="set"),
    pytest.param(frozenset({"a"}), id="frozenset"),
    pytest.param(b"\x00\xff", id="bytes"),
    pytest.param(bytearray(b"ab"), id="bytearray"),
    pytest.param(Color.RED, id="enum"),
    pytest.param(Level.LOW, id="int-enum"),
    pytest.param(datetime.datetime(2024, 1, 2, 3, 4, 5, 6), id="datetime"),
    pytest.param(datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc), id="aware-datetime"),
    pytest.param(datetime.date(2024, 1, 2), id="date"),
    pytest.param(datetime.time(3, 4, 5), id="time"),
    pytest.param(datetime.timedelta(seconds=90), id="timedelta"),
    pytest.param(uuid.UUID("12345678-1234-5678-1234-567812345678"), id="uuid"),
    pytest.param(decimal.Decimal("3.14"), id="decimal"),
    pytest.param(pathlib.Path("/tmp/x"), id="path"),
    pytest.param(pathlib.PurePosixPath("a/b"), id="pure-path"),
    pytest.param(PointA(1, 2), id="dataclass"),
    pytest.param(UserA(name="a", age=1), id="pydantic-model"),
    pytest.param(Open(name="a", extra=[1]), id="pydantic-model-extra"),
    pytest.param(Client("https://api"), id="__memo_key__"),
    pytest.param(Pair(1, 2), id="namedtuple"),
    pytest.param(Tag("a"), id="str-subclass"),
    pytest.param(OrderedDict(a=1), id="ordereddict"),
    pytest.param([[[[{"deep": (1, {2})}]]]], id="nested"),
]


@pytest.mark.parametrize("value", SUPPORTED)
def test_every_supported_type_gives_a_stable_key(value: Any) -> None:
    """Each supported type gives a key, and an equal value built anew gives the same key."""
    key = one.cache_key(value)
    assert isinstance(key, str)
    assert key.startswith("keys.one:")
    assert one.cache_key(value) == key
    assert one.cache_key(_rebuild(value)) == key


def _rebuild(value: Any) -> Any:
    """An equal value made of new containers, dicts filled in reverse order."""
    if isinstance(value, dict) and type(value) is dict:
        return {k: _rebuild(v) for k, v in reversed(list(value.items()))}
    if type(value) is list:
        return [_rebuild(v) for v in value]
    if type(value) is tuple:
        return tuple(_rebuild(v) for v in value)
    if type(value) is set:
        return set(value)
    if isinstance(value, pydantic.BaseModel):
        return value.model_copy(deep=True)
    return value


def test_model_keys_follow_field_values() -> None:
    """Two models of one class with different field values get different keys."""
    assert one.cache_key(UserA(name="a", age=1)) != one.cache_key(UserA(name="a", age=2))
    assert one.cache_key(PointA(1, 2)) != one.cache_key(PointA(2, 1))
    assert one.cache_key(Client("a")) != one.cache_key(Client("b"))


class Opaque:
    pass


UNSUPPORTED = [
    pytest.param(Opaque(), "Opaque", id="plain-object"),
    pytest.param(lambda: 0, "function", id="function"),
    pytest.param(object(), "object", id="object"),
    pytest.param(iter([1]), "list_iterator", id="iterator"),
    pytest.param(memoryview(b"ab"), "memoryview", id="memoryview"),
    pytest.param(types.MappingProxyType({"a": 1}), "mappingproxy", id="mappingproxy"),
]


@pytest.mark.parametrize(("value", "type_name"), UNSUPPORTED)
async def test_unsupported_argument_fails_before_the_call(value: Any, type_name: str) -> None:
    """An unkeyable argument is a TypeError naming the parameter, its type and the fix."""
    calls = 0

    @async_disk_cache(store=MemoryStore())
    async def ask(prompt: str, client: Any = None) -> str:
        nonlocal calls
        calls += 1
        return prompt

    with pytest.raises(TypeError) as excinfo:
        await ask("hi", client=value)
    message = str(excinfo.value)
    assert "'client'" in message
    assert type_name in message
    assert "ignore=('client',)" in message
    assert "__memo_key__" in message
    assert calls == 0
    with pytest.raises(TypeError, match="'client'"):
        ask.cache_key("hi", value)


@pytest.mark.parametrize(
    ("value", "where"),
    [
        pytest.param([1, Opaque()], "options[1]", id="in-list"),
        pytest.param({"a": {"b": Opaque()}}, "options['a']['b']", id="in-dict"),
        pytest.param({1: Opaque()}, "options[1]", id="in-tagged-dict"),
        pytest.param(PointA(1, Opaque()), "options.y", id="in-dataclass"),  # type: ignore[arg-type]
        pytest.param({Opaque()}, "options", id="in-set"),
    ],
)
def test_unsupported_nested_value_is_located(value: Any, where: str) -> None:
    """The message points at the unkeyable value inside the argument."""
    with pytest.raises(TypeError, match="Opaque") as excinfo:
        _options_key(value)
    assert where in str(excinfo.value)
    assert "ignore=('options',)" in str(excinfo.value)


def _options_key(value: Any) -> str:
    @async_disk_cache(namespace="keys.options", store=MemoryStore())
    async def g(options: Any) -> None:
        return None

    return g.cache_key(value)


def test_memo_key_that_raises_is_a_clear_type_error() -> None:
    """A __memo_key__ that fails is reported with the parameter and the failure."""
    with pytest.raises(TypeError, match=r"'x'.*BrokenKey.*RuntimeError: no identity"):
        one.cache_key(BrokenKey())


def test_too_deep_nesting_is_a_type_error() -> None:
    """A value nested deeper than memo keys is a TypeError, not a crash."""
    value: Any = 1
    for _ in range(MAX_DEPTH + 5):
        value = [value]
    with pytest.raises(TypeError, match="deeper"):
        one.cache_key(value)


def test_self_referencing_value_is_a_type_error() -> None:
    """A list that contains itself is a TypeError, not an endless loop."""
    value: list[Any] = [1]
    value.append(value)
    with pytest.raises(TypeError, match="'x"):
        one.cache_key(value)


def test_wrong_arguments_raise_like_the_function() -> None:
    """Arguments that do not fit the signature raise TypeError, like a plain call would."""
    with pytest.raises(TypeError):
        f.cache_key(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        f.cache_key(c=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        pytest.param(("q", Opaque()), {}, id="positional"),
        pytest.param(("q",), {"client": Opaque()}, id="keyword"),
        pytest.param((), {"client": Opaque(), "prompt": "q"}, id="keyword-first"),
    ],
)
async def test_ignore_works_positional_or_keyword(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """An ignored parameter is left out of the key however the caller passes it."""
    calls = 0

    @async_disk_cache(store=MemoryStore(), ignore=("client",))
    async def ask(prompt: str, client: Any) -> str:
        nonlocal calls
        calls += 1
        return prompt

    reference = ask.cache_key("q", Opaque())
    assert ask.cache_key(*args, **kwargs) == reference
    assert await ask(*args, **kwargs) == "q"
    assert await ask("q", client=Opaque()) == "q"
    assert calls == 1
    assert ask.cache_key("other", Opaque()) != reference


def test_ignore_applies_to_var_keyword_keys() -> None:
    """A name that is not a parameter is dropped from **kwargs."""

    @async_disk_cache(store=MemoryStore(), ignore=("timeout",))
    async def create(model: str, **params: Any) -> str:
        return model

    base = create.cache_key("m", temperature=0)
    assert create.cache_key("m", temperature=0, timeout=Opaque()) == base
    assert create.cache_key("m", timeout=3, temperature=0) == base
    assert create.cache_key("m", temperature=1, timeout=3) != base


def test_ignore_with_a_default_value() -> None:
    """An ignored parameter with a default is dropped whether given or not."""

    @async_disk_cache(store=MemoryStore(), ignore=("timeout",))
    async def g(a: int, timeout: float = 10.0) -> int:
        return a

    assert g.cache_key(1) == g.cache_key(1, 5.0) == g.cache_key(1, timeout=1.0)


@pytest.mark.parametrize(
    "ignore",
    [pytest.param(("nope",), id="unknown-name"), pytest.param("client", id="bare-string")],
)
def test_ignore_names_are_checked_at_decoration(ignore: Any) -> None:
    """A typo in ignore= (or a bare string) is a TypeError when decorating."""
    with pytest.raises(TypeError, match="ignore"):

        @async_disk_cache(store=MemoryStore(), ignore=ignore)
        async def ask(prompt: str, client: Any) -> str:
            return prompt


def _key_of(namespace: str, version: str | int | None) -> str:
    @async_disk_cache(namespace=namespace, version=version, store=MemoryStore())
    async def g(a: int) -> int:
        return a

    return g.cache_key(1)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param(("a", None), ("b", None), id="namespace"),
        pytest.param(("a", None), ("a", "1"), id="version-set"),
        pytest.param(("a", "1"), ("a", "2"), id="version-bumped"),
        pytest.param(("a", None), ("a", ""), id="empty-version"),
        pytest.param(("a", "b"), ("a:b", None), id="namespace-colon-vs-version"),
        pytest.param(("a:vb", None), ("a", "b"), id="namespace-looks-like-version"),
        pytest.param(("a", "b:c"), ("a:b", "c"), id="colons-move"),
        pytest.param(("a%3Ab", None), ("a:b", None), id="escape-text-vs-colon"),
    ],
)
def test_namespace_and_version_change_the_key(
    left: tuple[str, str | None], right: tuple[str, str | None]
) -> None:
    """Different (namespace, version) pairs never share a key for the same arguments."""
    assert _key_of(*left) != _key_of(*right)


def test_keys_are_the_same_across_decorations() -> None:
    """Decorating again (a new process, a reload) gives the same key: no ids, no hash()."""
    assert _key_of("stable", "3") == _key_of("stable", "3")
    assert _key_of("stable", None) == _key_of("stable", None)


def test_key_is_hex_digest_after_namespace() -> None:
    """The key is the escaped namespace, the version and a sha256 hex digest."""
    key = _key_of("my ns", "2")
    prefix, version, digest = key.split(":")
    assert prefix == "my%20ns"
    assert version == "v2"
    assert len(digest) == 64
    int(digest, 16)


# -- Values whose meaning is more than their items: zones, order, parameters --


def _zone(key: str) -> zoneinfo.ZoneInfo | None:
    """The IANA zone ``key``, or None where this machine has no zone data."""
    try:
        return zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


PARIS = _zone("Europe/Paris")
LAGOS = _zone("Africa/Lagos")
needs_zones = pytest.mark.skipif(
    PARIS is None or LAGOS is None, reason="no IANA zone data here (pip install tzdata)"
)
H1 = datetime.timedelta(hours=1)
JAN = datetime.datetime(2024, 1, 15, 10, 0)
FALL_BACK = datetime.datetime(2024, 10, 27, 2, 30)  # happens twice in Paris


class RenamedAtFold(datetime.tzinfo):
    """One offset, but the second of two equal wall times has another name and DST."""

    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return H1

    def dst(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return H1 if dt is not None and dt.fold else datetime.timedelta(0)

    def tzname(self, dt: datetime.datetime | None) -> str:
        return "SUMMER" if dt is not None and dt.fold else "WINTER"

    def __memo_key__(self) -> str:
        return "renamed-at-fold"


class NoIdentity(datetime.tzinfo):
    """A tzinfo memo cannot name: no key, no __memo_key__."""

    def utcoffset(self, dt: datetime.datetime | None) -> datetime.timedelta:
        return H1


class Money(decimal.Decimal):
    pass


class Ident(uuid.UUID):
    pass


class Span(datetime.timedelta):
    pass


class Blob(bytearray):
    pass


class Moded(dict[str, int]):
    """A dict whose behaviour also depends on an attribute."""

    def __init__(self, items: dict[str, int], mode: str) -> None:
        super().__init__(items)
        self.mode = mode


class Slotted(list[int]):
    __slots__ = ("scale",)

    def __init__(self, items: list[int], scale: int) -> None:
        super().__init__(items)
        self.scale = scale


class Perm(enum.Flag):
    R = 4
    W = 2
    X = 1


@dataclasses.dataclass
class Tagged:
    value: int
    note: str = dataclasses.field(default="", compare=False)


def make_list() -> list[Any]:
    """A module-level default_factory: it has a name every process resolves."""
    return []


class Factory:
    """A callable default_factory that names itself."""

    def __call__(self) -> int:
        return 0

    def __memo_key__(self) -> str:
        return "zero"


def _ordered(*pairs: tuple[Any, Any]) -> OrderedDict[Any, Any]:
    return OrderedDict(pairs)


def _moved_to_end() -> OrderedDict[str, int]:
    value = OrderedDict(a=1, b=2)
    value.move_to_end("a")  # now b, a: dict.items() still says a, b
    return value


# Pairs that shared a key before memo kept zones, order and parameters: each
# is a collision (a wrong answer) on the keys of memo 0.1.
DEFECTS = [
    pytest.param(
        JAN.replace(tzinfo=PARIS),
        JAN.replace(tzinfo=LAGOS),
        id="paris-vs-lagos-in-january",
        marks=needs_zones,
    ),
    pytest.param(
        JAN.replace(tzinfo=PARIS),
        JAN.replace(tzinfo=datetime.timezone(H1)),
        id="paris-vs-fixed-offset",
        marks=needs_zones,
    ),
    pytest.param(
        JAN.replace(tzinfo=datetime.timezone(H1)),
        JAN.replace(tzinfo=datetime.timezone(H1, "CET")),
        id="fixed-offset-vs-named-fixed-offset",
    ),
    pytest.param(
        datetime.time(10, tzinfo=PARIS),
        datetime.time(10),
        id="time-in-a-zone-vs-naive-time",
        marks=needs_zones,
    ),
    pytest.param(
        datetime.time(10, tzinfo=PARIS),
        datetime.time(10, tzinfo=LAGOS),
        id="time-in-two-zones",
        marks=needs_zones,
    ),
    pytest.param(
        datetime.time(2, 30, tzinfo=PARIS),
        datetime.time(2, 30, tzinfo=PARIS, fold=1),
        id="time-fold",
        marks=needs_zones,
    ),
    pytest.param(
        FALL_BACK.replace(tzinfo=RenamedAtFold()),
        FALL_BACK.replace(tzinfo=RenamedAtFold(), fold=1),
        id="datetime-fold-that-renames",
    ),
    pytest.param(
        _ordered(("x", 1), ("y", 2)), _ordered(("y", 2), ("x", 1)), id="ordereddict-order"
    ),
    pytest.param(_ordered((1, "a"), (2, "b")), _ordered((2, "b"), (1, "a")), id="ordereddict-ints"),
    pytest.param(_moved_to_end(), OrderedDict(a=1, b=2), id="ordereddict-moved-to-end"),
    pytest.param(
        collections.defaultdict(list, a=[1]),
        collections.defaultdict(tuple, a=[1]),
        id="defaultdict-factories",
    ),
    pytest.param(
        collections.defaultdict(None, a=1), collections.defaultdict(int, a=1), id="defaultdict-none"
    ),
    pytest.param(collections.deque([1, 2], maxlen=2), collections.deque([1, 2]), id="deque-maxlen"),
    pytest.param(collections.deque([1, 2]), collections.deque([2, 1]), id="deque-order"),
    pytest.param(collections.deque([1, 2]), [1, 2], id="deque-vs-list"),
    pytest.param(Moded({"a": 1}, "strict"), Moded({"a": 1}, "lenient"), id="dict-subclass-state"),
    pytest.param(Slotted([1], 2), Slotted([1], 3), id="list-subclass-slots"),
    pytest.param(Money("1.5"), decimal.Decimal("1.5"), id="decimal-subclass"),
    pytest.param(Ident(int=1), uuid.UUID(int=1), id="uuid-subclass"),
    pytest.param(Span(seconds=1), datetime.timedelta(seconds=1), id="timedelta-subclass"),
    pytest.param(array.array("i", [1]), array.array("l", [1]), id="array-typecodes"),
    pytest.param(array.array("i", [1, 2]), [1, 2], id="array-vs-list"),
    pytest.param(range(0), range(1, 1), id="two-empty-ranges"),
    pytest.param(range(0, 3, 2), range(0, 4, 2), id="ranges-with-one-sequence"),
    pytest.param(range(2), (0, 1), id="range-vs-tuple"),
    pytest.param(complex(1, 0.0), complex(1, -0.0), id="complex-signed-zero"),
    pytest.param(complex(1, 0), 1.0, id="complex-vs-float"),
    pytest.param(fractions.Fraction(1, 2), 0.5, id="fraction-vs-float"),
    pytest.param(fractions.Fraction(1, 2), (1, 2), id="fraction-vs-tuple"),
    pytest.param(
        collections.ChainMap({"a": 1}, {"a": 2}), collections.ChainMap({"a": 1}), id="chainmap-maps"
    ),
    pytest.param(collections.UserList([1]), [1], id="userlist-vs-list"),
    pytest.param(collections.UserDict(a=1), {"a": 1}, id="userdict-vs-dict"),
    pytest.param(Blob(b"a"), bytearray(b"a"), id="bytearray-subclass"),
]


@pytest.mark.parametrize(("left", "right"), DEFECTS)
def test_values_that_differ_beyond_their_items_never_share_a_key(left: Any, right: Any) -> None:
    """Zones, folds, order, factories, maxlen, typecodes and attributes are part of the key."""
    assert one.cache_key(left) != one.cache_key(right)
    assert one.cache_key([left]) != one.cache_key([right])
    assert one.cache_key({"k": (0, left)}) != one.cache_key({"k": (0, right)})


@needs_zones
def test_zoned_datetimes_share_a_key_only_within_one_zone() -> None:
    """One wall time in Paris, in Lagos and at a fixed +01:00 gives one key per zone."""
    zones = [PARIS, LAGOS, datetime.timezone(H1), datetime.timezone(H1, "CET")]
    keys = [one.cache_key(JAN.replace(tzinfo=zone)) for zone in zones]
    assert len(set(keys)) == len(zones)
    assert one.cache_key(JAN.replace(tzinfo=zoneinfo.ZoneInfo.no_cache("Europe/Paris"))) == keys[0]
    # ...because they behave differently: Lagos has no summer time.
    summer = [
        (JAN.replace(tzinfo=zone) + datetime.timedelta(days=180)).utcoffset() for zone in zones
    ]
    assert summer[0] != summer[1]


@needs_zones
def test_fold_is_keyed_only_where_it_changes_the_time() -> None:
    """fold=1 is a second key for an ambiguous wall time, and no new key for any other time."""
    first = FALL_BACK.replace(tzinfo=PARIS)
    second = first.replace(fold=1)
    assert first == second  # Python compares wall times within one zone...
    assert first.utcoffset() != second.utcoffset()  # ...yet they are an hour apart
    assert one.cache_key(first) != one.cache_key(second)
    plain = JAN.replace(tzinfo=PARIS)
    assert one.cache_key(plain.replace(fold=1)) == one.cache_key(plain)
    fixed = JAN.replace(tzinfo=datetime.timezone(H1))
    assert one.cache_key(fixed.replace(fold=1)) == one.cache_key(fixed)


# Pairs that must share a key: what differs carries no meaning.
SAME_MEANING = [
    pytest.param(
        datetime.timezone(datetime.timedelta(0)), datetime.timezone.utc, id="utc-spelled-twice"
    ),
    pytest.param(
        JAN.replace(tzinfo=datetime.timezone(H1)),
        JAN.replace(tzinfo=datetime.timezone(H1, "UTC+01:00")),
        id="fixed-offset-with-its-own-name",
    ),
    pytest.param(
        collections.defaultdict(list, a=[1], b=[2]),
        collections.defaultdict(list, b=[2], a=[1]),
        id="defaultdict-order",
    ),
    pytest.param(collections.Counter(a=1, b=2), collections.Counter(b=2, a=1), id="counter-order"),
    pytest.param(
        collections.ChainMap({"a": 1, "b": 2}),
        collections.ChainMap({"b": 2, "a": 1}),
        id="chainmap-inner-dict-order",
    ),
    pytest.param(fractions.Fraction(2, 4), fractions.Fraction(1, 2), id="fraction-normalized"),
    pytest.param(
        collections.defaultdict(make_list), collections.defaultdict(make_list), id="named-factory"
    ),
    pytest.param(
        collections.defaultdict(Factory()),
        collections.defaultdict(Factory()),
        id="memo-key-factory",
    ),
]


@pytest.mark.parametrize(("left", "right"), SAME_MEANING)
def test_values_that_mean_the_same_share_a_key(left: Any, right: Any) -> None:
    """Order that carries no meaning, and two spellings of one zone, are one key."""
    if isinstance(left, datetime.tzinfo):
        left, right = JAN.replace(tzinfo=left), JAN.replace(tzinfo=right)
    assert one.cache_key(left) == one.cache_key(right)


# Pairs memo 0.1 already kept apart (or together) as Python does; kept here as a check.
ALREADY_APART = [
    pytest.param(collections.Counter(a=1), {"a": 1}, id="counter-vs-dict"),
    pytest.param(collections.Counter(a=0), collections.Counter(), id="counter-zero-count"),
    pytest.param(Perm.R | Perm.W, Perm.R, id="flag-combination-vs-member"),
    pytest.param(Perm.R | Perm.W, Perm.R | Perm.X, id="two-flag-combinations"),
    pytest.param(Perm.R | Perm.W, 6, id="flag-combination-vs-int"),
    pytest.param(decimal.Decimal("1.0"), decimal.Decimal("1.00"), id="decimal-exponent"),
    pytest.param(decimal.Decimal("0"), decimal.Decimal("-0"), id="decimal-signed-zero"),
    pytest.param(Tagged(1, "a"), Tagged(1, "b"), id="dataclass-compare-false-field"),
    pytest.param(0.0, -0.0, id="signed-zero"),
    pytest.param(
        pathlib.PureWindowsPath("A"), pathlib.PureWindowsPath("a"), id="windows-path-case"
    ),
]


@pytest.mark.parametrize(("left", "right"), ALREADY_APART)
def test_values_python_tells_apart_stay_apart(left: Any, right: Any) -> None:
    """Values that compare equal yet print or behave differently keep two keys."""
    assert one.cache_key(left) != one.cache_key(right)


def test_every_nan_is_one_key() -> None:
    """NaN payloads and signs are one key: no == can tell them apart (documented choice)."""
    quiet = float("nan")
    payload = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_0001))[0]  # a payload bit
    assert math.isnan(payload)
    assert struct.pack("<d", payload) != struct.pack("<d", quiet)
    assert one.cache_key(quiet) == one.cache_key(payload) == one.cache_key(-quiet)


def _lambda_factory() -> collections.defaultdict[str, int]:
    return collections.defaultdict(lambda: 0)


def _nested_factory() -> collections.defaultdict[str, int]:
    def zero() -> int:
        return 0

    return collections.defaultdict(zero)


def _from_file_zone() -> Any:
    """A datetime whose ZoneInfo was read from a file without a key, or None without zone files."""
    for folder in zoneinfo.TZPATH:
        path = pathlib.Path(folder, "Europe", "Paris")
        if path.is_file():
            with path.open("rb") as file:
                return JAN.replace(tzinfo=zoneinfo.ZoneInfo.from_file(file))
    return None


class Holder(list[int]):
    def __init__(self, items: list[int], client: object) -> None:
        super().__init__(items)
        self.client = client


REFUSED = [
    pytest.param(_lambda_factory(), "x.default_factory", "module-level", id="lambda-factory"),
    pytest.param(_nested_factory(), "x.default_factory", "module-level", id="nested-factory"),
    pytest.param(
        collections.defaultdict(functools.partial(int, "0")),
        "x.default_factory",
        "module-level",
        id="partial-factory",
    ),
    pytest.param(
        collections.defaultdict(Factory().__call__), "x.default_factory", "bound", id="bound-method"
    ),
    pytest.param(JAN.replace(tzinfo=NoIdentity()), "x.tzinfo", "zoneinfo.ZoneInfo", id="tzinfo"),
    pytest.param(
        datetime.time(tzinfo=NoIdentity()), "x.tzinfo", "zoneinfo.ZoneInfo", id="time-tzinfo"
    ),
    pytest.param(
        _from_file_zone(), "x.tzinfo", "key=", id="zoneinfo-without-key", marks=needs_zones
    ),
    pytest.param(types.MappingProxyType({"a": 1}), "'x'", "dict(proxy)", id="mappingproxy"),
    pytest.param(memoryview(b"ab"), "'x'", "tobytes()", id="memoryview"),
    pytest.param(Holder([1], object()), "x.client", "object", id="subclass-attribute"),
]


@pytest.mark.parametrize(("value", "where", "hint"), REFUSED)
def test_values_without_a_stable_identity_are_refused(value: Any, where: str, hint: str) -> None:
    """A factory, zone or view memo cannot name is a TypeError saying where and what to pass."""
    if value is None:
        pytest.skip("no zone files here")
    with pytest.raises(TypeError) as caught:
        one.cache_key(value)
    message = str(caught.value)
    assert where in message
    assert hint in message
    assert "ignore=('x',)" in message
    assert "0x" not in message  # no address from a repr


# The exact canonical JSON of each form. Forms memo 0.1 wrote must not change
# (their entries would all become misses); the new forms are pinned so that no
# Python version or process can write them differently.
KEY_FORMATS = [
    pytest.param(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.0},
        b'{"messages":[{"content":"hi","role":"user"}],"model":"m","temperature":0.0}',
        id="chat-request",
    ),
    pytest.param([1, "a", None, True, 1.5, -0.0], b'[1,"a",null,true,1.5,-0.0]', id="list"),
    pytest.param((1, "a"), b'["\\u0000tuple",[1,"a"]]', id="tuple"),
    pytest.param({1: "x", "1": "y"}, b'["\\u0000dict",[["1","y"],[1,"x"]]]', id="tagged-dict"),
    pytest.param({3, 1, 2}, b'["\\u0000set",[1,2,3]]', id="set"),
    pytest.param(bytearray(b"ab"), b'["\\u0000bytearray","YWI="]', id="bytearray"),
    pytest.param(2**64, b'["\\u0000int","0x10000000000000000"]', id="huge-int"),
    pytest.param(float("-inf"), b'["\\u0000float","-inf"]', id="infinity"),
    pytest.param(["\x00tuple", 1], b'["\\u0000list",["\\u0000tuple",1]]', id="tag-like-list"),
    pytest.param(
        datetime.datetime(2024, 1, 15, 10, 0, 0, 5),
        b'["\\u0000datetime",["datetime.datetime","2024-01-15T10:00:00.000005"]]',
        id="naive-datetime",
    ),
    pytest.param(
        FALL_BACK.replace(fold=1),
        b'["\\u0000datetime",["datetime.datetime","2024-10-27T02:30:00"]]',
        id="naive-datetime-fold",
    ),
    pytest.param(
        datetime.time(3, 4, 5), b'["\\u0000time",["datetime.time","03:04:05"]]', id="naive-time"
    ),
    pytest.param(datetime.date(2024, 1, 15), b'["\\u0000date",["datetime.date","2024-01-15"]]'),
    pytest.param(datetime.timedelta(days=-1, seconds=5), b'["\\u0000timedelta",[-1,5,0]]'),
    pytest.param(decimal.Decimal("1.10"), b'["\\u0000decimal","1.10"]', id="decimal"),
    pytest.param(
        uuid.UUID(int=7), b'["\\u0000uuid","00000000-0000-0000-0000-000000000007"]', id="uuid"
    ),
    pytest.param(
        pathlib.PurePosixPath("a/b"), b'["\\u0000path",["pathlib.PurePosixPath","a/b"]]', id="path"
    ),
    pytest.param(
        collections.Counter(a=2, b=1),
        b'["\\u0000subclass",["collections.Counter",{"a":2,"b":1}]]',
        id="counter",
    ),
    # The new forms.
    pytest.param(
        JAN.replace(tzinfo=PARIS),
        b'["\\u0000datetime",["datetime.datetime","2024-01-15T10:00:00+01:00",'
        b'["\\u0000zoneinfo","Europe/Paris"]]]',
        id="datetime-in-a-zone",
        marks=needs_zones,
    ),
    pytest.param(
        FALL_BACK.replace(tzinfo=PARIS, fold=1),
        b'["\\u0000datetime",["datetime.datetime","2024-10-27T02:30:00+01:00",'
        b'["\\u0000zoneinfo","Europe/Paris"],1]]',
        id="datetime-fold",
        marks=needs_zones,
    ),
    pytest.param(
        JAN.replace(tzinfo=datetime.timezone(-5 * H1, "EST")),
        b'["\\u0000datetime",["datetime.datetime","2024-01-15T10:00:00-05:00",'
        b'["\\u0000timezone",[-1,68400,0,"EST"]]]]',
        id="datetime-fixed-offset",
    ),
    pytest.param(
        datetime.time(10, tzinfo=datetime.timezone.utc),
        b'["\\u0000time",["datetime.time","10:00:00+00:00",["\\u0000timezone",[0,0,0,"UTC"]]]]',
        id="time-utc",
    ),
    pytest.param(
        _ordered(("b", 2), (1, "a")),
        b'["\\u0000ordereddict",["collections.OrderedDict",[["b",2],[1,"a"]]]]',
        id="ordereddict",
    ),
    pytest.param(
        collections.defaultdict(list, a=[1]),
        b'["\\u0000defaultdict",["collections.defaultdict",'
        b'["\\u0000callable","builtins.list"],{"a":[1]}]]',
        id="defaultdict",
    ),
    pytest.param(
        collections.deque([1, 2], maxlen=3),
        b'["\\u0000deque",["collections.deque",3,[1,2]]]',
        id="deque",
    ),
    pytest.param(
        array.array("d", [1.0, 2.5]), b'["\\u0000array",["array.array","d",[1.0,2.5]]]', id="array"
    ),
    pytest.param(range(0, 10, 2), b'["\\u0000range",[0,10,2]]', id="range"),
    pytest.param(complex(1, -0.0), b'["\\u0000complex",[1.0,-0.0]]', id="complex"),
    pytest.param(
        fractions.Fraction(1, 3), b'["\\u0000fraction",["fractions.Fraction",1,3]]', id="fraction"
    ),
    pytest.param(
        collections.ChainMap({"a": 1}, {"a": 2}),
        b'["\\u0000chainmap",["collections.ChainMap",[{"a":1},{"a":2}]]]',
        id="chainmap",
    ),
    pytest.param(
        collections.UserList([1]),
        b'["\\u0000userdata",["collections.UserList",[1]]]',
        id="userlist",
    ),
]


@pytest.mark.parametrize(("value", "expected"), KEY_FORMATS)
def test_key_formats_are_pinned(value: Any, expected: bytes) -> None:
    """Each type's canonical JSON is exactly the pinned bytes, in every process and Python."""
    assert canonical_json(value) == expected
