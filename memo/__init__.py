"""memo: memoize coroutines on disk.

``@async_disk_cache`` binds each call's arguments, turns them into a canonical
key, and stores the result so that a repeated call costs nothing, returns the
same typed object and survives a restart.
"""

from memo._context import NotRecordedError, bypass, offline, refreshing
from memo._decorator import BoundCachedFunction, CachedFunction, CacheInfo, async_disk_cache
from memo._report import MemoWarning
from memo._serializers import JsonSerializer, PickleSerializer, PydanticSerializer, Serializer
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
