"""A call's arguments as the key sees them: bound, defaults applied, ``ignore`` left out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import inspect
    from collections.abc import Iterable

__all__ = ["Binding"]


class Binding:
    """``Signature.bind`` + ``apply_defaults`` for one function, minus the ignored names.

    For a function without positional-only, ``*args`` or ``**kwargs``
    parameters, binding is a dict merge checked against the parameter names;
    anything unusual (a missing, unknown or doubled argument) falls back to
    ``Signature.bind``, which raises the error Python would.

    Args:
        signature: the function's signature.
        ignore: parameter names left out; a name that is not a parameter is a
            key inside ``**kwargs``.
        owner: the function's name, for error messages.

    Raises:
        TypeError: ``ignore`` is a str, or names something that is neither a
            parameter nor possible inside ``**kwargs``.
    """

    __slots__ = (
        "_defaults",
        "_fast",
        "_ignore_kwargs",
        "_ignore_params",
        "_names",
        "_positional",
        "_signature",
        "_var_kw",
    )

    def __init__(self, signature: inspect.Signature, ignore: Iterable[str], owner: str) -> None:
        self._signature = signature
        params = list(signature.parameters.values())
        self._fast = all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) for p in params)
        self._positional = tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)
        self._defaults = {p.name: p.default for p in params if p.default is not p.empty}
        self._names = frozenset(signature.parameters)
        self._var_kw = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
        if isinstance(ignore, str):
            msg = f"ignore takes a tuple of parameter names, e.g. ignore=({ignore!r},)"
            raise TypeError(msg)
        names = frozenset(ignore)
        unknown = frozenset(name for name in names if name not in self._names)
        if unknown and self._var_kw is None:
            known = ", ".join(map(repr, signature.parameters)) or "none"
            msg = (
                f"ignore names {', '.join(map(repr, sorted(unknown)))}, which {owner}() has no "
                f"parameter for; its parameters are {known}"
            )
            raise TypeError(msg)
        self._ignore_params = names - unknown
        self._ignore_kwargs = unknown

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Return parameter name -> value for a call, defaults applied, ignored names left out.

        Raises:
            TypeError: the arguments do not fit the signature.
        """
        arguments = self._bind(args, kwargs)
        for name in self._ignore_params:
            del arguments[name]
        if self._ignore_kwargs and self._var_kw in arguments:
            extra = arguments[self._var_kw]
            dropped = self._ignore_kwargs
            arguments[self._var_kw] = {k: v for k, v in extra.items() if k not in dropped}
        return arguments

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        count = len(args)
        if self._fast and count <= len(self._positional):
            arguments = self._defaults.copy()
            if count:
                arguments.update(zip(self._positional, args, strict=False))
            doubled = count and kwargs and not kwargs.keys().isdisjoint(self._positional[:count])
            if not doubled:
                arguments.update(kwargs)
                if arguments.keys() == self._names:
                    return arguments
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments
