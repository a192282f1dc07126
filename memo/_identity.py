"""What tells one cached function from another: its default namespace and its code fingerprint.

``module.qualname`` alone is not unique: closures made by one factory, methods
of instances, ``functools.partial`` objects, functions made by ``exec`` and
every script run as ``__main__`` share theirs. Two functions that share a
namespace (and a version) share entries, so any of these would answer one
function's call with another's result. memo therefore names a function by:

- its module and qualified name, ``__main__`` replaced by the script or
  notebook it lives in (``/home/me/report.py:summarize``), or by the module
  ``python -m`` ran (``pkg.tool.summarize``);
- a digest of what it captured, when it captured anything: closure values as
  they are at decoration, the instance of a bound method, the arguments of a
  partial (``mymod.make_scaler.<locals>.scale[3f2a9b1c04d28e11]``). Captured
  functions and classes count by their own identity (module, qualified name,
  code fingerprint and, for functions, what they captured in turn);
- a fingerprint of its code, which takes the version's place in the key (see
  ``memo.stores.store_key``) so that editing the function retires its entries.

The fingerprint hashes a canonical walk of the function's syntax tree, not
``ast.dump`` (whose output changed in Python 3.13), without positions,
comments, docstrings or the decorator lines: formatting never retires an
entry, and one source gives one fingerprint on every Python memo supports.
Code without a source (made by ``exec``, typed into some REPLs) falls back to
its bytecode, which changes from one Python version to the next: a miss, never
a wrong answer.

Not tracked, as in joblib's ``Memory``: the functions and globals a function
reaches through its module (a helper it calls, a prompt constant), values
assigned to a captured variable after decoration, and the state of a captured
class (what its body computed).

Everything here runs once per decoration; nothing here runs per call.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import os
import sys
import types
import weakref
from typing import TYPE_CHECKING, Any

from memo._keys import UnkeyableError, canonical_json
from memo._names import qualified_name

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["Identity", "code_fingerprint", "function_identity", "source_fingerprint"]

# Hex digits kept of a sha256: 64 bits, so that two closures or two edits of
# one function meeting by chance is not a risk worth a longer name.
DIGEST_LENGTH = 16

# How deep a description may go (functions capturing functions ...). Deeper
# than real code nests, and shallow enough that canonical_json (which stops
# at 64 levels) takes the whole description; what lies beyond is unkeyable.
_MAX_DEPTH = 16

_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)

# Functions written in C. Not inspect.isroutine: it also says yes to any object
# with a __get__ (a cached function), which has code of its own to count.
_BUILTINS = (
    types.BuiltinFunctionType,
    types.WrapperDescriptorType,
    types.MethodWrapperType,
    types.MethodDescriptorType,
    types.ClassMethodDescriptorType,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Identity:
    """What names a function, for its default namespace and the shared-namespace warning.

    Attributes:
        name: module (or script) and qualified name, for messages:
            ``mymod.ask``, ``/home/me/report.py:summarize``.
        namespace: ``name``, followed by ``[digest]`` of the captured values
            when there are any: the default namespace. Never holds an address
            or anything else that differs in the next process.
        owner: for the shared-namespace warning: ``namespace`` or, for an
            explicit namespace, ``name`` and a digest of the captured values,
            where objects memo cannot key count by their identity in this
            process. Never stored.
    """

    name: str
    namespace: str
    owner: str


class _Unkeyable(Exception):
    """A captured value that cannot be keyed, and the way to it."""

    def __init__(self, path: list[str], error: UnkeyableError) -> None:
        super().__init__(path)
        self.path = path
        self.error = error


# -- the identity ---------------------------------------------------------------


def function_identity(fn: Callable[..., Any], *, keyed: bool) -> Identity:
    """Return the name, default namespace and owner of a function to cache.

    Args:
        fn: a function, bound method, ``functools.partial`` or callable object.
        keyed: whether captured values become part of the namespace (the
            default namespace), so that one that cannot be keyed is an error.
            With ``False`` (an explicit namespace) they only tell owners apart.

    Raises:
        TypeError: ``keyed`` and a captured value cannot be keyed; the message
            names the function, the variable, its type and the fixes.
    """
    name = _name(fn)
    try:
        state = _state(fn, _Describer(keyed=keyed))
    except _Unkeyable as exc:
        raise _captured_error(name, exc) from exc.error.__cause__
    if not state:
        return Identity(name, name, name)
    suffix = f"[{_digest(canonical_json(state))}]"
    if keyed:
        return Identity(name, name + suffix, name + suffix)
    return Identity(name, name, name + suffix)


def _name(fn: Callable[..., Any]) -> str:
    if isinstance(fn, functools.partial):
        return _name(fn.func)
    if isinstance(fn, (types.FunctionType, types.MethodType, type)):
        return _qualified(fn)
    if isinstance(fn, _BUILTINS):
        return qualified_name(fn)
    return _qualified(type(fn)) + ".__call__"


def _state(fn: Callable[..., Any], describe: _Describer) -> dict[str, Any]:
    # Labels that are not identifiers cannot meet a captured variable's name.
    if isinstance(fn, functools.partial):
        state = _state(fn.func, describe)
        state["(args)"] = [describe(arg, f"argument {index}") for index, arg in enumerate(fn.args)]
        state["(keywords)"] = {key: describe(arg, key) for key, arg in fn.keywords.items()}
        return state
    if isinstance(fn, types.MethodType):
        state = _state(fn.__func__, describe)
        state["(self)"] = describe(fn.__self__, "self")
        return state
    if isinstance(fn, types.FunctionType):
        describe.stack.append(fn)  # a function that captured itself is recursion
        try:
            return describe.closure(fn)
        finally:
            describe.stack.pop()
    if isinstance(fn, _BUILTINS):  # nothing of it is ours to key
        return {}
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - the class's, not the instance's
    state = _state(call, describe) if isinstance(call, types.FunctionType) else {}
    state["(self)"] = describe(fn, "self")
    return state


class _Describer:
    """Turns captured values into keyable descriptions; functions by their identity."""

    def __init__(self, *, keyed: bool) -> None:
        self.keyed = keyed
        self.path: list[str] = []
        # The functions being described, outermost first: one met again is
        # recursion (a function that captured itself), named by its depth.
        self.stack: list[types.FunctionType] = []

    def closure(self, fn: types.FunctionType) -> dict[str, Any]:
        cells = fn.__closure__ or ()
        return {
            name: self(cell.cell_contents, name) if _filled(cell) else ["empty"]
            for name, cell in zip(fn.__code__.co_freevars, cells, strict=True)
        }

    def __call__(self, value: Any, label: str) -> list[Any]:
        self.path.append(label)
        try:
            if len(self.path) > _MAX_DEPTH:
                reason = f"captured values nested deeper than {_MAX_DEPTH} levels"
                return self._unkeyable(value, UnkeyableError(value, reason))
            return self._describe(value)
        finally:
            self.path.pop()

    def _describe(self, value: Any) -> list[Any]:
        # Each description is [kind, ...]; a plain value is ["value", value],
        # so no value can pass for a function or a class.
        if isinstance(value, types.FunctionType):
            return self._function(value)
        if isinstance(value, type):
            return ["class", _qualified(value), _class_fingerprint(value)]
        if isinstance(value, types.ModuleType):
            return ["module", value.__name__]
        if isinstance(value, types.MethodType):
            return ["method", self(value.__func__, "__func__"), self(value.__self__, "__self__")]
        if isinstance(value, functools.partial):
            arguments = [self(arg, f"argument {index}") for index, arg in enumerate(value.args)]
            keywords = {key: self(arg, key) for key, arg in value.keywords.items()}
            return ["partial", self(value.func, "func"), arguments, keywords]
        if isinstance(value, _BUILTINS):  # named; a bound one by its instance too
            owner = getattr(value, "__self__", None)
            if owner is None or isinstance(owner, (types.ModuleType, type)):
                return ["builtin", qualified_name(value), None]
            return ["builtin", qualified_name(value), self(owner, "__self__")]
        wrapped = getattr(value, "__wrapped__", None)
        if wrapped is not None and callable(value) and not isinstance(value, type):
            # A function wrapped in an object (another cached function, an
            # lru_cache, a staticmethod) answers as the function does.
            return ["wrapped", qualified_name(type(value)), self(wrapped, "__wrapped__")]
        return self._value(value)

    def _function(self, fn: types.FunctionType) -> list[Any]:
        for depth, outer in enumerate(self.stack):
            if outer is fn:
                return ["recursive", depth]
        self.stack.append(fn)
        try:
            defaults = [self(value, "default") for value in fn.__defaults__ or ()]
            keyword_defaults = {
                name: self(value, name) for name, value in (fn.__kwdefaults__ or {}).items()
            }
            return [
                "function",
                _qualified(fn),
                _own_fingerprint(fn),
                self.closure(fn),
                defaults,
                keyword_defaults,
            ]
        finally:
            self.stack.pop()

    def _value(self, value: Any) -> list[Any]:
        try:
            # Hashed here, so the description stays shallow whatever the value.
            data = canonical_json(value)
        except UnkeyableError as exc:
            return self._unkeyable(value, exc)
        return ["value", hashlib.sha256(data).hexdigest()]

    def _unkeyable(self, value: Any, error: UnkeyableError) -> list[Any]:
        if self.keyed:
            raise _Unkeyable(list(self.path), error) from error
        # For the in-process owner only: never stored, never compared across
        # processes, so the object's id is good enough here.
        return ["object", qualified_name(type(value)), id(value)]


def _filled(cell: types.CellType) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - reading it is the test
    except ValueError:  # an empty cell: a variable not assigned yet
        return False
    return True


def _captured_error(name: str, exc: _Unkeyable) -> TypeError:
    variable = exc.path[0]
    # 'helper' -> 'client' for a variable that a captured function captured;
    # ['key'][0] for a place inside a captured value.
    where = " -> ".join(repr(label) for label in exc.path) + "".join(reversed(exc.error.path))
    kind = type(exc.error.value).__qualname__
    reason = "" if exc.error.reason is None else f" ({exc.error.reason})"
    direct = len(exc.path) == 1 and variable.isidentifier()
    ignore = f"ignore=({variable!r},)" if direct else "ignore=(...)"
    msg = (
        f"cannot build the default namespace of {name}: captured variable {where} is "
        f"a {kind}{reason}, which memo cannot turn into a key; pass namespace=... to "
        f"async_disk_cache (captured values are then not keyed), or pass it as an "
        f"argument and leave it out of the key with {ignore}"
    )
    return TypeError(msg)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:DIGEST_LENGTH]


# -- names ----------------------------------------------------------------------


def _qualified(obj: types.FunctionType | types.MethodType | type) -> str:
    module = getattr(obj, "__module__", None)
    if module != "__main__":
        return qualified_name(obj)
    if isinstance(obj, types.MethodType):
        obj = obj.__func__  # type: ignore[assignment]
    if isinstance(obj, types.FunctionType):
        namespace: Mapping[str, Any] = obj.__globals__
    else:
        namespace = vars(sys.modules["__main__"]) if "__main__" in sys.modules else {}
    label, separator = _main_label(namespace)
    return f"{label}{separator}{obj.__qualname__}"


def _main_label(namespace: Mapping[str, Any]) -> tuple[str, str]:
    """Return what stands for ``__main__`` in a name, and the separator before the qualname.

    Every script, notebook and interactive session runs as ``__main__``, so
    the name alone would let two unrelated ones share entries.
    """
    notebook = namespace.get("__vsc_ipynb_file__")  # set by VS Code in a notebook's globals
    if isinstance(notebook, str) and notebook:
        return _resolved(notebook), ":"
    spec = namespace.get("__spec__")
    module = getattr(spec, "name", None)
    if isinstance(module, str) and module not in ("", "__main__"):
        # python -m pkg.tool: the module's own name, as when it is imported.
        return module, "."
    script = namespace.get("__file__")
    if isinstance(script, str) and script and not script.startswith("<"):  # not <stdin>
        return _resolved(script), ":"
    # Jupyter server 2.x tells the kernel its notebook's path; a script the
    # notebook starts inherits the variable, but has a __file__ (above).
    session = os.environ.get("JPY_SESSION_NAME")
    if session and "ipykernel" in sys.modules:
        return (_resolved(session) if os.path.isabs(session) else session), ":"
    return "__main__", "."  # python -c, a REPL: only the fingerprint tells bodies apart


def _resolved(path: str) -> str:
    # Absolute and without symlinks: the same script from any folder is one name.
    return os.path.realpath(path)


# -- the code fingerprint ---------------------------------------------------------


def code_fingerprint(fn: Callable[..., Any]) -> str:
    """Return a short hex digest of a function's code, to retire entries when it is edited.

    Comments, docstrings, blank lines, formatting, the function's name and its
    decorator lines do not count; anything else in its source does. A function
    it captured (the function a decorator's wrapper calls) counts too. The
    digest is the same in every process and, for one source, on every Python
    version memo supports; code without a source is hashed by its bytecode,
    which differs between Python versions.

    Args:
        fn: a function, bound method, ``functools.partial`` or callable object.
    """
    function = _code_function(fn)
    if function is None:
        return _digest(json.dumps(["builtin", qualified_name(fn)]).encode())
    return _tracked_fingerprint(function, [])


def _code_function(fn: Any) -> types.FunctionType | None:
    """The Python function whose code runs when ``fn`` is called, if there is one."""
    for _ in range(_MAX_DEPTH):
        if fn is None or isinstance(fn, types.FunctionType):
            return fn
        if isinstance(fn, functools.partial):
            fn = fn.func
        elif isinstance(fn, types.MethodType):
            fn = fn.__func__
        elif isinstance(fn, (*_BUILTINS, type)):
            return None
        elif isinstance(getattr(fn, "__wrapped__", None), types.FunctionType):
            fn = fn.__wrapped__
        else:
            fn = getattr(type(fn), "__call__", None)  # noqa: B004 - the class's call
    return None


def _tracked_fingerprint(fn: types.FunctionType, stack: list[types.FunctionType]) -> str:
    own = _own_fingerprint(fn)
    stack.append(fn)
    captured = []
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):
        inner = _code_function(cell.cell_contents) if _filled(cell) else None
        if inner is not None and all(inner is not outer for outer in stack):
            captured.append([name, _tracked_fingerprint(inner, stack)])
    stack.pop()
    if not captured:
        return own
    return _digest(json.dumps([own, captured]).encode())


@functools.lru_cache(maxsize=1024)
def _code_fingerprint(filename: str, firstlineno: int, code: types.CodeType, doc: bool) -> str:
    # Cached per place and code: a factory decorates its closure once per
    # call, and reading and parsing the source each time would add up.
    del filename, firstlineno  # part of the cache key only
    node = _source_node(code)
    if node is not None:
        return _digest(_canonical_tree(node, top=True))
    return _bytecode_fingerprint(code, doc=doc)


def _own_fingerprint(fn: types.FunctionType) -> str:
    code = fn.__code__
    # Up to Python 3.13 the first constant is the docstring, or None standing
    # in for it: left out of the bytecode fallback either way.
    first = code.co_consts[0] if code.co_consts else ...
    doc = first is None or (fn.__doc__ is not None and first is fn.__doc__)
    # Code objects compare by content, not by file: the file and line keep
    # two equal bodies of two files from sharing a cached answer.
    return _code_fingerprint(code.co_filename, code.co_firstlineno, code, doc)


def source_fingerprint(source: str) -> str:
    """Return the fingerprint of the first function defined in ``source``.

    This is what ``code_fingerprint`` computes for a function whose source
    is available (and which captured no function).

    Raises:
        SyntaxError: ``source`` is not Python.
        ValueError: ``source`` defines no function at its top level.
    """
    tree = _parse(source)
    node = next((n for n in tree.body if isinstance(n, _DEFINITIONS[:2])), None)
    if node is None:
        msg = "source defines no function"
        raise ValueError(msg)
    return _digest(_canonical_tree(node, top=True))


def _parse(source: str) -> ast.Module:
    first = next((line for line in source.splitlines() if line.strip()), "")
    if first[:1].isspace():
        # An indented method or nested function: parsed as the body of a
        # block rather than dedented, which would change multi-line strings.
        tree = ast.parse("if 1:\n" + source)
        return ast.Module(body=tree.body[0].body, type_ignores=[])  # type: ignore[attr-defined]
    return ast.parse(source)


def _source_node(code: types.CodeType) -> ast.AST | None:
    """The syntax tree of a code object's function, or None when its source is unknown."""
    try:
        # The code object, not the function: inspect would follow __wrapped__
        # to another function's source.
        lines, _ = inspect.getsourcelines(code)
        tree = _parse("".join(lines))
    except Exception:  # no file, a stale or partial one: any failure means no source
        return None
    if code.co_name == "<lambda>":
        # inspect gives the whole statement; it must hold exactly this lambda.
        lambdas = [node for node in ast.walk(tree) if isinstance(node, ast.Lambda)]
        return lambdas[0] if len(lambdas) == 1 else None
    for node in tree.body:
        if isinstance(node, _DEFINITIONS[:2]):
            # The file may have changed since the code was compiled.
            return node if node.name == code.co_name else None
    return None


def _canonical_tree(node: ast.AST, *, top: bool = False) -> bytes:
    return json.dumps(_walk(node, top=top), ensure_ascii=True, separators=(",", ":")).encode()


def _walk(node: Any, *, top: bool = False) -> Any:
    """A plain, version-independent form of a syntax tree: node types and fields, no positions."""
    if isinstance(node, list):
        return [_walk(item) for item in node]
    if not isinstance(node, ast.AST):
        return _leaf(node)
    if isinstance(node, ast.Constant):
        return ["Constant", _leaf(node.value)]  # kind ("u" prefix) means nothing
    fields = []
    for field in node._fields:
        if top and field in ("name", "decorator_list"):
            continue
        value: Any = getattr(node, field, None)
        if field == "body" and isinstance(node, _DEFINITIONS):
            value = _without_docstring(value)
        elif field == "values" and isinstance(node, ast.JoinedStr):
            value = _joined_text(value)
        # Fields left None or empty are skipped: newer Pythons add fields
        # (type_params in 3.12) that are empty for code that does not use them.
        if value is None or (isinstance(value, list) and not value):
            continue
        fields.append([field, _walk(value)])
    return [type(node).__name__, fields]


def _joined_text(values: list[ast.expr]) -> list[ast.expr]:
    # An f-string's literal parts, merged and without empty ones: Python 3.12
    # splits them differently (an empty Constant after a nested format spec).
    out: list[ast.expr] = []
    for value in values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            if not value.value:
                continue
            last = out[-1] if out else None
            if isinstance(last, ast.Constant) and isinstance(last.value, str):
                out[-1] = ast.Constant(last.value + value.value)
                continue
        out.append(value)
    return out


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return body[1:]
    return body


def _leaf(value: object) -> list[Any]:
    # Tagged by type: 1, 1.0, True and "1" stay apart; floats as exact hex.
    if value is None or value is ...:
        return [repr(value)]
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, int):
        return ["int", hex(value)]  # str() of a huge int is capped
    if isinstance(value, float):
        return ["float", value.hex()]
    if isinstance(value, complex):
        return ["complex", value.real.hex(), value.imag.hex()]
    if isinstance(value, str):
        return ["str", value]
    if isinstance(value, bytes):
        return ["bytes", value.hex()]
    if isinstance(value, (tuple, frozenset)):
        items = [_leaf(item) for item in value]
        if isinstance(value, frozenset):
            items.sort(key=json.dumps)
        return [type(value).__name__, items]
    if isinstance(value, types.CodeType):
        return _code_walk(value, doc=False)
    return ["other", type(value).__qualname__]


