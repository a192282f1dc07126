"""Hypothesis strategies shared by memo's property tests.

``key_values`` draws the argument values a cache key must handle (nested
containers of every JSON scalar, floats including NaN and -0.0, ints of any
size, bytes, tuples, sets, dicts with non-string keys, aware datetimes and
times in IANA and fixed zones, OrderedDicts, defaultdicts, deques and the
other standard-library values memo keys), and ``strictly_equal`` is the
equality a key must respect: Python's ``==`` made type-aware, so that ``1``,
``1.0`` and ``True`` differ and ``[1]`` differs from ``(1,)``, and made to see
what ``==`` skips but behaviour shows: a datetime's zone, an OrderedDict's
order, a defaultdict's factory, a deque's maxlen.
"""

from __future__ import annotations

import array
import collections
import datetime
import decimal
import fractions
import math
import zoneinfo
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "HAVE_ZONE_DATA",
    "containers",
    "json_values",
    "key_scalars",
    "key_values",
    "lookalike_clocks",
    "lookalike_containers",
    "make_list",
    "stdlib_scalars",
    "strictly_equal",
    "typed_values",
    "zones",
]


def _have_zone_data() -> bool:
    # zoneinfo reads the system's zone files or the tzdata package; a machine
    # may have neither (Windows without tzdata, a slim container).
    try:
        zoneinfo.ZoneInfo("Europe/Paris")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


HAVE_ZONE_DATA = _have_zone_data()

_H1 = datetime.timedelta(hours=1)

# Fixed-offset zones, unnamed or named (timezone(h1) and timezone(h1, "CET")
# differ in tzname()).
fixed_zones = st.builds(
    datetime.timezone,
    st.one_of(
        st.sampled_from([datetime.timedelta(0), _H1, -5 * _H1]),
        st.timedeltas(
            min_value=datetime.timedelta(hours=-23, minutes=-59),
            max_value=datetime.timedelta(hours=23, minutes=59),
        ),
    ),
    st.sampled_from(["UTC", "CET", "EST", "GMT", "UTC+01:00"]) | st.text(max_size=4),
) | st.sampled_from([datetime.timezone.utc, datetime.timezone(_H1), datetime.timezone(-5 * _H1)])

# Zones that share an offset on some dates: +01:00 in January (Paris, Berlin,
# Lagos, Algiers), +00:00 (London in winter, Abidjan, UTC), -05:00 (New York
# in winter, Bogota). Same offset, different zones: the pairs a key must
# keep apart.
LOOKALIKE_ZONE_KEYS = (
    "Europe/Paris",
    "Europe/Berlin",
    "Africa/Lagos",
    "Africa/Algiers",
    "Europe/London",
    "Africa/Abidjan",
    "UTC",
    "Etc/UTC",
    "America/New_York",
    "America/Bogota",
)

if HAVE_ZONE_DATA:
    lookalike_zones = st.one_of(
        st.sampled_from(LOOKALIKE_ZONE_KEYS).map(zoneinfo.ZoneInfo),
        st.sampled_from(
            [datetime.timezone(_H1), datetime.timezone(_H1, "CET"), datetime.timezone.utc]
        ),
        st.sampled_from([datetime.timezone(-5 * _H1), datetime.timezone(-5 * _H1, "EST")]),
    )
    _ZONE_KEYS = tuple(sorted(zoneinfo.available_timezones()))

    @st.composite
    def iana_zones(draw: st.DrawFn) -> zoneinfo.ZoneInfo:
        """Any IANA zone this machine knows.

        Drawn by index rather than with ``st.timezones()``: that strategy's
        repr lists every zone name (about 30 kB), and Hypothesis writes it out
        when it describes a draw, with a warning that pytest makes an error.
        """
        return zoneinfo.ZoneInfo(_ZONE_KEYS[draw(st.integers(0, len(_ZONE_KEYS) - 1))])

    zones = st.one_of(lookalike_zones, fixed_zones, iana_zones())
else:  # pragma: no cover - depends on the machine
    lookalike_zones = st.sampled_from(
        [datetime.timezone(_H1), datetime.timezone(_H1, "CET"), datetime.timezone.utc]
    )
    zones = fixed_zones

aware_datetimes = st.datetimes(
    min_value=datetime.datetime(1900, 1, 1),
    max_value=datetime.datetime(2100, 1, 1),
    timezones=zones,
)
aware_times = st.times(timezones=zones)

# Wall times that sit on zone transitions (a DST fall-back happens twice),
# in zones that share their offsets, with either fold: the datetimes and
# times most likely to collide.
_TRICKY_WALL_TIMES = [
    datetime.datetime(2024, 1, 15, 10, 0),
    datetime.datetime(2024, 7, 15, 10, 0),
    datetime.datetime(2024, 10, 27, 2, 30),  # twice in Paris and Berlin
    datetime.datetime(2024, 11, 3, 1, 30),  # twice in New York
    datetime.datetime(2024, 3, 31, 2, 30),  # never in Paris
]
lookalike_clocks = st.builds(
    lambda wall, zone, fold, as_time: (
        wall.replace(tzinfo=zone, fold=fold).timetz()
        if as_time
        else wall.replace(tzinfo=zone, fold=fold)
    ),
    st.sampled_from(_TRICKY_WALL_TIMES),
    st.none() | lookalike_zones,
    st.integers(0, 1),
    st.booleans(),
)


def make_list() -> list[Any]:
    """A module-level default_factory, which memo names by module and qualname."""
    return []


# Factories memo can name in every process.
factories = st.sampled_from([None, list, int, dict, set, str, make_list])

_STDLIB_SCALARS = st.one_of(
    # A signalling NaN cannot be hashed, so it could not be a set member.
    st.decimals(allow_nan=True).filter(lambda d: not d.is_snan())
    | st.sampled_from([decimal.Decimal("1.0"), decimal.Decimal("1.00"), decimal.Decimal("-0")]),
    st.complex_numbers(allow_nan=True, allow_infinity=True, max_magnitude=None),
    st.fractions(max_denominator=100),
    st.builds(range, st.integers(-3, 3), st.integers(-3, 3), st.sampled_from([1, 2, -1, 3])),
    aware_datetimes,
    aware_times,
    lookalike_clocks,
)


# The composites below give long strategies a short repr: Hypothesis writes a
# strategy's repr out when it describes a draw, and warns (an error under
# pytest's filterwarnings) when that passes 30 kB, which a recursive strategy
# that repeats its inner strategy soon does.
@st.composite
def stdlib_scalars(draw: st.DrawFn) -> Any:
    """Decimals, complex numbers, fractions, ranges, and aware datetimes and times."""
    return draw(_STDLIB_SCALARS)


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
    stdlib_scalars(),
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

_small_keys = st.sampled_from(["a", "b", "c", 1, 2, (1,)]) | st.text(max_size=3)


@st.composite
def containers(draw: st.DrawFn, inner: st.SearchStrategy[Any]) -> Any:
    """Standard-library containers of ``inner`` whose meaning is more than their items."""
    return draw(
        st.one_of(
            # OrderedDict: the order of its pairs is part of its value.
            st.lists(st.tuples(_small_keys, inner), max_size=4).map(collections.OrderedDict),
            st.builds(
                collections.defaultdict, factories, st.dictionaries(_small_keys, inner, max_size=3)
            ),
            st.builds(
                collections.deque,
                st.lists(inner, max_size=4),
                maxlen=st.none() | st.integers(0, 4),
            ),
            st.dictionaries(_small_keys, st.integers(-2, 3), max_size=3).map(collections.Counter),
            st.lists(st.dictionaries(_small_keys, inner, max_size=2), max_size=3).map(
                lambda maps: collections.ChainMap(*maps)
            ),
            st.lists(inner, max_size=3).map(collections.UserList),
            st.dictionaries(_small_keys, inner, max_size=3).map(collections.UserDict),
            st.builds(array.array, st.just("i"), st.lists(st.integers(-5, 5), max_size=3))
            | st.builds(array.array, st.just("l"), st.lists(st.integers(-5, 5), max_size=3))
            | st.builds(array.array, st.just("d"), st.lists(st.floats(width=32), max_size=3)),
        )
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
        containers(inner),
    ),
    max_leaves=12,
)

