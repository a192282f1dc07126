"""Entry I/O: reading and writing one namespace's entries, failing open.

``Entries`` owns what a cached function needs to reach its entries: the store
(opened on first use, since the default folder is read from the environment
then), the codec (serializer and envelope, the serializer inferred at the
first call when the return annotation was a forward reference) and the
counters behind ``cache_info()``. Every operation that touches the store or
the codec catches what fails, reports it once per kind on the ``memo`` logger,
counts it, and answers as if the entry were absent: a broken cache costs time,
never a result.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import enum
import functools
import weakref
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from memo._context import NotRecordedError, is_offline
from memo._envelope import Codec
from memo._report import report_failure, warn
from memo._serializers import JsonSerializer, serializer_for
from memo.stores.base import WouldBlock

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterator

    from memo._serializers import Serializer
    from memo.stores.base import Store

__all__ = [
    "NOT_NOW",
    "CacheInfo",
    "Counters",
    "Entries",
    "Found",
    "OpenEntries",
    "StoreSlot",
    "default_store_replaced",
]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class CacheInfo:
    """What one cached function did in this process.

    Attributes:
        hits: calls answered without running the function: read from the store,
            or joined to a run already in flight.
        misses: calls that ran the function (``refresh`` included), calls
            offline mode refused to run, and reads of an entry that could not
            be used.
        errors: store and serializer failures memo recovered from (an
            unreadable entry, a full disk, a store that is down, ...).
    """

    hits: int
    misses: int
    errors: int


class Counters:
    """The running counts behind ``CacheInfo``."""

    __slots__ = ("errors", "hits", "misses")

    def __init__(self) -> None:
        self.hits = 0
        self.misses = 0
        self.errors = 0

    def info(self) -> CacheInfo:
        """Return the counts as a ``CacheInfo``."""
        return CacheInfo(hits=self.hits, misses=self.misses, errors=self.errors)


class Found(Generic[T]):
    """A value (which may be None: a stored None) and the stored bytes it came from or went to.

    ``data`` is None for a value that was not stored.
    """

    __slots__ = ("data", "value")

    def __init__(self, value: T, data: bytes | None) -> None:
        self.value = value
        self.data = data


class _NotNow(enum.Enum):
    NOT_NOW = "not now"


NOT_NOW: Literal[_NotNow.NOT_NOW] = _NotNow.NOT_NOW
"""``read_nowait``'s answer when the store cannot answer without blocking."""


# The first function seen per (store, namespace), to warn when two share one.
# An owner is the function's name and what it captured (memo._identity), so
# two closures of one factory with different captured values are two owners.
_namespace_owners: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()


def _claim_namespace(store: object, namespace: str, owner: str) -> None:
    try:
        owners = _namespace_owners.setdefault(store, {})
    except TypeError:  # a store that cannot be weakly referenced or hashed
        return
    first = owners.setdefault(namespace, owner)
    if first != owner:
        warn(
            f"memo: {owner} and {first} both use namespace {namespace!r} in one store, "
            f"so they can share entries (with one version=, or the same code) and "
            f"cache_clear() drops both; give each its own namespace= unless that is the intent"
        )


@functools.lru_cache(maxsize=256)
def _reads_nowait(cls: type) -> bool:
    """Whether stores of ``cls`` offer a ``get_nowait`` that agrees with their ``get``.

    A subclass that overrides ``get`` alone (to decrypt, to count) must be
    read through its ``get``: the ``get_nowait`` it inherits would bypass it.
    """
    get = next((k for k in cls.__mro__ if "get" in vars(k)), None)
    get_nowait = next((k for k in cls.__mro__ if "get_nowait" in vars(k)), None)
    return get is not None and get_nowait is not None and issubclass(get_nowait, get)


# While memo's pytest plugin points memo at a test module's recordings: the
# store of every namespace that was given no store of its own (a folder, the
# default one included). A global, not a ContextVar: it must reach tasks
# started before the module's tests (a session's event loop, its fixtures).
_stand_in: Store | None = None


@contextlib.contextmanager
def default_store_replaced(store: Store) -> Iterator[None]:
    """Use ``store`` instead of the folders for every namespace not given a store of its own."""
    global _stand_in  # noqa: PLW0603 - one switch for the whole process, on purpose
    previous, _stand_in = _stand_in, store
    try:
        yield
    finally:
        _stand_in = previous


