"""Development tasks for memo: `nox` runs the checks CI runs; `nox -s bench` measures."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typecheck", "tests", "frameworks", "docs", "package"]


# Every supported Python: some defects (asyncio, inspect, redis-py's timeouts)
# exist on some versions only. `nox -s tests-3.11` runs one.
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


def _find_pyenv_pythons() -> None:
    # pyenv's shims answer only for the selected version ("python3.10: command
    # not found"), so nox would miss the others pyenv installed: put their
    # folders first on PATH.
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    folders = [
        str(folder)
        for version in PYTHONS
        for folder in sorted(root.glob(f"{version}.*/bin"))[-1:]
        if (folder / f"python{version}").exists()
    ]
    if folders:
        os.environ["PATH"] = os.pathsep.join([*folders, os.environ.get("PATH", "")])


_find_pyenv_pythons()


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """Run the test suite (real diskcache folders, redis-server and an OpenAI-compatible server)."""
    session.install("-e", ".[test]")
    # tests/frameworks needs the libraries the `frameworks` session installs.
    session.run("pytest", "--ignore=tests/frameworks", *session.posargs)


@nox.session
def frameworks(session: nox.Session) -> None:
    """Run memo under LangChain, LiteLLM, the Agents SDK and instructor (the `frameworks` extra).

    One Python (the one running nox): the pins install on 3.10 to 3.13, and
    one run shows whether each library's calls are cached.
    """
    session.install("-e", ".[test,frameworks]")
    session.run("pytest", "tests/frameworks", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """Check memo/ and the typing tests with mypy --strict."""
    session.install("-e", ".[typecheck]")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site with mkdocs --strict (offline)."""
    session.install("-e", ".[docs]")
    # mkdocs-material prints a banner about its successor unless told not to.
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "site", env={"NO_MKDOCS_2_WARNING": "1"}
    )


@nox.session
def package(session: nox.Session) -> None:
    """Build the wheel and sdist, check them, and run the demo from the wheel in a new venv.

    What a user gets from `pip install memo-cache[openai,redis]`: the wheel
    (not this checkout) with its extras, in an environment that has never
    seen memo, run from outside the source tree.
    """
    session.install("build>=1.2", "twine>=5")
    dist = Path(session.create_tmp()) / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), ".")
    session.run("twine", "check", "--strict", *map(str, sorted(dist.iterdir())))
    (wheel,) = dist.glob("memo_cache-*.whl")
    with tempfile.TemporaryDirectory(prefix="memo-wheel-") as tmp:
        venv = Path(tmp) / "venv"
        session.run("python", "-m", "venv", str(venv))
        python = str(venv / "bin" / "python")
        session.run(python, "-m", "pip", "install", "-q", f"{wheel}[openai,redis]", external=True)
        env = {"MEMO_CACHE_DIR": str(Path(tmp) / "cache")}
        with session.chdir(tmp):  # away from the checkout: `import memo` must find the wheel
            check = (
                "import memo, memo.openai, memo.stores.redis, pathlib; "
                "assert 'site-packages' in memo.__file__, memo.__file__; "
                "assert (pathlib.Path(memo.__file__).parent / 'py.typed').exists(); "
                "print('memo', memo.__version__, 'from', memo.__file__)"
            )
            session.run(python, "-c", check, external=True, env=env)
            session.run(python, "-m", "memo", external=True, env=env)
            out = session.run(python, "-m", "memo", external=True, env=env, silent=True)
            if "Call 1 was read from disk" not in str(out):
                session.error(f"the second demo run did not hit the first run's entry:\n{out}")
            session.run(str(venv / "bin" / "memo"), "stats", external=True, env=env)


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Measure memo against hand-written baselines; prints medians and ratios."""
    # matplotlib draws the chart from the run's own figures: this session only,
    # never a dependency of memo.
    session.install("-e", ".[openai,redis]", "matplotlib>=3.8")
    args = session.posargs or [
        "--chart",
        "docs/assets/bench.png",
        "--json",
        "docs/assets/bench.json",
    ]
    session.run("python", "benchmarks/bench.py", *args)
