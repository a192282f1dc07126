"""Hypothesis strategies shared by memo's property tests.

``key_values`` draws the argument values a cache key must handle (nested
containers of every JSON scalar, floats including NaN and -0.0, ints of any
size, bytes, tuples, sets, dicts with non-string keys), and ``strictly_equal``
is the equality a key must respect: Python's ``==`` made type-aware, so that
``1``, ``1.0`` and ``True`` differ and ``[1]`` differs from ``(1,)``.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "json_values",
    "key_scalars",
    "key_values",
    "strictly_equal",
    "typed_values",
]

# Ints across every width orjson writes differently: small, 64-bit edges, huge.
ints = st.one_of(
    st.integers(min_value=-10, max_value=10),
    st.sampled_from([2**63 - 1, -(2**63), 2**63, 2**64 - 1, 2**64, -(2**63) - 1]),
    st.integers(),
)

key_scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.0, float("nan"), float("inf"), float("-inf")]),
    st.text(max_size=8),
    # Text that looks like memo's internal tags must stay user data.
    st.sampled_from(["\x00", "\x00tuple", "\x00dict", "1", "true", "null", "NaN"]),
    st.binary(max_size=8),
)

# Hashable values, usable as dict keys and set members.
hashable_values = st.recursive(
    key_scalars,
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.frozensets(inner, max_size=3),
    ),
    max_leaves=4,
)

key_values = st.recursive(
    key_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), inner, max_size=4),
        st.dictionaries(hashable_values, inner, max_size=3),
        st.sets(hashable_values, max_size=3),
        st.frozensets(hashable_values, max_size=3),
    ),
    max_leaves=12,
)

# Values JSON holds exactly: what JsonSerializer must round-trip unchanged.
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=16,
)

# Values whose types JSON loses but PydanticSerializer restores, paired with
# the annotation that restores them.
typed_values = st.one_of(
    st.tuples(
        st.just(tuple[int, str]),
        st.tuples(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text()),
    ),
    st.tuples(st.just(set[str]), st.sets(st.text(max_size=6), max_size=5)),
    st.tuples(st.just(frozenset[int]), st.frozensets(st.integers(-100, 100), max_size=5)),
    st.tuples(
        st.just(datetime.datetime),
        st.datetimes(timezones=st.sampled_from([None, datetime.timezone.utc])),
    ),
    st.tuples(st.just(datetime.date), st.dates()),
    st.tuples(st.just(bytes), st.binary(max_size=32)),
    st.tuples(
        st.just(dict[int, list[float]]),
        st.dictionaries(
            st.integers(-50, 50),
            st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3),
            max_size=3,
        ),
    ),
)


def _float_equal(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    # -0.0 == 0.0 in Python, but they print differently and may behave
    # differently (1 / x): keeping them apart only costs a miss.
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def _partners(a: Any, b: Any) -> bool:
    """Whether every member of ``a`` has a strictly equal member in ``b``."""
    return all(any(strictly_equal(x, y) for y in b) for x in a)


def strictly_equal(a: Any, b: Any) -> bool:
    """Python's ``==`` with types: the equality under which two calls may share a key.

    ``1``, ``1.0`` and ``True`` are not strictly equal, nor are ``[1]`` and
    ``(1,)``; every NaN is strictly equal to every other NaN (a key cannot tell
    NaN payloads apart, and the function cannot either through ``==``).
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return _float_equal(a, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and _partners(a, b) and _partners(b, a)
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        for key, value in a.items():
            match = [other for other in b if strictly_equal(key, other)]
            if len(match) != 1 or not strictly_equal(value, b[match[0]]):
                return False
        return True
    return bool(a == b)
