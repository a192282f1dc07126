"""Streamed responses: one live stream shared by its callers, recorded, and replayed on a hit.

A ``Broadcast`` reads a live stream once, for every caller that asked for it.
It reads on demand (when a caller wants a chunk nobody has read yet), in a
task of its own, so a caller that leaves or is cancelled mid-read never cuts
the stream for the others; the last caller to leave ends it. Each chunk is
turned into JSON as it arrives; the recording is stored the moment it is
complete (``complete``), and again at the end if chunks came after that.

A ``ReplayStream`` is an ``openai.AsyncStream`` over recorded chunks: a stored
recording on a hit, or a broadcast's chunks for a caller that joined it.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from openai import AsyncStream

from memo.openai import _sdk
from memo.openai._serializers import api_json

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable

__all__ = [
    "DONE",
    "Body",
    "Broadcast",
    "Consumer",
    "LiveStreams",
    "ReplayStream",
    "server_sent_events",
]

_T = TypeVar("_T")
_MISSING: Any = object()


class Broadcast:
    """A live stream read once for all its consumers, recorded, stored once complete.

    Args:
        source: the live chunks (the SDK's own iterator of the stream).
        headers: the response headers kept with the recording.
        complete: whether the chunks so far (as JSON) make a finished answer.
        store: stores the chunks; returns whether they were stored.
        release: says that nothing will be stored (gives back a lock a miss took).
        failed: told about a chunk that cannot be recorded.
        close: closes the live HTTP response.
    """

    def __init__(
        self,
        source: AsyncIterator[Any],
        *,
        headers: dict[str, str],
        complete: Callable[[list[Any]], bool],
        store: Callable[[list[Any]], Awaitable[bool]],
        release: Callable[[], Awaitable[None]],
        failed: Callable[[Exception], None],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.headers = headers
        self.chunks: list[Any] = []  # each chunk's JSON (None for one that cannot be recorded)
        self._source = source
        self._complete = complete
        self._store = store
        self._release = release
        self._failed = failed
        self._close = close
        self._ended: Callable[[], None] = lambda: None  # set by LiveStreams.add
        self._objects: dict[int, Any] = {}  # the SDK's own chunk objects, until taken
        self._consumers = 0
        self._takers = 0  # consumers that take the SDK's own objects
        self._pull: asyncio.Task[None] | None = None
        self._reading = False
        self._done = False
        self._abandoned = False
        self._error: BaseException | None = None
        self._recording = True
        self._stored: int | None = None  # how many chunks the stored recording holds

    # -- consumers ------------------------------------------------------------

    def follow(
        self,
        *,
        takes_objects: bool = False,
        timeout: float | None = None,
        on_timeout: Callable[[], BaseException] | None = None,
    ) -> Consumer:
        """Return a new consumer, which reads every chunk from the first.

        Args:
            takes_objects: give it the SDK's own chunk objects (the caller whose
                request it is); other consumers build their own from the JSON.
            timeout: the longest it waits for a chunk, then ``on_timeout()`` is raised.
            on_timeout: makes the error raised after ``timeout``.
        """
        return Consumer(self, takes_objects=takes_objects, timeout=timeout, on_timeout=on_timeout)

    @property
    def done(self) -> bool:
        """Whether no more chunks will come (the stream ended, failed or was given up)."""
        return self._done

    @property
    def abandoned(self) -> bool:
        """Whether every consumer left before the end, so the stream was given up."""
        return self._abandoned

    def reading(self) -> bool:
        """Whether the current task is this broadcast's own read of the live stream."""
        return self._pull is not None and asyncio.current_task() is self._pull

    def finished(self) -> bool:
        """Whether the stream ended normally, complete."""
        return (
            self._done
            and self._error is None
            and None not in self.chunks
            and self._complete(self.chunks)
        )

    def take(self, index: int, build: Callable[[Any], Any]) -> Any:
        """Return chunk ``index`` as the SDK built it, or built from its JSON if another took it."""
        if self.chunks[index] is None:  # could not be recorded: the one object there is
            return self._objects.get(index)
        chunk = self._objects.pop(index, _MISSING)
        return self.built(index, build) if chunk is _MISSING else chunk

    def built(self, index: int, build: Callable[[Any], Any]) -> Any:
        """Return chunk ``index`` as a new object of the caller's own, built from its JSON."""
        data = self.chunks[index]
        if data is None:  # could not be recorded: the one object there is
            return self._objects.get(index)
        return build(orjson.loads(orjson.dumps(data)))

    async def reach(
        self,
        index: int,
        timeout: float | None = None,
        on_timeout: Callable[[], BaseException] | None = None,
    ) -> bool:
        """Wait until chunk ``index`` arrived (True) or the stream ended before it (False).

        Raises:
            Exception: the error that ended the live stream, once past its last chunk.
            BaseException: ``on_timeout()`` when no chunk came within ``timeout``.
        """
        while index >= len(self.chunks):
            if self._done:
                if self._error is not None:
                    raise self._error
                return False
            pull = self._pull
            if pull is None:
                pull = self._pull = asyncio.get_running_loop().create_task(self._read_one())
            # asyncio.wait neither raises the read's error nor cancels it if
            # this caller is cancelled: the read belongs to every consumer.
            done, _ = await asyncio.wait({pull}, timeout=timeout)
            if not done:
                raise (on_timeout or asyncio.TimeoutError)()
        return True

    async def _leave(self, consumer: Consumer) -> None:
        if consumer.takes_objects:
            self._takers -= 1
            if self._takers == 0:
                self._objects = {i: c for i, c in self._objects.items() if self.chunks[i] is None}
        self._consumers -= 1
        if self._consumers == 0 and not self._done:
            await self._abandon()

    # -- the live stream --------------------------------------------------------

    async def _read_one(self) -> None:
        try:
            try:
                self._reading = True
                try:
                    chunk = await self._source.__anext__()
                finally:
                    self._reading = False
            except StopAsyncIteration:
                await self._end(None, finished=True)
                return
            except BaseException as exc:
                await self._end(exc, finished=False)
                if not isinstance(exc, Exception):
                    raise
                return
            await self._record(chunk)
        finally:
            self._pull = None

    async def _record(self, chunk: Any) -> None:
        index = len(self.chunks)
        data = None
        try:
            # Turned into JSON now: a consumer may change the chunk objects later.
            data = api_json(chunk)
        except Exception as exc:
            if self._recording:
                self._failed(exc)
                await self._drop()
                self._recording = False
        self.chunks.append(data)
        if data is None or self._takers:
            self._objects[index] = chunk
        if self._recording and self._stored is None and self._complete(self.chunks):
            await self._store_now()

    async def _store_now(self) -> None:
        count = len(self.chunks)
        if await self._store(list(self.chunks)):
            self._stored = count
        else:
            await self._drop()

    async def _drop(self) -> None:
        """Store nothing: say so once (a lock the miss took is given back)."""
        if self._recording and self._stored is None:
            self._recording = False
            await self._release()

    async def _end(self, error: BaseException | None, *, finished: bool) -> None:
        was_done, self._done, self._error = self._done, True, error
        if not was_done:
            self._ended()
        if not finished or not self._recording:
            await self._drop()
        elif self._stored is None:
            # A server can hang up midway without an error: only a complete stream is stored.
            if self._complete(self.chunks):
                await self._store_now()
            else:
                await self._drop()
        elif len(self.chunks) > self._stored:
            await self._store(list(self.chunks))  # chunks that came after the final event

    async def _abandon(self) -> None:
        """Every consumer left before the end: stop reading, close the response."""
        self._done = self._abandoned = True
        self._ended()
        pull = self._pull
        if pull is not None:
            if self._reading:
                pull.cancel()
            await asyncio.wait({pull})  # a write under way finishes
        else:
            with contextlib.suppress(Exception):
                await self._source.aclose()  # type: ignore[attr-defined]
        await self._drop()
        await self._close()


