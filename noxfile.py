"""Development tasks for memo: `nox` runs the checks CI runs; `nox -s bench` measures."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["lint", "typecheck", "tests", "docs"]


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (real diskcache folders, redis-server and an OpenAI-compatible server)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=["3.10", "3.12", "3.13"], default=False)
def compat(session: nox.Session) -> None:
    """Run the test suite on the other supported Pythons (those installed here)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


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
    session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Measure memo against hand-written baselines; prints medians and ratios."""
    session.install("-e", ".[openai]")
    session.run("python", "benchmarks/bench.py", *session.posargs)
