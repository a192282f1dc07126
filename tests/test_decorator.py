"""The decorator: its forms, what it preserves, its attributes, ttl, cache_if and methods."""

from __future__ import annotations

import datetime
import functools
import inspect
import time
import types
import warnings
from typing import TYPE_CHECKING, Any

import pytest

import memo.stores.memory
from memo import CacheInfo, DiskStore, MemoryStore, MemoWarning, async_disk_cache

if TYPE_CHECKING:
    from pathlib import Path


class Counter:
    """Counts calls of a coroutine function and returns a value per call."""

    def __init__(self) -> None:
        self.calls = 0

    async def fn(self, x: int = 0) -> dict[str, int]:
        """The counted coroutine function (a bound async method)."""
        self.calls += 1
        return {"x": x, "call": self.calls}


# -- forms ----------------------------------------------------------------------


def _bare(store: MemoryStore) -> Any:
    del store  # the bare form takes no options: it uses the default disk store

    @async_disk_cache
    async def double(x: int) -> int:
        return 2 * x

    return double


def _empty(store: MemoryStore) -> Any:
    del store

    @async_disk_cache()
    async def double(x: int) -> int:
        return 2 * x

    return double


def _named(store: MemoryStore) -> Any:
    @async_disk_cache("doubles", store=store)
    async def double(x: int) -> int:
        return 2 * x

    return double


def _keywords(store: MemoryStore) -> Any:
    @async_disk_cache(namespace="doubles", store=store, ttl=60, version=1)
    async def double(x: int) -> int:
        return 2 * x

    return double


@pytest.mark.parametrize("make", [_bare, _empty, _named, _keywords], ids=lambda f: f.__name__)
async def test_with_and_without_parentheses(make: Any) -> None:
    """@async_disk_cache, @async_disk_cache(), with a namespace and with options all cache."""
    cached = make(MemoryStore())
    assert await cached(2) == 4
    assert await cached(x=2) == 4
    assert cached.cache_info() == CacheInfo(hits=1, misses=1, errors=0)


def test_default_namespace_is_module_and_qualname() -> None:
    """Without namespace=, the namespace is the function's module and qualified name."""
    cached = _bare(MemoryStore())
    assert cached.namespace == f"{__name__}._bare.<locals>.double"
    assert cached.cache_key(1).startswith(f"{__name__}._bare.%3Clocals%3E.double:")


def _sync(x: int) -> int:
    return x


async def _agen(x: int) -> Any:
    yield x


class _AsyncCallable:
    async def __call__(self) -> int:
        return 1


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(_sync, id="sync-function"),
        pytest.param(lambda: None, id="lambda"),
        pytest.param(_agen, id="async-generator"),
        pytest.param(Counter, id="class"),
        pytest.param(functools.partial(_sync, 1), id="sync-partial"),
        pytest.param(len, id="builtin"),
    ],
)
@pytest.mark.parametrize("form", ["bare", "called"])
def test_non_async_is_refused_at_decoration(target: Any, form: str) -> None:
    """Anything but an async def function is a TypeError when decorating, not when calling."""
    decorate = async_disk_cache if form == "bare" else async_disk_cache(store=MemoryStore())
    with pytest.raises(TypeError, match="async def"):
        decorate(target)


async def test_async_partial_is_accepted() -> None:
    """A functools.partial of an async def function is a coroutine function and is cached."""
    counter = Counter()
    cached = async_disk_cache(store=MemoryStore(), namespace="partial")(
        functools.partial(counter.fn, 3)
    )
    assert await cached() == await cached()
    assert counter.calls == 1


@pytest.mark.parametrize(
    ("options", "error"),
    [
        pytest.param({"ttl": 0}, ValueError, id="ttl-zero"),
        pytest.param({"ttl": -1}, ValueError, id="ttl-negative"),
        pytest.param({"ttl": "60"}, TypeError, id="ttl-text"),
        pytest.param({"namespace": ""}, TypeError, id="empty-namespace"),
        pytest.param({"version": 1.5}, TypeError, id="float-version"),
        pytest.param({"store": MemoryStore(), "directory": "x"}, TypeError, id="store-and-dir"),
        pytest.param({"store": object()}, TypeError, id="not-a-store"),
        pytest.param({"serializer": object()}, TypeError, id="not-a-serializer"),
        pytest.param({"cache_if": True}, TypeError, id="cache-if-not-callable"),
    ],
)
def test_bad_options_fail_at_decoration(options: dict[str, Any], error: type[Exception]) -> None:
    """A wrong option is an error when decorating, before any call."""
    with pytest.raises(error):

        @async_disk_cache(**options)
        async def f(x: int) -> int:
            return x


# -- what functools.wraps preserves -----------------------------------------------


async def documented(city: str, days: int = 3, *, unit: str = "C") -> dict[str, Any]:
    """Return the forecast for a city."""
    return {"city": city, "days": days, "unit": unit}


