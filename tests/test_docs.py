"""Every ```python sample in docs/*.md and README.md runs, and every page is in the site's nav.

A page's ```python blocks are joined in order and run as one script, with
top-level ``await`` allowed, in a fresh process, a fresh temporary
$MEMO_CACHE_DIR and a temporary working directory. Each block keeps its line
numbers from the page, so a traceback points at the Markdown line. Blocks
fenced ```py are shown, not run. Pages whose samples mention OPENAI or REDIS
get the test suite's fake OpenAI server or redis-server through the
environment (OPENAI_BASE_URL, OPENAI_API_KEY, REDIS_URL).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)

# Runs one page's script: compiled with top-level await allowed, awaited on a
# fresh event loop when it awaits anything; every warning is an error.
RUNNER = """
import ast, asyncio, sys, warnings
warnings.simplefilter("error")
path = sys.argv[1]
with open(path, encoding="utf-8") as file:
    source = file.read()
code = compile(source, sys.argv[2], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
scope = {"__name__": "__main__", "__file__": sys.argv[2]}
result = eval(code, scope)
if result is not None:
    asyncio.run(result)
"""


def script_of(text: str) -> str:
    """Join a page's ```python blocks, each at its own line numbers, blanks elsewhere."""
    lines = [""] * (text.count("\n") + 1)
    for match in FENCE.finditer(text):
        first = text.count("\n", 0, match.start("body"))
        body = textwrap.dedent(match.group("body"))
        for offset, line in enumerate(body.splitlines()):
            lines[first + offset] = line
    return "\n".join(lines) + "\n"


def run_script(
    script: str, name: str, tmp_path: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run a page's script in a fresh process, in ``tmp_path``, with its own cache folder."""
    source = tmp_path / "page.py"
    source.write_text(script, encoding="utf-8")
    work = tmp_path / "cwd"
    work.mkdir()
    full_env = {**os.environ, "MEMO_CACHE_DIR": str(tmp_path / "memo-cache"), **env}
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(source), name],
        cwd=work,
        env=full_env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=100,
        check=False,
    )


