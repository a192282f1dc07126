"""``async_disk_cache``: the decorator, the cached function and single flight.

A call binds its arguments and builds its key, then joins the flight already
computing that key in this event loop, if there is one. If not, it asks the
store for the entry without awaiting (``get_nowait``, when the store can answer
without blocking) and returns a hit at once; otherwise it starts a flight: a
task that reads the store the slow way if needed and, on a miss, runs the
function, writes the result and publishes it through a future. Callers await
that future through ``asyncio.shield`` and are counted, so one caller leaving
cancels nothing the others still wait for, and the last caller leaving cancels
the run (the design of async-lru). Every store or serializer failure is
reported and counted, and the call goes on as a miss: a broken cache costs
time, never a result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import functools
import inspect
import typing
import warnings
import weakref
from contextvars import ContextVar
from typing import Any, Generic, ParamSpec, TypeVar, overload

from memo._context import Mode, current_mode
from memo._keys import digest_arguments
from memo._report import MemoWarning, logger, report_failure
from memo._serializers import (
    JsonSerializer,
    Serializer,
    envelope_header,
    infer_serializer,
    open_envelope,
    serializer_id,
)
from memo.stores.base import Store, WouldBlock, store_key
from memo.stores.disk import shared_disk_store

if typing.TYPE_CHECKING:
    import os
    from collections.abc import Awaitable, Callable, Iterable

__all__ = ["BoundCachedFunction", "CacheInfo", "CachedFunction", "async_disk_cache"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True, slots=True)
class CacheInfo:
    """What one cached function did in this process.

    Attributes:
        hits: calls answered without running the function: read from the store,
            or joined to a run already in flight.
        misses: calls that ran the function (``refresh`` included), and reads
            of an entry that could not be used.
        errors: store and serializer failures memo recovered from (an
            unreadable entry, a full disk, a store that is down, ...).
    """

    hits: int
    misses: int
    errors: int


class _Counters:
    __slots__ = ("errors", "hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.errors = 0


class _Flight:
    """One lookup-or-run for one key: its task, its result and who awaits it."""

    __slots__ = ("future", "task", "waiters")

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future
        self.task: asyncio.Task[None] | None = None
        self.waiters = 0


def _land(flights: dict[str, _Flight], key: str, flight: _Flight, task: asyncio.Task[None]) -> None:
    if flights.get(key) is flight:
        del flights[key]
    if not flight.future.done():  # the task died before publishing anything
        flight.future.cancel()


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        # Mark the exception retrieved: every waiter may have left already.
        future.exception()


_UNKNOWN: Any = object()  # a store that cannot answer without blocking


# Keys being computed by the current task and the tasks it awaits: a call
# for one of them would wait on itself forever.
_computing: ContextVar[frozenset[str]] = ContextVar("memo_computing", default=frozenset())

# (module, qualname) of the first function seen per (store, namespace).
_namespace_owners: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


def _claim_namespace(store: object, namespace: str, owner: str) -> None:
    try:
        owners = _namespace_owners.setdefault(store, {})
    except TypeError:  # a store that cannot be weakly referenced or hashed
        return
    first = owners.setdefault(namespace, owner)
    if first != owner:
        warnings.warn(
            f"memo: {owner} and {first} both use namespace {namespace!r} in one store, "
            f"so they share entries; give each its own namespace= unless that is the intent",
            MemoWarning,
            stacklevel=4,
        )


def _seconds(ttl: float | datetime.timedelta | None) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, datetime.timedelta):
        ttl = ttl.total_seconds()
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)):
        msg = f"ttl must be seconds (int or float), a timedelta or None, got {ttl!r}"
        raise TypeError(msg)
    if not ttl > 0:
        msg = f"ttl must be positive, got {ttl!r}"
        raise ValueError(msg)
    return float(ttl)


class _Binder:
    """``Signature.bind`` + ``apply_defaults``, with a fast path for plain signatures.

    For a function without positional-only, ``*args`` or ``**kwargs``
    parameters, binding is a dict merge checked against the parameter names;
    anything unusual (a missing, unknown or doubled argument) falls back to
    ``Signature.bind``, which raises the error Python would.
    """

    __slots__ = ("_defaults", "_fast", "_names", "_positional", "_signature")

    def __init__(self, signature: inspect.Signature) -> None:
        self._signature = signature
        params = list(signature.parameters.values())
        self._fast = all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)
        self._positional = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}
        self._names = frozenset(signature.parameters)

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Return parameter name -> value for a call, defaults applied."""
        count = len(args)
        if self._fast and count <= len(self._positional):
            arguments = self._defaults.copy()
            if count:
                arguments.update(zip(self._positional, args, strict=False))
            doubled = count and kwargs and not kwargs.keys().isdisjoint(self._positional[:count])
            if not doubled:
                arguments.update(kwargs)
                if arguments.keys() == self._names:
                    return arguments
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments


