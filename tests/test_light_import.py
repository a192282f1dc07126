"""``import memo`` loads what a program uses when it uses it.

Each check runs in a fresh interpreter and looks at ``sys.modules``: what a
program never touches (pydantic, redis-py, diskcache and SQLite, asyncio,
the openai SDK) must not be imported on its behalf.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

HEAVY = ("asyncio", "pydantic", "redis", "diskcache", "sqlite3", "openai")


def _loaded_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps(sorted({{m.split(".")[0] for m in sys.modules}} & {set(HEAVY)!r})))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_import_memo_loads_none_of_the_heavy_modules() -> None:
    assert _loaded_after("import memo") == set()


def test_decorating_a_json_function_loads_none_of_them() -> None:
    code = """
    import memo

    @memo.async_disk_cache(namespace="light.json")
    async def forecast(city: str, days: int = 3) -> dict[str, float]:
        return {}

    forecast.cache_key("Paris")
    """
    assert _loaded_after(code) == set()


def test_memory_store_needs_neither_diskcache_nor_redis() -> None:
    code = """
    from memo import MemoryStore, async_disk_cache

    @async_disk_cache(namespace="light.memory", store=MemoryStore())
    async def f(x: int) -> int:
        return x
    """
    assert _loaded_after(code) == set()


def test_a_pydantic_return_type_loads_pydantic_only() -> None:
    code = """
    import pydantic, memo

    class Answer(pydantic.BaseModel):
        text: str

    @memo.async_disk_cache(namespace="light.model", store=memo.MemoryStore())
    async def ask(q: str) -> Answer:
        return Answer(text=q)

    assert isinstance(ask.cache_key("q"), str)
    """
    assert _loaded_after(code) == {"pydantic"}


def test_a_call_works_after_the_light_import() -> None:
    code = """
    import asyncio, memo

    @memo.async_disk_cache(namespace="light.call", store=memo.MemoryStore())
    async def double(x: int) -> int:
        return 2 * x

    async def main():
        assert await double(2) == 4
        assert await double(2) == 4
        assert double.cache_info().hits == 1

    asyncio.run(main())
    """
    assert _loaded_after(code) == {"asyncio"}


def test_cli_stats_loads_no_asyncio_nor_pydantic(tmp_path: Path) -> None:
    code = f"""
    import diskcache
    from memo._cli import main

    diskcache.Cache({str(tmp_path)!r}).close()
    assert main(["stats", "--dir", {str(tmp_path)!r}]) == 0
    """
    assert _loaded_after(code) == {"diskcache", "sqlite3"}


def test_the_pytest_plugin_alone_loads_none_of_them() -> None:
    """The plugin loads in every pytest run where memo-cache is installed: it must cost little."""
    assert _loaded_after("import memo.pytest_plugin") == set()
