"""Mistakes in setting memo up fail at once, with a message that says what to do."""

from __future__ import annotations

import json
import typing
import warnings

import pydantic
import pytest

from memo import JsonSerializer, MemoryStore, MemoWarning, async_disk_cache


async def _answer() -> int:
    return 42


@pytest.mark.parametrize("serializer", [json, JsonSerializer], ids=["json-module", "a-class"])
def test_a_module_or_class_is_not_a_serializer(serializer: object) -> None:
    """serializer=json (the module) or a class is refused at decoration, naming the fix."""
    with pytest.raises(TypeError, match=r"serializer instance.*JsonSerializer\(\)"):
        async_disk_cache(serializer=serializer)  # type: ignore[call-overload]


class Plain(typing.TypedDict):
    city: str
    highs: list[int]


async def test_a_typeddict_of_json_is_stored_as_json() -> None:
    """-> TypedDict (typing's, on every Python) is a plain dict: JSON, stored and hit."""

    @async_disk_cache(store=MemoryStore())
    async def forecast(city: str) -> Plain:
        return {"city": city, "highs": [21, 23]}

    assert await forecast("Paris") == {"city": "Paris", "highs": [21, 23]}
    assert await forecast("Paris") == {"city": "Paris", "highs": [21, 23]}
    assert forecast.cache_info().hits == 1


def test_the_shared_namespace_warning_points_at_the_users_line() -> None:
    """The MemoWarning for two functions in one namespace names this file, not memo's."""
    store = MemoryStore()

    async def first() -> int:
        return 1

    async def second() -> int:
        return 2

    async_disk_cache(namespace="shared", store=store)(first)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async_disk_cache(namespace="shared", store=store)(second)
    [warning] = [w for w in caught if issubclass(w.category, MemoWarning)]
    assert warning.filename == __file__


async def test_the_warning_on_the_default_folder_points_at_the_users_call() -> None:
    """With the default folder the warning comes at the first call, and names the caller's file."""

    @async_disk_cache(namespace="shared-default")
    async def first() -> int:
        return 1

    @async_disk_cache(namespace="shared-default")
    async def second() -> int:
        return 2

    await first()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await second()
    [warning] = [w for w in caught if issubclass(w.category, MemoWarning)]
    assert warning.filename == __file__


class Base:
    @classmethod
    @async_disk_cache(store=MemoryStore())
    async def name(cls) -> str:
        return cls.__name__


class Child(Base):
    pass


async def test_a_classmethod_keys_its_class() -> None:
    """Cls is keyed by the class's name: Child.name() never returns Base's result."""
    assert await Base.name() == "Base"
    assert await Child.name() == "Child"
    assert await Child.name() == "Child"


async def test_a_class_defined_in_a_function_is_refused_without_suggesting_ignore() -> None:
    """A local class cannot be named in another process; the fix is not ignore=('cls',)."""

    class Local(Base):
        pass

    with pytest.raises(TypeError, match="define it at module level") as caught:
        await Local.name()
    assert "ignore=" not in str(caught.value)


class Point(pydantic.BaseModel):
    x: int
    y: int


def test_a_model_built_without_a_field_is_a_type_error() -> None:
    """model_construct() without a field: the documented TypeError naming it, not AttributeError."""

    @async_disk_cache(store=MemoryStore())
    async def where(point: Point) -> int:
        return point.x

    with pytest.raises(TypeError, match=r"'point'.*field 'y' is not set"):
        where.cache_key(Point.model_construct(x=1))
