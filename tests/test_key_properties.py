"""Properties of cache keys, checked by Hypothesis, and their stability across processes."""

from __future__ import annotations

import array
import collections
import copy
import datetime
import decimal
import fractions
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strategies import (
    HAVE_ZONE_DATA,
    key_values,
    lookalike_clocks,
    lookalike_containers,
    make_list,
    strictly_equal,
    zones,
)

from memo import MemoryStore, async_disk_cache

# Hypothesis runs many examples per test: keep each test within a second or two.
fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PARAMS = ("a", "b", "c", "d")


@async_disk_cache(namespace="props.f", store=MemoryStore())
async def f(a: Any, b: Any = None, c: Any = 0, d: Any = "") -> None:
    return None


@async_disk_cache(namespace="props.one", store=MemoryStore())
async def one(x: Any) -> None:
    return None


@pytest.mark.slow
@fast
@given(values=st.lists(key_values, min_size=1, max_size=4), data=st.data())
def test_positional_and_keyword_forms_share_a_key(values: list[Any], data: st.DataObject) -> None:
    """Passing the first n arguments positionally and the rest by keyword gives one key."""
    split = data.draw(st.integers(min_value=0, max_value=len(values)), label="split")
    names = PARAMS[: len(values)]
    positional = values[:split]
    keywords = dict(zip(names[split:], values[split:], strict=True))
    assert f.cache_key(*positional, **keywords) == f.cache_key(*values)


@pytest.mark.slow
@fast
@given(values=st.lists(key_values, min_size=4, max_size=4), order=st.permutations(PARAMS))
def test_keyword_order_never_matters(values: list[Any], order: list[str]) -> None:
    """The order of keyword arguments is not part of the key."""
    by_name = dict(zip(PARAMS, values, strict=True))
    shuffled = {name: by_name[name] for name in order}
    assert f.cache_key(**shuffled) == f.cache_key(**by_name)


@fast
@given(value=key_values)
def test_defaults_given_or_not_share_a_key(value: Any) -> None:
    """Spelling out a default value gives the key of leaving it out."""
    assert f.cache_key(value) == f.cache_key(value, None, 0, "") == f.cache_key(value, d="")


@fast
@given(value=key_values)
def test_equal_copies_share_a_key(value: Any) -> None:
    """A deep copy (new objects, same contents) gives the same key."""
    assert one.cache_key(copy.deepcopy(value)) == one.cache_key(value)


def _mutate(value: Any, data: st.DataObject) -> Any:
    """A value close to ``value``: often equal in Python but of another type, or one item off."""
    choice = data.draw(st.integers(0, 6), label="mutation")
    if choice == 0:
        return copy.deepcopy(value)
    if choice == 1 and isinstance(value, (list, tuple)):
        return tuple(value) if isinstance(value, list) else list(value)
    if choice == 2 and isinstance(value, (bool, int, float)) and not isinstance(value, bool):
        return float(value) if isinstance(value, int) and abs(value) < 2**53 else value
    if choice == 3 and isinstance(value, (int, float)):
        return bool(value)
    if choice == 4 and isinstance(value, (set, frozenset)):
        return frozenset(value) if isinstance(value, set) else set(value)
    if choice == 5 and isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if choice == 6 and isinstance(value, (list, tuple)) and value:
        return [*value[:-1]]
    return data.draw(key_values, label="other")


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(left=key_values, data=st.data())
@example(left=None, data=None)
@example(left=1, data=None)
@example(left=[1, 2], data=None)
@example(left={1: "x"}, data=None)
def test_keys_are_equal_exactly_when_values_are_strictly_equal(
    left: Any, data: st.DataObject | None
) -> None:
    """Two values share a key if and only if they are equal in value and type, all the way down."""
    if data is None:  # the explicit examples: pair each with its nearest lookalikes
        for right in ([None, float("nan")], 1.0, True, "1", (1, 2), {"1": "x"}):
            assert (one.cache_key(left) == one.cache_key(right)) == strictly_equal(left, right)
        return
    right = _mutate(left, data)
    same_key = one.cache_key(left) == one.cache_key(right)
    assert same_key == strictly_equal(left, right), (left, right)


SCRIPT = textwrap.dedent(
    """
    import datetime, decimal, json, sys, uuid
    from memo import MemoryStore, async_disk_cache

    @async_disk_cache(namespace="seed", version=2, store=MemoryStore())
    async def f(a, *args, b=None, **kwargs):
        return None

    values = [
        {"x", "y", "z", "w", "spam", "eggs"},
        frozenset({("a", 1), ("b", 2), ("c", 3)}),
        {"k" + str(i): i for i in range(20)},
        {("t", i): {str(i)} for i in range(10)},
        {1: "a", "1": "b", None: "c", 1.5: "d"},
        [b"bytes", decimal.Decimal("1.10"), uuid.UUID(int=7), datetime.date(2024, 5, 6)],
        float("nan"),
        2**100,
    ]
    keys = [f.cache_key(v, *values, b=v, extra=values, other={v: 1} if v.__hash__ else 0)
            for v in values]
    json.dump(keys, sys.stdout)
    """
)


