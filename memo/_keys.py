r"""Cache keys: bind the call, make the arguments canonical, hash them.

The canonical form is JSON written by orjson with sorted keys. Values that JSON
already tells apart stay as they are (str, bool, None, ints that fit in 64 bits,
finite floats, lists, dicts with plain string keys), so the typical LLM request
costs little more than its own serialization. Every other value becomes a
one-key object whose key starts with NUL, a *tag* (``{"\x00tuple": [...]}``);
a user dict with a key that starts with NUL is itself written in tagged form,
so user data can never pass for a tag. orjson prints ``1``, ``1.0``, ``true``
and ``"1"`` differently, which keeps those apart without tags, while NaN and
infinities (which orjson would print as ``null``) are tagged.

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
from urllib.parse import quote, unquote

import orjson
import pydantic

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "canonical",
    "canonical_json",
    "digest_arguments",
    "namespace_of",
    "namespace_prefix",
    "store_key",
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


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _sort_key(item: Any) -> bytes:
    return orjson.dumps(item, option=orjson.OPT_SORT_KEYS)


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
        return {"\x00int": str(value)}
    if cls is float:
        return value if math.isfinite(value) else {"\x00float": repr(value)}
    if depth >= MAX_DEPTH:
        raise UnkeyableError(value, f"nested deeper than {MAX_DEPTH} levels")
    depth += 1
    if cls is list:
        return _canonical_items(value, depth)
    if cls is dict:
        return _canonical_dict(value, depth)
    if cls is tuple:
        return {"\x00tuple": _canonical_items(value, depth)}
    if cls is set or cls is frozenset:
        tag = "\x00set" if cls is set else "\x00frozenset"
        return {tag: sorted(_canonical_items(value, depth), key=_sort_key)}
    if cls is bytes or cls is bytearray:
        tag = "\x00bytes" if cls is bytes else "\x00bytearray"
        return {tag: base64.b64encode(value).decode("ascii")}
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


def _canonical_dict(value: dict[Any, Any], depth: int) -> Any:
    out = {}
    for key, item in value.items():
        if type(key) is not str or key[:1] == _TAG:
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
    # Dict order carries no meaning: sort pairs by their canonical key.
    pairs.sort(key=lambda pair: _sort_key(pair[0]))
    return {"\x00dict": pairs}


def _fields(value: Any, names: Any, depth: int) -> dict[str, Any]:
    out = {}
    for name in names:
        try:
            out[name] = canonical(getattr(value, name), depth)
        except UnkeyableError as exc:
            exc.path.append(f".{name}")
            raise
    return out


def _canonical_object(value: Any, cls: type, depth: int) -> Any:  # noqa: PLR0912
    name = _qualname(cls)
    memo_key = getattr(cls, "__memo_key__", None)
    if memo_key is not None:
        try:
            custom = value.__memo_key__()
        except Exception as exc:
            reason = f"{cls.__qualname__}.__memo_key__() raised {type(exc).__name__}: {exc}"
            raise UnkeyableError(value, reason) from exc
        return {"\x00custom": [name, canonical(custom, depth)]}
    if isinstance(value, enum.Enum):
        return {"\x00enum": [name, canonical(value.value, depth)]}
    if isinstance(value, pydantic.BaseModel):
        fields = _fields(value, type(value).model_fields, depth)
        extra = value.__pydantic_extra__
        return {"\x00model": [name, fields, canonical(extra, depth) if extra else None]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [field.name for field in dataclasses.fields(value)]
        return {"\x00dataclass": [name, _fields(value, names, depth)]}
    # datetime is a subclass of date: test it first.
    if isinstance(value, datetime.datetime):
        return {"\x00datetime": [name, value.isoformat()]}
    if isinstance(value, datetime.date):
        return {"\x00date": [name, value.isoformat()]}
    if isinstance(value, datetime.time):
        return {"\x00time": [name, value.isoformat()]}
    if isinstance(value, datetime.timedelta):
        return {"\x00timedelta": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, uuid.UUID):
        return {"\x00uuid": str(value)}
    if isinstance(value, decimal.Decimal):
        return {"\x00decimal": str(value)}
    if isinstance(value, pathlib.PurePath):
        return {"\x00path": [name, str(value)]}
    if isinstance(value, tuple) and hasattr(cls, "_fields"):
        return {"\x00namedtuple": [name, _canonical_items(value, depth)]}
    # Subclasses of the builtins (OrderedDict, a str subclass, ...): the value
    # as its base type, tagged with the class so two classes never meet.
    for base in (str, int, float, list, tuple, dict, set, frozenset, bytes):
        if isinstance(value, base):
            plain: Any = base(value)  # type: ignore[arg-type]
            return {"\x00subclass": [name, canonical(plain, depth)]}
    raise UnkeyableError(value)


def canonical_json(value: Any) -> bytes:
    """Return the canonical JSON bytes of ``value`` (sorted keys, typed tags).

    Raises:
        UnkeyableError: the value has no canonical form.
    """
    try:
        return orjson.dumps(canonical(value), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:  # pragma: no cover - guarded by MAX_DEPTH
        raise UnkeyableError(value, f"cannot be encoded: {exc}") from exc


def digest_arguments(arguments: Mapping[str, Any], owner: str) -> str:
    """Hash bound arguments into a hex digest.

    Args:
        arguments: parameter name to value, as bound by ``inspect.Signature``.
        owner: the function's name, for error messages.

    Raises:
        TypeError: an argument has no canonical form; the message names the
            parameter, its type and the fix.
    """
    canon: dict[str, Any] = {}
    for name, value in arguments.items():
        try:
            canon[name] = canonical(value)
        except UnkeyableError as exc:
            raise _argument_error(owner, name, exc) from None
    data = orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)
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
    error = TypeError(msg)
    error.__cause__ = exc.__cause__
    return error


def _escape(text: str) -> str:
    # Percent-encoding leaves only [A-Za-z0-9_.~-] bare, so ':' never appears
    # inside a part and glob characters never reach Redis patterns.
    return quote(text, safe="")


def namespace_prefix(namespace: str) -> str:
    """Return the prefix that every store key of ``namespace`` starts with.

    No other namespace's keys start with it: ``a`` and ``a:b`` have the
    prefixes ``a:`` and ``a%3Ab:``.
    """
    return _escape(namespace) + ":"


def store_key(namespace: str, version: str | None, digest: str) -> str:
    """Join namespace, version and digest into the key handed to a store.

    The three parts are separated by ``:``, which neither escaped part can
    contain; an unset version is empty and a set one starts with ``v``, so no
    two different triples can meet.
    """
    tail = "" if version is None else "v" + _escape(version)
    return f"{namespace_prefix(namespace)}{tail}:{digest}"


def namespace_of(key: str) -> str:
    """Read the namespace back from a store key."""
    return unquote(key.partition(":")[0])
