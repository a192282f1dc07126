r"""Cache keys: bind the call, make the arguments canonical, hash them.

The canonical form is JSON written by orjson with sorted keys. Values that JSON
already tells apart stay as they are (str, bool, None, ints that fit in 64 bits,
finite floats, lists, dicts with plain string keys), so the typical LLM request
costs little more than its own serialization. Every other value becomes a
*tagged* array whose first item is a name that starts with NUL
(``["\x00tuple", [1, 2]]``); a user list whose first item is a string that
starts with NUL is itself tagged (``["\x00list", [...]]``), so user data can
never pass for a tag. Tags are arrays rather than objects so that telling a
plain value from one that needs tags looks at one item per list and nothing
per dict key. orjson prints ``1``, ``1.0``, ``true`` and ``"1"`` differently,
which keeps those apart without tags, while NaN and infinities (which orjson
would print as ``null``) are tagged.

A value whose meaning is more than its items carries the rest too, because
``==`` may call two values equal that a function tells apart: an aware
datetime its zone (Paris and Lagos share ``+01:00`` in January, not in July),
an OrderedDict its order, a defaultdict its factory, a deque its maxlen. What
has no name that holds in another process (a lambda factory, an unnamed
tzinfo) is refused rather than keyed by ``repr`` or ``id``. Only order that
carries no meaning, dict keys and set members, is dropped.

Everything here is a pure function of its input: nothing depends on ``hash()``,
``id()``, ``repr()`` of arbitrary objects or dict order, so keys are the same
across processes, machines and ``PYTHONHASHSEED`` values.
"""

from __future__ import annotations

import array
import base64
import collections
import dataclasses
import datetime
import enum
import hashlib
import math
import sys
import types
import uuid
from typing import TYPE_CHECKING, Any

import orjson

from memo._names import importable_name, qualified_name

if TYPE_CHECKING:
    from collections.abc import Mapping


__all__ = [
    "canonical",
    "canonical_json",
    "digest_arguments",
]

# Deep enough for any real argument, shallow enough that orjson (which stops
# at 254 levels) never sees more than it can write: one level of user data
# costs at most three levels of tagged JSON.
MAX_DEPTH = 64

_TAG = "\x00"
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1


class UnkeyableError(TypeError):
    """A value has no canonical form; carries the path to it for the message."""

    def __init__(self, value: object, reason: str | None = None) -> None:
        super().__init__(reason or f"{type(value).__qualname__} is not a supported key type")
        self.value = value
        self.reason = reason
        self.path: list[str] = []


def _sort_key(item: Any) -> bytes:
    try:
        return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _dumps_surrogates(item)


def _dumps_surrogates(canon: Any) -> bytes:
    # orjson writes UTF-8 only, so text with lone surrogates (os.fsdecode of a
    # non-UTF-8 file name, say) lands here. Such text becomes a tag holding its
    # surrogatepass bytes: the key stays stable, and every other value keeps
    # the bytes it had, since only unencodable text is rewritten.
    return orjson.dumps(_without_surrogates(canon), option=orjson.OPT_SORT_KEYS)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _surrogate_tag(text: str) -> str:
    return "\x00surrogates" + text.encode("utf-8", "surrogatepass").hex()


def _without_surrogates(canon: Any) -> Any:
    if type(canon) is str:
        return canon if _encodable(canon) else ["\x00surrogates", _surrogate_tag(canon)]
    if type(canon) is list:
        return [_without_surrogates(item) for item in canon]
    if type(canon) is dict:
        if all(_encodable(key) for key in canon):
            return {key: _without_surrogates(item) for key, item in canon.items()}
        # A key that cannot be written: the dict becomes a tagged list of
        # pairs, which no plain dict (a JSON object) can meet.
        pairs = [
            [_without_surrogates(key), _without_surrogates(item)] for key, item in canon.items()
        ]
        pairs.sort(key=_sort_key)
        return ["\x00dict", pairs]
    return canon