class Consumer:
    """One caller's place in a ``Broadcast``: it reads every chunk, at its own pace."""

    def __init__(
        self,
        broadcast: Broadcast,
        *,
        takes_objects: bool,
        timeout: float | None,
        on_timeout: Callable[[], BaseException] | None,
    ) -> None:
        self.broadcast = broadcast
        self.takes_objects = takes_objects
        self.left = False
        self._timeout = timeout
        self._on_timeout = on_timeout
        self._generator: AsyncGenerator[Any, None] | None = None
        broadcast._consumers += 1
        if takes_objects:
            broadcast._takers += 1

    def chunks(self, pick: Callable[[int], Any]) -> AsyncGenerator[Any, None]:
        """Return the chunks as ``pick(index)`` makes them, from the first, as they arrive."""
        self._generator = self._chunks(pick)
        return self._generator

    async def _chunks(self, pick: Callable[[int], Any]) -> AsyncGenerator[Any, None]:
        index = 0
        try:
            while await self.broadcast.reach(index, self._timeout, self._on_timeout):
                if self.left:  # closed (from another task, maybe while it waited)
                    break
                yield pick(index)
                index += 1
        finally:
            await self.leave()

    async def leave(self) -> None:
        """Stop reading (once): the last consumer to leave before the end gives the stream up."""
        if not self.left:
            self.left = True
            await self.broadcast._leave(self)

    async def close(self) -> None:
        """Leave, and end the iteration of ``chunks``."""
        await self.leave()
        if self._generator is not None:
            with contextlib.suppress(RuntimeError):  # running: it stops when it resumes
                await self._generator.aclose()

    def belongs_to(self, owner: object) -> None:
        """Leave when ``owner`` (what the caller holds) is collected, even if never read.

        A stream whose iteration started leaves when its iterator is
        collected; one never read would otherwise hold the live stream (and
        a lock its miss took) for as long as the process runs.
        """
        weakref.finalize(owner, _leave_soon, asyncio.get_running_loop(), self)


