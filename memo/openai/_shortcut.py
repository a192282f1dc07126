"""The cached client's shortcut: a repeated request goes straight to its entry.

Before a cached client's ``post`` sees a request, the SDK method has already
checked and transformed the caller's arguments into the body it sends, walking
the annotations of every message: most of what a hit costs. So each cached
client remembers, per method, what the caller's own arguments led to: the
store key of the body the SDK built from them (and what the answer is handed
over with: the per-call parser, the raw-response wrapper). When the same
arguments come again, the entry is read at once; anything but a hit (absent,
expired, unreadable, in flight, a failing store) falls through to the SDK
method, which builds the request and goes the usual way. Entries and their
keys are the ones the full path uses: the shortcut only finds them sooner.

It is taken only where the arguments are provably the same request. They are
read as memo's canonical key builder reads them (``memo._keys``: ``1`` is not
``1.0``, a tuple is not a list), but only for values whose meaning is their
JSON: str, int, float, bool, None, and dicts with str keys, lists and tuples
of them. Anything else (a pydantic object, a generator, a dict subclass such
as ``pydantic_function_tool(...)``) takes the full path and is not
remembered. Three kinds of value are told apart within this process only,
since the table lives no longer: the SDK's ``omit``/``NOT_GIVEN``, an HTTP
``Timeout``, and a class (``response_format=Model``), matched by identity and
kept alive by the entry. Header and query mappings are keyed in their order,
since a later header may replace an earlier one of another case. The parts of
the client that shape the request (base URL, default query, and for
``key_headers`` its default headers and API key) are checked on every call:
when one changes, the table is emptied. ``with_options()`` and ``copy()`` make
clients with tables of their own.

The first call of a request is made with a copy of the caller's containers,
so that what the entry keeps (a structured-output parser holds the ``tools``
it was given) never changes with the caller's later edits.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import functools
import os
import types
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

import openai
from openai._types import NotGiven, Omit

from memo._context import Mode, current_mode
from memo._keys import digest_arguments
from memo.openai import _sdk

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from openai import AsyncOpenAI

    from memo._decorator import CachedFunction

__all__ = [
    "MAX_REMEMBERED",
    "MAX_REMEMBERED_BYTES",
    "METHODS",
    "MISSING",
    "Remembered",
    "Shortcuts",
    "learning",
]

# Requests remembered per client, least recently used dropped first. An entry
# is a store key and a few references, a few hundred bytes; a raw call's entry
# also keeps the body it sent (the SDK's raw response carries it), so those
# count their size against a budget too.
MAX_REMEMBERED = 4096
MAX_REMEMBERED_BYTES = 16 * 1024 * 1024

# The SDK methods the shortcut stands in front of, and the endpoint each posts to.
METHODS: tuple[tuple[str, str, str], ...] = (
    ("chat.completions", "create", "/chat/completions"),
    ("chat.completions", "parse", "/chat/completions"),
    ("embeddings", "create", "/embeddings"),
    ("responses", "create", "/responses"),
    ("responses", "parse", "/responses"),
)

# Nested deeper than this, a value takes the full path (memo._keys refuses 64).
_MAX_DEPTH = 48

# Mappings whose order the request keeps: a later header may replace an
# earlier one spelled in another case, and query parameters are sent in order.
_ORDERED = frozenset({"extra_headers", "extra_query"})


class _Missing(enum.Enum):
    MISSING = "missing"


MISSING: Literal[_Missing.MISSING] = _Missing.MISSING
"""What ``Shortcuts``' ``serve`` returns for anything but a hit."""


class Remembered:
    """What one request led to: its entry's key and how its answer is handed over.

    ``call`` is the raw-response call (``with_raw_response``) that wraps the
    answer, None for a parsed one; ``size`` about the bytes it holds beyond
    its key (a raw call's body); ``pins`` keeps alive the classes the
    request was told apart by.
    """

    __slots__ = (
        "call",
        "function",
        "pins",
        "post_parser",
        "size",
        "store_key",
        "timeout",
        "url",
    )

    def __init__(
        self,
        function: CachedFunction[..., Any],
        store_key: str,
        *,
        post_parser: Callable[[Any], Any] | None,
        call: Any,
        timeout: float | None,
        url: str,
        size: int = 0,
    ) -> None:
        self.function = function
        self.store_key = store_key
        self.post_parser = post_parser
        self.call = call
        self.size = size
        self.timeout = timeout
        self.url = url
        self.pins: tuple[Any, ...] = ()


class _Learning:
    """A first call under way: the cached ``post`` fills in what it led to."""

    __slots__ = ("_client_state", "client", "path", "remembered", "state")

    def __init__(
        self, client: AsyncOpenAI, path: str, client_state: Callable[[], tuple[Any, ...]]
    ) -> None:
        self.client = client
        self.path = path
        self._client_state = client_state
        self.remembered: Remembered | None = None
        self.state: tuple[Any, ...] | None = None

    def found(self, remembered: Remembered | None) -> None:
        """Keep what the call led to, with the client's state its key was built in."""
        self.state = self._client_state()
        self.remembered = remembered


