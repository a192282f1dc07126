"""The public API is what ``__all__`` says: every name exported, none private, none missing."""

from __future__ import annotations

import types

import pytest

import memo
import memo.openai
import memo.stores


@pytest.mark.parametrize("module", [memo, memo.stores, memo.openai], ids=lambda m: m.__name__)
def test_all_lists_exactly_the_public_members(module: types.ModuleType) -> None:
    """__all__ is sorted and equals the public names the module holds (submodules aside)."""
    exported = set(module.__all__)
    # dir(), not vars(): a public name is imported on first use (PEP 562).
    public = {
        name
        for name in dir(module)
        if not name.startswith("_") and not isinstance(getattr(module, name), types.ModuleType)
    }
    assert exported == public
    assert list(module.__all__) == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name).__doc__, f"{module.__name__}.{name} has no docstring"


def test_the_top_level_api_is_pinned() -> None:
    """Adding or dropping a public name is a deliberate change to this list."""
    assert memo.__all__ == [
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
    assert memo.stores.__all__ == [
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
