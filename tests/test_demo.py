"""`python -m memo` with no arguments: the demo narrates what the cache really did."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path


def demo_process(cache_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run `python -m memo` in a fresh process with $MEMO_CACHE_DIR at ``cache_dir``."""
    return subprocess.run(
        [sys.executable, "-m", "memo"],
        capture_output=True,
        text=True,
        env={**os.environ, "MEMO_CACHE_DIR": str(cache_dir)},
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def run_demo(cache_dir: Path) -> list[str]:
    """Run the demo on ``cache_dir``, which must succeed; return its output lines."""
    result = demo_process(cache_dir)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def step(lines: list[str], number: int) -> str:
    """The output line of the demo's numbered step."""
    return next(line for line in lines if line.startswith(f"{number}. "))


@pytest.mark.slow
def test_demo_runs_then_serves_from_disk_on_the_next_run(tmp_path: Path) -> None:
    """First run: a miss then hits; a second process: the first call is read from disk."""
    cache_dir = tmp_path / "demo-cache"

    first = run_demo(cache_dir)
    assert "miss: ran the function" in step(first, 1)
    assert "hit: read from disk, did not run" in step(first, 2)
    assert "hit: read from disk, did not run" in step(first, 3)
    assert any("share one key" in line for line in first)
    assert "ran 1 time(s) for 10 callers: 1 miss, 9 hits" in step(first, 4)
    assert f"The cache lives in {cache_dir} " in "\n".join(first)
    assert "CacheInfo(hits=11, misses=2, errors=0)" in "\n".join(first)
    assert (cache_dir / "cache.db").is_file()

    second = run_demo(cache_dir)
    assert "hit: stored on disk by an earlier run" in step(second, 1)
    assert "ran 1 time(s) for 10 callers: 1 miss, 9 hits" in step(second, 4)
    assert "CacheInfo(hits=12, misses=1, errors=0)" in "\n".join(second)
    assert any("outlived the process that wrote it" in line for line in second)


@pytest.mark.slow
def test_demo_timings_show_the_hit_is_fast(tmp_path: Path) -> None:
    """The printed timings show the miss waiting for the function and the hit not waiting."""
    lines = run_demo(tmp_path / "demo-cache")
    miss = float(step(lines, 1).split(" s ")[0].split()[-1])
    hit = float(step(lines, 2).split(" s ")[0].split()[-1])
    assert miss >= 0.5
    assert hit < miss / 5


@pytest.mark.slow
def test_demo_with_an_unusable_folder_is_one_line(tmp_path: Path) -> None:
    """A cache folder that cannot be created is one error line and exit 1, not a failing tour."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = demo_process(blocker / "cache")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"memo demo: error: cannot use the cache folder {blocker / 'cache'} "
        f"(NotADirectoryError: [Errno 20] Not a directory: '{blocker / 'cache'}'); "
        "point $MEMO_CACHE_DIR at a folder you can write"
    ]
