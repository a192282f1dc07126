"""Streamed responses: record them while they are forwarded, replay them on a hit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

from openai import AsyncStream

from memo.openai._serializers import api_json

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable

__all__ = ["ReplayStream", "record"]

_T = TypeVar("_T")


async def record(
    live: AsyncIterator[_T],
    finished: Callable[[list[Any]], Awaitable[None]],
    failed: Callable[[Exception], None],
    abandoned: Callable[[], Awaitable[None]],
) -> AsyncGenerator[_T, None]:
    """Yield ``live``'s chunks unchanged; once it ends normally, hand their JSON to ``finished``.

    A consumer that stops early, an error from the server, or a cancellation
    never reaches the end of the loop, so an incomplete stream is never
    stored: ``abandoned`` is awaited instead, when the generator is closed.
    A chunk that cannot be recorded is handed to ``failed`` and the stream
    goes on unrecorded: recording never costs the caller a chunk.
    """
    recorded: list[Any] | None = []
    ended = False
    try:
        async for chunk in live:
            if recorded is not None:
                try:
                    # Turned into JSON now: the consumer may change the chunk objects later.
                    recorded.append(api_json(chunk))
                except Exception as exc:
                    recorded = None
                    failed(exc)
            yield chunk
        ended = True
    finally:
        if not ended or recorded is None:
            await abandoned()
    if recorded is not None:
        await finished(recorded)


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