def page_id(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


# A page that says so runs in the `frameworks` nox session, which installs the
# libraries its samples use (LangChain, LiteLLM, ...): see tests/frameworks/.
NEEDS_FRAMEWORKS = "<!-- samples need the frameworks extra"
FRAMEWORK_PAGES = [p for p in PAGES if p.exists() and NEEDS_FRAMEWORKS in p.read_text("utf-8")]
SAMPLED = [
    page
    for page in PAGES
    if page.exists() and FENCE.search(page.read_text("utf-8")) and page not in FRAMEWORK_PAGES
]


@pytest.mark.slow
@pytest.mark.parametrize("page", SAMPLED, ids=page_id)
def test_page_samples_run(page: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Every ```python block of the page runs, in order, as one script, without error."""
    script = script_of(page.read_text("utf-8"))
    env: dict[str, str] = {}
    if "OPENAI" in script:
        openai_server = request.getfixturevalue("openai_server")
        env["OPENAI_BASE_URL"] = str(openai_server.base_url)
        env["OPENAI_API_KEY"] = "sk-memo-docs-not-a-real-key"
    if "REDIS" in script:
        env["REDIS_URL"] = str(request.getfixturevalue("redis_server").url)
    result = run_script(script, page_id(page), tmp_path, env)
    assert result.returncode == 0, f"{page_id(page)} samples failed:\n{result.stderr}"


def test_core_pages_have_samples() -> None:
    """The tutorial pages carry runnable samples, so the test above checks them."""
    sampled = {page.name for page in SAMPLED}
    for name in ("index.md", "keys.md", "serializers.md", "stores.md", "controlling.md"):
        assert name in sampled


@pytest.mark.slow
def test_a_failing_sample_fails_at_its_markdown_line(tmp_path: Path) -> None:
    """A broken sample makes the run fail, and the traceback names the page's line."""
    page = "Intro.\n\n```python\nx = 1\n```\n\nShown only:\n\n```py\nnot run(\n```\n\n"
    page += "```python\nimport asyncio\nawait asyncio.sleep(0)\nassert x == 2, 'boom'\n```\n"
    result = run_script(script_of(page), "docs/broken.md", tmp_path, {})
    assert result.returncode == 1
    assert 'File "docs/broken.md", line 16' in result.stderr
    assert "AssertionError: boom" in result.stderr


@pytest.mark.slow
def test_indented_blocks_are_run(tmp_path: Path) -> None:
    """A ```python block indented inside a list or an admonition is run too."""
    page = "!!! note\n\n    ```python\n    raise SystemExit(3)\n    ```\n"
    assert run_script(script_of(page), "docs/indented.md", tmp_path, {}).returncode == 3


def nav_pages() -> list[str]:
    """The Markdown files mkdocs.yml's nav names."""
    text = (ROOT / "mkdocs.yml").read_text("utf-8")
    nav = text.split("\nnav:\n", 1)[1]
    nav = re.split(r"\n(?=\S)", nav, maxsplit=1)[0]
    return re.findall(r":\s*([\w./-]+\.md)\s*$", nav, re.M)


def test_every_page_is_in_the_nav() -> None:
    """Each docs/*.md page is reachable from the nav, and each nav entry exists."""
    listed = nav_pages()
    assert len(listed) == len(set(listed))
    on_disk = sorted(page.name for page in DOCS.glob("*.md"))
    assert sorted(listed) == on_disk


# `test_file.py::test_name`, or `::test_name` after a file named earlier on the page.
TEST_REFERENCE = re.compile(r"`(?P<file>test_\w+\.py)?(?:::(?P<name>\w+))?`")


def broken_test_references(text: str, tests: Path) -> list[str]:
    """The `test_x.py::test_y` references in ``text`` that name no test in ``tests``."""
    broken, last = [], None
    for match in TEST_REFERENCE.finditer(text):
        file, name = match.group("file"), match.group("name")
        if file is None and name is None:
            continue
        file = file or last
        last = file
        path = tests / file if file else None
        exists = path is not None and path.is_file()
        text = path.read_text("utf-8") if exists and path is not None else ""
        if not exists or (name and not re.search(rf"^\s*(async )?def {name}\(", text, re.M)):
            broken.append(match.group(0))
    return broken


@pytest.mark.parametrize("page", [p for p in PAGES if p.exists()], ids=page_id)
def test_named_tests_exist(page: Path) -> None:
    """Every test a page cites as evidence (`test_x.py::test_y`) exists under tests/."""
    assert broken_test_references(page.read_text("utf-8"), ROOT / "tests") == []


def test_a_renamed_test_is_a_broken_reference() -> None:
    """The reference check catches a missing file, a missing test, and one after `::` only."""
    text = (
        "`test_docs.py::test_named_tests_exist`, `::test_no_such_thing`, "
        "`test_nowhere.py`, `test_docs.py`, `::test_a_renamed_test_is_a_broken_reference`"
    )
    assert broken_test_references(text, ROOT / "tests") == [
        "`::test_no_such_thing`",
        "`test_nowhere.py`",
    ]


def slug(heading: str) -> str:
    """The anchor mkdocs gives a heading (its default `toc` slugify)."""
    text = re.sub(r"[^\w\s-]", "", heading.strip().lower())
    return re.sub(r"[-\s]+", "-", text).strip("-")


LINK = re.compile(r"\]\((?P<page>[\w.-]+\.md)?#(?P<anchor>[\w-]+)\)")


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=page_id)
def test_links_to_headings_exist(page: Path) -> None:
    """Every `page.md#anchor` (or `#anchor`) link points at a heading of that page."""
    for match in LINK.finditer(page.read_text("utf-8")):
        target = DOCS / match.group("page") if match.group("page") else page
        headings = re.findall(r"^#+\s+(.+)$", target.read_text("utf-8"), re.M)
        assert match.group("anchor") in {slug(h) for h in headings}, match.group(0)
