"""Whether a value read back from the store is the value that was written.

memo stores a result only if decoding it gives a value equal to it and of the
same types all the way down, so that a hit is what the function returned. Plain
``==`` is not enough: ``(1, 2) == [1, 2]`` is false but ``{"a": (1,)}``-style
mismatches hide inside equal-looking containers, a subclass may compare equal
to its base class, and NaN is never equal to itself.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import sys
from typing import Any

__all__ = ["difference"]


def difference(written: Any, read: Any) -> str | None:
    """Return where and how ``read`` differs from ``written``, or None if it does not."""
    return _difference(written, read, "the result", set())


def _difference(a: Any, b: Any, path: str, seen: set[tuple[int, int]]) -> str | None:  # noqa: PLR0912
    cls = type(a)
    if cls is not type(b):
        return f"{path} is a {cls.__qualname__} that came back as a {type(b).__qualname__}"
    if cls is float:
        same = a == b or (math.isnan(a) and math.isnan(b))
        return None if same else f"{path} changed from {a!r} to {b!r}"
    if cls in (str, bytes, int, bool, type(None)):
        return None if a == b else f"{path} changed"
    pair = (id(a), id(b))
    if pair in seen:  # a cycle: compared already, higher up
        return None
    seen.add(pair)
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return f"{path} changed length from {len(a)} to {len(b)}"
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _difference(x, y, f"{path}[{index}]", seen)
            if found is not None:
                return found
        return None
    if isinstance(a, dict):
        if a.keys() != b.keys() or (cls is collections.OrderedDict and list(a) != list(b)):
            return f"{path} changed its keys"
        for key, item in a.items():
            found = _difference(item, b[key], f"{path}[{key!r}]", seen)
            if found is not None:
                return found
        return None
    # No pydantic value exists unless pydantic is imported: memo does not import it for them.
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None:
        if isinstance(a, (pydantic.SecretStr, pydantic.SecretBytes)):
            return None if a == b else f"{path} is a secret that would be stored masked"
        if isinstance(a, pydantic.BaseModel):
            state = (a.__dict__, a.__pydantic_extra__, a.__pydantic_private__)
            other = (b.__dict__, b.__pydantic_extra__, b.__pydantic_private__)
            return _difference(state, other, path, seen)
    if dataclasses.is_dataclass(a):
        for field in dataclasses.fields(a):
            x, y = getattr(a, field.name), getattr(b, field.name)
            found = _difference(x, y, f"{path}.{field.name}", seen)
            if found is not None:
                return found
        return None
    if _inherits_eq(cls) and hasattr(a, "__dict__"):
        # No equality of its own (pickled objects): compare what it holds.
        return _difference(vars(a), vars(b), path, seen)
    return None if a == b else f"{path} changed"


def _inherits_eq(cls: type) -> bool:
    # object's own __eq__ compares identity, which a value read back never has.
    return getattr(cls, "__eq__", None) is object.__eq__
