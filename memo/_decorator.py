"""``async_disk_cache`` and the cached function it makes: the data path of a call.

A call binds its arguments and builds its key, then joins the run already
going for that key in this event loop, if there is one. If not, it asks the
store for the entry without awaiting (when the store can answer without
blocking) and returns a hit at once; otherwise it starts a run that reads the
store the slow way if needed and, on a miss, runs the function and writes the
result before answering. Single flight lives in ``memo._flight``, reading and
writing entries (failing open, counting) in ``memo._entries``.
"""

from __future__ import annotations

import functools
import inspect
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar, overload

from memo._binding import Binding
from memo._context import Mode, NotRecordedError, current_mode, is_offline
from memo._entries import NOT_NOW, CacheInfo, Entries, Found, StoreSlot, _NotNow
from memo._flight import Flight, Flights
from memo._identity import code_fingerprint, function_identity
from memo._keys import digest_arguments
from memo._options import Options
from memo._serializers import serializer_for
from memo.stores.base import store_key

if TYPE_CHECKING:
    # asyncio is imported where used: by then a running event loop has
    # loaded it, and `import memo` stays light.
    import asyncio
    import datetime
    import os
    from collections.abc import Awaitable, Callable, Iterable, Mapping

    from memo._serializers import Serializer
    from memo.stores.base import Store

__all__ = ["BoundCachedFunction", "CacheInfo", "CachedFunction", "async_disk_cache"]

P = ParamSpec("P")
R = TypeVar("R")

# Keys being computed, each with the task computing it, as seen by that task
# and the tasks it spawns: a call for one of them while that task is still
# going would (most likely) wait on itself forever. Once the task is done, a
# task it spawned that calls the key again is an ordinary call.
# Marked per cached function: two stacked decorators share a key, not a run.
_computing: ContextVar[Mapping[tuple[int, str], asyncio.Task[Any] | None]] = ContextVar(
    "memo_computing", default=MappingProxyType({})
)


def _mark_computing(
    function: object, key: str
) -> Token[Mapping[tuple[int, str], asyncio.Task[Any] | None]]:
    import asyncio  # noqa: PLC0415 - loaded by the running loop already

    return _computing.set({**_computing.get(), (id(function), key): asyncio.current_task()})


