"""Four processes hammering one cache folder: no errors, no wrong values, counts add up."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from memo import DiskStore, async_disk_cache

if TYPE_CHECKING:
    from pathlib import Path

PROCESSES = 4
ROUNDS = 250
KEYS = 24

WORKER = (
    textwrap.dedent(
        """
    import asyncio, json, random, sys
    from memo import async_disk_cache

    runs = 0

    def expected(i):
        # Derived from the argument, and sometimes big enough to live in a file.
        return {"i": i, "square": i * i, "pad": str(i) * (20_000 if i % 5 == 0 else 10)}

    @async_disk_cache(namespace="hammer", directory=sys.argv[1], version=1)
    async def square(i: int) -> dict:
        global runs
        runs += 1
        await asyncio.sleep(0)
        return expected(i)

    async def main():
        rng = random.Random(int(sys.argv[2]))
        calls = wrong = invalidated = cleared = clears = 0
        for _ in range({rounds}):
            op = rng.random()
            if op < 0.80:
                # A burst of concurrent calls, some with the same argument.
                args = [rng.randrange({keys}) for _ in range(4)]
                results = await asyncio.gather(*(square(i) for i in args))
                calls += len(args)
                wrong += sum(r != expected(i) for i, r in zip(args, results))
            elif op < 0.95:
                invalidated += await square.invalidate(rng.randrange({keys}))
            else:
                cleared += await square.cache_clear()
                clears += 1
        info = square.cache_info()
        print(json.dumps(dict(
            calls=calls, wrong=wrong, runs=runs, invalidated=invalidated, cleared=cleared,
            clears=clears, hits=info.hits, misses=info.misses, errors=info.errors,
        )))

    asyncio.run(main())
    """
    )
    .replace("{rounds}", str(ROUNDS))
    .replace("{keys}", str(KEYS))
)


@pytest.mark.slow
async def test_four_processes_hammer_one_folder(tmp_path: Path) -> None:
    """Reads, writes, invalidations and clears from 4 processes: every count adds up."""
    folder = tmp_path / "cache"
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(folder), str(seed)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(PROCESSES)
    ]
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err
        assert "memo:" not in err, err  # no failure was logged
        reports.append(json.loads(out))

    for report in reports:
        assert report["errors"] == 0
        assert report["wrong"] == 0
        # Every call was a hit or a miss, and only misses ran the function.
        assert report["hits"] + report["misses"] == report["calls"]
        assert report["runs"] == report["misses"]
    assert sum(r["clears"] for r in reports) > 0  # the mix did include clears
    assert sum(r["invalidated"] for r in reports) > 0  # and invalidations that hit
    assert sum(r["hits"] for r in reports) > 0

    # What the processes left behind is only valid entries.
    store = DiskStore(folder)
    runs = 0

    # version=: the workers' copy of the function is other code (and has no source).
    @async_disk_cache(namespace="hammer", store=store, version=1)
    async def square(i: int) -> dict[str, object]:
        nonlocal runs
        runs += 1
        return {"i": i, "square": i * i, "pad": str(i) * (20_000 if i % 5 == 0 else 10)}

    for i in range(KEYS):
        assert await square(i) == {
            "i": i,
            "square": i * i,
            "pad": str(i) * (20_000 if i % 5 == 0 else 10),
        }
    info = square.cache_info()
    assert info.errors == 0
    assert info.hits + info.misses == KEYS
    assert runs == info.misses
    assert await square.cache_clear() == KEYS  # every key is stored exactly once now
    await store.close()
