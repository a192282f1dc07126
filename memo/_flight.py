"""Single flight: concurrent callers of one key in one event loop share one run.

A run is a task; its callers await it through ``asyncio.shield`` and are
counted, so one caller leaving (cancelled, timed out) cancels nothing the
others still wait for, and the last caller leaving cancels the run (the
design of async-lru). Runs are kept per event loop, since a task belongs to
the loop that made it. Nothing here knows about stores: a run is whatever
coroutine the caller hands to ``start``.

A run stops being offered to new callers when it ends, when its last caller
leaves, when it closes itself (it failed: its exception is for the callers
it has), and when it is superseded (the entry was invalidated or refreshed
while it ran: what it computed or read is older than that). A superseded
run still answers the callers it has; it checks ``superseded`` before it
writes.

Runs that would wait on each other (``a(1)`` awaits ``b(1)``, whose run
awaits ``a(1)``) get a ``RecursionError`` instead of waiting forever.

``find`` and ``start`` are plain functions, never awaited: a caller that finds
no run and starts one does so without yielding to the loop in between, so
concurrent callers never start two runs for one key.
"""

from __future__ import annotations

import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    # Imported where used: by then a running event loop has loaded asyncio,
    # and `import memo` stays light.
    import asyncio
    from collections.abc import Callable, Coroutine

__all__ = ["Flight", "Flights"]

T = TypeVar("T")

# The run whose task is current (set in each run's own context), so that a run
# about to wait on another can tell whether that one is waiting on it.
_running: ContextVar[Flight[Any] | None] = ContextVar("memo_running_flight", default=None)


class Flight(Generic[T]):
    """One run for one key, and how many callers wait for it."""

    __slots__ = (
        "_abandoned",
        "_key",
        "_superseded",
        "_table",
        "_task",
        "_waiters",
        "_waiting_on",
    )

    def __init__(
        self,
        table: dict[str, Flight[T]],
        key: str,
        run: Callable[[Flight[T]], Coroutine[Any, Any, T]],
    ) -> None:
        self._table = table
        self._key = key
        self._waiters = 0
        self._superseded = False
        self._abandoned = False
        self._waiting_on: Flight[Any] | None = None
        import asyncio  # noqa: PLC0415 - loaded by the running loop already

        table[key] = self
        self._task = asyncio.get_running_loop().create_task(self._run_as_self(run(self)))
        self._task.add_done_callback(self._land)

    async def join(self) -> T:
        """Wait for the run's result (or exception) as one of its callers.

        Leaving early (cancelled) leaves the run to the others; the last
        caller to leave cancels it, and a caller arriving while the cancelled
        run winds down starts afresh instead of joining it.
        """
        import asyncio  # noqa: PLC0415 - loaded by the running loop already

        me = _running.get()
        if me is not None and me._task is not asyncio.current_task():
            me = None  # a task the run spawned: what it waits for is not the run's
        if me is not None:
            me._refuse_to_wait_on(self)
            me._waiting_on = self
        self._waiters += 1
        try:
            return await asyncio.shield(self._task)
        finally:
            if me is not None:
                me._waiting_on = None
            self._waiters -= 1
            if self._waiters == 0 and not self._task.done():
                self._abandoned = True
                self._task.cancel()
                self.close()

    @property
    def superseded(self) -> bool:
        """Whether the entry was invalidated or refreshed since this run started."""
        return self._superseded

    def supersede(self) -> None:
        """Mark this run as older than the entry: offered to no new caller, never written."""
        self._superseded = True

    def check_abandoned(self) -> None:
        """Raise CancelledError if every caller has left.

        The run's task was cancelled then, but a library it awaited may have
        swallowed that (redis-py's timeouts on Python 3.10 and 3.11): a run
        calls this before it starts anything that nobody waits for any more.
        """
        if self._abandoned:
            import asyncio  # noqa: PLC0415 - loaded by the running loop already

            raise asyncio.CancelledError

    def close(self) -> None:
        """Stop offering this run to new callers; those it has still get its outcome."""
        if self._table.get(self._key) is self:
            del self._table[self._key]

    async def _run_as_self(self, run: Coroutine[Any, Any, T]) -> T:
        _running.set(self)  # in the task's own context: seen by the run and what it spawns
        return await run

    def _refuse_to_wait_on(self, other: Flight[Any]) -> None:
        """Raise RecursionError if ``other`` waits, directly or not, on this run."""
        flight: Flight[Any] | None = other
        while flight is not None:
            if flight is self:
                msg = (
                    f"the run for key {self._key} would wait on the run for key {other._key}, "
                    f"which is waiting on it: they would wait for each other forever"
                )
                raise RecursionError(msg)
            flight = flight._waiting_on

    def _land(self, task: asyncio.Task[T]) -> None:
        self.close()
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
        import asyncio  # noqa: PLC0415 - loaded by the running loop already

        loop = asyncio.get_running_loop()
        table = self._tables.get(loop)
        if table is None:
            table = self._tables[loop] = {}
        return table

    def find(self, key: str) -> Flight[T] | None:
        """Return the run of ``key`` in this event loop, if one is going and still current."""
        flight = self._table().get(key)
        return None if flight is None or flight.superseded else flight

    def start(self, key: str, run: Callable[[Flight[T]], Coroutine[Any, Any, T]]) -> Flight[T]:
        """Start ``run(flight)`` as the run of ``key`` in this event loop, and return the flight."""
        return Flight(self._table(), key, run)

    def supersede(self, key: str | None = None) -> None:
        """Mark the runs of ``key`` (None: of every key), in every event loop, as superseded.

        They are offered to no new caller, and they must not write what they
        computed or read: it is older than whatever superseded them.
        """
        # Other loops run in other threads: mark, never mutate their tables.
        for table in list(self._tables.values()):
            for flight_key, flight in list(table.items()):
                if key is None or flight_key == key:
                    flight.supersede()
