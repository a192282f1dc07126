"""What identifies a cached function: closures, __main__, partials, methods and code edits."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import types
import warnings
from pathlib import Path
from typing import Any

import pytest

from memo import MemoryStore, MemoWarning, async_disk_cache
from memo._decorator import CachedFunction
from memo._identity import code_fingerprint, source_fingerprint
from memo._options import Options
from memo.stores import namespace_of, namespace_prefix, store_key

ROOT = Path(__file__).resolve().parent.parent


class Client:
    """Something that cannot (and should not) be part of a key: a client, a session."""


# -- closures -------------------------------------------------------------------


def make_scaler(factor: int, **options: Any) -> Any:
    @async_disk_cache(**options)
    async def scale(x: int) -> int:
        return factor * x

    return scale


async def test_closures_of_one_factory_do_not_share_entries() -> None:
    """make_scaler(3)(5) is 15, not make_scaler(2)(5)'s cached 10."""
    assert await make_scaler(2)(5) == 10
    assert await make_scaler(3)(5) == 15


async def test_closures_with_equal_captured_values_share_entries() -> None:
    """Two closures that captured equal values are one function: the second call hits."""
    first, second = make_scaler(2), make_scaler(2)
    assert first.namespace == second.namespace
    assert await first(5) == 10
    assert await second(5) == 10
    assert second.cache_info().hits == 1


def test_closure_namespace_names_the_function_and_its_captured_values() -> None:
    """The default namespace is module.qualname followed by a short digest of what it captured."""
    scale = make_scaler(2)
    pattern = re.escape(f"{__name__}.make_scaler.<locals>.scale") + r"\[[0-9a-f]{16}\]"
    assert re.fullmatch(pattern, scale.namespace)
    assert namespace_of(scale.cache_key(1)) == scale.namespace


async def test_clearing_one_closure_leaves_its_siblings() -> None:
    """cache_clear() of one closure drops its entries and none of a sibling's."""
    store = MemoryStore()
    two, three = make_scaler(2, store=store), make_scaler(3, store=store)
    await two(1)
    await three(1)
    assert await two.cache_clear() == 1
    assert await three(1) == 3
    assert three.cache_info().hits == 1


def test_captured_client_is_a_type_error_at_decoration() -> None:
    """A captured value memo cannot key fails at decoration, naming function, variable and fixes."""
    client = Client()
    message = r"ask.*captured variable 'client' is a Client.*namespace=.*ignore=\('client',\)"
    with pytest.raises(TypeError, match=message):

        @async_disk_cache
        async def ask(prompt: str) -> str:
            return f"{client}{prompt}"


def test_explicit_namespace_does_not_key_captured_values() -> None:
    """With namespace=, a captured client is fine: captured values are not keyed."""
    client = Client()

    @async_disk_cache(namespace="ask", store=MemoryStore())
    async def ask(prompt: str) -> str:
        return f"{client}{prompt}"

    assert ask.namespace == "ask"