# Containers of a few small items: the pairs most likely to collide (the
# same items in another order, with another factory or maxlen).
lookalike_containers = containers(st.sampled_from([0, 1, "a", None]))

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


def _same_zone(a: datetime.tzinfo | None, b: datetime.tzinfo | None) -> bool:
    """Whether two tzinfos are one zone: a ZoneInfo by its key, a timezone by offset and name."""
    if type(a) is not type(b):
        return False
    if isinstance(a, zoneinfo.ZoneInfo) and isinstance(b, zoneinfo.ZoneInfo):
        return a.key == b.key
    if isinstance(a, datetime.timezone) and isinstance(b, datetime.timezone):
        return (a.utcoffset(None), a.tzname(None)) == (b.utcoffset(None), b.tzname(None))
    return a is b


def _same_clock(a: datetime.datetime | datetime.time, b: datetime.datetime | datetime.time) -> bool:
    """Same wall time in the same zone, and the same offset, DST and name where they apply."""
    if a.replace(tzinfo=None) != b.replace(tzinfo=None) or not _same_zone(a.tzinfo, b.tzinfo):
        return False  # naive == ignores fold: a naive value's fold is not its meaning
    if a.tzinfo is None or a.fold == b.fold:
        return True
    if isinstance(a, datetime.datetime):
        # Another fold is another time exactly when its offset, DST or name differ.
        return (a.utcoffset(), a.dst(), a.tzname()) == (b.utcoffset(), b.dst(), b.tzname())
    # A time's fold shows once combined with a date, unless its offset is fixed.
    return isinstance(a.tzinfo, datetime.timezone)


def _same_items(a: Any, b: Any) -> bool:
    return len(a) == len(b) and all(strictly_equal(x, y) for x, y in zip(a, b, strict=True))


def _same_dict(a: dict[Any, Any], b: dict[Any, Any]) -> bool:
    if len(a) != len(b):
        return False
    for key, value in a.items():
        match = [other for other in b if strictly_equal(key, other)]
        if len(match) != 1 or not strictly_equal(value, b[match[0]]):
            return False
    return True


def strictly_equal(a: Any, b: Any) -> bool:  # noqa: PLR0912
    """Python's ``==`` with types: the equality under which two calls may share a key.

    ``1``, ``1.0`` and ``True`` are not strictly equal, nor are ``[1]`` and
    ``(1,)``; every NaN is strictly equal to every other NaN (a key cannot tell
    NaN payloads apart, and the function cannot either through ``==``). Where
    ``==`` skips what a function can see, this does not: two aware datetimes
    are equal only in one zone, OrderedDicts only in one order, defaultdicts
    only with one factory, deques only with one maxlen, Decimals only with one
    exponent, ranges only with one start, stop and step.
    """
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return _float_equal(a, b)
    if isinstance(a, complex):
        return _float_equal(a.real, b.real) and _float_equal(a.imag, b.imag)
    if isinstance(a, decimal.Decimal):
        return str(a) == str(b)
    if isinstance(a, (datetime.datetime, datetime.time)):
        return _same_clock(a, b)
    if isinstance(a, range):
        return (a.start, a.stop, a.step) == (b.start, b.stop, b.step)
    if isinstance(a, (list, tuple, collections.deque)):
        return getattr(a, "maxlen", None) == getattr(b, "maxlen", None) and _same_items(a, b)
    if isinstance(a, array.array):
        return a.typecode == b.typecode and _same_items(a.tolist(), b.tolist())
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and _partners(a, b) and _partners(b, a)
    if isinstance(a, collections.OrderedDict):
        return _same_items(list(a.items()), list(b.items()))
    if isinstance(a, collections.defaultdict):
        return a.default_factory is b.default_factory and _same_dict(a, b)
    if isinstance(a, dict):
        return _same_dict(a, b)
    if isinstance(a, collections.ChainMap):
        return _same_items(a.maps, b.maps)
    if isinstance(a, (collections.UserDict, collections.UserList)):
        return strictly_equal(a.data, b.data)
    if isinstance(a, fractions.Fraction):
        return a == b
    return bool(a == b)
