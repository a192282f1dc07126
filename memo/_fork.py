"""What a forked child must renew: locks a thread of the parent may have held, and the like."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol

__all__ = ["renew_lock_after_fork", "reset_after_fork"]


class _HasLock(Protocol):
    _lock: threading.Lock


class _Resets(Protocol):
    def _reset_after_fork(self) -> None: ...


_owners: weakref.WeakSet[_HasLock] = weakref.WeakSet()
_resets: weakref.WeakSet[_Resets] = weakref.WeakSet()


def renew_lock_after_fork(owner: _HasLock) -> None:
    """Give ``owner`` a new ``_lock`` in every child forked from now on.

    A lock held by another thread of the parent at ``fork()`` stays held in
    the child forever: the thread that would release it does not exist there.
    """
    _owners.add(owner)


def reset_after_fork(owner: _Resets) -> None:
    """Call ``owner._reset_after_fork()`` in every child forked from now on.

    For state the child must not trust, such as copies kept valid by a
    connection of the parent's; the reset must also replace any lock.
    """
    _resets.add(owner)


def _after_fork_in_child() -> None:
    for owner in list(_owners):
        owner._lock = threading.Lock()
    for resets in list(_resets):
        resets._reset_after_fork()


if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork()
    os.register_at_fork(after_in_child=_after_fork_in_child)
