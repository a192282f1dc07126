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

Everything here is a pure function of its input: nothing depends on ``hash()``,
``id()``, ``repr()`` of arbitrary objects or dict order, so keys are the same
across processes, machines and ``PYTHONHASHSEED`` values.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import hashlib
import math
import pathlib
import uuid
from typing import TYPE_CHECKING, Any

import orjson
import pydantic

from memo._names import qualified_name

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
            out[name] = canonical(getattr(value, name), depth)
        except UnkeyableError as exc:
            exc.path.append(f".{name}")
            raise
    return out


# The value a builtin subclass holds, read through the builtin's own methods so
# that an override (__str__, __iter__, items, ...) cannot show two values as one.
_BUILTIN_VALUE: tuple[tuple[type, Any], ...] = (
    (str, str.__str__),
    (int, int.__index__),
    (float, float.__float__),
    (list, lambda value: list(list.__iter__(value))),
    (tuple, lambda value: tuple(tuple.__iter__(value))),
    (dict, lambda value: dict(dict.items(value))),
    (set, lambda value: set(set.__iter__(value))),
    (frozenset, lambda value: frozenset(frozenset.__iter__(value))),
    (bytes, lambda value: bytes.__getitem__(value, slice(None))),
)


def _canonical_object(value: Any, cls: type, depth: int) -> Any:  # noqa: PLR0912
    name = qualified_name(cls)
    memo_key = getattr(cls, "__memo_key__", None)
    if memo_key is not None:
        try:
            custom = value.__memo_key__()
        except Exception as exc:
            reason = f"{cls.__qualname__}.__memo_key__() raised {type(exc).__name__}: {exc}"
            raise UnkeyableError(value, reason) from exc
        return ["\x00custom", [name, canonical(custom, depth)]]
    if isinstance(value, enum.Enum):
        return ["\x00enum", [name, canonical(value.value, depth)]]
    if isinstance(value, pydantic.BaseModel):
        fields = _fields(value, type(value).model_fields, depth)
        extra = value.__pydantic_extra__
        return ["\x00model", [name, fields, canonical(extra, depth) if extra else None]]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [field.name for field in dataclasses.fields(value)]
        return ["\x00dataclass", [name, _fields(value, names, depth)]]
    # datetime is a subclass of date: test it first.
    if isinstance(value, datetime.datetime):
        return ["\x00datetime", [name, value.isoformat()]]
    if isinstance(value, datetime.date):
        return ["\x00date", [name, value.isoformat()]]
    if isinstance(value, datetime.time):
        return ["\x00time", [name, value.isoformat()]]
    if isinstance(value, datetime.timedelta):
        return ["\x00timedelta", [value.days, value.seconds, value.microseconds]]
    if isinstance(value, uuid.UUID):
        return ["\x00uuid", str(value)]
    if isinstance(value, decimal.Decimal):
        return ["\x00decimal", str(value)]
    if isinstance(value, pathlib.PurePath):
        return ["\x00path", [name, str(value)]]
    if isinstance(value, tuple) and hasattr(cls, "_fields"):
        return ["\x00namedtuple", [name, _canonical_items(value, depth)]]
    # Subclasses of the builtins (OrderedDict, a str subclass, ...): the value
    # as its base type, tagged with the class so two classes never meet.
    for base, plain_of in _BUILTIN_VALUE:
        if isinstance(value, base):
            return ["\x00subclass", [name, canonical(plain_of(value), depth)]]
    raise UnkeyableError(value)


def canonical_json(value: Any) -> bytes:
    """Return the canonical JSON bytes of ``value`` (sorted keys, typed tags).

    Raises:
        UnkeyableError: the value has no canonical form.
    """
    try:
        return _sort_key(canonical(value))
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
    msg = (
        f"cannot build a cache key for {owner}(): parameter {reason}; "
        f"pass ignore=({name!r},) to leave it out of the key, "
        f"or give the type a __memo_key__() method that returns a keyable value"
    )
    return TypeError(msg)