class StoreSlot:
    """A namespace's store: the one given, or the shared ``DiskStore`` of the folder, opened late.

    While ``default_store_replaced`` is in effect, a slot given no store
    answers with the stand-in instead of the folder's store.

    Args:
        namespace: the namespace whose entries live there.
        owner: the name of the function and what it captured, for the
            shared-namespace warning (``memo._identity.Identity.owner``).
        store: the store to use, if one was given.
        directory: the folder of the default store (None: ``$MEMO_CACHE_DIR``
            or the user cache folder, read when the store is first needed).
    """

    __slots__ = ("_directory", "_given", "_store", "namespace", "owner")

    def __init__(
        self,
        namespace: str,
        owner: str,
        *,
        store: Store | None,
        directory: str | os.PathLike[str] | None,
    ) -> None:
        self.namespace = namespace
        self.owner = owner
        self._store = store
        self._given = store is not None
        self._directory = directory
        if store is not None:
            _claim_namespace(store, namespace, owner)

    def get(self) -> Store:
        """Return the store, opening the default one on first use.

        Raises:
            Exception: the default folder's store cannot be made.
        """
        if _stand_in is not None and not self._given:
            return _stand_in
        if self._store is None:
            # Imported here: a program that never opens the default store
            # never loads diskcache and SQLite.
            from memo.stores.disk import shared_disk_store  # noqa: PLC0415

            store = shared_disk_store(self._directory)
            _claim_namespace(store, self.namespace, self.owner)
            self._store = store
        return self._store


class Entries(Generic[T]):
    """One namespace's entries, read and written through a codec, failing open.

    Args:
        slot: where the store comes from.
        serializer: the serializer; None infers it from ``fn``'s return
            annotation at first use.
        fn: the decorated function, for that inference.
        ttl: seconds an entry lives (None: forever).
        cache_if: ``result -> bool``; results it rejects are not written.
        counters: the counters to share (a view made by ``with_codec``).
        name: what the entries are the results of, for messages (default: the
            namespace).
    """

    __slots__ = ("_codec", "_fn", "_unreadable", "cache_if", "counters", "name", "slot", "ttl")

    def __init__(
        self,
        slot: StoreSlot,
        *,
        serializer: Serializer[Any] | None,
        fn: Callable[..., Any] | None = None,
        ttl: float | None = None,
        cache_if: Callable[[Any], bool] | None = None,
        counters: Counters | None = None,
        name: str | None = None,
    ) -> None:
        self.slot = slot
        self.name = slot.namespace if name is None else name
        # The last key whose stored value could not be decoded, and why: a miss
        # of that key refused offline says so (a recording edited by hand).
        self._unreadable: tuple[str, str] | None = None
        self._codec = None if serializer is None else Codec(serializer)
        self._fn = fn
        self.ttl = ttl
        self.cache_if = cache_if
        self.counters = Counters() if counters is None else counters

    def with_codec(self, codec: Codec) -> Entries[Any]:
        """Return a view of these entries (same store, ttl and counters) through another codec.

        The view writes whatever it is given: no ``cache_if``.
        """
        view: Entries[Any] = Entries(
            self.slot, serializer=None, ttl=self.ttl, counters=self.counters, name=self.name
        )
        view._codec = codec
        return view

    @property
    def codec(self) -> Codec:
        """The codec, its serializer inferred now if it was left for the first call."""
        if self._codec is None:
            try:
                serializer = serializer_for(self._fn, final=True) or JsonSerializer()
            except TypeError as exc:
                report_failure(self.slot.namespace, "choosing a serializer", exc)
                serializer = JsonSerializer()
            self._codec = Codec(serializer)
        return self._codec

    def miss(self, key: str) -> None:
        """Count a call that found nothing and is about to run, or refuse it in offline mode.

        Every run of a cached function or request passes here first, so this
        is where offline mode stops one.

        Raises:
            NotRecordedError: offline mode is on (the miss is counted all the same).
        """
        self.counters.misses += 1
        unreadable, self._unreadable = self._unreadable, None
        if is_offline():
            why = unreadable[1] if unreadable is not None and unreadable[0] == key else ""
            raise NotRecordedError(self.name, self.slot.namespace, key, why)

    def fail(self, operation: str, exc: BaseException) -> None:
        """Count a failure memo recovered from, and report it on the ``memo`` logger."""
        self.counters.errors += 1
        report_failure(self.slot.namespace, operation, exc)

    def read_nowait(
        self, key: str, *, report: bool = True
    ) -> Found[T] | Literal[_NotNow.NOT_NOW] | None:
        """Read ``key`` on this thread if the store can answer without blocking.

        Returns the value found, None for a miss (an unreadable entry
        included: reported, counted, and overwritten by the run that follows),
        or ``NOT_NOW`` when the store cannot answer without blocking (or
        cannot be opened: the run reports that): then ``open().read``.

        Args:
            key: the store key.
            report: False for a caller that answers nothing but a hit itself
                (``memo.openai``'s shortcut): only a hit is counted, and
                anything else is None, neither counted nor reported, since the
                full call that follows reads, counts and reports it once.
        """
        try:
            store = self.slot.get()
        except Exception:
            return NOT_NOW
        if not _reads_nowait(type(store)):
            return NOT_NOW
        get_nowait = store.get_nowait  # type: ignore[attr-defined]
        try:
            data = get_nowait(key)
        except WouldBlock:
            return NOT_NOW
        except Exception as exc:
            if report:
                self.fail("read", exc)
            return None
        return None if data is None else self.decode(data, key, report=report)

    async def peek(self, key: str) -> Found[T] | None:
        """``read_nowait(key, report=False)`` through the store's ``get``.

        A hit (counted) or None (nothing counted).

        A store that makes other processes wait for a miss it answered is told
        at once that no value is coming from here: the full call that follows
        reads (and waits) again.
        """
        try:
            store = self.slot.get()
        except Exception:
            return None
        try:
            data = await store.get(key)
        except Exception:
            data = None
        except BaseException:  # cancelled: a lock the read took is given back
            await OpenEntries(self, store).release(key)
            raise
        if data is None:
            await OpenEntries(self, store).release(key)
            return None
        return self.decode(data, key, report=False)

    def decode(self, data: bytes, key: str, *, report: bool = True) -> Found[T] | None:
        """Return the value in stored ``data`` (a hit, counted), or None if it cannot be read.

        ``report``: whether an unreadable value is counted and reported (see ``read_nowait``).
        """
        try:
            value = self.codec.decode(data, key)
        except Exception as exc:
            if report:
                self.fail("decode", exc)
                self._unreadable = (key, f"{type(exc).__name__}: {exc}")
            return None
        self.counters.hits += 1
        return Found(value, data)

    def copy(self, found: Found[T], key: str) -> T:
        """Return an object of the caller's own, equal to ``found.value``.

        Decoded again from the stored bytes when there are some, else a deep
        copy; a value that cannot be copied is shared (reported, not counted).
        """
        try:
            if found.data is not None:
                value: T = self.codec.decode(found.data, key)
                return value
            return copy.deepcopy(found.value)
        except Exception as exc:
            report_failure(self.slot.namespace, "copying the result", exc)
            return found.value

    def open(self) -> OpenEntries[T]:
        """Open the store for one run's reads and writes.

        A store that cannot be opened is reported and counted once, here; the
        run then reads nothing and writes nothing.
        """
        try:
            store: Store | None = self.slot.get()
        except Exception as exc:
            self.fail("opening the store", exc)
            store = None
        return OpenEntries(self, store)


