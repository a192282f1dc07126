"""Typing checks for memo's public API, run by mypy (``[tool.mypy] files``), never executed.

``assert_type`` fails the mypy run when an expression's type differs from the
one written, so these lines prove that a decorated function keeps its
parameters (names, kinds, defaults: ``ParamSpec``) and return type, and that
its cache attributes are typed. ``Arg``/``DefaultArg``/``NamedArg``/
``VarArg``/``KwArg`` are how mypy spells parameters inside ``[...]``.
"""

from __future__ import annotations

import datetime
from typing import Any

import pydantic
from mypy_extensions import Arg, DefaultArg, DefaultNamedArg, KwArg, NamedArg, VarArg

# typing.assert_type exists from Python 3.11; memo supports 3.10.
from typing_extensions import assert_type

import memo
from memo import (
    BoundCachedFunction,
    CachedFunction,
    CacheInfo,
    DiskStore,
    JsonSerializer,
    MemoryStore,
    PickleSerializer,
    PydanticSerializer,
    Serializer,
    Store,
    async_disk_cache,
)


class Answer(pydantic.BaseModel):
    """A typed result."""

    text: str


@async_disk_cache
async def bare(x: int, y: str = "a") -> Answer:
    """Decorated without parentheses."""
    return Answer(text=f"{x}{y}")


@async_disk_cache(
    namespace="typing.configured",
    serializer=PydanticSerializer(list[Answer]),
    store=MemoryStore(),
    ttl=datetime.timedelta(hours=1),
    ignore=("client",),
    version=2,
    cache_if=lambda result: result is not None,
)
async def configured(prompt: str, *, client: object, retries: int = 3) -> list[Answer] | None:
    """Decorated with every option."""
    return [Answer(text=prompt)] * retries


@async_disk_cache(directory="/tmp/memo-typing")
async def variadic(first: int, /, *rest: float, **options: str) -> dict[str, float]:
    """Positional-only, *args and **kwargs."""
    return {"sum": first + sum(rest)}


async def check_parameters_and_return_types() -> None:
    """The decorated functions keep their full signatures and return types."""
    assert_type(bare, CachedFunction[[Arg(int, "x"), DefaultArg(str, "y")], Answer])
    assert_type(
        configured,
        CachedFunction[
            [Arg(str, "prompt"), NamedArg(object, "client"), DefaultNamedArg(int, "retries")],
            list[Answer] | None,
        ],
    )
    assert_type(
        variadic,
        CachedFunction[[int, VarArg(float), KwArg(str)], dict[str, float]],
    )
    assert_type(await bare(1), Answer)
    assert_type(await bare(x=1, y="b"), Answer)
    assert_type(await configured("p", client=object()), list[Answer] | None)
    assert_type(await variadic(1, 2.0, 3.5, unit="C"), dict[str, float])


async def check_cache_attributes() -> None:
    """cache_key, invalidate, refresh, cache_clear and cache_info are typed."""
    assert_type(bare.cache_key(1, y="b"), str)
    assert_type(await bare.invalidate(1), bool)
    assert_type(await bare.refresh(1), Answer)
    assert_type(await configured.refresh("p", client=None), list[Answer] | None)
    assert_type(await bare.cache_clear(), int)
    info = bare.cache_info()
    assert_type(info, CacheInfo)
    assert_type(info.hits, int)
    assert_type(info.misses, int)
    assert_type(info.errors, int)
    assert_type(bare.namespace, str)
    assert_type(bare.store, Store)


class Service:
    """A class with a cached async method."""

    @async_disk_cache(ignore=("self",))
    async def lookup(self, key: str, *, fresh: bool = False) -> int:
        """Cached per key, whatever the instance."""
        return len(key)


async def check_methods() -> None:
    """A cached method bound to an instance keeps its return type and attributes."""
    service = Service()
    assert_type(service.lookup, BoundCachedFunction[int])
    assert_type(await service.lookup("k"), int)
    assert_type(service.lookup.cache_key("k"), str)
    assert_type(await service.lookup.refresh("k"), int)
    assert_type(service.lookup.cache_info(), CacheInfo)
    assert_type(
        Service.lookup,
        CachedFunction[
            [Arg(Service, "self"), Arg(str, "key"), DefaultNamedArg(bool, "fresh")], int
        ],
    )


def check_serializers_and_stores() -> None:
    """Serializers are typed by their value type; stores satisfy the Store protocol."""
    models: PydanticSerializer[list[Answer]] = PydanticSerializer(list[Answer])
    assert_type(models.loads(b"[]"), list[Answer])
    assert_type(models.dumps([Answer(text="a")]), bytes)
    assert_type(JsonSerializer().loads(b"{}"), Any)
    serializers: list[Serializer[Any]] = [JsonSerializer(), PickleSerializer(), models]
    stores: list[Store] = [MemoryStore(), DiskStore("/tmp/memo-typing")]
    del serializers, stores


def check_context_managers() -> None:
    """bypass(), refreshing() and offline() are context managers yielding None."""
    with memo.bypass() as nothing:
        assert_type(nothing, None)
    with memo.refreshing() as nothing:
        assert_type(nothing, None)
    with memo.offline() as nothing, memo.offline(False):
        assert_type(nothing, None)


def check_not_recorded_error(error: memo.NotRecordedError) -> None:
    """NotRecordedError is a LookupError with the function, namespace and key it refused."""
    lookup: LookupError = error
    assert_type(error.function, str)
    assert_type(error.namespace, str)
    assert_type(error.key, str | None)
    del lookup
