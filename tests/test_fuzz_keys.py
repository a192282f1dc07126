"""Fuzzing the key canonicalizer: different values never share a key, nothing crashes.

"Different" is decided by ``strictly_same``, a type-aware equality: ``1``,
``1.0`` and ``True`` differ, ``[1]`` differs from ``(1,)``, ``0.0`` from
``-0.0``, while every NaN is the same as every other NaN and dict and set
order never matters.
"""

from __future__ import annotations

import datetime
import decimal
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memo import async_disk_cache
from memo._keys import canonical, canonical_json

# Text with lone surrogates, NUL and tag look-alikes, next to ordinary text.
texts = st.one_of(
    st.text(max_size=6),
    st.text(
        st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010, categories=["Cs", "Co", "Lo"]),
        max_size=3,
    ),
    st.sampled_from(
        ["", "\x00", "\x00tuple", "\x00int", "\x00list", "\x00dict", "\x00surrogates", "1", "nan"]
    ),
)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**63 - 1, -(2**63), 2**64 - 1, 2**64, -(2**63) - 1, 10**4200, -(10**4200)]),
    st.floats(),
    st.sampled_from([0.0, -0.0, float("nan"), float("inf"), float("-inf")]),
    texts,
    st.binary(max_size=4),
    st.decimals(allow_nan=False, places=2, max_value=100, min_value=-100),
    st.datetimes(),
    st.dates(),
)

hashables = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple), st.frozensets(inner, max_size=3)
    ),
    max_leaves=4,
)

values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        # Lists that start like a tag must stay user data.
        st.tuples(texts, inner).map(list),
        st.dictionaries(texts, inner, max_size=3),
        st.dictionaries(hashables, inner, max_size=3),
        st.sets(hashables, max_size=3),
        st.frozensets(hashables, max_size=3),
    ),
    max_leaves=10,
)


def strictly_same(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` are one value: Python's ``==`` made type-aware."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if type(a) is decimal.Decimal:
        return str(a) == str(b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(strictly_same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        return len(a) == len(b) and all(
            any(strictly_same(ka, kb) and strictly_same(va, vb) for kb, vb in b.items())
            for ka, va in a.items()
        )
    if type(a) in (set, frozenset):
        return len(a) == len(b) and all(any(strictly_same(x, y) for y in b) for x in a)
    return bool(a == b)


def rebuilt(value: Any) -> Any:
    """A fresh copy of ``value`` with every dict and set built in reverse order."""
    cls = type(value)
    if cls is list:
        return [rebuilt(item) for item in value]
    if cls is tuple:
        return tuple(rebuilt(item) for item in value)
    if cls is dict:
        return {rebuilt(k): rebuilt(v) for k, v in reversed(list(value.items()))}
    if cls in (set, frozenset):
        return cls(rebuilt(item) for item in reversed(list(value)))
    if cls is float and math.isnan(value):
        return float("nan")  # another NaN object
    return value


@async_disk_cache(namespace="fuzz")
async def f(x: Any) -> None:
    """The decorator's own key path (its fast path for plain values included)."""


FUZZ = settings(max_examples=300, deadline=None)


@pytest.mark.slow
@FUZZ
@given(st.lists(values, min_size=2, max_size=6))
def test_different_values_never_share_a_key(batch: list[Any]) -> None:
    """Among any values, two share a canonical form (and a key) only if strictly the same."""
    for i, a in enumerate(batch):
        for b in batch[i + 1 :]:
            same = strictly_same(a, b)
            assert (canonical_json(a) == canonical_json(b)) is same, (a, b)
            assert (f.cache_key(a) == f.cache_key(b)) is same, (a, b)


@pytest.mark.slow
@FUZZ
@given(values)
def test_key_ignores_dict_and_set_order(value: Any) -> None:
    """A value rebuilt with every dict and set in another order has the same key."""
    copy = rebuilt(value)
    assert strictly_same(value, copy)
    assert canonical_json(copy) == canonical_json(value)
    assert f.cache_key(copy) == f.cache_key(value)


@pytest.mark.slow
@FUZZ
@given(values, values)
def test_value_and_its_canonical_form_never_meet(a: Any, b: Any) -> None:
    """A value never shares a key with the canonical form of another (tags cannot be forged)."""
    forged = canonical(b)
    if not strictly_same(a, forged):
        assert f.cache_key(a) != f.cache_key(forged), (a, forged)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(values, st.builds(object)), max_size=4))
def test_canonicalizer_never_crashes(batch: list[Any]) -> None:
    """Any value gives a key or a TypeError naming the parameter; nothing else escapes."""
    if any(type(item) is object for item in batch):
        with pytest.raises(TypeError, match="parameter 'x"):
            f.cache_key(batch)
    else:
        assert f.cache_key(batch).startswith("fuzz:")


def test_strictly_same_is_strict() -> None:
    """The fuzzing oracle itself tells apart the values Python's == confuses."""
    assert not strictly_same(1, 1.0)
    assert not strictly_same(1, True)
    assert not strictly_same([1], (1,))
    assert not strictly_same(0.0, -0.0)
    assert not strictly_same(decimal.Decimal("1.0"), decimal.Decimal("1.00"))
    assert not strictly_same(datetime.date(2020, 1, 1), datetime.datetime(2020, 1, 1))
    assert strictly_same(float("nan"), float("nan"))
    assert strictly_same({1: "a", 2: "b"}, {2: "b", 1: "a"})
