"""Real ``redis-server`` processes on free 127.0.0.1 ports, for the Redis tests.

``tests/conftest.py`` imports the fixtures from here:

- ``redis_server``: one server for the whole session, emptied before each test
  that asks for it (``FLUSHALL``, and every other client disconnected), so
  each test starts as on a fresh server. It refuses to be killed, paused or
  restarted: other tests share it.
- ``private_redis_server``: a server of the test's own, started for it and
  stopped after it, for the tests that kill, pause or restart Redis.

A server keeps nothing on disk (``--save '' --appendonly no``), so a restart
starts empty, like a fresh cache node. When the binary is missing the test is
skipped locally and fails under CI (``CI=true``), where it must run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

START_TIMEOUT = 10.0
INSTALL = "apt-get install redis-server"


def redis_server_binary() -> str:
    """Return the path of ``redis-server``; skip the test, or fail it under CI, without it."""
    path = shutil.which("redis-server")
    if path is not None:
        return path
    # CI services set CI=true (AppVeyor: True); "1" is the other common form.
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"redis-server is not installed, and CI must run the Redis tests: {INSTALL}")
    pytest.skip(f"redis-server is not installed; run `{INSTALL}` to run the Redis tests")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def command(port: int, *commands: tuple[str, ...], timeout: float = 5.0) -> list[bytes]:
    """Send ``commands`` in one round trip; return each one-line reply (an error raises)."""
    request = b"".join(
        b"*%d\r\n" % len(parts)
        + b"".join(b"$%d\r\n%s\r\n" % (len(part.encode()), part.encode()) for part in parts)
        for parts in commands
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while data.count(b"\r\n") < len(commands):
            chunk = sock.recv(4096)
            if not chunk:
                msg = f"redis-server on port {port} closed the connection: {data!r}"
                raise ConnectionError(msg)
            data += chunk
    replies = data.split(b"\r\n")[: len(commands)]
    for parts, reply in zip(commands, replies, strict=True):
        if reply.startswith(b"-"):
            msg = f"redis-server on port {port} refused {' '.join(parts)}: {reply.decode()}"
            raise RuntimeError(msg)
    return replies


def server_pid(port: int, timeout: float = 0.5) -> int | None:
    """Return the process id of the Redis server answering on ``port``, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"INFO server\r\n")
            data = b""
            while len(data) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
                match = re.search(rb"process_id:(\d+)\r\n", data)
                if match:
                    return int(match.group(1))
    except OSError:
        return None
    return None


class RedisServer:
    """One ``redis-server`` process that a test can kill, pause and restart, unless shared.

    Args:
        binary: the ``redis-server`` to run.
        directory: where its log goes.
        shared: the session's server, which many tests use: killing, pausing
            or restarting it fails the test (ask for ``private_redis_server``).
    """

    def __init__(self, binary: str, directory: Path, *, shared: bool = False) -> None:
        self.binary = binary
        self.directory = directory
        self.shared = shared
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = directory / "redis.log"
        self._started = False

    @property
    def url(self) -> str:
        """The server's URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait (bounded) until it answers.

        The port was free when chosen but another process may take it first:
        a server that cannot bind a port on its first start moves to another.
        """
        attempts = 1 if self._started else 3
        for attempt in range(attempts):
            if self._launch():
                self._started = True
                return
            if attempt + 1 < attempts:
                self.port = free_port()
        text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
        pytest.fail(f"redis-server on port {self.port} did not start:\n{text[-2000:]}")

    def _launch(self) -> bool:
        log = self.log
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.directory),
                "--logfile", str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        # The server answering must be ours, not one that holds the port already.
        while server_pid(self.port) != self.process.pid:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                return False
            time.sleep(0.01)
        return True

    def flush(self) -> None:
        """Make the server as a fresh one: no keys, no scripts, no other clients, zero stats."""
        try:
            command(
                self.port,
                ("FLUSHALL",),
                ("SCRIPT", "FLUSH"),
                ("CONFIG", "RESETSTAT"),
                # A client a previous test left connected would count in tests
                # that watch the server's connections.
                ("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"),
            )
        except OSError as exc:
            text = self.log.read_text(errors="replace") if self.log.exists() else "(no log)"
            pytest.fail(
                f"the shared redis-server on port {self.port} is gone ({exc}):\n{text[-2000:]}"
            )

    def _own(self, action: str) -> None:
        if self.shared:
            pytest.fail(
                f"{action} the session's shared redis-server would break other tests; "
                "ask for the private_redis_server fixture instead",
                pytrace=False,
            )

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        self._own("killing")
        self._kill()

    def _kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=START_TIMEOUT)
            self.process = None

    def restart(self) -> None:
        """Start the server again on the same port, empty."""
        self._own("restarting")
        self._kill()
        self.start()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections open but nothing answers."""
        self._own("pausing")
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        self._own("resuming")
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop the server (resuming it first if it was paused)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=START_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


def started(tmp_path_factory: pytest.TempPathFactory, *, shared: bool) -> RedisServer:
    """Start a ``redis-server`` (skipping the test, or failing it under CI, without one)."""
    binary = redis_server_binary()
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"), shared=shared)
    server.start()
    return server


@pytest.fixture(scope="session")
def session_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's one shared ``redis-server``; tests ask for ``redis_server`` instead."""
    server = started(tmp_path_factory, shared=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(session_redis_server: RedisServer) -> RedisServer:
    """The session's ``redis-server``, emptied for this test; ``.url`` is where it listens."""
    session_redis_server.flush()
    return session_redis_server


@pytest.fixture
def private_redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A ``redis-server`` of this test's own, which it may kill, pause and restart."""
    server = started(tmp_path_factory, shared=False)
    try:
        yield server
    finally:
        server.stop()
