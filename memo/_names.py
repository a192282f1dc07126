"""How memo names the Python objects it tells apart: ``module.qualname``."""

from __future__ import annotations

import inspect

__all__ = ["qualified_name"]


def qualified_name(obj: object) -> str:
    """Return ``module.qualname`` of a class or a function, else ``repr(obj)``.

    The name of a function is the default namespace, the name of a class tags
    keys and serializer ids, so it must be the same in every process. A type
    expression (``list[Model]``, ``Model | None``) and other objects are named
    by their ``repr``, which keeps a generic's arguments.
    """
    if isinstance(obj, type) or inspect.isroutine(obj) or "__qualname__" in _attributes(obj):
        return f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"  # type: ignore[attr-defined]
    return repr(obj)


def _attributes(obj: object) -> dict[str, object]:
    # A wrapper made by functools.update_wrapper (a cached function) carries
    # the wrapped function's name in its own __dict__.
    attributes = getattr(obj, "__dict__", None)
    return attributes if type(attributes) is dict else {}
