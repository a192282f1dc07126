"""A cached function is a coroutine function to everyone, and one object like lru_cache's."""

from __future__ import annotations

import asyncio
import copy
import inspect
import pickle

import pytest

from memo import MemoryStore, async_disk_cache


@async_disk_cache(store=MemoryStore())
async def module_level(x: int) -> int:
    """A cached function that pickle can find by name."""
    return x


class Service:
    @async_disk_cache(store=MemoryStore(), ignore=("self",))
    async def method(self, x: int) -> int:
        return x


@pytest.mark.parametrize(
    "obj",
    [module_level, Service.method, Service().method],
    ids=["function", "method-on-class", "bound-method"],
)
def test_cached_functions_are_coroutine_functions(obj: object) -> None:
    """Inspect and asyncio both say so, on every supported Python."""
    assert inspect.iscoroutinefunction(obj)
    assert asyncio.iscoroutinefunction(obj)  # deprecated on 3.14, still used by frameworks


def test_the_signature_is_still_the_functions() -> None:
    """Looking like a function to inspect does not change the signature it reports."""
    assert str(inspect.signature(module_level)) == "(x: 'int') -> 'int'"


def test_a_module_level_cached_function_pickles_by_reference() -> None:
    """Pickle stores its name, and loads the very same object."""
    assert pickle.loads(pickle.dumps(module_level)) is module_level


def test_a_bound_cached_method_pickles_with_its_instance() -> None:
    """obj.method pickles as the instance and the method's name."""
    service = Service()
    restored = pickle.loads(pickle.dumps(service.method))
    assert restored.__func__ is Service.method
    assert isinstance(restored.__self__, Service)


def test_copies_are_the_same_object() -> None:
    """copy.copy and copy.deepcopy return the cached function itself, as for lru_cache."""
    assert copy.copy(module_level) is module_level
    assert copy.deepcopy(module_level) is module_level
    assert copy.deepcopy({"f": module_level})["f"] is module_level


def test_a_nested_cached_function_cannot_be_pickled() -> None:
    """One pickle cannot find by name is refused, as for any nested function."""

    @async_disk_cache(store=MemoryStore())
    async def nested(x: int) -> int:
        return x

    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(nested)