_learning: ContextVar[_Learning | None] = ContextVar("memo_openai_learning", default=None)


def learning(client: AsyncOpenAI, path: str) -> _Learning | None:
    """Return the first call of a request that this ``post`` is making for the shortcut, if any.

    Only the client's own post to the method's own endpoint, once: a request
    the SDK method makes on the way (or one made from inside the transport)
    is not what the arguments led to.
    """
    learning = _learning.get()
    if (
        learning is None
        or learning.client is not client
        or learning.path != path
        or learning.state is not None
    ):
        return None
    return learning


class _Inexact(Exception):
    """A value whose meaning is more than its JSON: the request takes the full path."""


class _Token:
    """A value told apart within this process only (keyed through ``__memo_key__``).

    The caller's own values never carry a ``__memo_key__`` here (they are
    refused), so no argument can pass for a token.
    """

    __slots__ = ("form",)

    def __init__(self, form: Any) -> None:
        self.form = form

    def __memo_key__(self) -> Any:
        return self.form


def _form(value: Any, pins: list[Any], depth: int = 0) -> Any:
    """Return ``value`` ready for the key builder: itself if plain, else with tokens.

    Raises:
        _Inexact: ``value`` (or something in it) is not keyed exactly here.
    """
    cls = type(value)
    if cls is str or cls is int or cls is float or cls is bool or value is None:
        return value
    if depth >= _MAX_DEPTH:
        raise _Inexact
    if cls is dict:
        out = None
        for name, item in value.items():
            if type(name) is not str:
                raise _Inexact
            form = item if type(item) is str else _form(item, pins, depth + 1)
            if form is not item:
                if out is None:
                    out = dict(value)
                out[name] = form
        return value if out is None else out
    if cls is list or cls is tuple:
        items = None
        for index, item in enumerate(value):
            form = item if type(item) is str else _form(item, pins, depth + 1)
            if form is not item:
                if items is None:
                    items = list(value)
                items[index] = form
        if items is None:
            return value
        return items if cls is list else tuple(items)
    return _token(value, cls, pins, depth)


def _token(value: Any, cls: type, pins: list[Any], depth: int) -> _Token:
    """The token of a value told apart within this process only.

    Raises:
        _Inexact: ``value`` is not one of those.
    """
    if cls is Omit or cls is NotGiven:
        return _Token(["omitted", cls.__name__])
    if isinstance(value, type):
        pins.append(value)
        return _Token(["class", id(value)])
    if cls is _sdk.HTTP.Timeout:
        parts = [value.connect, value.read, value.write, value.pool]
        return _Token(["timeout", _form(parts, pins, depth + 1)])
    raise _Inexact


def _pairs(value: Any, pins: list[Any]) -> Any:
    if type(value) is not dict:
        return _form(value, pins)
    pairs = []
    for name, item in value.items():
        if type(name) is not str:
            raise _Inexact
        pairs.append([name, _form(item, pins, 1)])
    return _Token(["pairs", pairs])


def digest(method: str, kwargs: dict[str, Any], pins: list[Any]) -> str | None:
    """Return the digest of a call's own arguments, or None if they are not keyed exactly.

    Classes the digest tells apart by identity are added to ``pins``: the
    entry keeps them alive, so their ``id`` is never another's.
    """
    arguments = {}
    try:
        for name, value in kwargs.items():
            arguments[name] = _pairs(value, pins) if name in _ORDERED else _form(value, pins)
        return digest_arguments({"method": method, "arguments": arguments}, method)
    except (_Inexact, TypeError):
        return None


def _own_copy(value: Any) -> Any:
    """A copy of the containers of a value ``_form`` accepted; what they hold is shared."""
    cls = type(value)
    if cls is dict:
        return {name: _own_copy(item) for name, item in value.items()}
    if cls is list:
        return [_own_copy(item) for item in value]
    if cls is tuple:
        return tuple(_own_copy(item) for item in value)
    return value


# What an omitted value of the client's stands for in its state: the SDK makes
# a new Omit() each time it lists a header it leaves out.
_OMITTED = object()


