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
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar, cast, get_args

import pydantic
from openai import AsyncOpenAI, AsyncStream
from openai._models import BaseModel as SDKModel
from openai._resource import AsyncAPIResource
from openai._types import NotGiven, Omit
from openai.types.chat import ChatCompletion

from memo._context import Mode, current_mode
from memo._decorator import CachedFunction, entries_of
from memo._entries import CacheInfo
from memo._envelope import Codec
from memo._options import Options
from memo._report import report_failure
from memo.openai._serializers import ChunksSerializer, OpenAISerializer, RecordedChunks
from memo.openai._streams import Recording, ReplayStream

if TYPE_CHECKING:
    import os

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

# A Responses API object in one of these states is not an answer yet (or is a
# failure): it is returned, never stored.
_UNFINISHED = frozenset({"queued", "in_progress", "failed", "cancelled"})

# Headers the SDK's with_raw_response / with_streaming_response wrappers set:
# those callers want the HTTP response itself, which memo does not store.
_RAW_RESPONSE_HEADERS = frozenset({"x-stainless-raw-response", "____stainless_override_cast_to"})

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


def _keep(result: Any) -> bool:
    # Some OpenAI-compatible servers answer an error with HTTP 200 and an
    # "error" object, which the SDK turns into a response without choices.
    if getattr(result, "error", None):
        return False
    return getattr(result, "status", None) not in _UNFINISHED


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
    """One request: its key, and how to send it (which is not part of the key)."""

    __slots__ = ("key", "send", "sent")

    def __init__(
        self, key: dict[str, Any], send: Callable[[], Awaitable[Any]] | None = None
    ) -> None:
        self.key = key
        self.send = send
        self.sent = False

    def __memo_key__(self) -> dict[str, Any]:
        return self.key


async def _send(request: _Request) -> Any:
    assert request.send is not None  # only requests that can be sent are called
    request.sent = True
    return await request.send()


# Recorded streams are stored as their chunks' JSON, whatever the chunk type,
# and built into chunk objects one at a time as a replay reaches them.
_STREAM_CODEC = Codec(RecordedChunks())


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
        self.key_headers = names
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

    def _function(self, cast_to: Any) -> CachedFunction[[_Request], Any]:
        function = self.functions.get(cast_to)
        if function is None:
            options = dataclasses.replace(self._options, serializer=OpenAISerializer(cast_to))
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
        if (
            path not in CACHED_PATHS
            or kwargs.get("files") is not None
            or kwargs.get("content") is not None
            or current_mode() is Mode.BYPASS
        ):
            return await real_post(path, **kwargs)
        options = dict(kwargs.get("options") or {})
        if any(name.lower() in _RAW_RESPONSE_HEADERS for name in options.get("headers") or ()):
            return await real_post(path, **kwargs)
        try:
            key = self.request_key(client, path, kwargs.get("body"), options)
        except Exception as exc:
            # The SDK may still manage to send it: a cache problem never costs the answer.
            report_failure(self.namespace, "building the key", exc)
            return await real_post(path, **kwargs)
        if kwargs.get("stream"):
            return await self._stream(path, key, real_post, kwargs)
        # The per-call post-processing (structured-output parsing, base64
        # decoding) runs after the cache, so the stored value is what the API sent.
        post_parser = options.pop("post_parser", None)
        send: Callable[[], Awaitable[Any]]
        send = functools.partial(real_post, path, **{**kwargs, "options": options})
        if post_parser is not None:
            send = functools.partial(_checked, send, post_parser)
        request = _Request(key, send)
        result = await self._function(kwargs.get("cast_to"))(request)
        _last_hit.set(not request.sent)
        if post_parser is not None:
            result = _post_process(post_parser, result)
        return result

    # -- streams --------------------------------------------------------------

    async def _stream(
        self,
        path: str,
        key: dict[str, Any],
        real_post: Callable[..., Awaitable[Any]],
        kwargs: dict[str, Any],
    ) -> Any:
        args = get_args(kwargs.get("stream_cls"))
        if len(args) != 1:  # a stream class memo cannot tell the chunk type of
            return await real_post(path, **kwargs)
        build = ChunksSerializer(args[0]).build
        function = self._function(kwargs.get("cast_to"))
        store_key = function.cache_key(_Request(key))
        entries = entries_of(function).with_codec(_STREAM_CODEC)
        opened = entries.open()
        if current_mode() is Mode.NORMAL:
            found = await opened.read(store_key)
            if found is not None:
                _last_hit.set(True)
                return ReplayStream(found.value, build)
        entries.counters.misses += 1
        try:
            live = await real_post(path, **kwargs)
        except BaseException:
            await opened.release(store_key)
            raise
        if not isinstance(live, AsyncStream):
            await opened.release(store_key)
            return live

        async def finished(chunks: list[Any]) -> None:
            # A stream that ended without finishing (a server hanging up) is not stored.
            if not (_complete(path, key["body"], chunks) and await opened.write(store_key, chunks)):
                await opened.release(store_key)

        async def abandoned() -> None:
            await opened.release(store_key)

        recording = Recording(
            live._iterator,
            finished,
            functools.partial(entries.fail, "recording the stream"),
            abandoned,
        )
        live._iterator = recording.chunks
        _settle_on_close(live, recording)
        return live

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


async def _checked(send: Callable[[], Awaitable[Any]], post_parser: Callable[[Any], Any]) -> Any:
    """Send, and raise what the SDK's parser raises for the answer, so it is never stored.

    A structured output cut short (``LengthFinishReasonError``) or that fails
    the caller's model, or an embedding list that came back empty, raises for
    the caller as it does without memo; stored, it would raise on every hit.
    """
    result = await send()
    _post_process(post_parser, result)
    return result


def _post_process(post_parser: Callable[[Any], Any], result: Any) -> Any:
    """Run the SDK's per-call parser on this caller's own copy of ``result``.

    Callers that joined one flight share one object, and a parser may change it
    in place (the base64 embeddings decoder does): a caller that asked for
    base64 would then get floats. The parser builds a new object for
    structured outputs, so the request id the SDK sets on what it returns is
    carried over, as the SDK does after its parser.
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


def _settle_on_close(stream: AsyncStream[Any], recording: Recording[Any]) -> None:
    """Make closing ``stream``'s HTTP response settle its recording at once.

    Every way a stream is closed ends there: ``close()``, ``async with``, the
    SDK's ``.stream()`` helpers. Without this, a stream closed early would
    give back a cross-process lock only when the garbage collector reaches it.
    """
    response = stream.response
    close = response.aclose

    async def close_and_settle() -> None:
        try:
            await close()
        finally:
            await recording.closed()

    vars(response)["aclose"] = close_and_settle


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
    but the request's key and the API's answer is stored.

    ``stream=True`` requests are forwarded live while their chunks are
    recorded; a stream that finishes is stored and replayed chunk by chunk on
    a hit (a ``ReplayStream``). Identical non-streamed requests in flight at
    the same time are sent once.

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
