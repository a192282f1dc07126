"""What the framework tests share: importing a framework, and calling it twice."""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import ModuleType

    from fake_openai import FakeOpenAI

T = TypeVar("T")

INSTALL = "python -m nox -s frameworks"


def require(name: str) -> ModuleType:
    """Import a framework, or skip the module without it; under CI, fail instead.

    The `frameworks` nox session installs them (the `frameworks` extra); the
    `tests` session leaves this folder out. Anywhere else a missing framework
    skips locally and fails in CI (``CI=true``), which must run these tests.
    """
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{name} is not installed, and CI must run the framework tests: {INSTALL}")
        pytest.skip(
            f"{name} is not installed; `{INSTALL}` runs these tests", allow_module_level=True
        )


async def twice(server: FakeOpenAI, call: Callable[[], Awaitable[T]]) -> tuple[T, T]:
    """Make the same call twice; the second must send no request. Return both results."""
    first = await call()
    sent = server.count()
    assert sent > 0, "the first call sent no request"
    second = await call()
    extra = server.count() - sent
    assert extra == 0, (
        f"the second, identical call sent {extra} more request(s) "
        f"({', '.join(r.path for r in server.requests[sent:])}): it was not served from the cache"
    )
    return first, second


def without(value: Any, *names: str) -> Any:
    """``value`` dumped to plain data, without the fields a library makes anew on every call."""
    data = value.model_dump() if hasattr(value, "model_dump") else dict(vars(value))
    for name in names:
        data.pop(name, None)
    return data
