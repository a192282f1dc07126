"""Streamed responses: record them while they are forwarded, replay them on a hit."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from openai import AsyncStream

from memo.openai._serializers import api_json

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable

__all__ = ["Recording", "ReplayStream"]

_T = TypeVar("_T")


class Recording(Generic[_T]):
    """A live stream's chunks, recorded while they are forwarded, settled once.

    ``chunks`` yields ``live``'s chunks unchanged. A stream that ends normally
    hands its chunks' JSON to ``finished``; one that is cut short, errors, is
    cancelled, or is closed before its end (``closed``, from any path that
    closes the HTTP response) is ``abandoned`` instead. Exactly one of the
    two runs, once. A chunk that cannot be recorded is handed to ``failed``
    and the stream goes on unrecorded (and is abandoned at its end):
    recording never costs the caller a chunk.
    """

    def __init__(
        self,
        live: AsyncIterator[_T],
        finished: Callable[[list[Any]], Awaitable[None]],
        failed: Callable[[Exception], None],
        abandoned: Callable[[], Awaitable[None]],
    ) -> None:
        self._finished = finished
        self._failed = failed
        self._abandoned = abandoned
        self._settled = False
        self._pulling = False
        self.chunks = self._record(live)

    async def _record(self, live: AsyncIterator[_T]) -> AsyncGenerator[_T, None]:
        recorded: list[Any] | None = []
        ended = False
        try:
            while True:
                self._pulling = True
                try:
                    chunk = await live.__anext__()
                except StopAsyncIteration:
                    ended = True
                    break
                finally:
                    self._pulling = False
                if recorded is not None:
                    try:
                        # Turned into JSON now: the consumer may change the chunk objects later.
                        recorded.append(api_json(chunk))
                    except Exception as exc:
                        recorded = None
                        self._failed(exc)
                yield chunk
        finally:
            if not ended or recorded is None:
                await self.abandon()
        if recorded is not None and not self._settled:
            self._settled = True
            await self._finished(recorded)

    async def abandon(self) -> None:
        """Give the stream up: it will not be stored (no-op once settled)."""
        if not self._settled:
            self._settled = True
            await self._abandoned()

    async def closed(self) -> None:
        """The HTTP response was closed: settle now, unless the stream is ending by itself."""
        if self._pulling:
            # The live stream closes its response as it reaches its end, from
            # inside the recording: the recording settles right after.
            return
        with contextlib.suppress(RuntimeError):  # closed from another task mid-iteration
            await self.chunks.aclose()
        await self.abandon()


class _ReplayedResponse:
    """Stands in for the HTTP response of a stream that came from the cache."""

    status_code = 200
    http_version = "HTTP/1.1"

    def __init__(self) -> None:
        self.headers: dict[str, str] = {"content-type": "text/event-stream"}
        self.is_closed = False

    async def aclose(self) -> None:
        """Nothing to release; mark it closed."""
        self.is_closed = True

    def close(self) -> None:
        """Nothing to release; mark it closed."""
        self.is_closed = True


class ReplayStream(AsyncStream[_T]):
    """A streamed response served from the cache: the recorded chunks, one by one.

    It is an ``openai.AsyncStream``, used the same way: ``async for``,
    ``async with``, ``close()`` / ``aclose()``, and the SDK's stream helpers
    (``chat.completions.stream()``, ``responses.stream()``) accept it. No HTTP
    request is made; ``response`` is a stand-in with status 200.

    Args:
        chunks: the chunks, or their JSON when ``build`` is given.
        build: turns one chunk's JSON into the chunk object, when it is reached.

    Attributes:
        from_cache: always True (a live stream has no such attribute).
    """

    from_cache = True

    def __init__(self, chunks: Iterable[Any], build: Callable[[Any], _T] | None = None) -> None:
        # AsyncStream.__init__ wants an HTTP response and a client to decode it;
        # a replay has neither, so set what its other methods use.
        self.response = cast("Any", _ReplayedResponse())
        self._options = None
        self._replay = self._one_by_one(chunks, build)
        self._iterator = self._replay

    @staticmethod
    async def _one_by_one(
        chunks: Iterable[Any], build: Callable[[Any], _T] | None
    ) -> AsyncGenerator[_T, None]:
        # Each chunk is built when it is asked for, as the SDK builds a live
        # one, so the first chunk comes at once however long the stream.
        for chunk in chunks:
            yield chunk if build is None else build(chunk)

    async def close(self) -> None:
        """Stop the replay: later iteration yields nothing."""
        await self._replay.aclose()
        await self.response.aclose()