def _keys_with_hash_seed(seed: str) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    keys: list[str] = json.loads(out.stdout)
    return keys


@pytest.mark.slow
def test_keys_are_stable_across_processes_and_hash_seeds() -> None:
    """Keys of sets, frozensets and dicts are identical in processes with different hash seeds."""
    runs = {seed: _keys_with_hash_seed(seed) for seed in ("0", "1", "random", "12345")}
    assert len(runs["0"]) == 8
    assert len(set(runs["0"])) == 8
    assert runs["0"] == runs["1"] == runs["random"] == runs["12345"]
    namespace = {"__name__": "seed_check"}
    exec(SCRIPT.replace("json.dump(keys, sys.stdout)", ""), namespace)
    assert namespace["keys"] == runs["0"]


# -- Collision hunting among values whose meaning is more than their items --


def _near_miss(value: Any, data: st.DataObject) -> Any:  # noqa: PLR0912
    """A value that Python's ``==`` may call equal to ``value`` but that means something else.

    The same wall time in another zone with the same offset, the other fold,
    the same pairs in another order, another default_factory or maxlen, another
    typecode, exponent, signed zero or range spelling. Sometimes it is the
    value itself, rebuilt.
    """
    choice = data.draw(st.integers(0, 3), label="near miss")
    if choice == 0:
        return copy.deepcopy(value)
    if isinstance(value, (datetime.datetime, datetime.time)):
        if choice == 1:
            return value.replace(fold=1 - value.fold)
        # The same wall time in another zone (often one with the same offset), or naive.
        return value.replace(tzinfo=data.draw(st.none() | zones, label="zone"))
    if isinstance(value, collections.OrderedDict):
        return collections.OrderedDict(reversed(value.items())) if choice == 1 else dict(value)
    if isinstance(value, collections.defaultdict):
        factory = data.draw(st.sampled_from([None, list, int, make_list]), label="factory")
        return collections.defaultdict(factory, value) if choice < 3 else dict(value)
    if isinstance(value, collections.deque):
        if choice == 1:
            maxlen = data.draw(st.none() | st.integers(len(value), len(value) + 2), label="maxlen")
            return collections.deque(value, maxlen=maxlen)
        return collections.deque(reversed(value), value.maxlen) if choice == 2 else list(value)
    if isinstance(value, collections.Counter):
        return dict(value)
    if isinstance(value, collections.ChainMap):
        return (
            collections.ChainMap(dict(value))
            if choice == 1
            else collections.ChainMap(*value.maps[::-1])
        )
    if isinstance(value, (collections.UserList, collections.UserDict)):
        return value.data
    if isinstance(value, array.array):
        other = {"i": "l", "l": "i", "d": "f"}[value.typecode]
        return array.array(other, value) if choice < 3 else value.tolist()
    if isinstance(value, range):
        step = 1 if value.step > 0 else -1
        return range(value.start, value.stop + step, value.step) if choice < 3 else tuple(value)
    if isinstance(value, complex):
        return complex(value.real, -value.imag) if choice < 3 else value.real
    if isinstance(value, decimal.Decimal):
        return value + decimal.Decimal("0.0") if choice < 3 else float(value)
    if isinstance(value, fractions.Fraction):
        return float(value) if choice < 3 else (value.numerator, value.denominator)
    return data.draw(key_values, label="other")


near_misses = st.one_of(lookalike_clocks, lookalike_containers, key_values)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(left=near_misses, data=st.data())
def test_near_misses_share_a_key_exactly_when_strictly_equal(
    left: Any, data: st.DataObject
) -> None:
    """A value and a look-alike (zone, fold, order, factory, maxlen) share a key only if equal."""
    right = _near_miss(left, data)
    same_key = one.cache_key(left) == one.cache_key(right)
    assert same_key == strictly_equal(left, right), (left, right)


