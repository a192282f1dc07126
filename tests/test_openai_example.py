"""examples/cached_chat.py runs: with a key it caches; without one it says how to run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cached_chat.py"


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_without_a_key_it_explains_and_exits_0() -> None:
    """No OPENAI_API_KEY: exit status 0 and the command to run it."""
    result = _run({})
    assert result.returncode == 0, result.stderr
    assert "OPENAI_API_KEY=sk-... python examples/cached_chat.py" in result.stdout


@pytest.mark.slow
def test_with_a_key_the_second_call_and_run_are_hits(openai_server: FakeOpenAI) -> None:
    """Against an OpenAI-compatible server: one request over two calls and two runs."""
    env = {"OPENAI_API_KEY": "sk-test-example", "OPENAI_BASE_URL": openai_server.base_url}
    first = _run(env, "Why cache?")
    assert first.returncode == 0, first.stderr
    assert "call 1: from the API" in first.stdout
    assert "call 2: from the cache" in first.stdout
    assert "Echo #1: Why cache?" in first.stdout
    second = _run(env, "Why cache?")
    assert second.returncode == 0, second.stderr
    assert "call 1: from the cache" in second.stdout
    assert openai_server.count() == 1