def canonical(value: Any, depth: int = 0) -> Any:
    """Return the canonical JSON-ready form of ``value``.

    Raises:
        UnkeyableError: the value (or something inside it) has no canonical form.
    """
    cls = type(value)
    # Exact-type checks first: they are the hot path and exclude subclasses,
    # which are tagged with their class below.
    if cls is str or cls is bool or value is None:
        return value
    if cls is int:
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
        # hex, not str: str() of a huge int is capped (sys.set_int_max_str_digits).
        return ["\x00int", hex(value)]
    if cls is float:
        return value if math.isfinite(value) else ["\x00float", repr(value)]
    if depth >= MAX_DEPTH:
        raise UnkeyableError(value, f"nested deeper than {MAX_DEPTH} levels")
    depth += 1
    if cls is list:
        items = _canonical_items(value, depth)
        # A list that starts like a tag is tagged itself: user data never
        # passes for a tag.
        return ["\x00list", items] if _looks_tagged(value) else items
    if cls is dict:
        return _canonical_dict(value, depth)
    if cls is tuple:
        return ["\x00tuple", _canonical_items(value, depth)]
    if cls is set or cls is frozenset:
        tag = "\x00set" if cls is set else "\x00frozenset"
        return [tag, sorted(_canonical_items(value, depth), key=_sort_key)]
    if cls is bytes or cls is bytearray:
        tag = "\x00bytes" if cls is bytes else "\x00bytearray"
        return [tag, base64.b64encode(value).decode("ascii")]
    return _canonical_object(value, cls, depth)


def _canonical_items(values: Any, depth: int) -> list[Any]:
    out = []
    for index, item in enumerate(values):
        if type(item) is str:
            out.append(item)
            continue
        try:
            out.append(canonical(item, depth))
        except UnkeyableError as exc:
            exc.path.append(f"[{index}]")
            raise
    return out


def _looks_tagged(items: list[Any]) -> bool:
    return bool(items) and type(items[0]) is str and items[0][:1] == _TAG


def _canonical_dict(value: dict[Any, Any], depth: int) -> Any:
    out = {}
    for key, item in value.items():
        if type(key) is not str:
            return _tagged_dict(value, depth)
        if type(item) is str:
            out[key] = item
            continue
        try:
            out[key] = canonical(item, depth)
        except UnkeyableError as exc:
            exc.path.append(f"[{key!r}]")
            raise
    return out


def _tagged_dict(value: Mapping[Any, Any], depth: int) -> Any:
    pairs = []
    for key, item in value.items():
        try:
            pairs.append([canonical(key, depth), canonical(item, depth)])
        except UnkeyableError as exc:
            exc.path.append(f"[{key!r}]")
            raise
    # Dict order carries no meaning: sort the pairs. Whole pairs, since two
    # distinct keys (hashed by identity) may share one canonical form.
    pairs.sort(key=_sort_key)
    return ["\x00dict", pairs]


def _fields(value: Any, names: Any, depth: int) -> dict[str, Any]:
    out = {}
    for name in names:
        try:
            field = getattr(value, name)
        except AttributeError:
            reason = f"field {name!r} is not set (built with model_construct() without it?)"
            raise UnkeyableError(value, reason) from None
        try:
            out[name] = canonical(field, depth)
        except UnkeyableError as exc:
            exc.path.append(f".{name}")
            raise
    return out


def _own(base: type, attribute: str, value: Any) -> Any:
    """``value.attribute`` read through ``base``'s own descriptor: a subclass cannot override it."""
    return vars(base)[attribute].__get__(value, base)


# The value a builtin subclass holds, read through the builtin's own methods so
# that an override (__str__, __iter__, items, ...) cannot show two values as one.
_BUILTIN_VALUE: tuple[tuple[type, Any], ...] = (
    (str, str.__str__),
    (int, int.__index__),
    (float, float.__float__),
    (complex, lambda value: complex(_own(complex, "real", value), _own(complex, "imag", value))),
    (list, lambda value: list(list.__iter__(value))),
    (tuple, lambda value: tuple(tuple.__iter__(value))),
    (dict, lambda value: dict(dict.items(value))),
    (set, lambda value: set(set.__iter__(value))),
    (frozenset, lambda value: frozenset(frozenset.__iter__(value))),
    (bytes, lambda value: bytes.__getitem__(value, slice(None))),
    (bytearray, lambda value: bytearray(memoryview(value))),
)

