"""Replaying offline sends no request, so the tests need no API key."""

from __future__ import annotations

import os

# AsyncOpenAI() refuses to start without a key, even one it will never send.
os.environ.setdefault("OPENAI_API_KEY", "sk-replaying-offline")
