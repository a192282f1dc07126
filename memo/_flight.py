"""Single flight: concurrent callers of one key in one event loop share one run.

A run is a task; its callers await it through ``asyncio.shield`` and are
counted, so one caller leaving (cancelled, timed out) cancels nothing the
others still wait for, and the last caller leaving cancels the run (the
design of async-lru). Runs are kept per event loop, since a task belongs to
the loop that made it. Nothing here knows about stores: a run is whatever
coroutine the caller hands to ``start``.

``find`` and ``start`` are plain functions, never awaited: a caller that finds
no run and starts one does so without yielding to the loop in between, so
concurrent callers never start two runs for one key.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Coroutine

__all__ = ["Flight", "Flights"]

T = TypeVar("T")


class Flight(Generic[T]):
    """One run for one key, and how many callers wait for it."""

    __slots__ = ("_key", "_table", "_task", "_waiters")

    def __init__(self, table: dict[str, Flight[T]], key: str, task: asyncio.Task[T]) -> None:
        self._table = table
        self._key = key
        self._task = task
        self._waiters = 0
        table[key] = self
        task.add_done_callback(self._land)

    async def join(self) -> T:
        """Wait for the run's result (or exception) as one of its callers.

        Leaving early (cancelled) leaves the run to the others; the last
        caller to leave cancels it, and a caller arriving while the cancelled
        run winds down starts afresh instead of joining it.
        """
        self._waiters += 1
        try:
            return await asyncio.shield(self._task)
        finally:
            self._waiters -= 1
            if self._waiters == 0 and not self._task.done():
                self._task.cancel()
                self._forget()

    def _forget(self) -> None:
        if self._table.get(self._key) is self:
            del self._table[self._key]

    def _land(self, task: asyncio.Task[T]) -> None:
        self._forget()
        if not task.cancelled():
            # Mark the exception retrieved: every caller may have left already.
            task.exception()


class Flights(Generic[T]):
    """The runs in flight, per event loop and key."""

    __slots__ = ("_tables",)

    def __init__(self) -> None:
        self._tables: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Flight[T]]]
        self._tables = weakref.WeakKeyDictionary()

    def _table(self) -> dict[str, Flight[T]]:
        loop = asyncio.get_running_loop()
        table = self._tables.get(loop)
        if table is None:
            table = self._tables[loop] = {}
        return table

    def find(self, key: str) -> Flight[T] | None:
        """Return the run of ``key`` in this event loop, if one is going."""
        return self._table().get(key)

    def start(self, key: str, run: Coroutine[Any, Any, T]) -> Flight[T]:
        """Start ``run`` as the run of ``key`` in this event loop, and return it."""
        task = asyncio.get_running_loop().create_task(run)
        return Flight(self._table(), key, task)
