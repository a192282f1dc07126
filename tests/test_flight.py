"""Single flight on its own (memo._flight): joining, waiters, cancellation, loops.

No store and no decorator here: a run is any coroutine, and these tests show
what ``Flights`` promises to the decorator that uses it.
"""

from __future__ import annotations

import asyncio
import gc

import pytest

from memo._flight import Flight, Flights

# Single-flight bugs hang rather than fail: bound every wait.
BOUND = 10


class Run:
    """A run that counts its starts and waits for the test to let it finish."""

    def __init__(self) -> None:
        self.starts = 0
        self.cancelled = 0
        self.gate = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(self, value: str = "done") -> str:
        self.starts += 1
        self.started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return value


async def test_callers_of_one_run_share_its_result() -> None:
    """Ten callers joined to one run all get its result; the run starts once."""
    flights: Flights[str] = Flights()
    run = Run()
    flight = flights.start("k", lambda _: run())
    assert flights.find("k") is flight
    callers = [asyncio.create_task(flight.join()) for _ in range(10)]
    await asyncio.wait_for(run.started.wait(), BOUND)
    run.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*callers), BOUND) == ["done"] * 10
    assert run.starts == 1


async def test_a_finished_run_is_no_longer_found() -> None:
    """Once a run has ended, find() answers None: the next caller starts afresh."""
    flights: Flights[str] = Flights()
    run = Run()
    run.gate.set()
    assert await asyncio.wait_for(flights.start("k", lambda _: run()).join(), BOUND) == "done"
    assert flights.find("k") is None
    assert flights.find("other") is None


async def test_one_caller_leaving_spares_the_others() -> None:
    """A cancelled caller leaves; the run goes on for the one still waiting."""
    flights: Flights[str] = Flights()
    run = Run()
    flight = flights.start("k", lambda _: run())
    leaver = asyncio.create_task(flight.join())
    stayer = asyncio.create_task(flight.join())
    await asyncio.wait_for(run.started.wait(), BOUND)
    leaver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaver
    assert flights.find("k") is flight
    run.gate.set()
    assert await asyncio.wait_for(stayer, BOUND) == "done"
    assert (run.starts, run.cancelled) == (1, 0)


async def test_the_last_caller_leaving_cancels_the_run() -> None:
    """When every caller has left, the run is cancelled and no longer offered."""
    flights: Flights[str] = Flights()
    run = Run()
    flight = flights.start("k", lambda _: run())
    callers = [asyncio.create_task(flight.join()) for _ in range(3)]
    await asyncio.wait_for(run.started.wait(), BOUND)
    for caller in callers:
        caller.cancel()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    # Forgotten at once, before the cancelled run has wound down.
    assert flights.find("k") is None
    for _ in range(100):
        if run.cancelled:
            break
        await asyncio.sleep(0)
    assert run.cancelled == 1


async def test_a_caller_during_wind_down_starts_a_new_run() -> None:
    """A caller that comes while a cancelled run winds down gets a run of its own."""
    flights: Flights[str] = Flights()
    winding = asyncio.Event()
    release = asyncio.Event()

    async def slow_to_stop() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            winding.set()
            await release.wait()  # cleanup that takes a while
        return "never"

    first = flights.start("k", lambda _: slow_to_stop())
    caller = asyncio.create_task(first.join())
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.wait_for(winding.wait(), BOUND)
    assert flights.find("k") is None
    fresh = Run()
    second = flights.start("k", lambda _: fresh("fresh"))
    assert second is not first
    assert flights.find("k") is second
    fresh.gate.set()
    assert await asyncio.wait_for(second.join(), BOUND) == "fresh"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller


async def test_an_exception_reaches_every_caller_and_is_retrieved() -> None:
    """Every caller gets the run's exception; one no caller awaited is still retrieved."""
    flights: Flights[str] = Flights()

    async def fail() -> str:
        await asyncio.sleep(0)
        msg = "boom"
        raise ValueError(msg)

    flight = flights.start("k", lambda _: fail())
    results = await asyncio.gather(flight.join(), flight.join(), return_exceptions=True)
    assert [type(r) for r in results] == [ValueError, ValueError]
    assert results[0] is results[1]


