"""Where cached values live: the ``Store`` protocol, its key layout and memo's stores."""

import typing

from memo._lazy import lazy_exports as _lazy_exports
from memo.stores.base import (
    Store,
    StoredEntry,
    WouldBlock,
    namespace_of,
    namespace_prefix,
    store_key,
)

if typing.TYPE_CHECKING:
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

# Each store is imported on first use: MemoryStore alone needs neither
# diskcache and SQLite nor redis-py.
__getattr__, __dir__ = _lazy_exports(
    globals(),
    {
        "DiskStore": "memo.stores.disk",
        "DiskTimeoutError": "memo.stores.disk",
        "RefusedEntryError": "memo.stores.disk",
        "default_directory": "memo.stores.disk",
        "MemoryStore": "memo.stores.memory",
        "RedisStore": "memo.stores.redis",
    },
)