def _check_options(
    *,
    namespace: object,
    version: object,
    store: object,
    directory: object,
    cache_if: object,
    serializer: object,
) -> None:
    """Fail at decoration time, with the fix, on options of the wrong type."""
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        msg = f"namespace must be a non-empty str, got {namespace!r}"
        raise TypeError(msg)
    if version is not None and (isinstance(version, bool) or not isinstance(version, (str, int))):
        msg = f"version must be a str, an int or None, got {version!r}"
        raise TypeError(msg)
    if store is not None and directory is not None:
        msg = "pass either store= or directory=, not both"
        raise TypeError(msg)
    if store is not None and not isinstance(store, Store):
        msg = f"store must implement memo.Store (get, set, delete, clear, close), got {store!r}"
        raise TypeError(msg)
    if cache_if is not None and not callable(cache_if):
        msg = f"cache_if must be a callable taking the result, got {cache_if!r}"
        raise TypeError(msg)
    if serializer is not None and not isinstance(serializer, Serializer):
        msg = f"serializer must have dumps(value) and loads(data) methods, got {serializer!r}"
        raise TypeError(msg)


class CachedFunction(Generic[P, R]):
    """An ``async def`` function whose results are cached; made by ``async_disk_cache``.

    Calling it returns the cached result for the same arguments, or runs the
    function and stores what it returns. ``inspect.signature``, ``__wrapped__``,
    ``__name__`` and ``__doc__`` are those of the wrapped function.

    Attributes:
        namespace: the namespace its keys belong to.
    """

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]],
        *,
        namespace: str | None,
        serializer: Serializer[Any] | None,
        directory: str | os.PathLike[str] | None,
        store: Store | None,
        ttl: float | datetime.timedelta | None,
        ignore: Iterable[str],
        version: str | int | None,
        cache_if: Callable[[Any], bool] | None,
    ) -> None:
        if not (inspect.iscoroutinefunction(fn) or isinstance(fn, CachedFunction)):
            msg = f"async_disk_cache needs an async def function, got {fn!r}"
            raise TypeError(msg)
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]
        self._fn = fn
        self._signature = inspect.signature(fn)
        self._binder = _Binder(self._signature)
        owner = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
        self._owner = owner
        _check_options(
            namespace=namespace,
            version=version,
            store=store,
            directory=directory,
            cache_if=cache_if,
            serializer=serializer,
        )
        self.namespace: str = owner if namespace is None else namespace
        self._prefix = store_key(self.namespace, None if version is None else str(version), "")
        self._ttl = _seconds(ttl)
        self._ignore_params, self._ignore_kwargs, self._var_kw = self._check_ignore(ignore)
        self._directory = directory
        self._store = store
        if store is not None:
            _claim_namespace(store, self.namespace, owner)
        self._cache_if = cache_if
        self._serializer: Serializer[Any] | None = serializer
        self._header = b""
        if serializer is None:
            self._serializer = self._infer_serializer(final=False)
        if self._serializer is not None:
            self._header = envelope_header(serializer_id(self._serializer))
        self._counters = _Counters()
        self._flights: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Flight]]
        self._flights = weakref.WeakKeyDictionary()
        if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
            inspect.markcoroutinefunction(self)

    # -- set-up ---------------------------------------------------------------

    def _check_ignore(
        self, ignore: Iterable[str]
    ) -> tuple[frozenset[str], frozenset[str], str | None]:
        if isinstance(ignore, str):
            msg = f"ignore takes a tuple of parameter names, e.g. ignore=({ignore!r},)"
            raise TypeError(msg)
        names = frozenset(ignore)
        params = self._signature.parameters
        var_kw = next((p.name for p in params.values() if p.kind is p.VAR_KEYWORD), None)
        unknown = sorted(name for name in names if name not in params)
        if unknown and var_kw is None:
            msg = (
                f"ignore names {', '.join(map(repr, unknown))}, which {self._owner}() has no "
                f"parameter for; its parameters are {', '.join(map(repr, params)) or 'none'}"
            )
            raise TypeError(msg)
        # Names that are not parameters are keys inside **kwargs.
        return names - frozenset(unknown), frozenset(unknown), var_kw

    def _infer_serializer(self, *, final: bool) -> Serializer[Any] | None:
        try:
            hints = typing.get_type_hints(self._fn)
        except NameError:
            if not final:
                return None  # a forward reference: try again on the first call
            logger.warning(
                "memo: the return annotation of %s cannot be resolved; results are stored "
                "as JSON. Pass serializer=... to choose.",
                self._owner,
            )
            return JsonSerializer()
        except TypeError:  # not a plain function (a partial, a callable object)
            return JsonSerializer()
        if "return" not in hints:
            return JsonSerializer()
        return infer_serializer(hints["return"])

    def _codec(self) -> tuple[Serializer[Any], bytes]:
        serializer = self._serializer
        if serializer is None:
            try:
                serializer = self._infer_serializer(final=True) or JsonSerializer()
            except TypeError as exc:
                report_failure(self.namespace, "choosing a serializer", exc)
                serializer = JsonSerializer()
            self._header = envelope_header(serializer_id(serializer))
            self._serializer = serializer
        return serializer, self._header

    def _get_store(self) -> Store:
        if self._store is None:
            store = shared_disk_store(self._directory)
            _claim_namespace(store, self.namespace, self._owner)
            self._store = store
        return self._store

    def _store_or_none(self) -> Store | None:
        """The store, or None (reported and counted) when it cannot be opened."""
        try:
            return self._get_store()
        except Exception as exc:
            self._fail("opening the store", exc)
            return None

    def _fail(self, operation: str, exc: BaseException) -> None:
        self._counters.errors += 1
        report_failure(self.namespace, operation, exc)

    # -- keys -----------------------------------------------------------------

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        arguments = self._binder.bind(args, kwargs)
        for name in self._ignore_params:
            del arguments[name]
        if self._ignore_kwargs and self._var_kw in arguments:
            extra = arguments[self._var_kw]
            dropped = self._ignore_kwargs
            arguments[self._var_kw] = {k: v for k, v in extra.items() if k not in dropped}
        return self._prefix + digest_arguments(arguments, self._owner)

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Return the store key a call with these arguments would use, without calling.

        Raises:
            TypeError: the arguments do not fit the signature, or one of them
                cannot be part of a key.
        """
        return self._key(args, kwargs)

    # -- calls ----------------------------------------------------------------

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        mode = current_mode()
        if mode is Mode.BYPASS:
            return await self._fn(*args, **kwargs)
        key = self._key(args, kwargs)
        if key in _computing.get():
            msg = (
                f"{self._owner}() awaits itself with the same arguments (key {key}); "
                f"it would wait for its own result forever"
            )
            raise RecursionError(msg)
        if mode is Mode.REFRESH:
            return await self._run_and_store(key, args, kwargs)
        loop = asyncio.get_running_loop()
        flights = self._flights.get(loop)
        if flights is None:
            flights = self._flights[loop] = {}
        flight = flights.get(key)
        if flight is None or flight.future.cancelled():
            # No await between this read and registering the flight below, so
            # concurrent callers still run the function once.
            data = self._read_nowait(key)
            if data is not None and data is not _UNKNOWN:
                hit, value = self._decode(data)
                if hit:
                    self._counters.hits += 1
                    return value  # type: ignore[no-any-return]
                data = None  # unreadable: a miss, overwritten below
            flight = flights[key] = _Flight(loop.create_future())
            flight.future.add_done_callback(_retrieve)
            known_miss = data is None
            task = loop.create_task(self._fly(flight, key, args, kwargs, known_miss=known_miss))
            flight.task = task
            task.add_done_callback(functools.partial(_land, flights, key, flight))
        else:
            self._counters.hits += 1
        flight.waiters += 1
        try:
            result: R = await asyncio.shield(flight.future)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.future.done() and flight.task is not None:
                flight.task.cancel()
                # The cancelled run may take a while to wind down: a caller
                # arriving meanwhile starts afresh instead of joining it.
                if flights.get(key) is flight:
                    del flights[key]
        return result

    def _read_nowait(self, key: str) -> bytes | None:
        """Read the store on this thread when it can answer without blocking.

        Returns ``_UNKNOWN`` when it cannot (or has no ``get_nowait``): the
        flight then reads it the usual way.
        """
        try:
            store = self._get_store()
        except Exception:  # reported by the flight, which tries again
            return _UNKNOWN  # type: ignore[no-any-return]
        get_nowait = getattr(store, "get_nowait", None)
        if get_nowait is None:
            return _UNKNOWN  # type: ignore[no-any-return]
        try:
            return get_nowait(key)  # type: ignore[no-any-return]
        except WouldBlock:
            return _UNKNOWN  # type: ignore[no-any-return]
        except Exception as exc:
            self._fail("read", exc)
            return None

    def _decode(self, data: bytes) -> tuple[bool, Any]:
        serializer, header = self._codec()
        try:
            return True, serializer.loads(open_envelope(header, data))
        except Exception as exc:
            self._fail("decode", exc)
            return False, None

    async def _fly(
        self,
        flight: _Flight,
        key: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        known_miss: bool,
    ) -> None:
        # This task's context is a copy: the mark is seen by everything the
        # function awaits or spawns, and by nothing outside it.
        _computing.set(_computing.get() | {key})
        future = flight.future
        store = self._store_or_none()
        written = ran = False
        try:
            if store is not None and not known_miss:
                try:
                    data = await store.get(key)
                except Exception as exc:
                    self._fail("read", exc)
                    data = None
                if data is not None:
                    hit, value = self._decode(data)
                    if hit:
                        self._counters.hits += 1
                        future.set_result(value)
                        return
            self._counters.misses += 1
            ran = True
            result = await self._fn(*args, **kwargs)
            # Write before answering: a program that exits right after its
            # call (asyncio.run cancels leftover tasks) still keeps the entry.
            if store is not None:
                written = await self._save(store, key, result)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise  # KeyboardInterrupt, SystemExit: not ours to swallow
            return
        finally:
            if ran and not written and store is not None:
                await self._release(store, key)
        future.set_result(result)

    async def _run_and_store(self, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        token = _computing.set(_computing.get() | {key})
        try:
            self._counters.misses += 1
            result = await self._fn(*args, **kwargs)
        finally:
            _computing.reset(token)
        store = self._store_or_none()
        if store is not None:
            await self._save(store, key, result)
        return result

    async def _save(self, store: Store, key: str, result: R) -> bool:
        """Store ``result``; return whether it was written."""
        try:
            if self._cache_if is not None and not self._cache_if(result):
                return False
            serializer, header = self._codec()
            data = header + serializer.dumps(result)
        except Exception as exc:
            self._fail("encode", exc)
            return False
        try:
            await store.set(key, data, ttl=self._ttl)
        except Exception as exc:
            self._fail("write", exc)
            return False
        return True

    async def _release(self, store: Store, key: str) -> None:
        # A store that makes other processes wait for a miss it answered
        # (RedisStore(lock_timeout=...)) is told that no value is coming.
        release = getattr(store, "release", None)
        if release is None:
            return
        try:
            await release(key)
        except Exception as exc:
            self._fail("release", exc)

    # -- management -----------------------------------------------------------

    async def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function, overwrite its entry, and return the result.

        Counted as a miss. A failing store is reported and counted; the result
        is returned all the same.
        """
        key = self._key(args, kwargs)
        return await self._run_and_store(key, args, kwargs)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the entry for these arguments; return whether there was one.

        Raises:
            Exception: whatever the store raises (a management call fails loudly).
        """
        return await self._get_store().delete(self._key(args, kwargs))

    async def cache_clear(self) -> int:
        """Drop every entry of this function's namespace, all versions; return how many."""
        return await self._get_store().clear(self.namespace)

    def cache_info(self) -> CacheInfo:
        """Return the hits, misses and errors of this function in this process."""
        c = self._counters
        return CacheInfo(hits=c.hits, misses=c.misses, errors=c.errors)

    @property
    def store(self) -> Store:
        """The store entries live in (the shared ``DiskStore`` of the folder by default)."""
        return self._get_store()

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> CachedFunction[P, R]: ...
    @overload
    def __get__(self, instance: object, owner: type | None = None) -> BoundCachedFunction[R]: ...
    def __get__(
        self, instance: object | None, owner: type | None = None
    ) -> CachedFunction[P, R] | BoundCachedFunction[R]:
        if instance is None:
            return self
        return BoundCachedFunction(self, instance)

    def __repr__(self) -> str:
        return f"<cached {self._owner} namespace={self.namespace!r}>"