def _items(mapping: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """A mapping of the client's, in order, comparable from one call to the next."""
    return tuple(
        (name, _OMITTED if isinstance(value, (Omit, NotGiven)) else value)
        for name, value in mapping.items()
    )


def _streams(kwargs: dict[str, Any]) -> bool:
    stream = kwargs.get("stream")
    return not (stream is None or stream is False or isinstance(stream, (Omit, NotGiven)))


def _class_attribute(cls: type, name: str) -> Any:
    """What ``cls.name`` holds, before binding (so it can be bound to the instance)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return vars(klass)[name]
    raise AttributeError(name)  # pragma: no cover - install() saw it


_SDK_FOLDER = os.path.dirname(os.path.abspath(openai.__file__)) + os.sep
# Whether a method is the SDK's own, per function (kept here, so its id stays its own).
_own: dict[int, tuple[Any, bool]] = {}


def _sdk_own(function: Any) -> bool:
    """Whether ``function`` is the SDK's own method, not one a library wrapped or replaced.

    A wrapped method (OpenTelemetry's or Langfuse's instrumentation, a test's
    spy) wants to see every call: the shortcut stands aside for it.
    """
    known = _own.get(id(function))
    if known is not None and known[0] is function:
        return known[1]
    code = getattr(function, "__code__", None)
    own = (
        type(function) is types.FunctionType
        and code is not None
        and os.path.abspath(code.co_filename).startswith(_SDK_FOLDER)
    )
    if len(_own) >= 256:  # methods patched over and over: start afresh
        _own.clear()
    _own[id(function)] = (function, own)
    return own


class Shortcuts:
    """One cached client's remembered requests, and the methods that use them.

    Args:
        client: the cached client.
        key_headers: whether the client's default headers join the key.
        serve: answers a remembered request from its entry, or ``MISSING``.
    """

    __slots__ = ("_bytes", "_client", "_key_headers", "_remembered", "_serve", "_state")

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        key_headers: bool,
        serve: Callable[[Remembered], Awaitable[Any]],
    ) -> None:
        self._client = client
        self._key_headers = key_headers
        self._serve = serve
        self._remembered: collections.OrderedDict[str, Remembered] = collections.OrderedDict()
        self._state: tuple[Any, ...] | None = None
        self._bytes = 0

    def install(self) -> None:
        """Put the shortcut in front of the client's cached SDK methods."""
        for where, name, path in METHODS:
            resource: Any = self._client
            try:
                for attribute in where.split("."):
                    resource = getattr(resource, attribute)
                method = getattr(resource, name)
            except AttributeError:  # pragma: no cover - an SDK release without it
                continue
            shortcut = self._wrap(resource, name, f"{where}.{name}", path)
            try:
                vars(resource)[name] = functools.wraps(method)(shortcut)
            except TypeError:  # pragma: no cover - a resource of the caller's own, with no __dict__
                continue

    def _wrap(self, resource: Any, name: str, method_name: str, path: str) -> Callable[..., Any]:
        cls = type(resource)

        async def shortcut(*args: Any, **kwargs: Any) -> Any:
            # Looked up on every call, as the SDK's own method would be: a
            # method patched later (tracing, instrumentation) is the one called.
            function = _class_attribute(cls, name)
            method = function.__get__(resource, cls)
            if (
                args
                or _streams(kwargs)
                or current_mode() is not Mode.NORMAL
                or not _sdk_own(function)
            ):
                return await method(*args, **kwargs)
            return await self._call(method, method_name, path, kwargs)

        return shortcut

    def _client_state(self) -> tuple[Any, ...]:
        """The parts of the client that shape a request's key (and how long a call waits)."""
        client = self._client
        state: tuple[Any, ...] = (client.base_url, _items(client.default_query), client.timeout)
        if self._key_headers:
            state += (_items(client.default_headers), client.api_key)
        return state

    async def _call(
        self, method: Callable[..., Any], name: str, path: str, kwargs: dict[str, Any]
    ) -> Any:
        pins: list[Any] = []
        key = digest(name, kwargs, pins)
        if key is None:
            return await method(**kwargs)
        state = self._client_state()
        if state != self._state:
            self._remembered.clear()
            self._bytes = 0
            self._state = state
        remembered = self._remembered.get(key)
        if remembered is None:
            return await self._learn(method, path, key, kwargs, pins)
        answer = await self._serve(remembered)
        if answer is MISSING:
            return await method(**kwargs)
        with contextlib.suppress(KeyError):  # dropped meanwhile (the table was emptied)
            self._remembered.move_to_end(key)
        return answer

    async def _learn(
        self,
        method: Callable[..., Any],
        path: str,
        key: str,
        kwargs: dict[str, Any],
        pins: list[Any],
    ) -> Any:
        """Make the call the full way, and remember what its arguments led to."""
        learning = _Learning(self._client, path, self._client_state)
        token = _learning.set(learning)
        try:
            result = await method(**_own_copy(kwargs))
        finally:
            _learning.reset(token)
        remembered = learning.remembered
        # Only into the table of the client state the key was built in (another
        # task may have changed the base URL while this call was on its way).
        if remembered is not None and learning.state == self._state:
            remembered.pins = tuple(pins)
            self._remember(key, remembered)
        return result

    def _remember(self, key: str, remembered: Remembered) -> None:
        table = self._remembered
        # Tolerant of a client shared with another thread's event loop.
        with contextlib.suppress(KeyError):
            previous = table.pop(key, None)
            if previous is not None:
                self._bytes -= previous.size
            table[key] = remembered
            self._bytes += remembered.size
            while len(table) > MAX_REMEMBERED or (
                self._bytes > MAX_REMEMBERED_BYTES and len(table) > 1
            ):
                self._bytes -= table.popitem(last=False)[1].size
