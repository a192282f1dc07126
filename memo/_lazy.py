"""Public names imported when first used, so ``import memo`` stays light (PEP 562).

A program that only runs the CLI, or only uses ``MemoryStore``, never pays for
diskcache, SQLite, redis-py or the decorator's machinery; each public name is
imported from its module the first time it is read, then kept in the package's
namespace like any eager import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a package's ``__getattr__`` and ``__dir__`` for ``exports`` (name -> module).

    Args:
        namespace: the package's ``globals()``; a name is stored there once imported.
        exports: each public name and the module that defines it.
    """
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
