"""What a forked child must renew: locks that a thread of the parent may have held."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Protocol

__all__ = ["renew_lock_after_fork"]


class _HasLock(Protocol):
    _lock: threading.Lock


_owners: weakref.WeakSet[_HasLock] = weakref.WeakSet()


def renew_lock_after_fork(owner: _HasLock) -> None:
    """Give ``owner`` a new ``_lock`` in every child forked from now on.

    A lock held by another thread of the parent at ``fork()`` stays held in
    the child forever: the thread that would release it does not exist there.
    """
    _owners.add(owner)


def _after_fork_in_child() -> None:
    for owner in list(_owners):
        owner._lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX only; Windows has no fork()
    os.register_at_fork(after_in_child=_after_fork_in_child)