def test_wraps_semantics() -> None:
    """__wrapped__, __name__, __qualname__, __doc__, __module__ and the signature are kept."""
    cached = async_disk_cache(store=MemoryStore())(documented)
    assert cached.__wrapped__ is documented
    assert cached.__name__ == "documented"
    assert cached.__qualname__ == "documented"
    assert cached.__doc__ == "Return the forecast for a city."
    assert cached.__module__ == documented.__module__
    assert inspect.signature(cached) == inspect.signature(documented)
    assert inspect.unwrap(cached) is documented
    assert "documented" in repr(cached)


def test_stacked_decorators_keep_the_signature() -> None:
    """A cached function wrapped again (two stores) still exposes the original signature."""
    inner = async_disk_cache(store=MemoryStore(), namespace="inner")(documented)
    outer = async_disk_cache(store=MemoryStore(), namespace="outer")(inner)
    assert inspect.signature(outer) == inspect.signature(documented)
    assert outer.cache_key("Paris") != inner.cache_key("Paris")


# -- the attributes ------------------------------------------------------------------


async def test_cache_key_is_the_key_the_call_uses() -> None:
    """cache_key() names the entry a call writes, without calling."""
    store = MemoryStore()
    counter = Counter()
    cached = async_disk_cache(store=store, namespace="ck")(counter.fn)
    key = cached.cache_key(5)
    assert counter.calls == 0
    assert await store.get(key) is None
    await cached(5)
    assert await store.get(key) is not None
    assert cached.cache_key(x=5) == key


async def test_invalidate_drops_one_entry() -> None:
    """invalidate() drops exactly one entry and tells whether it existed."""
    counter = Counter()
    cached = async_disk_cache(store=MemoryStore(), namespace="inv")(counter.fn)
    first = await cached(1)
    await cached(2)
    assert await cached.invalidate(1) is True
    assert await cached.invalidate(1) is False
    assert await cached.invalidate(x=3) is False
    assert await cached(1) != first  # ran again
    assert await cached(2) == {"x": 2, "call": 2}  # still cached
    assert counter.calls == 3


async def test_refresh_runs_and_overwrites() -> None:
    """refresh() runs the function, returns the new result, and later calls get it."""
    counter = Counter()
    cached = async_disk_cache(store=MemoryStore(), namespace="ref")(counter.fn)
    assert await cached(1) == {"x": 1, "call": 1}
    assert await cached.refresh(1) == {"x": 1, "call": 2}
    assert await cached(1) == {"x": 1, "call": 2}
    assert cached.cache_info() == CacheInfo(hits=1, misses=2, errors=0)


async def test_cache_clear_drops_the_namespace_only() -> None:
    """cache_clear() drops every entry of its namespace, all versions, and returns how many."""
    store = MemoryStore()
    counter = Counter()
    cached = async_disk_cache(store=store, namespace="clr")(counter.fn)
    old = async_disk_cache(store=store, namespace="clr", version="old")(counter.fn)
    other = async_disk_cache(store=store, namespace="clr2")(counter.fn)
    for x in range(3):
        await cached(x)
    await old(0)
    await other(0)
    assert await cached.cache_clear() == 4
    assert await cached.cache_clear() == 0
    calls = counter.calls
    await other(0)
    assert counter.calls == calls  # the other namespace kept its entry
    await cached(0)
    assert counter.calls == calls + 1


async def test_cache_info_counts_hits_misses_errors() -> None:
    """cache_info() starts at zero and counts per decorated function."""
    cached = async_disk_cache(store=MemoryStore(), namespace="info")(Counter().fn)
    other = async_disk_cache(store=MemoryStore(), namespace="info2")(Counter().fn)
    assert cached.cache_info() == CacheInfo(hits=0, misses=0, errors=0)
    for x in (1, 1, 2, 1, 2):
        await cached(x)
    info = cached.cache_info()
    assert (info.hits, info.misses, info.errors) == (3, 2, 0)
    assert other.cache_info() == CacheInfo(hits=0, misses=0, errors=0)
    with pytest.raises(AttributeError):
        info.hits = 5  # type: ignore[misc]


async def test_none_is_cached() -> None:
    """A None result is stored and served like any other."""
    calls = 0

    @async_disk_cache(store=MemoryStore())
    async def nothing(x: int) -> None:
        nonlocal calls
        calls += 1

    assert await nothing(1) is None
    assert await nothing(1) is None
    assert calls == 1
    assert nothing.cache_info().hits == 1


async def test_none_is_cached_on_disk() -> None:
    """The default disk store also tells a stored None from an absent entry."""
    calls = 0

    @async_disk_cache
    async def nothing(x: int) -> None:
        nonlocal calls
        calls += 1

    assert await nothing(1) is None
    assert await nothing(1) is None
    assert calls == 1


