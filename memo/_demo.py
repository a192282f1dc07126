"""``python -m memo``: a short tour of memo on a slow coroutine, cached on disk.

Everything printed is read from what happened (``cache_info()``, how many
times the function ran, the clock), not assumed: a second run of the demo
shows the first call served from the disk cache the first run wrote.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import TYPE_CHECKING, Any

from memo._decorator import CacheInfo, async_disk_cache
from memo.stores.disk import DiskStore

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["NAMESPACE", "DemoError", "main"]

NAMESPACE = "memo-demo.forecast"
DELAY = 0.6  # seconds the fake forecast takes: slow enough to see, short enough to wait for

_runs = 0


class DemoError(Exception):
    """The demo cannot run: printed as one line, exit status 1."""


@async_disk_cache(namespace=NAMESPACE)
async def forecast(city: str, days: int = 3) -> dict[str, Any]:
    """Pretend to ask a slow weather service for ``days`` daily highs in ``city``."""
    global _runs  # noqa: PLW0603 - the demo counts real runs to tell the story
    _runs += 1
    await asyncio.sleep(DELAY)
    # Deterministic "weather", so a hit visibly returns what the miss stored.
    seed = hashlib.sha256(city.encode()).digest()
    return {"city": city, "highs_c": [12 + seed[i] % 15 for i in range(days)]}


def _delta(before: CacheInfo, after: CacheInfo) -> tuple[int, int, int]:
    return after.hits - before.hits, after.misses - before.misses, after.errors - before.errors


async def _timed(call: Callable[[], Awaitable[Any]]) -> tuple[Any, float, int, int, int, int]:
    """Run ``call``; return its result, seconds, runs, hits, misses and errors it caused."""
    runs = _runs
    before = forecast.cache_info()
    started = time.perf_counter()
    result = await call()
    seconds = time.perf_counter() - started
    hits, misses, errors = _delta(before, forecast.cache_info())
    return result, seconds, _runs - runs, hits, misses, errors


def _seconds(seconds: float) -> str:
    return f"{seconds:6.3f} s"


def _verdict(runs: int, hits: int, errors: int, *, first: bool) -> str:
    if errors:
        return f"the cache failed ({errors} error(s), see the log above): ran the function"
    if runs:
        return "miss: ran the function, stored the result"
    if hits and first:
        return "hit: stored on disk by an earlier run"
    return "hit: read from disk, did not run"


async def _open_store() -> None:
    """Open the cache folder first, so that an unusable one is one clear error.

    Without this the tour would run (memo fails open), log every failed read
    and write, and tell a story about a cache that never worked.
    """
    store = forecast.store
    if not isinstance(store, DiskStore):  # pragma: no cover - the demo uses the default store
        return
    try:
        await asyncio.to_thread(lambda: store.cache)
    except Exception as exc:
        msg = (
            f"cannot use the cache folder {store.directory} ({type(exc).__name__}: {exc}); "
            f"point $MEMO_CACHE_DIR at a folder you can write"
        )
        raise DemoError(msg) from None


async def _tour() -> int:
    await _open_store()
    print("memo demo: a slow coroutine, cached on disk\n")
    print(f"    @async_disk_cache(namespace={NAMESPACE!r})")
    print("    async def forecast(city: str, days: int = 3) -> dict:")
    print(f"        ...  # sleeps {DELAY} s, like a slow API\n")

    width = 31
    result, took, runs, hits, _, errors = await _timed(lambda: forecast("Paris"))
    label = 'forecast("Paris")'
    print(f"1. {label:<{width}} {_seconds(took)}  {_verdict(runs, hits, errors, first=True)}")
    print(f"   -> {result}")
    served_from_disk = runs == 0 and hits == 1

    _, took, runs, hits, _, errors = await _timed(lambda: forecast("Paris"))
    label = 'forecast("Paris")'
    print(f"2. {label:<{width}} {_seconds(took)}  {_verdict(runs, hits, errors, first=False)}")

    _, took, runs, hits, _, errors = await _timed(lambda: forecast(city="Paris", days=3))
    label = 'forecast(city="Paris", days=3)'
    print(f"3. {label:<{width}} {_seconds(took)}  {_verdict(runs, hits, errors, first=False)}")
    same = forecast.cache_key("Paris") == forecast.cache_key(city="Paris", days=3)
    print(
        "   both forms bind to the same arguments, so they share one key:"
        if same
        else "   the two forms gave different keys:"
    )
    print(f"   {forecast.cache_key('Paris')}")

    # Drop the entry first, so that every run of the demo shows single flight.
    await forecast.invalidate("Lyon")
    _, took, runs, hits, misses, errors = await _timed(
        lambda: asyncio.gather(*(forecast("Lyon") for _ in range(10)))
    )
    label = '10 x forecast("Lyon") at once'
    print(
        f"4. {label:<{width}} {_seconds(took)}  ran {runs} time(s) for 10 callers: "
        f"{misses} miss, {hits} hits"
    )

    info = forecast.cache_info()
    print(f"\nforecast.cache_info() -> {info}")
    store = forecast.store
    where = store.directory if isinstance(store, DiskStore) else store
    print(f"The cache lives in {where} ($MEMO_CACHE_DIR, else the user cache folder).")
    if served_from_disk:
        print("Call 1 was read from disk: the entry outlived the process that wrote it.")
    else:
        print("Run `python -m memo` again: call 1 will be read from disk this time.")
    print(f"Look inside: `python -m memo stats`, `python -m memo ls {NAMESPACE}`.")
    print(f"Clean up:    `python -m memo clear {NAMESPACE}`.")
    await forecast.store.close()
    return 0


def main() -> int:
    """Run the demo; return the process exit status."""
    return asyncio.run(_tour())