class OpenEntries(Generic[T]):
    """The entries of one run: read, write and release on a store opened once."""

    __slots__ = ("_entries", "_store")

    def __init__(self, entries: Entries[T], store: Store | None) -> None:
        self._entries = entries
        self._store = store

    async def read(self, key: str) -> Found[T] | None:
        """Return the value stored under ``key``, or None: absent, unreadable or failing."""
        if self._store is None:
            return None
        try:
            data = await self._store.get(key)
        except Exception as exc:
            self._entries.fail("read", exc)
            return None
        return None if data is None else self._entries.decode(data, key)

    async def write(self, key: str, value: T) -> bytes | None:
        """Store ``value`` under ``key`` unless ``cache_if`` rejects it; return the bytes written.

        None when nothing was written: rejected, not faithfully serializable,
        or the store failed.
        """
        if self._store is None:
            return None
        entries = self._entries
        try:
            if entries.cache_if is not None and not entries.cache_if(value):
                return None
            data = entries.codec.encode(value, key)
        except Exception as exc:
            entries.fail("encode", exc)
            return None
        try:
            await self._store.set(key, data, ttl=entries.ttl)
        except Exception as exc:
            entries.fail("write", exc)
            return None
        return data

    async def delete(self, key: str) -> None:
        """Drop the entry under ``key`` (a write that turned out to be stale)."""
        if self._store is None:
            return
        try:
            await self._store.delete(key)
        except Exception as exc:
            self._entries.fail("delete", exc)

    async def release(self, key: str) -> None:
        """Tell the store that no value is coming for ``key`` after a miss it answered.

        A store that makes other processes wait for a miss it answered
        (``RedisStore(lock_timeout=...)``) then lets them compute it.
        """
        release = getattr(self._store, "release", None)
        if release is None:
            return
        try:
            await release(key)
        except Exception as exc:
            self._entries.fail("release", exc)