def test_explicit_namespace_with_different_captured_values_warns() -> None:
    """Two closures with different captured values sharing one namespace get a MemoWarning."""
    store = MemoryStore()
    make_scaler(2, namespace="scale", store=store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_scaler(2, namespace="scale", store=store)  # the same captured values: silent
    with pytest.warns(MemoWarning, match="scale"):
        make_scaler(3, namespace="scale", store=store)


def test_explicit_namespace_with_different_unkeyable_values_warns() -> None:
    """Captured objects memo cannot key are told apart within the process, for the warning."""
    store = MemoryStore()

    def make(client: Client) -> Any:
        @async_disk_cache(namespace="ask", store=store)
        async def ask(prompt: str) -> str:
            return f"{client}{prompt}"

        return ask

    one = Client()
    make(one)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(one)
    with pytest.warns(MemoWarning, match="ask"):
        make(Client())


async def test_an_unassigned_captured_variable_works() -> None:
    """A variable assigned after the decorated function (an empty cell) does not break it."""

    @async_disk_cache
    async def later(x: int) -> int:
        return x * factor

    factor = 3
    assert await later(2) == 6


# -- captured functions and classes ------------------------------------------------------


async def test_recursive_nested_function_decorated_in_place() -> None:
    """A nested cached function that calls itself works (its cell is empty at decoration)."""

    @async_disk_cache
    async def fact(n: int) -> int:
        return 1 if n <= 1 else n * await fact(n - 1)

    assert await fact(5) == 120
    assert await fact(5) == 120
    assert fact.cache_info().hits == 1


def make_fib() -> Any:
    async def fib(n: int) -> int:
        return n if n < 2 else await fib(n - 1) + await fib(n - 2)

    return async_disk_cache(fib)  # fib's cell holds fib itself


async def test_recursive_function_that_captured_itself() -> None:
    """A function whose closure holds itself is named without endless recursion, stably."""
    fib = make_fib()
    assert fib.namespace == make_fib().namespace
    assert await fib(10) == 55


class Base:
    async def greet(self, name: str) -> str:
        return f"hello {name}"


class Polite(Base):
    @async_disk_cache(ignore=("self",))
    async def greet(self, name: str) -> str:
        return await super().greet(name) + "!"


async def test_super_in_a_cached_method() -> None:
    """A cached method that calls super() (its __class__ cell) works and caches."""
    assert await Polite().greet("Ada") == "hello Ada!"
    assert await Polite().greet("Ada") == "hello Ada!"
    assert Polite.greet.cache_info().hits == 1


async def test_super_in_a_method_cached_after_its_class() -> None:
    """Decorated after the class exists, the filled __class__ cell counts as the class."""

    class Loud(Base):
        async def greet(self, name: str) -> str:
            return (await super().greet(name)).upper()

    cached = async_disk_cache(ignore=("self",))(Loud.greet)
    assert await cached(Loud(), "ada") == "HELLO ADA"


def traced(fn: Any) -> Any:
    """A decorator whose wrapper captures the function it wraps."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        return await fn(*args, **kwargs)

    return wrapper


async def test_a_decorator_wrapper_counts_the_function_it_wraps() -> None:
    """Two wrapped functions of one name (so one wrapper qualname) never share entries."""
    store = MemoryStore()

    @async_disk_cache(store=store)
    @traced
    async def double(x: int) -> int:
        return 2 * x

    first = double

    @async_disk_cache(store=store)
    @traced
    async def double(x: int) -> int:  # the same name on purpose
        return 3 * x

    assert await first(5) == 10
    assert await double(5) == 15
    assert await first(5) == 10
    assert first.cache_info().hits == 1


def apply_with(op: Any, store: MemoryStore) -> Any:
    @async_disk_cache(store=store, version=1)
    async def apply(x: int) -> int:
        return op(x)  # type: ignore[no-any-return]

    return apply


async def test_captured_functions_count_by_their_code() -> None:
    """Closures that captured two different lambdas never share, even with one version=."""
    store = MemoryStore()
    inc = apply_with(lambda x: x + 1, store)
    dbl = apply_with(lambda x: x * 2, store)
    same_line = [apply_with(lambda x: x - 1, store), apply_with(lambda x: x // 2, store)]
    assert [await inc(6), await dbl(6)] == [7, 12]
    assert [await same_line[0](6), await same_line[1](6)] == [5, 3]


# -- partials, methods, exec, redefinition ---------------------------------------------


async def scale_by(factor: int, x: int) -> int:
    return factor * x


async def test_partials_are_told_apart_by_their_arguments() -> None:
    """functools.partial objects: the function, args and keywords name them, no address."""
    store = MemoryStore()
    two = async_disk_cache(store=store)(functools.partial(scale_by, 2))
    three = async_disk_cache(store=store)(functools.partial(scale_by, factor=3))
    assert [await two(x=5), await three(x=5)] == [10, 15]
    again = async_disk_cache(store=store)(functools.partial(scale_by, 2))
    assert again.namespace == two.namespace
    assert two.namespace.startswith(f"{__name__}.scale_by[")
    assert "0x" not in two.namespace


class Account:
    def __init__(self, name: str) -> None:
        self.name = name

    def __memo_key__(self) -> str:
        return self.name

    async def balance(self, currency: str) -> str:
        return f"{self.name}:{currency}"


class Plain:
    async def balance(self, currency: str) -> str:
        return currency


async def test_bound_methods_are_told_apart_by_their_instance() -> None:
    """Caching obj.method keys the instance into the namespace; one memo cannot key fails."""
    store = MemoryStore()
    a = async_disk_cache(store=store)(Account("a").balance)
    b = async_disk_cache(store=store)(Account("b").balance)
    assert [await a("EUR"), await b("EUR")] == ["a:EUR", "b:EUR"]
    with pytest.raises(TypeError, match="'self' is a Plain"):
        async_disk_cache(store=store)(Plain().balance)


async def test_functions_made_by_exec_are_told_apart_by_their_code() -> None:
    """Two exec'd functions with one module and name, different bodies, never share."""
    store = MemoryStore()

    def made(body: str) -> Any:
        scope: dict[str, Any] = {"__name__": "generated"}
        exec(f"async def f(x):\n    return {body}\n", scope)
        return async_disk_cache(store=store)(scope["f"])

    plus, times = made("x + 1"), made("x * 2")
    assert plus.namespace == times.namespace == "generated.f"
    assert [await plus(5), await times(5)] == [6, 10]


async def test_a_redefined_function_does_not_answer_with_the_old_body() -> None:
    """Redefining a function under its name (a notebook cell run again) misses."""
    store = MemoryStore()

    @async_disk_cache(store=store)
    async def prompt(x: str) -> str:
        return "short: " + x

    assert await prompt("q") == "short: q"

    @async_disk_cache(store=store)
    async def prompt(x: str) -> str:  # the edit of a notebook cell
        return "long: " + x

    assert await prompt("q") == "long: q"


async def test_with_version_the_code_is_not_tracked() -> None:
    """With version=, an edited body keeps its entries: the user manages retirement."""
    store = MemoryStore()

    @async_disk_cache(store=store, version=1)
    async def prompt(x: str) -> str:
        return "short: " + x

    key = prompt.cache_key("q")

    @async_disk_cache(store=store, version=1)
    async def prompt(x: str) -> str:  # the edit
        return "long: " + x

    assert prompt.cache_key("q") == key


def test_code_tracking_can_be_turned_off_internally() -> None:
    """CachedFunction(track_code=False) (memo.openai's _send) keys no code fingerprint."""
    options = Options.checked(
        namespace="internal",
        serializer=None,
        directory=None,
        store=MemoryStore(),
        ttl=None,
        version=None,
        cache_if=None,
    )
    untracked = CachedFunction(scale_by, options, (), track_code=False)
    tracked = CachedFunction(scale_by, options, ())
    assert untracked.cache_key(1, 2).startswith("internal::")
    assert tracked.cache_key(1, 2).startswith(f"internal:c{code_fingerprint(scale_by)}:")


# -- __main__: scripts, python -m, python -c, notebooks ------------------------------


SCRIPT = """\
import asyncio, json, pathlib
from memo import async_disk_cache


@async_disk_cache
async def summarize(text: str) -> str:
    return pathlib.Path(__file__).parent.name + ":" + text


async def main() -> None:
    result = await summarize("x")
    info = summarize.cache_info()
    print(json.dumps({"result": result, "hits": info.hits, "namespace": summarize.namespace}))


asyncio.run(main())
"""


def run_python(*args: str, cwd: Path, path: Path | None = None) -> dict[str, Any]:
    """Run Python with this checkout's memo importable; return the JSON it prints."""
    pythonpath = os.pathsep.join(str(p) for p in (ROOT, path) if p is not None)
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": pythonpath, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_two_scripts_with_one_function_name_do_not_share(tmp_path: Path) -> None:
    """Two scripts in two folders, same code and default folder: each gets its own answer."""
    scripts = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        script = tmp_path / folder / "report.py"
        script.write_text(SCRIPT)
        scripts.append(script)
    first = run_python(str(scripts[0]), cwd=tmp_path)
    second = run_python(str(scripts[1]), cwd=tmp_path)
    assert (first["result"], second["result"]) == ("a:x", "b:x")
    assert second["hits"] == 0
    assert first["namespace"] == f"{os.path.realpath(scripts[0])}:summarize"


def test_a_script_run_from_another_folder_hits(tmp_path: Path) -> None:
    """The same script run again from another working directory finds its entries."""
    (tmp_path / "a").mkdir()
    script = tmp_path / "a" / "report.py"
    script.write_text(SCRIPT)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    first = run_python(str(script), cwd=tmp_path)
    again = run_python(os.path.relpath(script, elsewhere), cwd=elsewhere)
    assert (first["hits"], again["hits"]) == (0, 1)
    assert again["result"] == "a:x"


def test_python_m_and_python_c(tmp_path: Path) -> None:
    """Run with python -m, a function is named by its module; with python -c, by __main__."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tool.py").write_text(SCRIPT)
    ran = run_python("-m", "pkg.tool", cwd=tmp_path)
    assert ran["namespace"] == "pkg.tool.summarize"
    code = (
        "import json\nfrom memo import async_disk_cache\n"
        "@async_disk_cache\nasync def f(x): return x\n"
        "print(json.dumps({'namespace': f.namespace}))\n"
    )
    assert run_python("-c", code, cwd=tmp_path) == {"namespace": "__main__.f"}


def notebook_function(**scope: Any) -> Any:
    """A cached function defined as a notebook cell defines it: in __main__, without a file."""
    scope = {"__name__": "__main__", **scope}
    source = "from memo import async_disk_cache\n@async_disk_cache\nasync def f(x): return x\n"
    exec(source, scope)  # what a notebook does with a cell
    return scope["f"]


def test_notebooks_are_named_by_their_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VS Code's __vsc_ipynb_file__ or Jupyter's JPY_SESSION_NAME name the notebook."""
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert notebook_function().namespace == "__main__.f"  # an interactive session
    vscode = tmp_path / "vscode.ipynb"
    assert notebook_function(__vsc_ipynb_file__=str(vscode)).namespace == (
        f"{os.path.realpath(vscode)}:f"
    )
    jupyter = tmp_path / "jupyter.ipynb"
    monkeypatch.setenv("JPY_SESSION_NAME", str(jupyter))
    assert notebook_function().namespace == "__main__.f"  # not a kernel: ignored
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert notebook_function().namespace == f"{os.path.realpath(jupyter)}:f"


# -- code edits -------------------------------------------------------------------


MODULE = """\
from memo import async_disk_cache


{decorator}
async def ask(question: str) -> str:
    \"\"\"Answer a question.\"\"\"
    prompt = "Answer briefly: "
    return prompt + question


def make(factor):
    @async_disk_cache
    async def scale(x):
        return factor * x

    return scale
"""

# Comments, docstrings, blank lines, formatting and the decorator line change.
MODULE_RESTYLED = """\
from memo import async_disk_cache
# The cached helper.

{decorator}  # the decorator line changed too
async def ask(
    question: str,
) -> str:
    \"\"\"Answer a question, briefly.

    A longer docstring.
    \"\"\"

    # The prompt.
    prompt = 'Answer briefly: '
    return (prompt + question)  # done


def make(factor):
    @async_disk_cache
    async def scale(x):
        return factor * x
    return scale
"""

MODULE_EDITED = MODULE.replace("Answer briefly: ", "Answer in detail: ")

DRIVER = """\
import asyncio, json, helper

async def main():
    result = await helper.ask("why?")
    scale = helper.make(3)
    print(json.dumps({
        "result": result,
        "hits": helper.ask.cache_info().hits,
        "closure": scale.cache_key(2),
    }))

asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("decorator", "restyled"),
    [
        pytest.param("@async_disk_cache", "@async_disk_cache(ttl=3600)", id="default-namespace"),
        pytest.param(
            '@async_disk_cache(namespace="ask")',
            '@async_disk_cache("ask", ttl=3600)',
            id="explicit-namespace",
        ),
    ],
)
def test_an_edited_body_misses_a_restyled_one_hits(
    tmp_path: Path, decorator: str, restyled: str
) -> None:
    """Across processes: comments, docstring, formatting hit; an edited prompt misses."""
    helper = tmp_path / "helper.py"

    def run(template: str, line: str) -> dict[str, Any]:
        helper.write_text(template.format(decorator=line))
        return run_python("-c", DRIVER, cwd=tmp_path, path=tmp_path)

    first = run(MODULE, decorator)
    assert (first["result"], first["hits"]) == ("Answer briefly: why?", 0)
    again = run(MODULE_RESTYLED, restyled)
    assert (again["result"], again["hits"]) == ("Answer briefly: why?", 1)
    assert again["closure"] == first["closure"]
    edited = run(MODULE_EDITED, decorator)
    assert (edited["result"], edited["hits"]) == ("Answer in detail: why?", 0)


def test_with_version_an_edit_keeps_its_entries(tmp_path: Path) -> None:
    """With version=, the user retires entries: an edited body still hits, across processes."""
    helper = tmp_path / "helper.py"
    decorator = "@async_disk_cache(version=1)"
    helper.write_text(MODULE.format(decorator=decorator))
    run_python("-c", DRIVER, cwd=tmp_path, path=tmp_path)
    helper.write_text(MODULE_EDITED.format(decorator=decorator))
    edited = run_python("-c", DRIVER, cwd=tmp_path, path=tmp_path)
    assert (edited["result"], edited["hits"]) == ("Answer briefly: why?", 1)


BASE = '''
async def ask(question: str, model: str = "small") -> str:
    """Answer."""
    prompt = f"Answer briefly: {question}"
    return await call(model, prompt)
'''


@pytest.mark.parametrize(
    ("variant", "same"),
    [
        pytest.param(BASE.replace('"""Answer."""', '"""Answer, differently."""'), True, id="doc"),
        pytest.param(BASE.replace('    """Answer."""\n', ""), True, id="no-docstring"),
        pytest.param(BASE.replace("    prompt", "    # why\n\n    prompt"), True, id="comment"),
        pytest.param(
            BASE.replace("(model, prompt)", "(\n        model,\n        prompt,\n    )"),
            True,
            id="formatting",
        ),
        pytest.param(BASE.replace('"small"', "'small'"), True, id="quotes"),
        pytest.param("@cache(version=None)\n" + BASE.lstrip(), True, id="decorator"),
        pytest.param(BASE.replace("async def ask", "async def question"), True, id="name"),
        pytest.param(BASE.replace("briefly", "in detail"), False, id="prompt"),
        pytest.param(BASE.replace('"small"', '"large"'), False, id="default"),
        pytest.param(BASE.replace("-> str", "-> bytes"), False, id="annotation"),
        pytest.param(BASE.replace("(model, prompt)", "(prompt, model)"), False, id="arguments"),
        pytest.param(BASE.replace("await call", "await other"), False, id="callee"),
    ],
)
def test_what_changes_the_fingerprint(variant: str, same: bool) -> None:
    """Only changes to what the code does change its fingerprint."""
    assert (source_fingerprint(variant) == source_fingerprint(BASE)) is same


# Syntax of every kind Python 3.10 parses, to pin the fingerprint on every version.
PINNED_SOURCE = '''
@async_disk_cache(ttl=60)
async def ask(prompt: str, /, *args: int, model: str = "m", n: int = 1, **extra: object) -> list:
    """Ask."""
    import json
    from os import path as p
    global _count
    messages = [{"role": "user", "content": f"{prompt!r:>10} {n=} {model:{n}} {{x}}"}]
    answers = {
        i: (i ** 2, -1.5e-3, 2j, b"x\\x00", None, ..., True, 1267650600228229401496703205376)
        for i in range(n)
        if i % 2
    }
    label = f"{model:a{n}b}{{}}" f"{prompt!a}" "tail" f"{n:{n}.{n}f}"
    unique = {m for m in messages} | {*args}
    total: int = sum(x for x in args)
    total += ~n << 2 >> 1 & 3 ^ 4 | 5 // 6 % 7 @ 8 if n else -n
    async with lock() as held, other():
        async for chunk in stream(*messages, **extra):
            window = (x := chunk[1:2, ::3, ...])
    try:
        result = await call(lambda m=model, *a, **k: m, [*messages], **{"a": 1})
    except (ValueError, KeyError) as error:
        raise RuntimeError("no") from error
    else:
        pass
    finally:
        del held
    match result:
        case {"answer": [first, *rest], **others} if first:
            return [first]
        case Point(x=0, y=[1, 2]) | None | "s" | 1.5 | -2:
            return []
        case (a, b) as pair:
            pass
        case _:
            pass
    while not (a < b <= c is not d not in e):
        break
    else:
        pass
    with open(p.join("a", "b")) as f:
        assert f, "message"

    def inner(a, /, b, *, c=1):
        """Inner docstring."""
        nonlocal n
        n += 1
        return [y async for y in agen()], (yield_ for yield_ in ())

    class Local(Base, metaclass=Meta):
        """Local docstring."""

        x: int = 1

        @property
        def value(self) -> int:
            return self.x

    return [str(~n), "".join(reversed(sorted(answers))), u"u", r"\\d", rb"\\x"]
'''

# Computed once; every Python memo supports must give the same digest.
PINNED_FINGERPRINT = "cce9f20256fc7b59"


def test_the_fingerprint_of_a_fixed_source_is_pinned() -> None:
    """A fixed source has one fingerprint on every Python version: the cross-version guard."""
    assert source_fingerprint(PINNED_SOURCE) == PINNED_FINGERPRINT


def identities(source: str) -> list[str]:
    """Fingerprints and namespaces that must be the same on every Python."""
    return [
        source_fingerprint(source),
        code_fingerprint(scale_by),  # read from this file
        code_fingerprint(Base.greet),  # a method
        code_fingerprint(make_scaler(2)),  # a decorated closure
        code_fingerprint(traced(scale_by)),  # a wrapper, and what it wraps
        make_scaler(2).namespace,  # captured values
        apply_with(abs, MemoryStore()).namespace,  # a captured builtin
        make_fib().namespace,  # a captured function
    ]


def other_pythons() -> list[Path]:
    """The interpreters nox made for this checkout (each has memo's dependencies)."""
    return sorted(ROOT.glob(".nox/tests*/bin/python"))


@pytest.mark.skipif(not other_pythons(), reason="no nox environments in this checkout")
@pytest.mark.parametrize("python", other_pythons(), ids=lambda path: path.parent.parent.name)
def test_the_fingerprint_is_the_same_on_every_python(python: Path) -> None:
    """Each Python nox installed computes the pinned fingerprint, and one for a real function."""
    code = (
        "import json, sys\n"
        "import test_identity as t\n"
        "print(json.dumps(t.identities(sys.stdin.read())))\n"
    )
    result = subprocess.run(
        [str(python), "-c", code],
        input=PINNED_SOURCE,
        cwd=ROOT,
        env={
            **os.environ,
            # Imported as pytest imports it: by its file name, from tests/.
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == identities(PINNED_SOURCE)


# -- the key layout -----------------------------------------------------------------


SLOTS = [
    (None, None),
    ("1", None),
    (None, "1"),
    ("1", "2"),
    ("1c2", None),
    ("1+c2", None),
    (None, "1+v2"),
    ("", None),
    (None, ""),
    ("", ""),
]


def test_versions_and_fingerprints_never_meet() -> None:
    """No two (version, fingerprint) pairs give one key; every key keeps its namespace prefix."""
    for namespace in ("a", "a:b", "a[0123456789abcdef]"):
        keys = [store_key(namespace, v, "d", fingerprint=c) for v, c in SLOTS]
        assert len(set(keys)) == len(SLOTS)
        for key in keys:
            assert namespace_of(key) == namespace
            assert key.startswith(namespace_prefix(namespace))
            assert key.endswith(":d")