class BoundCachedFunction(Generic[R]):
    """A cached async method bound to an instance: ``obj.method`` of a cached method.

    The instance is the first argument of every call, key included: leave it
    out with ``ignore=("self",)`` or give its class a ``__memo_key__()``.
    """

    def __init__(self, function: CachedFunction[..., R], instance: object) -> None:
        self.__func__ = function
        self.__self__ = instance
        functools.update_wrapper(self, function)

    async def __call__(self, *args: Any, **kwargs: Any) -> R:
        return await self.__func__(self.__self__, *args, **kwargs)

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        """Return the store key a call with these arguments would use."""
        return self.__func__.cache_key(self.__self__, *args, **kwargs)

    async def refresh(self, *args: Any, **kwargs: Any) -> R:
        """Run the method, overwrite its entry and return the result."""
        return await self.__func__.refresh(self.__self__, *args, **kwargs)

    async def invalidate(self, *args: Any, **kwargs: Any) -> bool:
        """Drop the entry for these arguments; return whether there was one."""
        return await self.__func__.invalidate(self.__self__, *args, **kwargs)

    async def cache_clear(self) -> int:
        """Drop every entry of the method's namespace."""
        return await self.__func__.cache_clear()

    def cache_info(self) -> CacheInfo:
        """Return the hits, misses and errors of the method in this process."""
        return self.__func__.cache_info()


