"""The decorator's options, checked once at decoration time."""

from __future__ import annotations

import dataclasses
import datetime
import types
from typing import TYPE_CHECKING, Any

from memo._serializers import Serializer
from memo.stores.base import Store

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

__all__ = ["Options", "ttl_seconds"]


@dataclasses.dataclass(frozen=True, slots=True)
class Options:
    """What ``async_disk_cache`` was told, each option checked and normalised."""

    namespace: str | None
    serializer: Serializer[Any] | None
    directory: str | os.PathLike[str] | None
    store: Store | None
    ttl: float | None
    version: str | None
    cache_if: Callable[[Any], bool] | None

    @classmethod
    def checked(
        cls,
        *,
        namespace: object,
        serializer: object,
        directory: Any,
        store: object,
        ttl: object,
        version: object,
        cache_if: object,
    ) -> Options:
        """Return the options, or fail with the fix on one of the wrong type.

        Raises:
            TypeError: an option is of the wrong type, or store and directory
                were both given.
            ValueError: ``ttl`` is not positive.
        """
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            msg = f"namespace must be a non-empty str, got {namespace!r}"
            raise TypeError(msg)
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, (str, int))
        ):
            msg = f"version must be a str, an int or None, got {version!r}"
            raise TypeError(msg)
        if store is not None and directory is not None:
            msg = "pass either store= or directory=, not both"
            raise TypeError(msg)
        if store is not None and not isinstance(store, Store):
            msg = f"store must implement memo.Store (get, set, delete, clear, close), got {store!r}"
            raise TypeError(msg)
        if cache_if is not None and not callable(cache_if):
            msg = f"cache_if must be a callable taking the result, got {cache_if!r}"
            raise TypeError(msg)
        if isinstance(serializer, (type, types.ModuleType)):
            # The json module, or a serializer class, has dumps and loads too.
            msg = (
                f"serializer must be a serializer instance, got {serializer!r}; "
                f"pass an instance such as JsonSerializer() or PydanticSerializer(MyModel)"
            )
            raise TypeError(msg)
        if serializer is not None and not isinstance(serializer, Serializer):
            msg = f"serializer must have dumps(value) and loads(data) methods, got {serializer!r}"
            raise TypeError(msg)
        return cls(
            namespace=namespace,
            serializer=serializer,
            directory=directory,
            store=store,
            ttl=ttl_seconds(ttl),
            version=None if version is None else str(version),
            cache_if=cache_if,
        )


def ttl_seconds(ttl: object) -> float | None:
    """Return a ttl option (seconds, a ``timedelta`` or None) as seconds.

    Raises:
        TypeError: ``ttl`` is of another type.
        ValueError: ``ttl`` is not positive.
    """
    if ttl is None:
        return None
    if isinstance(ttl, datetime.timedelta):
        ttl = ttl.total_seconds()
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        msg = f"ttl must be seconds (int or float), a timedelta or None, got {ttl!r}"
        raise TypeError(msg)
    if not ttl > 0:
        msg = f"ttl must be positive, got {ttl!r}"
        raise ValueError(msg)
    return float(ttl)
