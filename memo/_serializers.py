"""Serializers turn a function's result into bytes and back.

What a serializer writes is stored inside memo's envelope (``memo._envelope``),
which carries the serializer's id (``serializer_id``), so a value written by
another serializer is a miss, never a wrong object.
"""

from __future__ import annotations

import hashlib
import math
import pickle
import types
import typing
from typing import Any, Generic, Literal, Protocol, TypeVar, Union, runtime_checkable

import orjson

from memo._names import qualified_name
from memo._report import logger

if typing.TYPE_CHECKING:
    # Imported where used: a program that stores only JSON never loads pydantic.
    import pydantic

__all__ = [
    "JsonSerializer",
    "PickleSerializer",
    "PydanticSerializer",
    "Serializer",
    "infer_serializer",
    "serializer_for",
    "serializer_id",
]

T = TypeVar("T")


@runtime_checkable
class Serializer(Protocol[T]):
    """Turns a value into bytes and back.

    Any object with these two methods is a serializer. It may also set a
    ``memo_id`` string attribute: the id written into each stored value's
    envelope, so that a value written by a different serializer reads as a
    miss. Without it, the id is the serializer's class path.
    """

    def dumps(self, value: T) -> bytes:
        """Return ``value`` as bytes."""
        ...

    def loads(self, data: bytes) -> T:
        """Return the value that ``dumps`` turned into ``data``."""
        ...


def serializer_id(serializer: Serializer[Any]) -> bytes:
    """Return the envelope id of ``serializer`` (at most 255 bytes)."""
    name = getattr(serializer, "memo_id", None)
    if not isinstance(name, str):
        name = qualified_name(type(serializer))
    raw = name.encode()
    if len(raw) > 255:
        raw = b"sha256:" + hashlib.sha256(raw).hexdigest().encode()
    return raw


# orjson writes datetimes, dataclasses and subclasses of str/int/dict/list as
# plain JSON, which would come back as another type. Refusing them makes the
# store fail loudly (logged, not cached) instead of handing back a wrong type.
_JSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _has_non_finite(value: Any) -> bool:
    if type(value) is float:
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_non_finite(item) for item in value)
    return False


