"""Properties of cache keys, checked by Hypothesis, and their stability across processes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strategies import key_values, strictly_equal

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
