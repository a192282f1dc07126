"""How memo names the Python objects it tells apart: ``module.qualname``."""

from __future__ import annotations

import inspect
import sys

__all__ = ["importable_name", "qualified_name"]


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


def importable_name(obj: object) -> str | None:
    """Return ``module.qualname`` of ``obj`` when that name leads back to it, else None.

    A module-level class or function (``builtins.list``, ``mymodule.make``) has
    such a name, the same in every process that imports its module. A lambda,
    a function defined inside another, a bound method of an instance or a
    ``functools.partial`` has none: one name would stand for many objects.
    Only modules already imported are looked at; nothing is imported.
    """
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if type(module) is not str or type(qualname) is not str:
        return None
    found: object = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is obj or (
        # Each look-up of a classmethod makes a new bound method: compare
        # what it is bound to, not the method object.
        inspect.ismethod(obj)
        and inspect.ismethod(found)
        and found.__func__ is obj.__func__
        and found.__self__ is obj.__self__
    ):
        return f"{module}.{qualname}"
    return None


def _attributes(obj: object) -> dict[str, object]:
    # A wrapper made by functools.update_wrapper (a cached function) carries
    # the wrapped function's name in its own __dict__.
    attributes = getattr(obj, "__dict__", None)
    return attributes if type(attributes) is dict else {}