async def test_a_failure_after_every_caller_left_is_retrieved() -> None:
    """A run that fails once no caller waits leaves no 'exception never retrieved'."""
    flights: Flights[str] = Flights()
    ended = asyncio.Event()

    async def fails_when_cancelled() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ended.set()
            msg = "cleanup failed"
            raise ValueError(msg) from None
        return "never"

    errors: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        flight = flights.start("k", lambda _: fails_when_cancelled())
        caller = asyncio.create_task(flight.join())
        await asyncio.sleep(0)  # the caller joins
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await asyncio.wait_for(ended.wait(), BOUND)
        await asyncio.sleep(0)  # the run's task ends
        del flight, caller
        gc.collect()
    finally:
        loop.set_exception_handler(None)
    assert errors == []


def test_runs_belong_to_their_event_loop() -> None:
    """A run started in one event loop is not offered to callers in another."""
    flights: Flights[str] = Flights()
    seen: list[object] = []

    async def in_a_loop(start: bool) -> None:
        if start:
            flights.start("k", lambda _: asyncio.sleep(3600, result="held"))
        seen.append(flights.find("k"))

    async def both() -> None:
        await in_a_loop(start=True)

    asyncio.run(both())
    asyncio.run(in_a_loop(start=False))
    assert seen[0] is not None
    assert seen[1] is None


async def test_a_superseded_run_answers_its_callers_but_no_newcomer() -> None:
    """supersede(): find() no longer offers the run; the callers it has still get its result."""
    flights: Flights[str] = Flights()
    run = Run()
    flight = flights.start("k", lambda _: run())
    other_run = Run()
    other = flights.start("other", lambda _: other_run())
    caller = asyncio.create_task(flight.join())
    await asyncio.wait_for(run.started.wait(), BOUND)
    flights.supersede("k")
    assert flight.superseded
    assert not other.superseded
    assert flights.find("k") is None
    assert flights.find("other") is other
    run.gate.set()
    assert await asyncio.wait_for(caller, BOUND) == "done"
    flights.supersede()  # every key
    assert flights.find("other") is None
    other_run.gate.set()
    assert await asyncio.wait_for(other.join(), BOUND) == "done"


async def test_a_run_that_closes_itself_keeps_its_callers() -> None:
    """close(): newcomers start afresh, while the run's own callers get its outcome."""
    flights: Flights[str] = Flights()
    closed = asyncio.Event()
    gate = asyncio.Event()

    async def closes(flight: Flight[str]) -> str:
        flight.close()
        closed.set()
        await gate.wait()
        return "mine"

    flight = flights.start("k", closes)
    caller = asyncio.create_task(flight.join())
    await asyncio.wait_for(closed.wait(), BOUND)
    assert flights.find("k") is None
    gate.set()
    assert await asyncio.wait_for(caller, BOUND) == "mine"


async def test_a_run_whose_cancellation_was_swallowed_can_tell_it_was_abandoned() -> None:
    """check_abandoned() raises once every caller has left, even if the cancel was lost."""
    flights: Flights[str] = Flights()
    waiting = asyncio.Event()
    checked: list[str] = []

    async def swallows(flight: Flight[str]) -> str:
        try:
            waiting.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # what a library with a buggy timeout may do
        try:
            flight.check_abandoned()
        except asyncio.CancelledError:
            checked.append("abandoned")
            raise
        return "went on"

    flight = flights.start("k", swallows)
    caller = asyncio.create_task(flight.join())
    await asyncio.wait_for(waiting.wait(), BOUND)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    for _ in range(100):
        if checked:
            break
        await asyncio.sleep(0)
    assert checked == ["abandoned"]
