"""A cached ``AsyncOpenAI`` client, and the ``cached_chat_completion`` helper.

Every resource method of the SDK (``chat.completions.create``, ``parse``,
``embeddings.create``, ``responses.create``, ...) builds its request body,
checks and transforms its arguments, then awaits the client's ``post``. A
cached client is a copy of the user's client whose ``post`` consults the cache
for the three endpoints memo caches, so the key is the body exactly as the SDK
would send it (``NOT_GIVEN``/``omit`` dropped, pydantic objects dumped,
iterables read once, ``extra_body`` merged), and everything the SDK does
before and after the request (structured-output parsing, base64 embeddings)
happens on a hit as it does on a miss.

The response stored is the one the API sent, before the SDK's per-call
post-processing: ``.parsed`` is rebuilt on every call from the caller's own
model, and a base64 embedding is stored compactly and decoded on the way out.
A few response headers that carry no credential (``_KEPT_HEADERS``) are stored
with it, so that ``with_raw_response`` and ``with_streaming_response`` calls,
which want the HTTP response, get one built from the stored answer: a plain
call and a raw call of one request share one entry.

A repeat of a request the client has already made skips the SDK method
altogether and reads the entry at once (``memo.openai._shortcut``); ``post``
tells it, on the first call, which entry the arguments led to, and ``serve``
answers a repeat the way ``post`` answers a hit.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime
import functools
import json
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar, cast, get_args

import orjson
import pydantic
from openai import AsyncOpenAI, AsyncStream
from openai._models import BaseModel as SDKModel
from openai._resource import AsyncAPIResource
from openai._types import NotGiven, Omit
from openai.types.chat import ChatCompletion

from memo._context import Mode, NotRecordedError, current_mode, is_offline
from memo._decorator import CachedFunction, entries_of
from memo._entries import NOT_NOW, CacheInfo, Entries
from memo._envelope import Codec
from memo._flight import Flight, Flights
from memo._options import Options
from memo._report import logger, report_failure
from memo.openai import _sdk, _shortcut
from memo.openai._serializers import (
    Answer,
    AnswerSerializer,
    ChunksSerializer,
    Recorded,
    RecordingSerializer,
    api_json,
)
from memo.openai._shortcut import MISSING, Remembered, Shortcuts
from memo.openai._streams import (
    DONE,
    Body,
    Broadcast,
    Consumer,
    LiveStreams,
    ReplayStream,
    server_sent_events,
)

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncGenerator, AsyncIterator

    from memo.stores.base import Store

__all__ = [
    "cache_clear",
    "cache_info",
    "cached",
    "cached_chat_completion",
    "last_call_was_hit",
]

ClientT = TypeVar("ClientT", bound=AsyncOpenAI)

# The endpoints memo caches; every other request goes out untouched.
CACHED_PATHS = frozenset({"/chat/completions", "/embeddings", "/responses"})

# Never part of a key, even when asked for: they carry credentials.
_SECRET_HEADERS = frozenset(
    {"authorization", "api-key", "x-api-key", "cookie", "proxy-authorization"}
)

# The response headers stored with an answer, for the HTTP response a raw call
# gets on a hit: they describe the answer and carry no credential. Never
# set-cookie, authorization and the like, nor the organization or project,
# nor rate limits (a hit spends none) or the date (it would be stale).
_KEPT_HEADERS = frozenset(
    {"content-type", "x-request-id", "openai-model", "openai-processing-ms", "openai-version"}
)

# A Responses API object in one of these states is not an answer yet (or is a
# failure): it is returned, never stored.
_UNFINISHED = frozenset({"queued", "in_progress", "failed", "cancelled"})

_last_hit: ContextVar[bool] = ContextVar("memo_openai_last_hit", default=False)


def last_call_was_hit() -> bool:
    """Whether the last cached OpenAI call awaited in this context came from the cache.

    A context variable: it reflects the last call awaited by the current task
    (``await client.chat.completions.create(...)``), not calls made in other
    tasks. Joining an identical request already in flight counts as a hit.
    False before any call, for calls memo does not cache, and under
    ``memo.bypass()``.
    """
    return _last_hit.get()


def _keep(answer: Any) -> bool:
    result = answer.value if isinstance(answer, Answer) else answer
    # Some OpenAI-compatible servers answer an error with HTTP 200 and an
    # "error" object, which the SDK turns into a response without choices.
    if getattr(result, "error", None):
        return False
    return getattr(result, "status", None) not in _UNFINISHED


def _kept_headers(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items() if name.lower() in _KEPT_HEADERS}


_told: set[tuple[str, str]] = set()
_told_lock = threading.Lock()


def _say_uncached(path: str, reason: str) -> None:
    """Say once, on the ``memo`` logger, that calls of a kind reach the API uncached."""
    with _told_lock:
        first = (path, reason) not in _told
        _told.add((path, reason))
    if first:
        logger.warning(
            "memo: POST %s is sent to the API uncached, every time: %s. "
            "This is said once per kind of call.",
            path,
            reason,
        )


def _json_default(value: Any) -> Any:
    # What the SDK's JSON encoder accepts beyond plain JSON, encoded as it does.
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=True, warnings=False)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    msg = f"{type(value).__qualname__} cannot be sent as JSON"
    raise TypeError(msg)


def _as_sent(value: Any) -> Any:
    """Return ``value`` as the JSON a server receives (tuples become lists, models dicts).

    Encoded like the SDK encodes a body: a value it refuses to send (NaN, an
    infinity) raises here too, rather than getting the key of another request
    (orjson would write ``null``, the key of ``None``).
    """
    return json.loads(json.dumps(value, default=_json_default, allow_nan=False))


def _without_omitted(*mappings: Mapping[str, Any] | None) -> dict[str, Any]:
    # Later mappings win, and an omit value removes the key, as in the SDK.
    merged: dict[str, Any] = {}
    for mapping in mappings:
        if mapping:
            merged.update(mapping)
    return {k: v for k, v in merged.items() if not isinstance(v, (Omit, NotGiven))}


class _Request:
    """One request: its key, and how to send it (which is not part of the key).

    ``sent`` tells the caller whose request was sent from the callers that
    joined it; ``http`` is the HTTP response that caller's request received.
    """

    __slots__ = ("http", "key", "send", "sent")

    def __init__(
        self, key: dict[str, Any], send: Callable[[], Awaitable[Any]] | None = None
    ) -> None:
        self.key = key
        self.send = send
        self.sent = False
        self.http: Any = None

    def __memo_key__(self) -> dict[str, Any]:
        return self.key

    def is_sent(self) -> bool:
        """Whether this caller's own request went out."""
        return self.sent