@overload
def async_disk_cache(namespace: Callable[P, Awaitable[R]], /) -> CachedFunction[P, R]: ...
@overload
def async_disk_cache(
    namespace: str | None = None,
    *,
    serializer: Serializer[Any] | None = None,
    directory: str | os.PathLike[str] | None = None,
    store: Store | None = None,
    ttl: float | datetime.timedelta | None = None,
    ignore: Iterable[str] = (),
    version: str | int | None = None,
    cache_if: Callable[[Any], bool] | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]: ...
def async_disk_cache(
    namespace: str | Callable[P, Awaitable[R]] | None = None,
    *,
    serializer: Serializer[Any] | None = None,
    directory: str | os.PathLike[str] | None = None,
    store: Store | None = None,
    ttl: float | datetime.timedelta | None = None,
    ignore: Iterable[str] = (),
    version: str | int | None = None,
    cache_if: Callable[[Any], bool] | None = None,
) -> CachedFunction[P, R] | Callable[[Callable[P, Awaitable[R]]], CachedFunction[P, R]]:
    """Cache an ``async def`` function's results on disk (or in another store).

    Use it with or without arguments::

        @async_disk_cache
        async def forecast(city: str, days: int = 3) -> dict: ...

        @async_disk_cache(namespace="weather", ttl=3600)
        async def forecast(city: str, days: int = 3) -> dict: ...

    Each call's arguments are bound to the signature (defaults applied), made
    canonical and hashed, so ``forecast("Paris")`` and
    ``forecast(city="Paris", days=3)`` share one entry. Concurrent calls with one
    key run the function once. Exceptions are never stored. A failing cache is
    logged on the ``memo`` logger and counted; the caller still gets the result.

    Args:
        namespace: groups keys; default ``"module.qualname"`` of the function.
        serializer: turns results into bytes and back; default inferred from
            the return annotation (pydantic for models, dataclasses, tuples, sets
            and datetimes; JSON otherwise).
        directory: the diskcache folder; default ``$MEMO_CACHE_DIR``, else the
            user cache folder. Not with ``store``.
        store: a ``Store`` to use instead of a folder (``MemoryStore()``,
            ``RedisStore(url)``, ...).
        ttl: seconds (or a ``timedelta``) before an entry expires; None: never.
        ignore: parameter names left out of the key (``"client"``,
            ``"self"``); a name that is not a parameter is a key of
            ``**kwargs``.
        version: part of the key: change it to retire every old entry.
        cache_if: ``result -> bool``; results it rejects are returned, not stored.

    Returns:
        The cached function, or a decorator that makes one.

    Raises:
        TypeError: the function is not ``async def``, or an option is of the wrong type.
        ValueError: ``ttl`` is not positive.
    """

    def decorate(fn: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
        return CachedFunction(
            fn,
            namespace=None if callable(namespace) else namespace,
            serializer=serializer,
            directory=directory,
            store=store,
            ttl=ttl,
            ignore=ignore,
            version=version,
            cache_if=cache_if,
        )

    if callable(namespace):  # used bare: @async_disk_cache
        return decorate(namespace)
    return decorate