class Boom(Exception):
    pass


async def test_exceptions_propagate_unchanged_and_are_not_stored() -> None:
    """The very exception object reaches the caller, and the next call runs again."""
    raised: list[Boom] = []

    @async_disk_cache(store=MemoryStore())
    async def fail(x: int) -> int:
        error = Boom(f"attempt {len(raised)}")
        raised.append(error)
        raise error

    with pytest.raises(Boom) as first:
        await fail(1)
    assert first.value is raised[0]
    with pytest.raises(Boom) as second:
        await fail(1)
    assert second.value is raised[1]
    assert fail.cache_info().hits == 0


async def test_exception_then_success_is_cached() -> None:
    """After a failure, a later successful run is stored."""
    attempts = 0

    @async_disk_cache(store=MemoryStore())
    async def flaky() -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            msg = "first try fails"
            raise Boom(msg)
        return attempts

    with pytest.raises(Boom):
        await flaky()
    assert await flaky() == 2
    assert await flaky() == 2
    assert attempts == 2


# -- ttl --------------------------------------------------------------------------------


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.mark.parametrize("ttl", [10, 10.0, datetime.timedelta(seconds=10)], ids=repr)
async def test_ttl_expires_in_memory_store(ttl: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry is served until ttl seconds pass, then the function runs again."""
    clock = Clock()
    monkeypatch.setattr(
        memo.stores.memory, "time", types.SimpleNamespace(monotonic=clock.monotonic)
    )
    counter = Counter()
    cached = async_disk_cache(store=MemoryStore(), namespace="ttl", ttl=ttl)(counter.fn)
    await cached()
    clock.now += 9.9
    await cached()
    assert counter.calls == 1
    clock.now += 0.2
    await cached()
    assert counter.calls == 2
    assert cached.cache_info() == CacheInfo(hits=1, misses=2, errors=0)


async def test_ttl_expires_on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk store keeps the expiry: once the wall clock passes it, the entry is gone."""
    offset = 0.0
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + offset)
    counter = Counter()
    cached = async_disk_cache(namespace="ttl-disk", ttl=60)(counter.fn)
    forever = async_disk_cache(namespace="ttl-disk-forever")(counter.fn)
    await cached(1)
    await forever(1)
    offset = 59.0
    await cached(1)
    assert counter.calls == 2
    offset = 61.0
    await cached(1)
    await forever(1)
    assert counter.calls == 3
    assert cached.cache_info() == CacheInfo(hits=1, misses=2, errors=0)
    assert forever.cache_info().hits == 1


# -- cache_if -----------------------------------------------------------------------------


async def test_cache_if_decides_what_is_stored() -> None:
    """Results cache_if rejects are returned but not stored; accepted ones are stored."""
    store = MemoryStore()
    seen: list[Any] = []

    def worth_keeping(result: dict[str, int]) -> bool:
        seen.append(result)
        return result["x"] > 0

    counter = Counter()
    cached = async_disk_cache(store=store, namespace="cif", cache_if=worth_keeping)(counter.fn)
    assert await cached(0) == {"x": 0, "call": 1}
    assert await cached(0) == {"x": 0, "call": 2}
    assert await store.get(cached.cache_key(0)) is None
    assert await cached(1) == {"x": 1, "call": 3}
    assert await cached(1) == {"x": 1, "call": 3}
    assert seen == [{"x": 0, "call": 1}, {"x": 0, "call": 2}, {"x": 1, "call": 3}]


async def test_cache_if_that_raises_costs_only_the_entry() -> None:
    """A cache_if that raises is counted as an error; the caller still gets the result."""

    def broken(result: Any) -> bool:
        raise ZeroDivisionError

    cached = async_disk_cache(store=MemoryStore(), namespace="cif2", cache_if=broken)(Counter().fn)
    assert await cached(1) == {"x": 1, "call": 1}
    assert cached.cache_info().errors == 1


# -- methods ---------------------------------------------------------------------------------


class Weather:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    @async_disk_cache(namespace="weather.forecast", store=MemoryStore(), ignore=("self",))
    async def forecast(self, city: str, days: int = 3) -> str:
        """Forecast a city."""
        self.calls.append(city)
        return f"{city}:{days}"


async def test_async_method_with_ignore_self() -> None:
    """A cached method keys on its arguments only: two instances share entries."""
    calls: list[str] = []
    a, b = Weather(calls), Weather(calls)
    assert await a.forecast("Paris") == "Paris:3"
    assert await b.forecast(city="Paris", days=3) == "Paris:3"
    assert calls == ["Paris"]
    assert a.forecast.cache_key("Paris") == b.forecast.cache_key("Paris", 3)
    assert a.forecast.cache_key("Paris") == Weather.forecast.cache_key(a, "Paris")
    assert a.forecast.__doc__ == "Forecast a city."
    assert await a.forecast.refresh("Paris") == "Paris:3"
    assert calls == ["Paris", "Paris"]
    assert await b.forecast.invalidate("Paris") is True
    assert a.forecast.cache_info() == Weather.forecast.cache_info()
    assert await a.forecast.cache_clear() == 0