async def _send(request: _Request) -> Any:
    assert request.send is not None  # only requests that can be sent are called
    request.sent = True
    return await request.send()


async def _within(
    seconds: float | None, sent: Callable[[], bool], url: str, awaitable: Awaitable[Any]
) -> Any:
    """Await ``awaitable``, but raise the SDK's ``APITimeoutError`` after ``seconds``.

    Only while the caller waits for a request that is not its own (one in
    flight that it joined, or the store): once its own request is sent
    (``sent()``), the SDK's own timeout and retries govern it. The caller
    leaving is what a cancelled caller does: the others keep waiting.
    """
    if seconds is None:
        return await awaitable
    task = asyncio.current_task()
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        if not sent():
            expired = True
            task.cancel()

    handle = asyncio.get_running_loop().call_later(seconds, expire)
    try:
        return await awaitable
    except asyncio.CancelledError:
        uncancel = getattr(task, "uncancel", None)  # Python 3.11+
        if expired and (uncancel is None or uncancel() == 0):
            raise _sdk.timeout_error(url) from None
        raise
    finally:
        handle.cancel()


# Recorded streams are stored as their chunks' JSON, whatever the chunk type,
# and built into chunk objects one at a time as a replay reaches them.
_STREAM_CODEC = Codec(RecordingSerializer())


# What a caller that joined a start refused to an offline caller gets: start again.
_AFRESH = object()


class _Started:
    """A stream request that was sent: its broadcast, and the SDK's stream object for its caller."""

    __slots__ = ("broadcast", "live")

    def __init__(self, broadcast: Broadcast, live: AsyncStream[Any]) -> None:
        self.broadcast = broadcast
        self.live = live


class _Call:
    """What one call is, beyond its key: how it asks, what it sends, how long it waits."""

    __slots__ = (
        "client",
        "key",
        "kind",
        "kwargs",
        "options",
        "path",
        "real_post",
        "timeout",
        "url",
    )

    def __init__(
        self,
        client: AsyncOpenAI,
        real_post: Callable[..., Awaitable[Any]],
        path: str,
        kwargs: dict[str, Any],
        *,
        options: dict[str, Any],
        key: dict[str, Any],
    ) -> None:
        self.client = client
        self.key = key
        self.real_post = real_post
        self.path = path
        self.kwargs = kwargs
        # raw-response markers never go on the wire: memo builds what they ask for
        self.kind = _sdk.raw_kind(options.get("headers"))
        headers = options.get("headers")
        self.options = dict(options)
        if headers:
            self.options["headers"] = _sdk.without_raw_headers(headers)
        self.timeout = _sdk.read_timeout(client, options)
        self.url = str(_sdk.HTTP.URL(key["url"], params=key["query"] or None))

    def request_options(self, **extra: Any) -> Any:
        """The SDK's request options for this call (to parse with), e.g. with a ``post_parser``."""
        return _sdk.request_options(self.path, self.kwargs.get("body"), {**self.options, **extra})

    def raw(self, http: Any, *, stream: bool, **extra: Any) -> Any:
        """Return the SDK's raw-response object this call asked for, around ``http``."""
        return _sdk.api_response(
            cast("str", self.kind),
            http,
            client=self.client,
            cast_to=self.kwargs.get("cast_to"),
            stream=stream,
            stream_cls=self.kwargs.get("stream_cls"),
            options=self.request_options(**extra),
        )


