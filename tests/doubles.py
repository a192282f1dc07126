"""One store double for every test that needs a store to fail, wait or take its time.

``StoreDouble`` wraps a real store (a fresh ``MemoryStore`` unless given
one), so whatever it lets through is really stored, and adds what a test
needs to steer it:

- ``fail={"set": OSError(...)}``: chosen operations raise (a copy of) the
  given exception instead of reaching the real store; ``fail`` stays a dict
  the test may change (``store.fail.clear()``: the disk has room again);
- ``step=("get", "set")``: chosen operations take one event-loop step
  before reaching the real store and one after, as a store on the network
  would, so a test can cancel a call at every await point;
- ``block("set")`` holds every later call of an operation until
  ``unblock("set")``, and ``await held("set")`` waits until one is held;
- ``calls`` records every operation attempted, in order, with its key (or
  namespace); ``done`` counts those that returned.

``get_nowait`` and ``release`` are optional in the Store protocol, and memo
looks for them on the store's class: a double that always had them would change
the path memo takes. It offers them only when asked (``optional=("get_nowait",)``
makes the double an instance of a subclass that has the method), and only over
a real store that has them.
"""

from __future__ import annotations

import asyncio
import collections
import copy
from typing import TYPE_CHECKING, Any

from memo import MemoryStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping

ASYNC_OPERATIONS = frozenset({"get", "set", "delete", "clear", "release", "close"})
OPERATIONS = ASYNC_OPERATIONS | {"get_nowait"}
OPTIONAL = frozenset({"get_nowait", "release"})


def _known(names: Iterable[str], allowed: frozenset[str], what: str) -> None:
    unknown = set(names) - allowed
    if unknown:
        msg = f"cannot {what} {sorted(unknown)}; choose from {sorted(allowed)}"
        raise ValueError(msg)


class StoreDouble:
    """A store that wraps a real one, to fail, hold or step chosen operations, recording calls.

    ``StoreDouble(...)`` returns an instance of the subclass that has exactly
    the optional operations asked for.

    Args:
        inner: the real store; a fresh ``MemoryStore`` by default.
        fail: operation name -> the exception that operation raises.
        step: operations that take an event-loop step before and after the real one.
        optional: the optional operations (``get_nowait``, ``release``) to offer.
    """

    def __new__(cls, *args: Any, optional: Iterable[str] = (), **kwargs: Any) -> StoreDouble:
        offered = frozenset(optional)
        _known(offered, OPTIONAL, "offer")
        return super().__new__(_WITH[offered])

    def __init__(
        self,
        inner: Any = None,
        *,
        fail: Mapping[str, BaseException] | None = None,
        step: Iterable[str] = (),
        optional: Iterable[str] = (),
    ) -> None:
        self.inner: Any = MemoryStore() if inner is None else inner
        self.fail: dict[str, BaseException] = dict(fail or {})
        self.step = frozenset(step)
        self.calls: list[tuple[str, str | None]] = []
        self.done: collections.Counter[str] = collections.Counter()
        self._gates: dict[str, asyncio.Event] = {}
        self._held: dict[str, asyncio.Event] = collections.defaultdict(asyncio.Event)
        _known(self.fail, OPERATIONS, "fail")
        _known(self.step, ASYNC_OPERATIONS, "step")
        for name in frozenset(optional):
            if not callable(getattr(self.inner, name, None)):
                msg = f"{self.inner!r} has no {name}() to offer"
                raise TypeError(msg)

    def __repr__(self) -> str:
        return f"StoreDouble({self.inner!r}, fail={sorted(self.fail)}, step={sorted(self.step)})"

    def count(self, operation: str) -> int:
        """How many times ``operation`` was attempted (failed and held calls included)."""
        return sum(1 for name, _ in self.calls if name == operation)

    def block(self, operation: str) -> None:
        """Hold every later call of ``operation`` at its start, until ``unblock(operation)``."""
        _known([operation], ASYNC_OPERATIONS, "block")
        self._gates.setdefault(operation, asyncio.Event())

    def unblock(self, operation: str) -> None:
        """Let the held calls of ``operation``, and later ones, go on."""
        self._gates.pop(operation).set()

    async def held(self, operation: str) -> None:
        """Wait until a call of ``operation`` is held by ``block``."""
        await self._held[operation].wait()

    def _enter(self, operation: str, argument: str | None) -> None:
        self.calls.append((operation, argument))

    def _raise_if_failing(self, operation: str) -> None:
        if operation in self.fail:
            # A fresh copy each time: no traceback or context piles up on one object.
            raise copy.copy(self.fail[operation])

    async def _around(
        self, operation: str, argument: str | None, real: Callable[[], Awaitable[Any]]
    ) -> Any:
        self._enter(operation, argument)
        if operation in self.step:
            await asyncio.sleep(0)
        gate = self._gates.get(operation)
        if gate is not None:
            self._held[operation].set()
            await gate.wait()
        self._raise_if_failing(operation)
        result = await real()
        self.done[operation] += 1
        if operation in self.step:
            await asyncio.sleep(0)
        return result

    async def get(self, key: str) -> bytes | None:
        """The real store's get, unless failing, held or stepped."""
        result: bytes | None = await self._around("get", key, lambda: self.inner.get(key))
        return result

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """The real store's set, unless failing, held or stepped."""
        await self._around("set", key, lambda: self.inner.set(key, value, ttl=ttl))

    async def delete(self, key: str) -> bool:
        """The real store's delete, unless failing, held or stepped."""
        result: bool = await self._around("delete", key, lambda: self.inner.delete(key))
        return result

    async def clear(self, namespace: str) -> int:
        """The real store's clear, unless failing, held or stepped."""
        result: int = await self._around("clear", namespace, lambda: self.inner.clear(namespace))
        return result

    async def close(self) -> None:
        """The real store's close, unless failing, held or stepped."""
        await self._around("close", None, self.inner.close)


class _Nowait(StoreDouble):
    """A StoreDouble that offers get_nowait."""

    def get_nowait(self, key: str) -> bytes | None:
        """The real store's get_nowait, unless failing."""
        self._enter("get_nowait", key)
        self._raise_if_failing("get_nowait")
        result: bytes | None = self.inner.get_nowait(key)
        self.done["get_nowait"] += 1
        return result


class _Release(StoreDouble):
    """A StoreDouble that offers release."""

    async def release(self, key: str) -> None:
        """The real store's release, unless failing, held or stepped."""
        await self._around("release", key, lambda: self.inner.release(key))


class _NowaitRelease(_Nowait, _Release):
    """A StoreDouble that offers get_nowait and release."""


_WITH: dict[frozenset[str], type[StoreDouble]] = {
    frozenset(): StoreDouble,
    frozenset({"get_nowait"}): _Nowait,
    frozenset({"release"}): _Release,
    frozenset({"get_nowait", "release"}): _NowaitRelease,
}
