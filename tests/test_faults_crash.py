"""A writer killed with SIGKILL mid-stream leaves every entry absent or valid."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import orjson
import pytest

from memo import DiskStore, async_disk_cache
from memo._envelope import envelope_header, open_envelope

if TYPE_CHECKING:
    from pathlib import Path

KEYS = 60


def expected(i: int) -> dict[str, Any]:
    """The value for ``i``: derived from it, so a wrong value is detectable.

    Every third one is big enough for diskcache to keep it in a file, not in SQLite.
    """
    size = 40_000 if i % 3 == 0 else 200
    return {"i": i, "blob": (str(i) + "-") * (size // (len(str(i)) + 1))}


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from typing import Any
    from memo import DiskStore, async_disk_cache
    {expected}
    store = DiskStore(sys.argv[1])

    @async_disk_cache(namespace="crash", store=store, version=1)
    async def value(i: int) -> dict:
        return expected(i)

    async def main():
        n = 0
        while True:
            # First pass: misses that write; later passes overwrite (refresh),
            # which also replaces and deletes the files of big values.
            if n < {keys}:
                await value(n)
            else:
                await value.refresh(n % {keys})
            n += 1
            print(n, flush=True)

    asyncio.run(main())
    """
).format(expected=inspect.getsource(expected), keys=KEYS)


def write_then_kill(folder: Path, writes: int) -> tuple[int, str]:
    """Run the writer until it reports ``writes`` writes, SIGKILL it, return its count."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout is not None
    done = 0
    for line in writer.stdout:
        done = int(line)
        if done >= writes:
            break
    # The kill lands while the writer is busy with the writes that follow.
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    stderr = writer.stderr.read() if writer.stderr else ""
    writer.stdout.close()
    if writer.stderr:
        writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL
    assert done >= writes, stderr
    return done, stderr


@pytest.mark.slow
@pytest.mark.parametrize("writes", [25, 70, 140], ids=["first-pass", "overwriting", "third-pass"])
async def test_sigkilled_writer_leaves_entries_absent_or_valid(tmp_path: Path, writes: int) -> None:
    """After SIGKILL during writes, every entry reads back absent or equal to its value."""
    folder = tmp_path / "cache"
    done, stderr = write_then_kill(folder, writes)

    store = DiskStore(folder)

    # version=: the writer's copy of the function is other code (and has no source).
    @async_disk_cache(namespace="crash", store=store, version=1)
    async def value(i: int) -> Any:
        return expected(i)

    header = envelope_header(b"json")
    present = []
    for i in range(KEYS):
        key = value.cache_key(i)
        raw = await store.get(key)
        if raw is not None:
            present.append(i)
            assert orjson.loads(open_envelope(header, raw, key)) == expected(i)
    # Every write the writer reported before the kill was committed.
    assert set(range(min(done, KEYS))) <= set(present), (done, present, stderr)

    for i in range(KEYS):
        assert await value(i) == expected(i)
    info = value.cache_info()
    assert info.errors == 0
    assert (info.hits, info.misses) == (len(present), KEYS - len(present))
    await store.close()


@pytest.mark.slow
async def test_repeated_kills_on_one_folder(tmp_path: Path) -> None:
    """Three writers killed in turn on one folder leave a cache that reads and writes cleanly."""
    folder = tmp_path / "cache"
    for writes in (30, 90, 150):
        write_then_kill(folder, writes)
    store = DiskStore(folder)

    # version=: the writer's copy of the function is other code (and has no source).
    @async_disk_cache(namespace="crash", store=store, version=1)
    async def value(i: int) -> Any:
        return expected(i)

    results = [await value(i) for i in range(KEYS)]
    assert results == [expected(i) for i in range(KEYS)]
    assert value.cache_info().errors == 0
    assert value.cache_info().hits == KEYS  # the first pass completed before the kills
    await store.close()