# Types memo refuses although they hold data, and what to pass instead.
_REFUSED: tuple[tuple[type, str], ...] = (
    (
        types.MappingProxyType,
        "memo cannot read the mapping behind a mappingproxy without trusting its methods; "
        "use dict(proxy) or the mapping itself instead",
    ),
    (
        memoryview,
        "a memoryview is a window on a buffer whose format and owner a key cannot hold; "
        "use view.tobytes() instead",
    ),
)


def _canonical_object(value: Any, cls: type, depth: int) -> Any:  # noqa: PLR0912
    if isinstance(value, type):
        return _class(value)
    name = qualified_name(cls)
    if getattr(cls, "__memo_key__", None) is not None:
        return ["\x00custom", [name, _memo_key(value, cls, depth)]]
    if isinstance(value, enum.Enum):
        return ["\x00enum", [name, canonical(value.value, depth)]]
    pydantic = sys.modules.get("pydantic")  # no model exists unless pydantic is imported
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        fields = _fields(value, type(value).model_fields, depth)
        extra = value.__pydantic_extra__
        return ["\x00model", [name, fields, canonical(extra, depth) if extra else None]]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [field.name for field in dataclasses.fields(value)]
        return ["\x00dataclass", [name, _fields(value, names, depth)]]
    # datetime is a subclass of date: test it first. Naive values keep the
    # form they always had: Python ignores their fold, whose meaning would
    # come from the machine's local zone.
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            return ["\x00datetime", [name, value.isoformat()]]
        return _aware("\x00datetime", value, value.tzinfo, name, depth)
    if isinstance(value, datetime.date):
        return ["\x00date", [name, value.isoformat()]]
    if isinstance(value, datetime.time):
        if value.tzinfo is None:
            return ["\x00time", [name, value.isoformat()]]
        return _aware("\x00time", value, value.tzinfo, name, depth)
    if isinstance(value, datetime.timedelta):
        delta = ["\x00timedelta", [value.days, value.seconds, value.microseconds]]
        return delta if cls is datetime.timedelta else ["\x00subclass", [name, delta]]
    if isinstance(value, uuid.UUID):
        text = ["\x00uuid", uuid.UUID.__str__(value)]
        return text if cls is uuid.UUID else ["\x00subclass", [name, text]]
    # No Decimal or path exists unless its module is imported: memo does not import them.
    decimal = sys.modules.get("decimal")
    if decimal is not None and isinstance(value, decimal.Decimal):
        # str keeps what == drops: Decimal("1.0") and Decimal("1.00") print,
        # quantize and round differently, so they are two keys.
        text = ["\x00decimal", decimal.Decimal.__str__(value)]
        return text if cls is decimal.Decimal else ["\x00subclass", [name, text]]
    pathlib = sys.modules.get("pathlib")
    if pathlib is not None and isinstance(value, pathlib.PurePath):
        if getattr(pathlib, cls.__qualname__, None) is cls:
            # Python 3.13 moved pathlib's classes to pathlib._local: name them
            # as pathlib exports them, so a path has one key on every Python.
            name = f"pathlib.{cls.__qualname__}"
        return ["\x00path", [name, str(value)]]
    if isinstance(value, tuple) and hasattr(cls, "_fields"):
        return ["\x00namedtuple", [name, _canonical_items(value, depth)]]
    form = _canonical_library_value(value, cls, name, depth)
    if form is not None:
        return form
    # Subclasses of the builtins (a str subclass, a Counter, ...): the value as
    # its base type, tagged with the class so two classes never meet.
    for base, plain_of in _BUILTIN_VALUE:
        if isinstance(value, base):
            return _with_state(
                ["\x00subclass", [name, canonical(plain_of(value), depth)]], value, depth
            )
    for refused, reason in _REFUSED:
        if isinstance(value, refused):
            raise UnkeyableError(value, reason)
    raise UnkeyableError(value)


