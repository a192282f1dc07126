"""Hostile arguments give a stable key or a clear TypeError, never a crash or a collision."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import traceback
from typing import Any

import pydantic
import pytest

from memo import async_disk_cache


# version=: the copy run by another process is other code, without a source file.
@async_disk_cache(namespace="abuse-args", version=1)
async def f(x: Any) -> None:
    """A cached function whose only parameter is the hostile value."""


def nested_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def nested_dict(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"k": value}
    return value


def cyclic_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def cyclic_dict() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


class RaisingKey:
    def __memo_key__(self) -> str:
        msg = "no key today"
        raise RuntimeError(msg)


class SelfKey:
    """A __memo_key__ that returns the object itself: an endless chain."""

    def __memo_key__(self) -> SelfKey:
        return self


class RecursingKey:
    """A __memo_key__ that recurses without end in Python code."""

    def __memo_key__(self) -> str:
        return self.__memo_key__()


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        pytest.param(nested_list(10_000), "nested deeper", id="list-10000-deep"),
        pytest.param(nested_dict(10_000), "nested deeper", id="dict-10000-deep"),
        pytest.param(tuple(nested_list(500)), "nested deeper", id="tuple-of-500-deep"),
        pytest.param(cyclic_list(), "nested deeper", id="cyclic-list"),
        pytest.param(cyclic_dict(), "nested deeper", id="cyclic-dict"),
        pytest.param(RaisingKey(), "no key today", id="memo-key-raises"),
        pytest.param(SelfKey(), "nested deeper", id="memo-key-returns-self"),
        pytest.param(RecursingKey(), "RecursionError", id="memo-key-recurses"),
        pytest.param(object(), "object", id="plain-object"),
        pytest.param({object(): 1}, "object", id="object-as-dict-key"),
    ],
)
def test_unkeyable_values_are_a_clear_type_error(value: object, needle: str) -> None:
    """Values with no canonical form raise TypeError naming the parameter and the fix."""
    with pytest.raises(TypeError) as caught:
        f.cache_key(value)
    message = str(caught.value)
    assert re.search("parameter ['\"]x", message)
    assert "ignore=('x',)" in message
    assert needle in message


async def test_unkeyable_value_fails_before_the_function_runs() -> None:
    """A call with an unkeyable argument raises TypeError and never runs the function."""
    runs = 0

    @async_disk_cache(namespace="abuse-args-before-run")
    async def g(x: Any) -> int:
        nonlocal runs
        runs += 1
        return 1

    with pytest.raises(TypeError, match="parameter 'x"):
        await g(cyclic_list())
    assert runs == 0


BIG = 10**5000  # more digits than Python converts to str by default


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(BIG, BIG + 1, id="huge-int-neighbours"),
        pytest.param(BIG, -BIG, id="huge-int-sign"),
        pytest.param(2**64, 2**64 - 1, id="uint64-boundary"),
        pytest.param(-(2**63), -(2**63) - 1, id="int64-boundary"),
        pytest.param(2**64, str(2**64), id="big-int-vs-its-digits"),
        pytest.param(2**64, float(2**64), id="big-int-vs-float"),
        pytest.param("\ud800", "\ud801", id="lone-surrogates"),
        pytest.param("\ud800", "\ufffd", id="surrogate-vs-replacement-char"),
        pytest.param("\ud83d\ude00", "\U0001f600", id="surrogate-pair-vs-astral-char"),
        pytest.param("a\udcff", b"a\xff", id="surrogateescape-str-vs-bytes"),
        pytest.param({"\ud800": 1}, {"\ud801": 1}, id="surrogate-dict-keys"),
        pytest.param({"\ud800": 1}, {"\x00surrogates": 1}, id="surrogate-key-vs-tag-like-key"),
        pytest.param(["\ud800"], [{"\x00surrogates": "eda080"}], id="surrogate-vs-dict-tag"),
        pytest.param("\ud800", ["\x00surrogates", "eda080"], id="surrogate-vs-list-tag"),
        pytest.param(
            "\ud800", ["\x00surrogates", "\x00surrogateseda080"], id="surrogate-vs-prefixed-tag"
        ),
        pytest.param({"\ud800": 1}, {"\x00surrogateseda080": 1}, id="surrogate-key-vs-its-rewrite"),
        pytest.param([float("nan")], [None], id="nan-vs-none-in-list"),
        pytest.param({"v": float("nan")}, {"v": "nan"}, id="nan-vs-str-in-dict"),
        pytest.param((float("inf"),), (float("-inf"),), id="inf-signs-in-tuple"),
        pytest.param({float("nan")}, {None}, id="nan-vs-none-in-set"),
        pytest.param([0.0], [-0.0], id="signed-zero-in-list"),
    ],
)
def test_hostile_values_never_collide(a: object, b: object) -> None:
    """Two different hostile values give two different keys, each stable."""
    key_a = f.cache_key(a)
    key_b = f.cache_key(b)
    assert key_a != key_b
    assert f.cache_key(a) == key_a
    assert f.cache_key(b) == key_b


@pytest.mark.slow
@pytest.mark.parametrize(
    "expression",
    [
        pytest.param("10**5000", id="huge-int"),
        pytest.param("-(10**5000) - 7", id="huge-negative-int"),
        pytest.param("'\\ud800'", id="lone-surrogate"),
        pytest.param("{'\\udcff': ['\\ud800', 1]}", id="surrogates-in-dict"),
        pytest.param("{1: '\\ud800'}", id="surrogate-in-tagged-dict"),
        pytest.param("[float('nan'), {'x': float('nan')}]", id="nan-in-containers"),
    ],
)
def test_hostile_keys_are_stable_across_processes(expression: str) -> None:
    """Keys of huge ints, surrogates and NaN are the same in another process and hash seed."""
    code = (
        "import sys\n"
        "sys.set_int_max_str_digits(640)\n"  # a stricter limit must not change keys
        "from memo import async_disk_cache\n"
        "@async_disk_cache(namespace='abuse-args', version=1)\n"
        "async def f(x): ...\n"
        f"print(f.cache_key({expression}))\n"
    )
    env = {"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == f.cache_key(eval(expression))


def test_nan_in_containers_is_one_stable_key() -> None:
    """NaN has one key wherever it sits, though NaN != NaN in Python."""
    nan = float("nan")
    assert f.cache_key([nan, {"a": nan}]) == f.cache_key([float("nan"), {"a": float("nan")}])


@dataclasses.dataclass(eq=False)
class Liar:
    """Equal to everything, one hash for all: Python cannot tell two Liars apart."""

    value: int

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


class LyingModel(pydantic.BaseModel):
    value: int

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


class LyingStr(str):
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0

    def __str__(self) -> str:
        return "always the same"


class LyingList(list[int]):
    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:  # type: ignore[override]
        return 0

    def __iter__(self) -> Any:
        return iter(())


class LyingMemoKey:
    def __init__(self, value: int) -> None:
        self.value = value

    def __memo_key__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(Liar(1), Liar(2), id="dataclass"),
        pytest.param(LyingModel(value=1), LyingModel(value=2), id="pydantic-model"),
        pytest.param(LyingStr("a"), LyingStr("b"), id="str-subclass"),
        pytest.param(LyingList([1]), LyingList([2]), id="list-subclass"),
        pytest.param(LyingMemoKey(1), LyingMemoKey(2), id="memo-key-object"),
        pytest.param([Liar(1)], [Liar(2)], id="dataclass-in-list"),
        pytest.param({LyingMemoKey(1): "v"}, {LyingMemoKey(2): "v"}, id="as-dict-key"),
    ],
)
def test_lying_eq_and_hash_never_collide(a: object, b: object) -> None:
    """Objects that claim to equal everything still get keys from what they hold."""
    assert a == b  # Python is fooled
    assert f.cache_key(a) != f.cache_key(b)


class SameKey:
    """Distinct objects (hashed by identity) that all give one __memo_key__."""

    def __memo_key__(self) -> int:
        return 0


def test_dict_keys_with_equal_canonical_forms_give_an_order_free_key() -> None:
    """A dict whose distinct keys share one canonical form gets one key in any insertion order."""
    k1, k2 = SameKey(), SameKey()
    assert f.cache_key({k1: "a", k2: "b"}) == f.cache_key({k2: "b", k1: "a"})
    assert f.cache_key({k1: "a", k2: "b"}) != f.cache_key({k1: "b", k2: "b"})


async def test_hostile_values_round_trip_through_the_cache() -> None:
    """Calls with huge ints, surrogates and NaN are cached and answered by the right entry."""
    runs: list[str] = []

    @async_disk_cache(namespace="abuse-args-round-trip")
    async def describe(x: Any) -> str:
        runs.append(type(x).__name__)
        return type(x).__name__ + (str(x % 997) if isinstance(x, int) else ascii(x))

    values = [BIG, BIG + 1, "\ud800", "\ud801", [float("nan")], [None]]
    first = [await describe(v) for v in values]
    second = [await describe(v) for v in values]
    assert first == second
    assert len(runs) == len(values)
    assert describe.cache_info().hits == len(values)


def test_a_raising_memo_key_keeps_its_traceback() -> None:
    """The TypeError's cause is the user's own exception, with the frame that raised it."""
    with pytest.raises(TypeError, match="no key today") as caught:
        f.cache_key(RaisingKey())
    cause = caught.value.__cause__
    assert isinstance(cause, RuntimeError)
    assert str(cause) == "no key today"
    frames = [frame.name for frame in traceback.extract_tb(cause.__traceback__)]
    assert frames[-1] == "__memo_key__"