class JsonSerializer:
    """JSON through orjson: the default for plain JSON results.

    A hit returns what JSON can hold: a tuple comes back as a list, an Enum as
    its value. Results JSON cannot represent faithfully (NaN, infinities,
    datetimes, dataclasses, subclasses of builtins, non-string dict keys)
    raise on ``dumps``, so they are returned but not stored; annotate the
    function's return type or pass ``PydanticSerializer(tp)`` to keep them.
    """

    memo_id = "json"

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` as JSON bytes.

        Raises:
            TypeError: the value holds a type JSON cannot represent faithfully.
            ValueError: the value holds NaN or an infinity.
        """
        data = orjson.dumps(value, option=_JSON_OPTIONS)
        # orjson writes NaN and infinities as null; look only when a null exists.
        if b"null" in data and _has_non_finite(value):
            msg = "JSON cannot hold NaN or infinity; use PydanticSerializer or PickleSerializer"
            raise ValueError(msg)
        return data

    def loads(self, data: bytes) -> Any:
        """Return the value held in JSON ``data``."""
        return orjson.loads(data)

    def __repr__(self) -> str:
        return "JsonSerializer()"


class PydanticSerializer(Generic[T]):
    """Any type pydantic can validate, via ``pydantic.TypeAdapter``.

    Works for models (``ChatCompletion`` included), dataclasses and types built
    of them (``list[Model]``, ``Model | None``, ``tuple[int, str]``,
    ``set[str]``, ``datetime``). A hit returns the declared type.

    Args:
        tp: the type of the values to store.
    """

    def __init__(self, tp: type[T] | Any) -> None:
        self.type = tp
        import pydantic  # noqa: PLC0415 - see the note at the top

        self.memo_id = f"pydantic:{qualified_name(tp)}"
        try:
            # Non-finite floats as JSON constants, so NaN never becomes None;
            # bytes as base64, so bytes that are not UTF-8 can be stored at all.
            config = pydantic.ConfigDict(
                ser_json_inf_nan="constants", ser_json_bytes="base64", val_json_bytes="base64"
            )
            self._adapter: pydantic.TypeAdapter[T] = pydantic.TypeAdapter(tp, config=config)
        except pydantic.PydanticUserError:
            # Models and dataclasses carry their own config.
            self._adapter = pydantic.TypeAdapter(tp)

    def dumps(self, value: T) -> bytes:
        """Return ``value`` as JSON bytes."""
        return self._adapter.dump_json(value)

    def loads(self, data: bytes) -> T:
        """Validate JSON ``data`` into the declared type."""
        return self._adapter.validate_json(data)

    def __repr__(self) -> str:
        return f"PydanticSerializer({qualified_name(self.type)})"


class PickleSerializer:
    """Any picklable value, via ``pickle``. Opt-in only.

    Warning:
        Unpickling runs code chosen by whoever wrote the data. Use it only for
        a cache that no one else can write: never for a shared folder or a
        shared Redis.
    """

    memo_id = "pickle"

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def dumps(self, value: Any) -> bytes:
        """Return ``value`` pickled."""
        return pickle.dumps(value, protocol=self.protocol)

    def loads(self, data: bytes) -> Any:
        """Unpickle ``data``."""
        return pickle.loads(data)

    def __repr__(self) -> str:
        return "PickleSerializer()"


_JSON_SCALARS: frozenset[Any] = frozenset({str, int, float, bool, type(None), None, Any, object})


def _json_safe(tp: Any) -> bool:
    """Whether JSON round-trips every value of ``tp`` to an equal value."""
    if tp in _JSON_SCALARS or tp is list or tp is dict:
        return True
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list:
        return all(_json_safe(arg) for arg in args)
    if origin is dict:
        return len(args) == 2 and args[0] is str and _json_safe(args[1])
    if origin is Union or origin is types.UnionType:
        return all(_json_safe(arg) for arg in args)
    if origin is Literal:
        return all(type(arg) in (str, int, bool) or arg is None for arg in args)
    if origin is typing.Annotated:
        return _json_safe(args[0])
    if _is_typeddict(tp):
        # A TypedDict is a plain dict at run time: JSON keeps it if its fields are JSON.
        hints = typing.get_type_hints(tp)
        return all(_json_safe(hint) for hint in hints.values())
    return False


def _is_typeddict(tp: Any) -> bool:
    if typing.is_typeddict(tp):
        return True
    try:
        import typing_extensions  # noqa: PLC0415 - pydantic's own dependency

        return bool(typing_extensions.is_typeddict(tp))
    except ImportError:  # pragma: no cover - pydantic requires typing_extensions
        return False


def infer_serializer(annotation: Any) -> Serializer[Any]:
    """Choose a serializer from a resolved return annotation.

    Plain JSON types (and ``Any``) get ``JsonSerializer``; anything JSON would
    change (models, dataclasses, tuples, sets, datetimes, non-string keys) gets
    ``PydanticSerializer(annotation)`` so that a hit returns the declared type.

    Raises:
        TypeError: pydantic cannot build a schema for the annotation.
    """
    if _json_safe(annotation):
        return JsonSerializer()
    import pydantic  # noqa: PLC0415 - see the note at the top

    try:
        return PydanticSerializer(annotation)
    except pydantic.PydanticSchemaGenerationError as exc:
        msg = (
            f"memo cannot infer a serializer for the return type {qualified_name(annotation)}: "
            f"pydantic cannot describe it; pass serializer=... (PickleSerializer() for a "
            f"private cache, or your own Serializer)"
        )
        raise TypeError(msg) from exc
    except pydantic.PydanticUserError as exc:
        # e.g. typing.TypedDict on Python < 3.12, which pydantic refuses.
        msg = (
            f"memo cannot infer a serializer for the return type {qualified_name(annotation)}: "
            f"{str(exc).splitlines()[0]} Or pass serializer=... to choose one."
        )
        raise TypeError(msg) from exc


def serializer_for(fn: Any, *, final: bool) -> Serializer[Any] | None:
    """Choose the serializer for ``fn``'s results from its return annotation.

    Args:
        fn: the decorated function.
        final: whether this is the last chance: an annotation that cannot be
            resolved yet (a forward reference) gives None when not final, and
            JSON (with a warning on the ``memo`` logger) when final.

    Raises:
        TypeError: pydantic cannot describe the annotated type.
    """
    try:
        hints = typing.get_type_hints(fn)
    except NameError:
        if not final:
            return None
        logger.warning(
            "memo: the return annotation of %s cannot be resolved; results are stored "
            "as JSON. Pass serializer=... to choose.",
            qualified_name(fn),
        )
        return JsonSerializer()
    except TypeError:  # not a plain function (a partial, a callable object)
        return JsonSerializer()
    if "return" not in hints:
        return JsonSerializer()
    return infer_serializer(hints["return"])
