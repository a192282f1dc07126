"""memo: memoize coroutines on disk.

``@async_disk_cache`` binds each call's arguments, turns them into a canonical
key, and stores the result so that a repeated call costs nothing, returns the
same typed object and survives a restart.
"""

import typing

from memo._lazy import lazy_exports as _lazy_exports

if typing.TYPE_CHECKING:
    from memo._context import NotRecordedError, bypass, offline, refreshing
    from memo._decorator import BoundCachedFunction, CachedFunction, CacheInfo, async_disk_cache
    from memo._report import MemoWarning
    from memo._serializers import (
        JsonSerializer,
        PickleSerializer,
        PydanticSerializer,
        Serializer,
    )
    from memo.stores import DiskStore, MemoryStore, RedisStore, Store

__all__ = [
    "BoundCachedFunction",
    "CacheInfo",
    "CachedFunction",
    "DiskStore",
    "JsonSerializer",
    "MemoWarning",
    "MemoryStore",
    "NotRecordedError",
    "PickleSerializer",
    "PydanticSerializer",
    "RedisStore",
    "Serializer",
    "Store",
    "async_disk_cache",
    "bypass",
    "offline",
    "refreshing",
]

__version__ = "0.2.0"

# Imported on first use: `python -m memo stats` and a program that never
# decorates anything skip the decorator, pydantic and the stores it does not use.
__getattr__, __dir__ = _lazy_exports(
    globals(),
    {
        "BoundCachedFunction": "memo._decorator",
        "CacheInfo": "memo._decorator",
        "CachedFunction": "memo._decorator",
        "DiskStore": "memo.stores",
        "JsonSerializer": "memo._serializers",
        "MemoWarning": "memo._report",
        "MemoryStore": "memo.stores",
        "NotRecordedError": "memo._context",
        "PickleSerializer": "memo._serializers",
        "PydanticSerializer": "memo._serializers",
        "RedisStore": "memo.stores",
        "Serializer": "memo._serializers",
        "Store": "memo.stores",
        "async_disk_cache": "memo._decorator",
        "bypass": "memo._context",
        "offline": "memo._context",
        "refreshing": "memo._context",
    },
)
