"""Shared fixtures: every test gets its own cache folder; nothing touches ~/.cache."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point $MEMO_CACHE_DIR at a fresh folder, so the default store is per test."""
    folder = tmp_path / "memo-cache"
    monkeypatch.setenv("MEMO_CACHE_DIR", str(folder))
    return folder


from fake_openai import openai_client, openai_server, session_openai_server  # noqa: E402, F401
from redis_server import (  # noqa: E402, F401
    private_redis_server,
    redis_server,
    session_redis_server,
)