def _memo_key(value: Any, cls: type, depth: int) -> Any:
    try:
        custom = value.__memo_key__()
    except Exception as exc:
        reason = f"{cls.__qualname__}.__memo_key__() raised {type(exc).__name__}: {exc}"
        raise UnkeyableError(value, reason) from exc
    return canonical(custom, depth)


def _canonical_library_value(value: Any, cls: type, name: str, depth: int) -> Any:
    """The canonical form of a standard-library value whose meaning is more than its items.

    Each keeps what tells two of them apart: an OrderedDict its order, a
    defaultdict its default_factory, a deque its maxlen, an array its
    typecode, a ChainMap its maps. None when ``value`` is none of these.
    """
    if cls is complex:
        return ["\x00complex", [canonical(value.real, depth), canonical(value.imag, depth)]]
    if cls is range:  # range cannot be subclassed
        return [
            "\x00range",
            [canonical(part, depth) for part in (value.start, value.stop, value.step)],
        ]
    if isinstance(value, collections.OrderedDict):
        # OrderedDict.items, not dict.items: move_to_end() reorders only the
        # former. Python compares two OrderedDicts with their order.
        pairs = _canonical_pairs(collections.OrderedDict.items(value), depth)
        return _with_state(["\x00ordereddict", [name, pairs]], value, depth)
    if isinstance(value, collections.defaultdict):
        factory = _own(collections.defaultdict, "default_factory", value)
        try:
            factory_form = _factory(factory, depth)
        except UnkeyableError as exc:
            exc.path.append(".default_factory")
            raise
        items = canonical(dict(dict.items(value)), depth)
        return _with_state(["\x00defaultdict", [name, factory_form, items]], value, depth)
    if isinstance(value, collections.deque):
        maxlen = _own(collections.deque, "maxlen", value)
        items = _canonical_items(collections.deque.__iter__(value), depth)
        return _with_state(["\x00deque", [name, maxlen, items]], value, depth)
    if isinstance(value, array.array):
        typecode = _own(array.array, "typecode", value)
        items = _canonical_items(array.array.tolist(value), depth)
        return _with_state(["\x00array", [name, typecode, items]], value, depth)
    if isinstance(value, collections.ChainMap):
        maps = _canonical_items(value.maps, depth)
        return _with_state(["\x00chainmap", [name, maps]], value, depth, skip="maps")
    if isinstance(value, (collections.UserDict, collections.UserList, collections.UserString)):
        data = canonical(value.data, depth)
        return _with_state(["\x00userdata", [name, data]], value, depth, skip="data")
    fractions = sys.modules.get("fractions")  # no Fraction exists unless it is imported
    if fractions is not None and isinstance(value, fractions.Fraction):
        numerator = _own(fractions.Fraction, "numerator", value)
        denominator = _own(fractions.Fraction, "denominator", value)
        return ["\x00fraction", [name, canonical(numerator, depth), canonical(denominator, depth)]]
    return None


def _canonical_pairs(pairs: Any, depth: int) -> list[Any]:
    out = []
    for key, item in pairs:
        try:
            out.append([canonical(key, depth), canonical(item, depth)])
        except UnkeyableError as exc:
            exc.path.append(f"[{key!r}]")
            raise
    return out


def _class(value: type) -> Any:
    """A class (the ``cls`` of a classmethod) by the name that leads back to it."""
    name = importable_name(value)
    if name is None:
        reason = (
            f"class {value.__qualname__} has no name that leads back to it in another "
            "process (defined inside a function?); define it at module level"
        )
        raise UnkeyableError(value, reason)
    return ["\x00class", name]


def _factory(factory: Any, depth: int) -> Any:
    """What identifies a defaultdict's default_factory in every process."""
    if factory is None:
        return None
    if getattr(type(factory), "__memo_key__", None) is not None:
        return canonical(factory, depth)
    name = importable_name(factory)
    if name is None:
        label = getattr(factory, "__qualname__", None) or type(factory).__qualname__
        reason = (
            f"default_factory {label} has no name that leads back to it in another process "
            "(a lambda, a nested function, a bound method or a partial); "
            "use a module-level function or class"
        )
        raise UnkeyableError(factory, reason)
    return ["\x00callable", name]