def _done(task: asyncio.Task[Any] | None) -> bool:
    return task is not None and task.done()


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
        options: Options,
        ignore: Iterable[str],
        *,
        track_code: bool = True,
    ) -> None:
        if not (inspect.iscoroutinefunction(fn) or isinstance(fn, CachedFunction)):
            msg = f"async_disk_cache needs an async def function, got {fn!r}"
            raise TypeError(msg)
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]
        self._fn = fn
        target: Callable[..., Any] = fn
        while isinstance(target, CachedFunction):  # caching a cached function
            target = target._fn
        # Without namespace=, what the function captured is part of its
        # namespace, so one that cannot be keyed fails here, at decoration.
        identity = function_identity(target, keyed=options.namespace is None)
        self._owner = owner = identity.name
        self._binding = Binding(inspect.signature(fn), ignore, owner)
        self.namespace: str = options.namespace or identity.namespace
        # Without version=, an edit of the code retires its entries. memo's own
        # integrations (memo.openai) pass track_code=False: their keys must not
        # change when memo's code does.
        fingerprint = None
        if track_code and options.version is None:
            fingerprint = code_fingerprint(target)
        self._prefix = store_key(self.namespace, options.version, "", fingerprint=fingerprint)
        slot = StoreSlot(
            self.namespace, identity.owner, store=options.store, directory=options.directory
        )
        self._entries: Entries[R] = Entries(
            slot,
            serializer=options.serializer or serializer_for(fn, final=False),
            fn=fn,
            ttl=options.ttl,
            cache_if=options.cache_if,
            name=f"{owner}()",
        )
        self._flights: Flights[Found[R]] = Flights()
        if hasattr(inspect, "markcoroutinefunction"):  # Python 3.12+
            inspect.markcoroutinefunction(self)
        # Before 3.12, inspect.iscoroutinefunction (and asyncio's) recognise a
        # function-like object by these, and read the coroutine flag off __code__.
        for name in ("__code__", "__defaults__", "__kwdefaults__"):
            if hasattr(fn, name):
                setattr(self, name, getattr(fn, name))
        # What obj.method shows of the function (__name__, __doc__, __wrapped__,
        # the coroutine mark, public attributes), gathered once, not per access.
        self._bound_attributes = {
            name: value
            for name, value in vars(self).items()
            if not name.startswith("_") or name.startswith(("__", "_is_coroutine"))
        }
        self._bound_attributes["__wrapped__"] = self

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        arguments = self._binding.arguments(args, kwargs)
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
            if is_offline():  # bypass() never reads, so nothing recorded can answer
                why = (
                    "memo.bypass() reads no entry, so nothing recorded can answer it: keep "
                    "bypass() out of what the tests run, or use memo.offline(False) around it"
                )
                raise NotRecordedError(self._entries.name, self.namespace, None, why)
            return await self._fn(*args, **kwargs)
        key = self._key(args, kwargs)
        self._refuse_self_wait(key)
        if mode is Mode.REFRESH:
            return await self._run_and_write(key, args, kwargs)
        flight = self._flights.find(key)
        if flight is not None:  # a hit: the run going on answers, with an object of our own
            self._entries.counters.hits += 1
            try:
                return self._entries.copy(await flight.join(), key)
            except NotRecordedError:
                if is_offline():
                    raise
                # Refused to the offline caller that started it; this one runs it.
                self._entries.counters.hits -= 1
                return await self(*args, **kwargs)
        # Not awaited between find and start: concurrent callers run it once.
        found = self._entries.read_nowait(key)
        if isinstance(found, Found):
            return found.value
        run = functools.partial(self._read_or_run, key, args, kwargs, read=found is NOT_NOW)
        return (await self._flights.start(key, run).join()).value

    # -- a hit for a key built elsewhere (memo.openai's shortcut) ---------------

    def stored_nowait(self, key: str) -> Found[R] | Literal[_NotNow.NOT_NOW] | None:
        """Return the entry under a store key the caller already has, if it is a hit now.

        For memo's own integrations that remember keys (``memo.openai``): a
        hit is counted and answered as ``__call__`` answers it, with an object
        of the caller's own. None (absent, unreadable, a run in flight for the
        key) counts nothing: the caller then makes the full call, which reads,
        joins, counts and reports as usual. ``NOT_NOW``: the store cannot
        answer without blocking; then ``await stored(key)``.

        Raises:
            RecursionError: the caller's own await chain is computing ``key``.
        """
        self._refuse_self_wait(key)
        if self._flights.find(key) is not None:
            return None
        return self._entries.read_nowait(key, report=False)

    async def stored(self, key: str) -> Found[R] | None:
        """``stored_nowait`` for a store that must be awaited: a hit (counted), or None."""
        return await self._entries.peek(key)

    def _refuse_self_wait(self, key: str) -> None:
        """Raise RecursionError for a call of a key its own await chain is computing."""
        computing, mark = _computing.get(), (id(self), key)
        if mark in computing and not _done(computing[mark]):
            msg = (
                f"{self._owner}() awaits itself with the same arguments (key {key}); "
                f"it would wait for its own result forever"
            )
            raise RecursionError(msg)

    async def _read_or_run(
        self,
        key: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        flight: Flight[Found[R]],
        *,
        read: bool,
    ) -> Found[R]:
        # A run is a task of its own, whose context is a copy: the mark is seen
        # by everything the function awaits or spawns, and by nothing outside it.
        _mark_computing(self, key)
        entries = self._entries.open()
        try:
            if read:
                found = await entries.read(key)
                if found is not None:
                    return found
            flight.check_abandoned()
        except BaseException:  # cancelled: a lock the read took is given back
            await entries.release(key)
            raise
        try:
            self._entries.miss(key)
            result = await self._fn(*args, **kwargs)
        except BaseException:
            flight.close()  # its exception is for the callers it has, not for newcomers
            await entries.release(key)
            raise
        # Write before answering: a program that exits right after its call
        # (asyncio.run cancels leftover tasks) still keeps the entry.
        data = None
        try:
            data = None if flight.superseded else await entries.write(key, result)
            if data is not None and flight.superseded:  # invalidated while it was written
                await entries.delete(key)
        finally:
            if data is None:
                await entries.release(key)
        return Found(result, data)

    async def _run_and_write(self, key: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        self._entries.miss(key)  # before anything changes: offline mode may refuse it
        # Runs going on (and starting until this one is written) compute older values.
        self._flights.supersede(key)
        token = _mark_computing(self, key)
        try:
            result = await self._fn(*args, **kwargs)
        finally:
            _computing.reset(token)
        entries = self._entries.open()
        if await entries.write(key, result) is None:
            # Not stored (rejected, or the store failed): the old entry must
            # not outlive the refresh either.
            await entries.delete(key)
        self._flights.supersede(key)
        return result

    # -- management -----------------------------------------------------------

    async def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function, overwrite its entry, and return the result.

        Counted as a miss. A failing store is reported and counted; the result
        is returned all the same.

        Raises:
            NotRecordedError: offline mode is on (``memo.offline()``): the
                function is not run.
        """
        key = self._key(args, kwargs)
        return await self._run_and_write(key, args, kwargs)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Drop the entry for these arguments; return whether there was one.

        Raises:
            Exception: whatever the store raises (a management call fails loudly).
        """
        key = self._key(args, kwargs)
        # Before and after: runs going on, or starting while the entry is
        # dropped, may hold the old value.
        self._flights.supersede(key)
        existed = await self.store.delete(key)
        self._flights.supersede(key)
        return existed

    async def cache_clear(self) -> int:
        """Drop every entry of this function's namespace, all versions; return how many."""
        self._flights.supersede()
        cleared = await self.store.clear(self.namespace)
        self._flights.supersede()
        return cleared

    def cache_info(self) -> CacheInfo:
        """Return the hits, misses and errors of this function in this process."""
        return self._entries.counters.info()

    @property
    def store(self) -> Store:
        """The store entries live in (the shared ``DiskStore`` of the folder by default)."""
        return self._entries.slot.get()

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

    # One cached function per definition, like functools.lru_cache: pickled by
    # reference (module and qualified name), and copies are the same object.
    def __reduce__(self) -> str:
        qualname = vars(self).get("__qualname__")
        if not isinstance(qualname, str):
            import pickle  # noqa: PLC0415 - rarely needed

            msg = f"cannot pickle {self!r}: the function it wraps has no qualified name"
            raise pickle.PicklingError(msg)
        return qualname

    def __copy__(self) -> CachedFunction[P, R]:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> CachedFunction[P, R]:
        return self


def entries_of(function: CachedFunction[..., R]) -> Entries[R]:
    """Return the entry I/O of a cached function, for memo's own integrations (memo.openai)."""
    return function._entries


class BoundCachedFunction(Generic[R]):
    """A cached async method bound to an instance: ``obj.method`` of a cached method.

    The instance is the first argument of every call, key included: leave it
    out with ``ignore=("self",)`` or give its class a ``__memo_key__()``.
    """

    def __init__(self, function: CachedFunction[..., R], instance: object) -> None:
        self.__func__ = function
        self.__self__ = instance
        vars(self).update(function._bound_attributes)

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

    @property
    def store(self) -> Store:
        """The store the method's entries live in."""
        return self.__func__.store

    def __reduce__(self) -> tuple[Any, ...]:
        return getattr, (self.__self__, self.__name__)  # type: ignore[attr-defined]

    @property
    def __signature__(self) -> inspect.Signature:
        """The method's signature without its first parameter, as for a bound method."""
        signature = inspect.signature(self.__func__)
        return signature.replace(parameters=list(signature.parameters.values())[1:])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BoundCachedFunction):
            return NotImplemented
        return self.__func__ is other.__func__ and self.__self__ is other.__self__

    def __hash__(self) -> int:
        return hash((self.__func__, id(self.__self__)))


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
        namespace: groups keys; default ``"module.qualname"`` of the function,
            ``__main__`` replaced by the script or notebook, followed by
            ``[digest]`` of the values it captured (closures, partials, bound
            methods). With a namespace, captured values are not keyed.
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
        version: part of the key: change it to retire every old entry. Without
            it, a fingerprint of the function's code (not its comments,
            docstring or formatting) takes its place, so an edit retires them.
        cache_if: ``result -> bool``; results it rejects are returned, not stored.

    Returns:
        The cached function, or a decorator that makes one.

    Raises:
        TypeError: the function is not ``async def``, an option is of the wrong
            type, or (without ``namespace``) a value the function captured
            cannot be keyed.
        ValueError: ``ttl`` is not positive.
    """
    options = Options.checked(
        namespace=None if callable(namespace) else namespace,
        serializer=serializer,
        directory=directory,
        store=store,
        ttl=ttl,
        version=version,
        cache_if=cache_if,
    )

    def decorate(fn: Callable[P, Awaitable[R]]) -> CachedFunction[P, R]:
        return CachedFunction(fn, options, ignore)

    if callable(namespace):  # used bare: @async_disk_cache
        return decorate(namespace)
    return decorate
