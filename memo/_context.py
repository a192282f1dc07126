"""Per-call switches that follow the task: ``bypass()`` and ``refreshing()``."""

from __future__ import annotations

import contextlib
import enum
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Mode", "bypass", "current_mode", "refreshing"]


class Mode(enum.Enum):
    """How cached functions behave in the current context."""

    NORMAL = "normal"
    BYPASS = "bypass"
    REFRESH = "refresh"


_mode: ContextVar[Mode] = ContextVar("memo_mode", default=Mode.NORMAL)
current_mode = _mode.get


@contextlib.contextmanager
def _switch(mode: Mode) -> Iterator[None]:
    token = _mode.set(mode)
    try:
        yield
    finally:
        _mode.reset(token)


def bypass() -> contextlib.AbstractContextManager[None]:
    """Run cached functions for real, neither reading nor writing the cache.

    A context manager backed by a ``ContextVar``: it covers the calls made in
    the block, including tasks created there, and no other task::

        with memo.bypass():
            fresh = await forecast("Paris")   # runs; the stored entry is untouched
    """
    return _switch(Mode.BYPASS)


def refreshing() -> contextlib.AbstractContextManager[None]:
    """Run cached functions for real and overwrite their entries.

    Like ``fn.refresh(...)`` for every cached call in the block (and in tasks
    created there)::

        with memo.refreshing():
            await forecast("Paris")   # runs and replaces the stored entry
    """
    return _switch(Mode.REFRESH)