def _with_state(form: list[Any], value: Any, depth: int, skip: str | None = None) -> list[Any]:
    """``form`` with the instance attributes of a subclass appended, if it has any.

    A subclass may keep more than its items (``self.mode = ...``); two
    instances with the same items and another mode behave differently. The
    attributes (``__dict__`` and ``__slots__``) become a last item, a dict
    sorted by name, so a value without any keeps the form it always had.
    """
    state = _instance_state(value, skip)
    if state:
        attributes = {}
        for attribute, item in state.items():
            if type(attribute) is not str:
                reason = f"an instance attribute is named by a {type(attribute).__qualname__}"
                raise UnkeyableError(value, reason)
            try:
                attributes[attribute] = canonical(item, depth)
            except UnkeyableError as exc:
                exc.path.append(f".{attribute}")
                raise
        form[1].append(attributes)
    return form


def _instance_state(value: Any, skip: str | None) -> dict[Any, Any]:
    attributes = getattr(value, "__dict__", None)
    state = dict(attributes) if type(attributes) is dict else {}
    for owner in type(value).__mro__:
        slots = owner.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            attribute = slot
            if slot.startswith("__") and not slot.endswith("__"):
                attribute = f"_{owner.__name__.lstrip('_')}{slot}"  # name mangling
            descriptor = owner.__dict__.get(attribute)
            if isinstance(descriptor, types.MemberDescriptorType):
                try:
                    state[attribute] = descriptor.__get__(value, owner)
                except AttributeError:  # a slot never set
                    continue
    if skip is not None:
        state.pop(skip, None)
    return state


def _aware(
    tag: str,
    value: datetime.datetime | datetime.time,
    tzinfo: datetime.tzinfo,
    name: str,
    depth: int,
) -> Any:
    """The form of an aware datetime or time: its ISO text and its zone's identity.

    One offset is shared by many zones (Europe/Paris, Africa/Lagos and
    ``timezone(timedelta(hours=1))`` in January), which differ in DST, names
    and the future, so the ISO text alone would let them meet.
    """
    text = value.isoformat()
    try:
        zone = _zone(tzinfo, depth)
    except UnkeyableError as exc:
        exc.path.append(".tzinfo")
        raise
    form = [name, text, zone]
    if value.fold and _fold_matters(value):
        form.append(1)
    return [tag, form]


def _fold_matters(value: datetime.datetime | datetime.time) -> bool:
    # fold=1 picks the second of two equal wall times (a DST fall-back). For a
    # datetime it matters when the other fold gives another offset, DST or
    # name. A time's fold matters once it is combined with a date, which the
    # key cannot see, unless its zone is a fixed offset.
    if not isinstance(value, datetime.datetime):
        return type(value.tzinfo) is not datetime.timezone
    other = value.replace(fold=0)
    return (value.utcoffset(), value.dst(), value.tzname()) != (
        other.utcoffset(),
        other.dst(),
        other.tzname(),
    )


def _zone(tzinfo: datetime.tzinfo, depth: int) -> Any:
    """What identifies a zone in every process: a ZoneInfo's key, a timezone's offset and name."""
    cls = type(tzinfo)
    if type(tzinfo) is datetime.timezone:  # timezone cannot be subclassed
        offset = tzinfo.utcoffset(None)
        return [
            "\x00timezone",
            [offset.days, offset.seconds, offset.microseconds, tzinfo.tzname(None)],
        ]
    if getattr(cls, "__memo_key__", None) is not None:
        return ["\x00tzinfo", [qualified_name(cls), _memo_key(tzinfo, cls, depth)]]
    zoneinfo = sys.modules.get("zoneinfo")  # no ZoneInfo exists unless it is imported
    if zoneinfo is not None and isinstance(tzinfo, zoneinfo.ZoneInfo):
        key = tzinfo.key
        if type(key) is not str:
            reason = "a ZoneInfo made by from_file() without a key has no name; pass key="
            raise UnkeyableError(tzinfo, reason)
        if cls is zoneinfo.ZoneInfo:
            return ["\x00zoneinfo", key]
        return ["\x00tzinfo", [qualified_name(cls), key]]
    reason = (
        f"memo cannot tell which zone a {cls.__qualname__} stands for; "
        "use zoneinfo.ZoneInfo or datetime.timezone"
    )
    raise UnkeyableError(tzinfo, reason)


