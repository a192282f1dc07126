"""Setup shared by the framework tests: no way out to the internet, and a cached client.

This file is imported before any test module here, so before LangChain,
LiteLLM, the Agents SDK or instructor is imported. At import it turns off each
library's phone-home (LiteLLM fetches its price list at import, the Agents SDK
exports traces to api.openai.com) and points every proxy variable at a local
listener that records each connection attempt and refuses it. Only 127.0.0.1,
where the fake OpenAI server listens, is reached directly (``NO_PROXY``). A
test fails if anything, itself or a docs sample run in a child process, tried
to reach another host.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

# What each library reads to stay quiet; set before any of them is imported.
QUIET = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # else LiteLLM downloads its price list at import
    "LANGSMITH_TRACING": "false",  # LangChain sends no run to LangSmith
    "LANGCHAIN_TRACING_V2": "false",
    "OPENAI_AGENTS_DISABLE_TRACING": "1",  # the Agents SDK exports no trace to OpenAI
    "HF_HUB_OFFLINE": "1",  # no tokenizer download from the Hugging Face hub
    "DO_NOT_TRACK": "1",
}


class RefusingProxy:
    """A proxy on 127.0.0.1 that writes down who tried to go through it, and lets no one."""

    def __init__(self) -> None:
        self.attempts: list[str] = []
        self._lock = threading.Lock()
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:{}".format(*self._socket.getsockname()[1:2])
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    # "CONNECT api.openai.com:443 HTTP/1.1" or "GET http://host/ HTTP/1.1"
                    line = connection.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
                    connection.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    line = "(no request line)"
            with self._lock:
                self.attempts.append(line or "(empty request)")

    def taken(self) -> list[str]:
        """Return the attempts made since the last call, and forget them."""
        with self._lock:
            attempts, self.attempts = self.attempts, []
        return attempts


PROXY = RefusingProxy()
os.environ.update(QUIET)
for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "WS_PROXY", "WSS_PROXY"):
    os.environ[name] = os.environ[name.lower()] = PROXY.url
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


@pytest.fixture(autouse=True)
def nothing_went_out() -> Iterator[None]:
    """Fail the test if anything (its imports included) tried to reach the internet."""
    before = PROXY.taken()
    yield
    attempts = before + PROXY.taken()
    assert attempts == [], f"tried to reach the internet through the proxy: {attempts}"


@pytest.fixture
async def client(openai_server: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    """A cached ``AsyncOpenAI`` on the fake server, in memory, without retries."""
    from openai import AsyncOpenAI

    import memo.openai
    from memo import MemoryStore

    raw = AsyncOpenAI(base_url=openai_server.base_url, api_key="sk-test", max_retries=0)
    cached = memo.openai.cached(raw, store=MemoryStore())
    try:
        yield cached
    finally:
        await cached.close()
        await raw.close()