def _behaviour(value: Any) -> str:
    """What a function can observe of ``value``, written out: its type, text, zone and future."""
    if isinstance(value, datetime.datetime):
        later = value + datetime.timedelta(days=183)
        seen: Any = (
            value.isoformat(),
            value.tzname(),
            value.dst(),
            later.isoformat(),
            later.tzname(),
        )
    elif isinstance(value, datetime.time):
        days = [datetime.date(2024, 1, 15), datetime.date(2024, 7, 15), datetime.date(2024, 10, 27)]
        days.append(datetime.date(2024, 11, 3))
        combined = [datetime.datetime.combine(day, value) for day in days]
        seen = (value.isoformat(), [(c.isoformat(), c.tzname(), c.dst()) for c in combined])
    elif isinstance(value, collections.defaultdict):
        factory = value.default_factory
        seen = (sorted(map(repr, value.items())), factory() if factory else None)
    elif isinstance(value, collections.deque):
        seen = (list(value), value.maxlen)
    elif isinstance(value, collections.ChainMap):
        seen = [sorted(map(repr, m.items())) for m in value.maps]
    elif isinstance(value, (collections.OrderedDict, array.array)):
        seen = list(value.items()) if isinstance(value, dict) else (value.typecode, value.tolist())
    else:
        seen = value
    return f"{type(value).__module__}.{type(value).__qualname__}: {seen!r}"


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(lookalike_clocks, lookalike_containers), min_size=2, max_size=8))
def test_values_that_share_a_key_behave_alike(batch: list[Any]) -> None:
    """Two values with one key show one type, text, zone, future offset, order and parameters."""
    by_key: dict[str, Any] = {}
    for value in batch:
        first = by_key.setdefault(one.cache_key(value), value)
        assert _behaviour(first) == _behaviour(value), (first, value)


NEW_FORMS_SCRIPT = textwrap.dedent(
    """
    import array, collections, datetime, decimal, fractions, json, sys, zoneinfo
    from memo import MemoryStore, async_disk_cache

    @async_disk_cache(namespace="seed", version=3, store=MemoryStore())
    async def f(a, *args, b=None, **kwargs):
        return None

    h1 = datetime.timedelta(hours=1)
    zones = [datetime.timezone(h1), datetime.timezone(h1, "CET"), datetime.timezone.utc]
    if HAVE_ZONE_DATA:
        keys = ("Europe/Paris", "Africa/Lagos", "America/New_York")
        zones += [zoneinfo.ZoneInfo(key) for key in keys]
    wall = datetime.datetime(2024, 10, 27, 2, 30)
    clocks = [wall.replace(tzinfo=z, fold=fold) for z in zones for fold in (0, 1)]
    clocks += [c.timetz() for c in clocks]
    values = [
        set(clocks),
        {c: i for i, c in enumerate(clocks)},
        collections.OrderedDict([(("t", 2), {3, 1}), ("x", frozenset(clocks)), (1, None)]),
        collections.defaultdict(list, {frozenset({"a", "b"}): [1], "z": [2]}),
        collections.deque([{"s", "t"}, 2, 3], maxlen=5),
        collections.ChainMap({1: "a", "1": "b"}, {None: {1.5, 2.5}}),
        collections.Counter("mississippi"),
        collections.UserDict({("k", i): {str(i)} for i in range(5)}),
        array.array("q", [2**62, -1]),
        range(-(2**70), 2**70, 3),
        complex(-0.0, float("nan")),
        fractions.Fraction(-(2**80), 3),
        decimal.Decimal("-0.00"),
    ]
    keys = [f.cache_key(v, *values, b=v, extra=values) for v in values]
    json.dump(keys, sys.stdout)
    """
).replace("HAVE_ZONE_DATA", repr(HAVE_ZONE_DATA))


def _new_form_keys_with_hash_seed(seed: str) -> list[str]:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    out = subprocess.run(
        [sys.executable, "-c", NEW_FORMS_SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    keys: list[str] = json.loads(out.stdout)
    return keys


@pytest.mark.slow
def test_new_forms_are_stable_across_processes_and_hash_seeds() -> None:
    """Keys of zoned times, OrderedDicts, defaultdicts, deques, ... match across hash seeds."""
    runs = {seed: _new_form_keys_with_hash_seed(seed) for seed in ("0", "1", "random", "999")}
    assert len(set(runs["0"])) == len(runs["0"]) == 13
    assert runs["0"] == runs["1"] == runs["random"] == runs["999"]
    namespace = {"__name__": "seed_check"}
    exec(NEW_FORMS_SCRIPT.replace("json.dump(keys, sys.stdout)", ""), namespace)
    assert namespace["keys"] == runs["0"]


@pytest.mark.skipif(not HAVE_ZONE_DATA, reason="no IANA zone data here (pip install tzdata)")
def test_zoned_keys_do_not_depend_on_the_zone_cache() -> None:
    """A ZoneInfo from the cache and one made with no_cache give one key: the zone is its name."""
    import zoneinfo

    wall = datetime.datetime(2024, 1, 15, 10, 0)
    cached = wall.replace(tzinfo=zoneinfo.ZoneInfo("Europe/Paris"))
    fresh = wall.replace(tzinfo=zoneinfo.ZoneInfo.no_cache("Europe/Paris"))
    assert cached.tzinfo is not fresh.tzinfo
    assert one.cache_key(cached) == one.cache_key(fresh)