def _bytecode_fingerprint(code: types.CodeType, *, doc: bool) -> str:
    # The Python version is part of it: bytecode differs between versions,
    # and saying so keeps two versions' fingerprints from meeting by chance.
    walked = ["bytecode", list(sys.version_info[:2]), _code_walk(code, doc=doc)]
    return _digest(json.dumps(walked, ensure_ascii=True).encode())


def _code_walk(code: types.CodeType, *, doc: bool) -> list[Any]:
    consts = list(code.co_consts)
    if doc:
        consts = consts[1:]  # the docstring, which does not count
    # Names, positions and the file are left out, as in the source walk.
    return [
        "code",
        code.co_code.hex(),
        [_leaf(const) for const in consts],
        list(code.co_names),
        list(code.co_varnames),
        list(code.co_freevars),
        list(code.co_cellvars),
        [code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags],
        getattr(code, "co_exceptiontable", b"").hex(),
    ]


# Classes: by source when inspect finds it, once per class.
_class_fingerprints: weakref.WeakKeyDictionary[type, str | None] = weakref.WeakKeyDictionary()


def _class_fingerprint(cls: type) -> str | None:
    try:
        return _class_fingerprints[cls]
    except (KeyError, TypeError):
        pass
    try:
        tree = _parse(inspect.getsource(cls))
    except Exception:  # a builtin, a class made by type() or in a REPL
        fingerprint = None
    else:
        node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
        # A class's decorators (dataclass(frozen=True)) change what it does: kept.
        fingerprint = None if node is None else _digest(_canonical_tree(node))
    with contextlib.suppress(TypeError):  # a class that cannot be weakly referenced
        _class_fingerprints[cls] = fingerprint
    return fingerprint