def canonical_json(value: Any) -> bytes:
    """Return the canonical JSON bytes of ``value`` (sorted keys, typed tags).

    Raises:
        UnkeyableError: the value has no canonical form.
    """
    # Outside the try: orjson.JSONEncodeError is TypeError itself on some
    # releases, and would catch (and blur) canonical()'s own UnkeyableError.
    canon = canonical(value)
    try:
        return _sort_key(canon)
    except orjson.JSONEncodeError as exc:  # pragma: no cover - guarded by MAX_DEPTH
        raise UnkeyableError(value, f"cannot be encoded: {exc}") from exc


def _is_plain(value: Any, depth: int = 0) -> bool:  # noqa: PLR0912
    """Whether ``value`` is written by orjson exactly as its canonical form.

    True for str, bool, None, 64-bit ints, finite floats, and lists and dicts
    of them: the usual LLM request. Dict keys are not looked at: orjson itself
    refuses any key that is not exactly a str (and any text with a lone
    surrogate), and ``digest_arguments`` then takes the canonical path.
    Checking costs a fraction of building the canonical copy.
    """
    cls = type(value)
    if cls is dict:
        if depth >= MAX_DEPTH:
            return False
        for item in value.values():
            if type(item) is not str and not _is_plain(item, depth + 1):
                return False
        return True
    if cls is list:
        if depth >= MAX_DEPTH or _looks_tagged(value):
            return False
        depth += 1
        for item in value:
            kind = type(item)
            if kind is str:
                continue
            if kind is dict and depth < MAX_DEPTH:
                # A list of flat dicts (chat messages) is the hot case: look
                # inside without one more call per item.
                for inner in item.values():
                    if type(inner) is not str and not _is_plain(inner, depth + 1):
                        return False
            elif not _is_plain(item, depth):
                return False
        return True
    if cls is str or cls is bool or value is None:
        return True
    if cls is int:
        return _INT64_MIN <= value <= _UINT64_MAX  # type: ignore[no-any-return]
    if cls is float:
        return math.isfinite(value)
    return False


def digest_arguments(arguments: dict[str, Any], owner: str) -> str:
    """Hash bound arguments into a hex digest.

    Args:
        arguments: parameter name to value, as bound by ``inspect.Signature``.
        owner: the function's name, for error messages.

    Raises:
        TypeError: an argument has no canonical form; the message names the
            parameter, its type and the fix.
    """
    data = None
    if _is_plain(arguments):
        try:
            data = orjson.dumps(arguments, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            data = None  # a key that is not a str, or a lone surrogate: tag it
    if data is None:
        canon = {}
        for name, value in arguments.items():
            try:
                canon[name] = canonical(value)
            except UnkeyableError as exc:
                # The user's own exception (a __memo_key__ that raised) stays the
                # cause, traceback and all; memo's internal one is not shown.
                raise _argument_error(owner, name, exc) from exc.__cause__
        try:
            data = orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            data = _dumps_surrogates(canon)
    return hashlib.sha256(data).hexdigest()


def _argument_error(owner: str, name: str, exc: UnkeyableError) -> TypeError:
    where = name + "".join(reversed(exc.path))
    kind = type(exc.value).__qualname__
    if exc.reason is None:
        reason = f"{where!r} is a {kind}, which memo cannot turn into a key"
    else:
        reason = f"{where!r} ({kind}): {exc.reason}"
    if isinstance(exc.value, type):
        # Leaving a class out would make every class share one entry.
        fix = "memo keys a class by its module and qualified name"
    else:
        fix = (
            f"pass ignore=({name!r},) to leave it out of the key, "
            f"or give the type a __memo_key__() method that returns a keyable value"
        )
    msg = f"cannot build a cache key for {owner}(): parameter {reason}; {fix}"
    return TypeError(msg)