async def test_method_without_ignore_needs_a_keyable_self() -> None:
    """Without ignore=("self",), a plain instance is a TypeError that names self."""

    class Plain:
        @async_disk_cache(store=MemoryStore())
        async def method(self) -> int:
            return 1

    with pytest.raises(TypeError, match=r"'self'.*ignore=\('self',\)"):
        await Plain().method()


async def test_method_with_memo_key_keys_per_instance() -> None:
    """A class with __memo_key__ keys each instance by its identity there."""
    runs: list[str] = []

    class Account:
        def __init__(self, name: str) -> None:
            self.name = name

        def __memo_key__(self) -> str:
            return self.name

        @async_disk_cache(store=MemoryStore())
        async def balance(self) -> str:
            runs.append(self.name)
            return self.name

    assert await Account("a").balance() == "a"
    assert await Account("b").balance() == "b"
    assert await Account("a").balance() == "a"
    assert runs == ["a", "b"]


# -- namespaces ---------------------------------------------------------------------------------


def test_two_functions_sharing_a_namespace_warn() -> None:
    """Two different functions given one namespace in one store get a MemoWarning."""
    store = MemoryStore()

    @async_disk_cache(namespace="shared", store=store)
    async def first(x: int) -> int:
        return x

    with pytest.warns(MemoWarning, match="shared"):

        @async_disk_cache(namespace="shared", store=store)
        async def second(x: int) -> int:
            return -x


async def test_namespace_sharing_on_disk_warns_at_first_use() -> None:
    """On the default disk store the warning comes when both functions have used it."""

    # One version: without it, each function's code would take its own keys.
    @async_disk_cache(namespace="shared-disk", version=1)
    async def first(x: int) -> int:
        return x

    @async_disk_cache(namespace="shared-disk", version=1)
    async def second(x: int) -> int:
        return -x

    assert await first(1) == 1
    with pytest.warns(MemoWarning, match="shared-disk"):
        assert await second(1) == 1  # shared entries: the first function's result


def test_no_warning_for_separate_stores_or_namespaces() -> None:
    """One namespace in two stores, or two namespaces in one store, is silent."""
    store = MemoryStore()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for namespace, target in (("a", store), ("b", store), ("a", MemoryStore())):

            @async_disk_cache(namespace=namespace, store=target)
            async def f(x: int) -> int:
                return x


async def test_version_retires_old_entries() -> None:
    """Bumping version= makes old entries misses; the old version keeps its own."""
    store = MemoryStore()
    counter = Counter()
    v1 = async_disk_cache(store=store, namespace="ver", version=1)(counter.fn)
    v2 = async_disk_cache(store=store, namespace="ver", version=2)(counter.fn)
    await v1(1)
    await v2(1)
    await v1(1)
    assert counter.calls == 2


async def test_directory_option_uses_that_folder(tmp_path: Path, cache_dir: Path) -> None:
    """directory= puts entries in that folder instead of $MEMO_CACHE_DIR."""
    folder = tmp_path / "elsewhere"
    counter = Counter()
    cached = async_disk_cache(directory=folder, namespace="dir")(counter.fn)
    await cached(1)
    assert (folder / "cache.db").exists()
    assert not cache_dir.exists()
    assert isinstance(cached.store, DiskStore)
    store = DiskStore(folder)
    assert await store.get(cached.cache_key(1)) is not None
    await store.close()


async def test_a_bound_method_shows_the_function_not_its_state() -> None:
    """obj.method has the function's names, namespace and store, and no private state copied."""
    calls: list[str] = []
    bound = Weather(calls).forecast
    assert bound.__name__ == "forecast"
    assert bound.__qualname__ == "Weather.forecast"
    assert bound.__doc__ == "Forecast a city."
    assert bound.__wrapped__ is Weather.forecast
    assert bound.namespace == "weather.forecast"
    assert bound.store is Weather.forecast.store
    private = [
        name
        for name in vars(bound)
        if name.startswith("_") and not name.startswith(("__", "_is_coroutine"))
    ]
    assert private == []


def test_a_bound_method_looks_like_a_bound_method() -> None:
    """Its signature drops self, and obj.method == obj.method, as for plain methods."""
    weather = Weather([])
    assert str(inspect.signature(weather.forecast)) == "(city: 'str', days: 'int' = 3) -> 'str'"
    assert weather.forecast == weather.forecast
    assert hash(weather.forecast) == hash(weather.forecast)
    assert weather.forecast != Weather([]).forecast
