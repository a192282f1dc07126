"""examples/recorded_tests, end to end: record against an OpenAI server, replay offline."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from fake_openai import API_KEY

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "recorded_tests"

NEW_TEST = """
import app


async def test_a_question_never_recorded() -> None:
    assert await app.summarize("a sentence no run has sent")
"""


@pytest.mark.slow
def test_record_commit_replay_offline_and_a_missing_recording(
    pytester: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docs' sample: recorded once with a key, replayed with none, a new call fails clearly."""
    shutil.copytree(
        EXAMPLE,
        pytester.path,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("recordings", "__pycache__", ".pytest_cache"),
    )
    monkeypatch.delenv("MEMO_OFFLINE", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)

    pytester.runpytest_subprocess("--memo-record", timeout=120).assert_outcomes(passed=3)
    # headline() asks summarize() what the first test asked: answered from the recording.
    assert openai_server.count() == 2
    recording = pytester.path / "tests" / "recordings" / "test_app.jsonl"
    recorded = recording.read_bytes()
    entries = [json.loads(line) for line in recorded.splitlines()[1:-1]]
    assert sorted(entry["namespace"] for entry in entries) == ["app.headline"] + ["memo.openai"] * 2
    assert API_KEY not in recording.read_text()

    pytester.runpytest_subprocess("--memo-record", timeout=120).assert_outcomes(passed=3)
    assert recording.read_bytes() == recorded  # nothing new to record: the same bytes
    assert openai_server.count() == 2

    monkeypatch.delenv("OPENAI_API_KEY")  # CI has no key: the example's conftest sets a stand-in
    result = pytester.runpytest_subprocess(timeout=120)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["memo: replaying tests/recordings offline*"])
    assert openai_server.count() == 2

    pytester.makepyfile(**{"tests/test_new": NEW_TEST})
    result = pytester.runpytest_subprocess(timeout=120)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            f"E * memo.NotRecordedError: memo.openai: POST {openai_server.base_url}"
            f"/chat/completions (model 'gpt-4o-mini'): nothing recorded for this call*",
            "not in tests/recordings/test_new.jsonl: record it with `pytest --memo-record`",
        ]
    )
    assert openai_server.count() == 2
