"""Opt-in single flight across processes: RedisStore(url, lock_timeout=...).

Several processes that miss the same key at once run the function once; the
others wait for its result. Two store objects in one process stand in for
two processes where only the lock protocol is under test.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis

from memo import RedisStore, async_disk_cache

if TYPE_CHECKING:
    from pathlib import Path

    from redis_server import RedisServer

WORKER = """
import asyncio, json, os, sys, time
from pathlib import Path
from memo import RedisStore, async_disk_cache

lock_timeout = None if sys.argv[1] == "off" else float(sys.argv[1])
store = RedisStore(os.environ["REDIS_URL"], lock_timeout=lock_timeout)

@async_disk_cache(namespace="flight.slow", store=store)
async def slow(x: int) -> int:
    with open(os.environ["CALLS_FILE"], "a") as calls:
        calls.write(f"{os.getpid()}\\n")
    await asyncio.sleep(1.0)  # long enough that every process misses while it runs
    return x * 10

async def main() -> None:
    Path(os.environ["READY_DIR"], str(os.getpid())).touch()
    go, deadline = Path(os.environ["GO_FILE"]), time.monotonic() + 60
    while not go.exists():  # start together
        assert time.monotonic() < deadline, "never told to go"
        await asyncio.sleep(0.005)
    result = await slow(7)
    info = slow.cache_info()
    print(json.dumps({"result": result, "hits": info.hits, "misses": info.misses,
                      "errors": info.errors}))

asyncio.run(main())
"""

PROCESSES = 4


def run_together(server: RedisServer, tmp_path: Path, lock: str) -> tuple[list[dict], int]:
    """Start the workers, release them at once; return their reports and how many ran."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ready, go, calls = tmp_path / "ready", tmp_path / "go", tmp_path / "calls.txt"
    ready.mkdir()
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "READY_DIR": str(ready),
        "GO_FILE": str(go),
        "CALLS_FILE": str(calls),
    }
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), lock],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        deadline = time.monotonic() + 60
        while len(list(ready.iterdir())) < PROCESSES:
            assert time.monotonic() < deadline, "workers did not start"
            assert all(w.poll() is None for w in workers), "a worker died before the start"
            time.sleep(0.01)
        go.touch()
        outputs = [w.communicate(timeout=60) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for w, (_, err) in zip(workers, outputs, strict=True):
        assert w.returncode == 0, err
    reports = [json.loads(out) for out, _ in outputs]
    return reports, len(calls.read_text().splitlines())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("lock", "single"),
    [("off", False), ("10", True)],
    ids=["without-lock-every-process-runs", "with-lock-one-process-runs"],
)
def test_processes_missing_together(
    redis_server: RedisServer, tmp_path: Path, lock: str, single: bool
) -> None:
    """Processes missing one key together run it once with a lock, several times without."""
    reports, runs = run_together(redis_server, tmp_path, lock)
    assert [r["result"] for r in reports] == [70] * PROCESSES
    assert sum(r["errors"] for r in reports) == 0
    if single:
        assert runs == 1
        assert sorted(r["misses"] for r in reports) == [0] * (PROCESSES - 1) + [1]
        assert sum(r["hits"] for r in reports) == PROCESSES - 1
    else:
        # The control: the processes really overlap, so the lock is what makes one run.
        assert runs > 1


async def test_waiter_gets_the_leaders_value(redis_server: RedisServer) -> None:
    """A second miss waits while the first holds the lock, then reads its value."""
    leader = RedisStore(redis_server.url, lock_timeout=10)
    follower = RedisStore(redis_server.url, lock_timeout=10)
    assert await leader.get("k") is None  # leads
    waiting = asyncio.create_task(follower.get("k"))
    done, _ = await asyncio.wait([waiting], timeout=0.3)
    assert not done, "the follower did not wait for the leader"
    await leader.set("k", b"computed once")
    assert await waiting == b"computed once"
    with redis.Redis.from_url(redis_server.url) as raw:
        assert raw.exists("memo:!lock:k") == 0  # released by the leader's set
    await leader.close()
    await follower.close()


async def test_stuck_leader_lock_expires(redis_server: RedisServer) -> None:
    """When the leader never stores a result, a waiter takes over once the lock expires."""
    leader = RedisStore(redis_server.url, lock_timeout=0.3)
    follower = RedisStore(redis_server.url, lock_timeout=0.3)
    assert await leader.get("k") is None  # leads, then "fails": never calls set
    start = time.monotonic()
    assert await follower.get("k") is None  # now the follower leads
    assert 0.1 < time.monotonic() - start < 5.0
    await follower.set("k", b"v")
    assert await leader.get("k") == b"v"
    await leader.close()
    await follower.close()


async def test_leader_that_stored_nothing_leads_again(redis_server: RedisServer) -> None:
    """A store whose run stored nothing does not wait on its own lock at the next miss."""
    store = RedisStore(redis_server.url, lock_timeout=30)
    assert await store.get("k") is None
    start = time.monotonic()
    assert await store.get("k") is None
    assert time.monotonic() - start < 1.0
    await store.close()


def test_lock_timeout_must_be_positive() -> None:
    """A zero or negative lock_timeout is refused at construction."""
    with pytest.raises(ValueError, match="lock_timeout"):
        RedisStore("redis://127.0.0.1:1/0", lock_timeout=0)


@pytest.mark.parametrize("outcome", ["raises", "not-stored"])
async def test_a_run_that_stores_nothing_releases_the_lock(
    redis_server: RedisServer, outcome: str
) -> None:
    """When the leader's run raises or is not stored, a waiter computes at once, not at expiry."""
    leader = RedisStore(redis_server.url, lock_timeout=30)
    follower = RedisStore(redis_server.url, lock_timeout=30)
    runs: list[str] = []

    def cached(store: RedisStore, name: str) -> Any:
        @async_disk_cache(namespace="flight.release", store=store, cache_if=lambda r: r != "no")
        async def compute(x: int) -> str:
            runs.append(name)
            if name == "leader":
                if outcome == "raises":
                    msg = "the leader failed"
                    raise RuntimeError(msg)
                return "no"  # rejected by cache_if: returned, not stored
            return "yes"

        return compute

    lead, follow = cached(leader, "leader"), cached(follower, "follower")
    if outcome == "raises":
        with pytest.raises(RuntimeError, match="the leader failed"):
            await lead(1)
    else:
        assert await lead(1) == "no"
    start = time.monotonic()
    assert await asyncio.wait_for(follow(1), 10) == "yes"
    assert time.monotonic() - start < 5  # not the 30 s lock_timeout
    assert runs == ["leader", "follower"]
    with redis.Redis.from_url(redis_server.url) as raw:
        assert raw.keys("memo:!lock:*") == []
    await leader.close()
    await follower.close()
