"""Per-call switches that follow the task: ``bypass()``, ``refreshing()`` and ``offline()``.

Offline mode is a switch of its own, beside the mode: whatever the mode, it
forbids running a cached function (or sending a cached OpenAI request), and
a call that would run raises ``NotRecordedError``.
"""

from __future__ import annotations

import contextlib
import enum
import os
from contextvars import ContextVar, Token
from typing import Generic, NoReturn, TypeVar

T = TypeVar("T")

__all__ = [
    "Mode",
    "NotRecordedError",
    "bypass",
    "current_mode",
    "is_offline",
    "offline",
    "refreshing",
]


class Mode(enum.Enum):
    """How cached functions behave in the current context."""

    NORMAL = "normal"
    BYPASS = "bypass"
    REFRESH = "refresh"


_mode: ContextVar[Mode] = ContextVar("memo_mode", default=Mode.NORMAL)
current_mode = _mode.get


class _Switch(contextlib.AbstractContextManager[None], Generic[T]):
    """Sets a ``ContextVar`` for the block; refuses to be a decorator.

    ``contextlib.contextmanager`` would make ``@memo.offline()`` on an
    ``async def`` cover creating the coroutine and not running it: silently
    online. Here it is a TypeError that says what to write.
    """

    def __init__(self, name: str, var: ContextVar[T], value: T) -> None:
        self._name = name
        self._var = var
        self._value = value
        self._tokens: list[Token[T]] = []

    def __enter__(self) -> None:
        self._tokens.append(self._var.set(self._value))

    def __exit__(self, *exc_info: object) -> None:
        self._var.reset(self._tokens.pop())

    def __call__(self, function: object) -> NoReturn:
        """Refuse to decorate: a context manager is entered with ``with``."""
        msg = (
            f"memo.{self._name}() is a context manager, not a decorator: write "
            f"`with memo.{self._name}():` in the body of {function!r}"
        )
        raise TypeError(msg)


def bypass() -> contextlib.AbstractContextManager[None]:
    """Run cached functions for real, neither reading nor writing the cache.

    A context manager backed by a ``ContextVar``: it covers the calls made in
    the block, including tasks created there, and no other task::

        with memo.bypass():
            fresh = await forecast("Paris")   # runs; the stored entry is untouched
    """
    return _Switch("bypass", _mode, Mode.BYPASS)


def refreshing() -> contextlib.AbstractContextManager[None]:
    """Run cached functions for real and overwrite their entries.

    Like ``fn.refresh(...)`` for every cached call in the block (and in tasks
    created there)::

        with memo.refreshing():
            await forecast("Paris")   # runs and replaces the stored entry
    """
    return _Switch("refreshing", _mode, Mode.REFRESH)


# None: as $MEMO_OFFLINE says. Read only when a call would run, never on a hit.
_offline: ContextVar[bool | None] = ContextVar("memo_offline", default=None)

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})


def offline(enabled: bool = True) -> contextlib.AbstractContextManager[None]:
    """Answer cached calls from the cache only: a miss raises ``NotRecordedError``.

    For test suites that replay recorded answers: a hit returns as usual; a
    call that would run the function (a miss, ``refresh()``, a call under
    ``memo.refreshing()`` or ``memo.bypass()``) raises instead, and a cached
    ``memo.openai`` client sends no request on the endpoints it caches. A
    context manager backed by a ``ContextVar``, like ``bypass()``: it covers
    the calls made in the block, including tasks created there::

        with memo.offline():
            await forecast("Paris")  # the stored answer, or NotRecordedError

    ``MEMO_OFFLINE=1`` in the environment turns it on for a whole run (read
    when a call would run); ``offline(False)`` turns it off in a block even so.

    Args:
        enabled: False turns offline mode off in the block.

    Raises:
        TypeError: ``enabled`` is not a bool.
    """
    if not isinstance(enabled, bool):  # a typo such as offline("false") must not pass
        msg = f"offline() takes True or False, got {enabled!r}"  # type: ignore[unreachable]
        raise TypeError(msg)
    return _Switch("offline", _offline, enabled)


def is_offline() -> bool:
    """Whether offline mode is on here: ``offline()``, else ``$MEMO_OFFLINE``.

    Raises:
        ValueError: ``$MEMO_OFFLINE`` holds something other than 1/0, true/false,
            yes/no, on/off (a misspelled switch must not reach the API).
    """
    chosen = _offline.get()
    if chosen is not None:
        return chosen
    value = os.environ.get("MEMO_OFFLINE", "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    msg = f"MEMO_OFFLINE must be 1 or 0 (or true/false, yes/no, on/off), got {value!r}"
    raise ValueError(msg)


class NotRecordedError(LookupError):
    """A cached call found nothing stored in offline mode, so memo did not run it.

    A ``LookupError``: the key was looked up and is not there. Raised to the
    caller in place of the function's result; nothing is stored.

    Attributes:
        function: what would have run: the cached function's name, or the
            request a ``memo.openai`` client would have sent.
        namespace: the namespace of the entry looked for.
        key: the store key looked for (None when the call reads nothing, as
            under ``memo.bypass()``).
        why: for a call that reads nothing, why it does not and what to do;
            for one whose entry is there but could not be read, the error.
    """

    def __init__(self, function: str, namespace: str, key: str | None, why: str = "") -> None:
        self.function = function
        self.namespace = namespace
        self.key = key
        self.why = why
        if key is None:
            message = (
                f"{function}: offline mode (memo.offline() or MEMO_OFFLINE=1) does not run "
                f"this call (namespace {namespace!r}), and {why}"
            )
        else:
            found = f"the recording of this call cannot be read ({why})" if why else ""
            message = (
                f"{function}: {found or 'nothing recorded for this call'} (namespace "
                f"{namespace!r}, key {key}), and offline mode (memo.offline() or "
                f"MEMO_OFFLINE=1) does not run it. "
                f"Record it by running it once with offline mode off (MEMO_OFFLINE unset), or "
                f"with memo's pytest plugin: `pytest --memo-record`; then commit the recording"
            )
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Rebuilt from its parts, not its message (pytest-xdist, multiprocessing).
        return type(self), (self.function, self.namespace, self.key, self.why)


# Tracebacks name it as users import it.
NotRecordedError.__module__ = "memo"