def _naming_the_request(call: _Call, exc: NotRecordedError) -> NotRecordedError:
    """Return ``exc`` naming the request, rather than memo's own function that sends it."""
    body = call.key["body"]
    model = body.get("model") if isinstance(body, dict) else None
    request = f"memo.openai: POST {call.url}" + (f" (model {model!r})" if model else "")
    return NotRecordedError(request, exc.namespace, exc.key, exc.why)


def _answer_response(call: _Call, answer: Answer[Any]) -> Any:
    """Return an HTTP response with a stored answer's body and kept headers."""
    headers = {"content-type": "application/json", **answer.headers}
    request_id = getattr(answer.value, "_request_id", None)
    if isinstance(request_id, str):
        headers.setdefault("x-request-id", request_id)
    return _sdk.http_response(headers, url=call.url, content=orjson.dumps(api_json(answer.value)))


def _stream_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {"content-type": "text/event-stream", **headers}


class _OpenAICache:
    """What a cached client and the clients copied from it share: options, functions, counters."""

    def __init__(
        self,
        *,
        namespace: str,
        directory: str | os.PathLike[str] | None,
        store: Store | None,
        ttl: float | datetime.timedelta | None,
        version: str | int | None,
        key_headers: Iterable[str],
    ) -> None:
        if isinstance(key_headers, str):
            msg = f"key_headers takes a tuple of header names, e.g. key_headers=({key_headers!r},)"
            raise TypeError(msg)
        names = frozenset(name.lower() for name in key_headers)
        secret = sorted(names & _SECRET_HEADERS)
        if secret:
            msg = f"key_headers may not name {', '.join(secret)}: credentials never go into a key"
            raise ValueError(msg)
        self.namespace = namespace
        # The SDK's raw-response markers are how a call asks, not what it asks.
        self.key_headers = names - _sdk.RAW_HEADERS
        self._options = Options.checked(
            namespace=namespace,
            serializer=None,
            directory=directory,
            store=store,
            ttl=ttl,
            version=version,
            cache_if=_keep,
        )
        # One cached function per response type, since each has its serializer.
        self.functions: dict[Any, CachedFunction[[_Request], Any]] = {}
        self._function(ChatCompletion)
        # Streams: the ones being started, then the ones going on, per key.
        self._starting: Flights[Any] = Flights()
        self._live = LiveStreams()

    def _function(self, cast_to: Any) -> CachedFunction[[_Request], Any]:
        function = self.functions.get(cast_to)
        if function is None:
            options = dataclasses.replace(self._options, serializer=AnswerSerializer(cast_to))
            # The key is the request: memo's own code (_send) is not part of it.
            function = CachedFunction(_send, options, (), track_code=False)
            self.functions[cast_to] = function
        return function

    # -- the request ----------------------------------------------------------

    def request_key(
        self, client: AsyncOpenAI, path: str, body: Any, options: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Return what identifies a request: method, URL, query, body (and opted-in headers)."""
        extra_json = options.get("extra_json")
        if isinstance(body, Mapping) or body is None:
            body = _without_omitted(body, extra_json)
        key: dict[str, Any] = {
            "method": "POST",
            "url": str(client.base_url).rstrip("/") + "/" + path.lstrip("/"),
            "query": _as_sent(_without_omitted(client.default_query, options.get("params"))),
            "body": _as_sent(body),
        }
        if self.key_headers:
            headers = _without_omitted(client.default_headers, options.get("headers"))
            key["headers"] = keyed = {
                name.lower(): str(value)
                for name, value in headers.items()
                if name.lower() in self.key_headers
            }
            api_key = getattr(client, "api_key", None)
            if isinstance(api_key, str) and api_key:
                leaking = sorted(name for name, value in keyed.items() if api_key in value)
                if leaking:
                    # Refused here, so the request goes out uncached and reported.
                    msg = (
                        f"header {', '.join(leaking)} carries the API key, and credentials "
                        f"never go into a key: take it out of key_headers"
                    )
                    raise ValueError(msg)
        return key

    async def post(
        self,
        client: AsyncOpenAI,
        real_post: Callable[..., Awaitable[Any]],
        path: str,
        **kwargs: Any,
    ) -> Any:
        """Stand in for ``client.post``: answer from the cache, or send and store."""
        _last_hit.set(False)
        if path not in CACHED_PATHS:
            return await real_post(path, **kwargs)
        if current_mode() is Mode.BYPASS:
            self._refuse_offline(path, "memo.bypass() reads no entry")
            return await real_post(path, **kwargs)
        options = dict(kwargs.get("options") or {})
        reason = _uncacheable(kwargs, options)
        if reason is not None:
            self._refuse_offline(path, f"memo cannot cache it: {reason}")
            _say_uncached(path, reason)
            return await real_post(path, **kwargs)
        try:
            key = self.request_key(client, path, kwargs.get("body"), options)
        except Exception as exc:
            self._refuse_offline(path, f"memo cannot key it: {exc}")
            # The SDK may still manage to send it: a cache problem never costs the answer.
            report_failure(self.namespace, "building the key", exc)
            return await real_post(path, **kwargs)
        call = _Call(client, real_post, path, kwargs, options=options, key=key)
        if kwargs.get("stream"):
            try:
                return await self._stream(call)
            except NotRecordedError as exc:
                raise _naming_the_request(call, exc) from None
        # The per-call post-processing (structured-output parsing, base64
        # decoding) runs after the cache, so the stored value is what the API sent.
        post_parser = call.options.pop("post_parser", None)
        request = _Request(key)
        request.send = functools.partial(_send_answer, call, request, post_parser)
        function = self._function(kwargs.get("cast_to"))
        learning = _shortcut.learning(client, path)
        if learning is not None:  # no await since the key was built: the state it was built in
            learning.found(_remembered(function, request, call, post_parser))
        try:
            answer = await _within(call.timeout, request.is_sent, call.url, function(request))
        except NotRecordedError as exc:
            raise _naming_the_request(call, exc) from None
        _last_hit.set(not request.sent)
        # The caller whose request was sent gets the HTTP response it received;
        # the others one built from the stored answer.
        return _hand_over(answer, post_parser, call, request.http)

    async def serve(self, remembered: Remembered) -> Any:
        """Answer a request the shortcut remembers from its entry, as ``post`` answers a hit.

        ``MISSING`` for anything but a hit, with nothing counted: the caller
        then makes the full call.
        """
        _last_hit.set(False)
        function, key = remembered.function, remembered.store_key
        found = function.stored_nowait(key)
        if found is NOT_NOW:
            found = await _within(remembered.timeout, _never, remembered.url, function.stored(key))
        if found is None:
            return MISSING
        _last_hit.set(True)
        return _hand_over(found.value, remembered.post_parser, remembered.call)

    def _refuse_offline(self, path: str, why: str) -> None:
        """In offline mode, raise ``NotRecordedError`` for a request that would go out uncached."""
        if is_offline():
            request = f"memo.openai: POST {path}"
            raise NotRecordedError(
                request, self.namespace, None, f"{why}, so nothing recorded can answer it"
            )

    # -- streams --------------------------------------------------------------

    async def _stream(self, call: _Call) -> Any:
        args = get_args(call.kwargs.get("stream_cls"))
        if len(args) != 1:
            self._refuse_offline(call.path, "it asks for a stream class of its own")
            _say_uncached(
                call.path,
                "it asks for a stream class of its own (or one that names no chunk type), "
                "which a replay is not",
            )
            return await call.real_post(call.path, **call.kwargs)
        build = ChunksSerializer(args[0]).build
        function = self._function(call.kwargs.get("cast_to"))
        store_key = function.cache_key(_Request(call.key))
        entries = entries_of(function).with_codec(_STREAM_CODEC)
        while True:
            mine = _Request(call.key)  # sent: this caller's own request went out
            if current_mode() is Mode.REFRESH:  # send, record and overwrite; join nothing
                outcome = await self._start(call, entries, store_key, mine, None)
            else:
                broadcast = self._live.find(store_key)
                if broadcast is not None:  # an identical stream is going on: join it
                    entries.counters.hits += 1
                    _last_hit.set(True)
                    return self._follow(call, broadcast, build)
                outcome = await self._start_or_join(call, entries, store_key, mine)
                if outcome is _AFRESH:
                    continue
            starter = mine.sent
            if isinstance(outcome, _Started) and not starter and outcome.broadcast.abandoned:
                continue  # its callers all left before this one could join: start afresh
            break
        if isinstance(outcome, Recorded):
            _last_hit.set(True)
            return self._replay(call, outcome, build, shared=not starter)
        if isinstance(outcome, _Started):
            _last_hit.set(not starter)
            if starter:
                return self._lead(call, outcome, build)
            return self._follow(call, outcome.broadcast, build)
        if starter:  # an answer memo could not record: returned as it came
            return outcome
        self._refuse_offline(call.path, "the stream it joined could not be recorded")
        return await call.real_post(call.path, **call.kwargs)

    async def _start_or_join(
        self, call: _Call, entries: Entries[Any], store_key: str, mine: _Request
    ) -> Any:
        """Start the request, or join the identical one being started; ``_AFRESH``: try again."""
        flight = self._starting.find(store_key)
        if flight is None:
            run = functools.partial(self._start, call, entries, store_key, mine)
            flight = self._starting.start(store_key, run)
            return await _within(call.timeout, mine.is_sent, call.url, flight.join())
        entries.counters.hits += 1
        try:
            return await _within(call.timeout, mine.is_sent, call.url, flight.join())
        except NotRecordedError:
            if is_offline():
                raise
            # Refused to the offline caller that started it; this one sends it.
            entries.counters.hits -= 1
            return _AFRESH

    async def _start(
        self,
        call: _Call,
        entries: Entries[Any],
        store_key: str,
        mine: _Request,
        flight: Flight[Any] | None,
    ) -> Any:
        """Read the stored recording, or send the request and start its broadcast."""
        opened = entries.open()
        if flight is not None:
            try:
                found = await opened.read(store_key)
                flight.check_abandoned()
            except BaseException:  # cancelled: a lock the read took is given back
                await opened.release(store_key)
                raise
            if found is not None:
                return found.value
        try:
            entries.miss(store_key)
            mine.sent = True
            live = await call.real_post(call.path, **{**call.kwargs, "options": call.options})
        except BaseException:
            if flight is not None:
                flight.close()  # its exception is for the callers it has, not for newcomers
            await opened.release(store_key)
            raise
        if not isinstance(live, AsyncStream):
            await opened.release(store_key)
            return live
        headers = _kept_headers(live.response.headers)

        async def store(chunks: list[Any]) -> bool:
            stored = await opened.write(store_key, Recorded(chunks, headers))
            return stored is not None

        response_close = live.response.aclose
        broadcast = Broadcast(
            _own_iterator(live),
            headers=headers,
            complete=functools.partial(_complete, call.path, call.key["body"]),
            store=store,
            release=functools.partial(opened.release, store_key),
            failed=functools.partial(entries.fail, "recording the stream"),
            close=response_close,
        )
        if flight is not None:
            self._live.add(store_key, broadcast)
        return _Started(broadcast, live)

    def _lead(self, call: _Call, started: _Started, build: Callable[[Any], Any]) -> Any:
        """Hand the caller whose request was sent its stream: the SDK's, fed by the broadcast."""
        broadcast, live = started.broadcast, started.live
        if call.kind is not None:
            consumer = broadcast.follow()
            headers = _sdk.wire_headers(live.response)
            return call.raw(_broadcast_response(call, consumer, headers), stream=True)
        consumer = broadcast.follow(takes_objects=True)
        live._iterator = consumer.chunks(functools.partial(broadcast.take, build=build))
        _close_by_leaving(live, broadcast, consumer)
        consumer.belongs_to(live)
        return live

    def _follow(self, call: _Call, broadcast: Broadcast, build: Callable[[Any], Any]) -> Any:
        """Hand a caller that joined a stream in flight its own stream of the same chunks."""
        consumer = broadcast.follow(
            timeout=call.timeout, on_timeout=functools.partial(_sdk.timeout_error, call.url)
        )
        if call.kind is not None:
            headers = _stream_headers(broadcast.headers)
            return call.raw(_broadcast_response(call, consumer, headers), stream=True)
        chunks = consumer.chunks(functools.partial(broadcast.built, build=build))
        stream: ReplayStream[Any] = ReplayStream(
            chunks,
            headers=_stream_headers(broadcast.headers),
            url=call.url,
            on_close=consumer.close,
        )
        consumer.belongs_to(stream)
        return stream

    def _replay(
        self, call: _Call, recorded: Recorded, build: Callable[[Any], Any], *, shared: bool
    ) -> Any:
        """Hand a caller the stored recording."""
        headers = _stream_headers(recorded.headers)
        if call.kind is not None:
            content = b"".join(server_sent_events(call.path, c) for c in recorded.chunks)
            if call.path == "/chat/completions":
                content += DONE
            return call.raw(_sdk.http_response(headers, url=call.url, content=content), stream=True)
        chunks = recorded.chunks
        if shared:  # the recording read for several callers: each builds from its own copy
            chunks = orjson.loads(orjson.dumps(chunks))
        return ReplayStream(chunks, build, headers=headers, url=call.url)

    # -- management -------------------------------------------------------------

    def cache_info(self) -> CacheInfo:
        infos = [function.cache_info() for function in self.functions.values()]
        return CacheInfo(
            hits=sum(i.hits for i in infos),
            misses=sum(i.misses for i in infos),
            errors=sum(i.errors for i in infos),
        )

    async def cache_clear(self) -> int:
        return await self.functions[ChatCompletion].cache_clear()


def _never() -> bool:
    return False


def _remembered(
    function: CachedFunction[[_Request], Any],
    request: _Request,
    call: _Call,
    post_parser: Callable[[Any], Any] | None,
) -> Remembered | None:
    """What the shortcut remembers of a call (None if its store key cannot be had)."""
    try:
        store_key = function.cache_key(request)
    except Exception:  # the call itself reports it
        return None
    if call.kind is None:
        return Remembered(
            function,
            store_key,
            post_parser=post_parser,
            call=None,
            timeout=call.timeout,
            url=call.url,
        )
    # A raw call keeps its _Call, whose body (as built, and as keyed) the
    # SDK's raw response carries: it counts against the shortcut's budget.
    try:
        size = 2 * len(orjson.dumps(call.key["body"]))
    except TypeError:  # text orjson cannot write (a lone surrogate)
        size = 2 * len(json.dumps(call.key["body"]))
    return Remembered(
        function,
        store_key,
        post_parser=post_parser,
        call=call,
        timeout=call.timeout,
        url=call.url,
        size=size,
    )


def _hand_over(
    answer: Answer[Any],
    post_parser: Callable[[Any], Any] | None,
    call: _Call | None,
    http: Any = None,
) -> Any:
    """Return what the caller asked for, from an answer: the object, or a raw response.

    ``http`` is the HTTP response the caller's own request received, if it
    was sent; otherwise a raw response is built from the stored answer.
    """
    if call is None or call.kind is None:
        value = answer.value
        return value if post_parser is None else _post_process(post_parser, value)
    if http is None:
        http = _answer_response(call, answer)
    extra = {} if post_parser is None else {"post_parser": post_parser}
    return call.raw(http, stream=False, **extra)


def _uncacheable(kwargs: Mapping[str, Any], options: Mapping[str, Any]) -> str | None:
    """Why memo cannot cache a call to a cached endpoint, or None."""
    if kwargs.get("files") is not None:
        return "it uploads files"
    if kwargs.get("content") is not None:
        return "its body is raw content (content=), not JSON memo can key"
    if _sdk.raw_kind(options.get("headers")) == "custom":
        return (
            "it asks for a response class of its own (or one this openai release lacks), "
            "which memo does not build"
        )
    return None


async def _send_answer(
    call: _Call, request: _Request, post_parser: Callable[[Any], Any] | None
) -> Answer[Any]:
    """Send the request; return the answer the API sent, with its kept headers.

    Asked for as an HTTP response, so that its headers are at hand, and
    parsed here as the SDK parses it. What the caller's parser raises for
    (a structured output cut short, that fails the caller's model, an
    embedding list that came back empty) is raised, so it is never stored:
    stored, it would raise on every hit.
    """
    kwargs = {**call.kwargs, "cast_to": _sdk.HTTP.Response, "options": call.options}
    http = await call.real_post(call.path, **kwargs)
    value = _sdk.parse(
        http, client=call.client, cast_to=call.kwargs.get("cast_to"), options=call.request_options()
    )
    if post_parser is not None:
        _post_process(post_parser, value)
    request.http = http
    return Answer(value, _kept_headers(http.headers))


def _post_process(post_parser: Callable[[Any], Any], result: Any) -> Any:
    """Run the SDK's per-call parser on this caller's own copy of ``result``.

    A parser may change the object in place (the base64 embeddings decoder
    does), and the object may be the one stored or shared: a caller that
    asked for base64 would then get floats. The parser builds a new object
    for structured outputs, so the request id the SDK sets on what it returns
    is carried over, as the SDK does after its parser.
    """
    if isinstance(result, pydantic.BaseModel):
        result = result.model_copy(deep=True)
    parsed = post_parser(result)
    request_id = getattr(result, "_request_id", None)
    if (
        parsed is not result
        and isinstance(parsed, SDKModel)
        and isinstance(request_id, str)
        and getattr(parsed, "_request_id", None) is None
    ):
        parsed._request_id = request_id
    return parsed


def _own_iterator(live: AsyncStream[Any]) -> AsyncIterator[Any]:
    """Return a new iterator of ``live``'s chunks that does not keep ``live`` itself alive.

    The SDK's iterator holds its stream object; the broadcast reads from a
    copy of it instead, so the caller's stream object is collected when the
    caller drops it, and that caller leaves the broadcast then.
    """
    own = copy.copy(live)
    make = getattr(own, "__stream__", None)
    if not callable(make):  # pragma: no cover - every SDK release has it
        return live._iterator
    # The copy's own iterator, not the one it copied (which holds ``live``).
    own._iterator = iterator = cast("AsyncIterator[Any]", make())
    return iterator


def _close_by_leaving(live: AsyncStream[Any], broadcast: Broadcast, consumer: Consumer) -> None:
    """Make closing ``live``'s HTTP response (how its caller stops) leave the broadcast.

    Every way a stream is closed ends there: ``close()``, ``async with``, the
    SDK's ``.stream()`` helpers. The response itself is the broadcast's: it
    is closed when the last caller leaves or the stream ends, and by the
    SDK's own reading of it, which closes it as it reaches the end.
    """
    response = live.response
    close = response.aclose

    async def leave_then_close() -> None:
        if not broadcast.reading():
            await consumer.close()
            if not broadcast.done:
                return
        await close()

    vars(response)["aclose"] = leave_then_close


def _broadcast_response(call: _Call, consumer: Consumer, headers: Any) -> Any:
    """Return an HTTP response whose body is the broadcast's chunks as server-sent events."""
    broadcast = consumer.broadcast

    async def events() -> AsyncGenerator[bytes, None]:
        async for chunk in consumer.chunks(lambda index: broadcast.chunks[index]):
            if chunk is not None:  # None: a chunk that could not be recorded
                yield server_sent_events(call.path, chunk)
        if call.path == "/chat/completions" and broadcast.finished():
            yield DONE

    http = _sdk.http_response(headers, url=call.url, stream=Body(events(), consumer.close))
    consumer.belongs_to(http)
    return http


def _complete(path: str, body: Any, chunks: list[Any]) -> bool:
    """Whether a stream that ended also finished: a server can hang up midway.

    The SDK ends a stream without an error when the connection closes, so a
    chat stream counts as finished only when every choice asked for (``n``)
    has a finish reason and, when ``include_usage`` was asked for, the usage
    chunk that comes after them arrived.
    """
    body = body if isinstance(body, dict) else {}
    if path == "/chat/completions":
        finished = {
            choice.get("index")
            for chunk in chunks
            for choice in chunk.get("choices") or ()
            if isinstance(choice, dict) and choice.get("finish_reason")
        }
        n = body.get("n")
        wanted = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
        if not finished >= set(range(wanted)):
            return False
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            return any(chunk.get("usage") for chunk in chunks)
        return True
    if path == "/responses":
        return bool(chunks) and chunks[-1].get("type") in {
            "response.completed",
            "response.incomplete",
        }
    return True


def _attach(cache: _OpenAICache, client: ClientT) -> ClientT:
    # A resource keeps the client's post from when it is made: recent SDKs
    # make them on first use (after this, since the client is a fresh copy);
    # older ones, and subclasses, make some in __init__, so repoint those.
    attributes = vars(client)
    real_post = client.post
    real_copy = client.copy
    cached_post = functools.partial(cache.post, client, real_post)
    attributes["post"] = cached_post
    _repoint(attributes.values(), real_post, cached_post, seen=set())

    def copy(*args: Any, **kwargs: Any) -> ClientT:
        return _attach(cache, real_copy(*args, **kwargs))

    attributes["copy"] = attributes["with_options"] = copy
    attributes["_memo_openai_cache"] = cache
    Shortcuts(client, key_headers=bool(cache.key_headers), serve=cache.serve).install()
    return client


def _repoint(values: Iterable[Any], real_post: Any, cached_post: Any, *, seen: set[int]) -> None:
    """Point resources already made (and the ones they hold) at the cached post."""
    for value in list(values):
        if not isinstance(value, AsyncAPIResource) or id(value) in seen:
            continue
        seen.add(id(value))
        attributes = vars(value)
        if attributes.get("_post") == real_post:
            attributes["_post"] = cached_post
        _repoint(attributes.values(), real_post, cached_post, seen=seen)


def _cache_of(client: AsyncOpenAI) -> _OpenAICache | None:
    cache = vars(client).get("_memo_openai_cache")
    return cache if isinstance(cache, _OpenAICache) else None


def cached(
    client: ClientT,
    *,
    namespace: str = "memo.openai",
    directory: str | os.PathLike[str] | None = None,
    store: Store | None = None,
    ttl: float | datetime.timedelta | None = None,
    version: str | int | None = None,
    key_headers: Iterable[str] = (),
) -> ClientT:
    """Return a copy of ``client`` whose chat, embeddings and Responses calls are cached.

    ``client.chat.completions.create`` and ``.parse``, ``client.embeddings.create``
    and ``client.responses.create`` (and ``.parse``, and the ``.stream()``
    helpers) answer a repeated request from the cache with an object equal to
    the first answer: same ``id``, ``created``, ``usage`` and tool-call ids.
    Everything else (files, models, ``retrieve``, ...) goes to the API untouched.
    ``with_options(...)`` and ``copy(...)`` return clients cached the same way.

    The key is the request as the SDK sends it: method, URL (so the base URL),
    query (``extra_query``) and body (``extra_body`` merged in). The API key,
    ``timeout``, ``max_retries`` and headers are not part of it, and nothing
    but the request's key, the API's answer and a few response headers that
    carry no credential (``x-request-id``, ``openai-version``, ...) is stored.
    ``with_raw_response`` and ``with_streaming_response`` calls share the
    entries and get the SDK's own raw-response objects.

    ``stream=True`` requests are forwarded live while their chunks are
    recorded; a stream is stored as soon as it is complete and replayed chunk
    by chunk on a hit (a ``ReplayStream``). Identical requests in flight at
    the same time are sent once, streams included; a caller that joins one
    keeps its own ``timeout``.

    Args:
        client: an ``openai.AsyncOpenAI`` (or ``AsyncAzureOpenAI``) client; it is
            not changed.
        namespace: groups the entries; ``cache_clear`` drops them all.
        directory: the diskcache folder; default ``$MEMO_CACHE_DIR``, else the
            user cache folder. Not with ``store``.
        store: a ``Store`` to use instead of a folder.
        ttl: seconds (or a ``timedelta``) before an entry expires; None: never.
        version: part of every key: change it to retire the old entries.
        key_headers: names of request headers (``extra_headers`` or the
            client's ``default_headers``) whose values join the key, e.g.
            ``("OpenAI-Beta",)``. Credentials are refused.

    Returns:
        A client of the same class, configured like ``client``.

    Raises:
        TypeError: ``client`` is not an ``AsyncOpenAI``, or an option has the
            wrong type.
        ValueError: ``client`` is already cached, or ``key_headers`` names a
            credential header.
    """
    if not isinstance(client, AsyncOpenAI):  # type: ignore[redundant-expr, unused-ignore]
        msg = (  # type: ignore[unreachable, unused-ignore]
            f"memo.openai.cached() needs an openai.AsyncOpenAI client, "
            f"got {type(client).__qualname__}; memo caches coroutines: use AsyncOpenAI()"
        )
        raise TypeError(msg)
    if _cache_of(client) is not None:
        msg = "this client is already cached by memo; pass the original AsyncOpenAI client"
        raise ValueError(msg)
    cache = _OpenAICache(
        namespace=namespace,
        directory=directory,
        store=store,
        ttl=ttl,
        version=version,
        key_headers=key_headers,
    )
    return _attach(cache, client.copy())


def _require_cache(client: AsyncOpenAI) -> _OpenAICache:
    cache = _cache_of(client)
    if cache is None:
        msg = (
            "this client is not cached by memo: use the client memo.openai.cached(client) returned"
        )
        raise TypeError(msg)
    return cache


def cache_info(client: AsyncOpenAI) -> CacheInfo:
    """Return the hits, misses and errors of a cached client (and its copies) in this process.

    Raises:
        TypeError: ``client`` was not made by ``cached``.
    """
    return _require_cache(client).cache_info()


async def cache_clear(client: AsyncOpenAI) -> int:
    """Drop every entry of a cached client's namespace; return how many.

    Raises:
        TypeError: ``client`` was not made by ``cached``.
    """
    return await _require_cache(client).cache_clear()


# The cached copy made for each client handed to cached_chat_completion.
_helper_clients: weakref.WeakKeyDictionary[AsyncOpenAI, AsyncOpenAI] = weakref.WeakKeyDictionary()


async def cached_chat_completion(
    client: AsyncOpenAI, *, model: str, messages: Iterable[Any], **params: Any
) -> ChatCompletion:
    """Create a chat completion, or return the stored one for the same request.

    ``await cached_chat_completion(client, model=..., messages=..., temperature=0)``
    takes the arguments of ``client.chat.completions.create`` and caches on the
    default store (``$MEMO_CACHE_DIR``). ``client`` may be a plain
    ``AsyncOpenAI`` (memo keeps one cached copy of it) or one returned by
    ``cached``, whose options then apply.

    Raises:
        TypeError: ``stream=True`` was passed: use ``cached(client)``, whose
            ``chat.completions.create(stream=True)`` records and replays streams.
    """
    if params.get("stream"):
        msg = (
            "cached_chat_completion returns a ChatCompletion; for stream=True use "
            "memo.openai.cached(client).chat.completions.create(..., stream=True)"
        )
        raise TypeError(msg)
    if _cache_of(client) is None:
        wrapped = _helper_clients.get(client)
        if wrapped is None:
            wrapped = _helper_clients[client] = cached(client)
        client = wrapped
    completion = await client.chat.completions.create(model=model, messages=messages, **params)
    return cast("ChatCompletion", completion)
