"""How memo tells about trouble: the ``memo`` logger and ``MemoWarning``."""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings

__all__ = ["MemoWarning", "logger", "report_failure", "warn"]

logger = logging.getLogger("memo")


class MemoWarning(UserWarning):
    """A setup memo can work with but that is probably a mistake."""


_PACKAGE = os.path.dirname(__file__) + os.sep


def warn(message: str) -> None:
    """Issue a ``MemoWarning`` that points at the first line outside memo: the user's."""
    frame = sys._getframe(1)
    level = 2  # warnings.warn's caller's caller: the function that called warn()
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    warnings.warn(message, MemoWarning, stacklevel=level)


_reported: set[tuple[str, str, type[BaseException]]] = set()
_reported_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # A lock held by another thread of the parent at fork() stays held in the
    # child forever: the child's first failure report would hang.
    global _reported_lock  # noqa: PLW0603 - replacing the lock is the point
    _reported_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_after_fork_in_child)


def report_failure(namespace: str, operation: str, exc: BaseException) -> None:
    """Log a cache failure that memo recovered from.

    The first failure of a kind (namespace, operation, exception type) is a
    warning with its traceback; repeats are debug lines, so a cache that stays
    broken does not flood the log. Counting is the caller's job.
    """
    kind = (namespace, operation, type(exc))
    with _reported_lock:
        first = kind not in _reported
        _reported.add(kind)
    if first:
        logger.warning(
            "memo: %s failed for namespace %r (%s: %s); the call's result is returned "
            "uncached. Further %s failures of this kind are logged at DEBUG level.",
            operation,
            namespace,
            type(exc).__name__,
            exc,
            type(exc).__name__,
            exc_info=exc,
        )
    else:
        logger.debug(
            "memo: %s failed for namespace %r (%s: %s)",
            operation,
            namespace,
            type(exc).__name__,
            exc,
        )
