"""Where cached values live: the ``Store`` protocol and memo's stores."""

from memo._keys import namespace_of, namespace_prefix
from memo.stores.base import Store
from memo.stores.disk import DiskStore, RefusedEntryError, default_directory
from memo.stores.memory import MemoryStore
from memo.stores.redis import RedisStore

__all__ = [
    "DiskStore",
    "MemoryStore",
    "RedisStore",
    "RefusedEntryError",
    "Store",
    "default_directory",
    "namespace_of",
    "namespace_prefix",
]
