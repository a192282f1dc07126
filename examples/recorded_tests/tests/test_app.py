"""The app's tests: run against the API once with --memo-record, then offline."""

from __future__ import annotations

import app


async def test_a_summary_keeps_the_subject() -> None:
    """The summary of a sentence about memo mentions memo."""
    summary = await app.summarize("memo caches the answers of LLM calls on disk.")
    assert "memo" in summary.lower()


async def test_a_streamed_answer_arrives_in_pieces() -> None:
    """A streamed answer is replayed piece by piece, as it was recorded."""
    pieces = await app.tell("caching")
    assert len(pieces) > 1
    assert "".join(pieces).strip()


async def test_a_headline_is_short() -> None:
    """The app's own cached function is recorded too."""
    title = await app.headline("memo caches the answers of LLM calls on disk.")
    assert 0 < len(title) <= 80
