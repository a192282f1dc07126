"""Where cached values live: the ``Store`` protocol, its key layout and memo's stores."""

from memo.stores.base import (
    Store,
    StoredEntry,
    WouldBlock,
    namespace_of,
    namespace_prefix,
    store_key,
)
from memo.stores.disk import DiskStore, DiskTimeoutError, RefusedEntryError, default_directory
from memo.stores.memory import MemoryStore
from memo.stores.redis import RedisStore

__all__ = [
    "DiskStore",
    "DiskTimeoutError",
    "MemoryStore",
    "RedisStore",
    "RefusedEntryError",
    "Store",
    "StoredEntry",
    "WouldBlock",
    "default_directory",
    "namespace_of",
    "namespace_prefix",
    "store_key",
]