_leaving: set[asyncio.Task[None]] = set()


def _leave_soon(loop: asyncio.AbstractEventLoop, consumer: Consumer) -> None:
    if consumer.left or loop.is_closed():
        return

    def leave() -> None:
        task = loop.create_task(consumer.close())
        _leaving.add(task)
        task.add_done_callback(_leaving.discard)

    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(leave)


class LiveStreams:
    """The broadcasts going on, per event loop and key, for callers to join."""

    def __init__(self) -> None:
        self._tables: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Broadcast]]
        self._tables = weakref.WeakKeyDictionary()

    def _table(self) -> dict[str, Broadcast]:
        loop = asyncio.get_running_loop()
        table = self._tables.get(loop)
        if table is None:
            table = self._tables[loop] = {}
        return table

    def find(self, key: str) -> Broadcast | None:
        """Return the broadcast of ``key`` in this event loop, if one is going."""
        broadcast = self._table().get(key)
        return None if broadcast is None or broadcast.done else broadcast

    def add(self, key: str, broadcast: Broadcast) -> None:
        """Offer ``broadcast`` as the one of ``key`` in this event loop until it ends."""
        table = self._table()
        table[key] = broadcast

        def remove() -> None:
            if table.get(key) is broadcast:
                del table[key]

        broadcast._ended = remove


def server_sent_events(path: str, chunk: Any) -> bytes:
    """Return one recorded chunk as the API sends it: a server-sent event."""
    data = orjson.dumps(chunk)
    kind = chunk.get("type") if path == "/responses" and isinstance(chunk, dict) else None
    if isinstance(kind, str):
        return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


DONE = b"data: [DONE]\n\n"


class Body(_sdk.HTTP.AsyncByteStream):  # type: ignore[misc]
    """The body of a response memo builds: bytes made as they are read, and what closing does."""

    def __init__(
        self,
        pieces: AsyncIterator[bytes] | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._pieces = pieces
        self._on_close = on_close

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._pieces is not None:
            async for piece in self._pieces:
                yield piece

    async def aclose(self) -> None:
        """Close what the bytes come from."""
        if self._on_close is not None:
            await self._on_close()


class ReplayStream(AsyncStream[_T]):
    """A streamed response memo answers: recorded chunks, one by one.

    On a hit the chunks are the stored recording; for a caller that joined an
    identical stream in flight, the chunks of that stream, as they arrive.
    It is an ``openai.AsyncStream``, used the same way: ``async for``,
    ``async with``, ``close()`` / ``aclose()``, and the SDK's stream helpers
    (``chat.completions.stream()``, ``responses.stream()``) accept it. Its
    ``response`` is an HTTP response (of the SDK's HTTP library) with the
    kept response headers, status 200 and the request's method and URL; it
    is closed once the replay ends or is closed.

    Args:
        chunks: the chunks (or their JSON, with ``build``), as an iterable or
            an async iterable.
        build: turns one chunk's JSON into the chunk object, when it is reached.
        headers: the response headers.
        url: the request's URL.
        on_close: called when the stream is closed, before its end or at it.

    Attributes:
        from_cache: always True (a live stream has no such attribute).
    """

    from_cache = True

    def __init__(
        self,
        chunks: Iterable[Any] | AsyncIterable[Any],
        build: Callable[[Any], _T] | None = None,
        *,
        headers: Iterable[tuple[str, str]] | dict[str, str] | None = None,
        url: str | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        # AsyncStream.__init__ wants a live HTTP response and a client to decode
        # it; a replay has neither, so set what its other methods use. Nothing
        # here refers back to the stream object, so dropping it ends the replay.
        replay: AsyncGenerator[_T, None]

        async def stop() -> None:
            with contextlib.suppress(RuntimeError):  # closing from inside the replay, at its end
                await replay.aclose()
            if on_close is not None:
                await on_close()

        headers = {"content-type": "text/event-stream"} if headers is None else headers
        if url is None:
            self.response = _sdk.HTTP.Response(200, headers=headers, stream=Body(on_close=stop))
        else:
            self.response = _sdk.http_response(headers, url=url, stream=Body(on_close=stop))
        replay = _one_by_one(chunks, build, self.response)
        self._options = None
        self._iterator = self._replay = replay

    async def close(self) -> None:
        """Stop the replay: later iteration yields nothing."""
        await self.response.aclose()


async def _one_by_one(
    chunks: Iterable[Any] | AsyncIterable[Any], build: Callable[[Any], _T] | None, response: Any
) -> AsyncGenerator[_T, None]:
    # Each chunk is built when it is asked for, as the SDK builds a live one,
    # so the first chunk comes at once however long the stream.
    try:
        if isinstance(chunks, AsyncIterable):
            async for chunk in chunks:
                yield chunk if build is None else build(chunk)
        else:
            for chunk in chunks:
                yield chunk if build is None else build(chunk)
    finally:
        await response.aclose()
