"""A Hypothesis state machine: every value a cached function returns is one it could return now.

One cached function reads a changing source. Hypothesis drives it through
calls, concurrent calls around an invalidation, source changes, ``invalidate``,
``cache_clear``, ``refresh``, version changes and a store that fails, and
checks each returned value against a plain model: it is the source's value
for that argument (never another argument's), of a generation no older than
the last invalidation, refresh, clear or version change that happened
before the call started, and no newer than the source.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from doubles import StoreDouble
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from memo import async_disk_cache

NAMES = ("tea", "coffee", "cocoa")
ITEMS = st.sampled_from(NAMES)


# While the store is down its reads (both kinds) and writes fail; delete and clear work.
DOWN = dict.fromkeys(("get", "get_nowait", "set"), ConnectionError("the store is down"))


class CachedSource(RuleBasedStateMachine):
    """The model: the source's generations, and the oldest generation each item may return."""

    def __init__(self) -> None:
        super().__init__()
        self.store = StoreDouble(optional=("get_nowait",))
        self.generation = dict.fromkeys(NAMES, 0)
        self.floor = dict.fromkeys(NAMES, 0)
        self.version = 0
        self.gate: asyncio.Event | None = None
        self.fn = self._decorate()
        self.loop = asyncio.new_event_loop()

    def _decorate(self) -> Any:
        async def quote(item: str) -> list[Any]:
            generation = self.generation[item]  # read now...
            if self.gate is not None:
                await self.gate.wait()  # ...answered later
            return [item, generation]

        return async_disk_cache(namespace="machine", store=self.store, version=self.version)(quote)

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def check(self, item: str, result: Any, floor: int) -> None:
        """A result is this item's, no older than ``floor`` and no newer than the source."""
        assert result[0] == item
        assert floor <= result[1] <= self.generation[item], (result, floor, self.generation)

    def retire(self, *items: str) -> None:
        for item in items or tuple(self.floor):
            self.floor[item] = self.generation[item]

    @initialize()
    def start(self) -> None:
        self.gate = None

    @rule(item=ITEMS)
    def call(self, item: str) -> None:
        floor = self.floor[item]
        self.check(item, self.run(self.fn(item)), floor)

    @rule(item=ITEMS)
    def change_the_source(self, item: str) -> None:
        self.generation[item] += 1

    @rule(item=ITEMS)
    def invalidate(self, item: str) -> None:
        self.run(self.fn.invalidate(item))
        self.retire(item)

    @rule()
    def cache_clear(self) -> None:
        self.run(self.fn.cache_clear())
        self.retire()

    @rule(item=ITEMS)
    def refresh(self, item: str) -> None:
        result = self.run(self.fn.refresh(item))
        self.check(item, result, self.generation[item])
        self.retire(item)

    @rule()
    def change_the_version(self) -> None:
        self.version += 1
        self.fn = self._decorate()
        self.retire()

    @rule(failing=st.booleans())
    def store_fails(self, failing: bool) -> None:
        self.store.fail = dict(DOWN) if failing else {}

    @rule(item=ITEMS, callers=st.integers(1, 4), how=st.sampled_from(["invalidate", "refresh"]))
    def concurrent_calls_around_an_invalidation(self, item: str, callers: int, how: str) -> None:
        async def scenario() -> None:
            self.gate = asyncio.Event()
            floor = self.floor[item]
            early = [asyncio.create_task(self.fn(item)) for _ in range(callers)]
            await asyncio.sleep(0)  # they start: the run reads the source, then waits
            self.generation[item] += 1
            if how == "invalidate":
                await self.fn.invalidate(item)
            else:
                refreshed = asyncio.create_task(self.fn.refresh(item))
                self.gate.set()
                self.check(item, await refreshed, self.generation[item])
            self.retire(item)
            late = asyncio.create_task(self.fn(item))
            self.gate.set()
            for result in await asyncio.gather(*early):
                self.check(item, result, floor)
            self.check(item, await late, self.floor[item])
            self.gate = None

        self.run(scenario())

    @invariant()
    def nothing_left_in_flight(self) -> None:
        assert self.gate is None

    def teardown(self) -> None:
        self.loop.close()


CachedSource.TestCase.settings = settings(
    max_examples=200, stateful_step_count=30, deadline=None, database=None
)


@pytest.mark.slow
class TestCachedSource(CachedSource.TestCase):  # type: ignore[name-defined, misc]
    """Run the state machine."""
