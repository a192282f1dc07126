"""The disk store: persistence, its folder, namespaces, and refusing diskcache's pickle mode."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING, Any

import diskcache
import pytest

from memo import CacheInfo, DiskStore, MemoWarning, async_disk_cache
from memo.stores import default_directory

if TYPE_CHECKING:
    from pathlib import Path

RESTART_SCRIPT = textwrap.dedent(
    """
    import asyncio, datetime, json, sys
    from pathlib import Path
    import pydantic
    from memo import async_disk_cache

    class Forecast(pydantic.BaseModel):
        city: str
        day: datetime.date
        temps: tuple[float, ...]

    runs = Path(sys.argv[1])

    @async_disk_cache(namespace="restart")
    async def forecast(city: str, days: int = 3) -> Forecast:
        runs.write_text(runs.read_text() + "run\\n")
        return Forecast(city=city, day=datetime.date(2024, 5, 6), temps=(1.5, -2.0))

    async def main():
        value = await forecast("Paris")
        info = forecast.cache_info()
        print(json.dumps({"type": type(value).__name__, "value": value.model_dump(mode="json"),
                          "hits": info.hits, "misses": info.misses, "errors": info.errors}))

    asyncio.run(main())
    """
)


def _run_restart_script(runs: Path, cache_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "MEMO_CACHE_DIR": str(cache_dir)}
    out = subprocess.run(
        [sys.executable, "-c", RESTART_SCRIPT, str(runs)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.slow
def test_entries_survive_a_restart(tmp_path: Path, cache_dir: Path) -> None:
    """A second process finds the first one's entry: no run, the declared type comes back."""
    runs = tmp_path / "runs.txt"
    runs.write_text("")
    first = _run_restart_script(runs, cache_dir)
    second = _run_restart_script(runs, cache_dir)
    assert (first["hits"], first["misses"], first["errors"]) == (0, 1, 0)
    assert (second["hits"], second["misses"], second["errors"]) == (1, 0, 0)
    assert second["type"] == "Forecast"
    assert second["value"] == first["value"]
    assert runs.read_text() == "run\n"


def _counted(namespace: str, **options: Any) -> tuple[list[int], Any]:
    calls: list[int] = []

    @async_disk_cache(namespace=namespace, **options)
    async def compute(x: int) -> dict[str, int]:
        calls.append(x)
        return {"x": x}

    return calls, compute


async def test_folder_is_created_private(cache_dir: Path) -> None:
    """The cache folder is created on first use, with mode 0o700."""
    _, compute = _counted("private")
    assert not cache_dir.exists()
    await compute(1)
    assert cache_dir.is_dir()
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert (cache_dir / "cache.db").exists()


async def test_nested_folder_is_created_private(tmp_path: Path) -> None:
    """A folder several levels deep is created, the cache folder itself with 0o700."""
    folder = tmp_path / "a" / "b" / "cache"
    _, compute = _counted("nested", directory=folder)
    await compute(1)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


async def test_world_writable_folder_warns(tmp_path: Path) -> None:
    """An existing folder others can write gets a MemoWarning that says how to fix it."""
    folder = tmp_path / "open"
    folder.mkdir()
    folder.chmod(0o777)
    _, compute = _counted("open", directory=folder)
    with pytest.warns(MemoWarning, match="chmod 700"):
        assert await compute(1) == {"x": 1}


async def test_memo_cache_dir_is_read_at_first_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    """$MEMO_CACHE_DIR is read when the store is first needed, not when decorating."""
    _, compute = _counted("env")
    later = tmp_path / "chosen-later"
    monkeypatch.setenv("MEMO_CACHE_DIR", str(later))
    await compute(1)
    assert (later / "cache.db").exists()
    assert not cache_dir.exists()
    store = DiskStore(later)
    assert await store.get(compute.cache_key(1)) is not None
    await store.close()


def test_default_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """$MEMO_CACHE_DIR wins; else $XDG_CACHE_HOME/memo; else ~/.cache/memo."""
    monkeypatch.setenv("MEMO_CACHE_DIR", str(tmp_path / "env"))
    assert default_directory() == tmp_path / "env"
    monkeypatch.delenv("MEMO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert default_directory() == tmp_path / "xdg" / "memo"
        monkeypatch.delenv("XDG_CACHE_HOME")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
        assert default_directory() == tmp_path / "home" / ".cache" / "memo"


async def test_clear_drops_exactly_one_namespace(cache_dir: Path) -> None:
    """Clearing 'a' drops every version of 'a' and nothing of 'a:b', 'a b' or 'ab'."""
    functions = {}
    for namespace, version in [("a", None), ("a", "2"), ("a:b", None), ("a b", None), ("ab", None)]:
        _, functions[namespace, version] = _counted(namespace, version=version)
    for fn in functions.values():
        await fn(1)
        await fn(2)
    assert await functions["a", None].cache_clear() == 4
    store = DiskStore(cache_dir)
    for (namespace, _version), fn in functions.items():
        stored = await store.get(fn.cache_key(1))
        assert (stored is None) == (namespace == "a"), namespace
    await store.close()
    assert await functions["a:b", None].cache_clear() == 2


async def test_store_api_round_trip(tmp_path: Path) -> None:
    """get/set/delete/clear/close work directly, and a closed store reopens on use."""
    store = DiskStore(tmp_path / "direct")
    assert await store.get("ns:1") is None
    await store.set("ns:1", b"\x00\xffvalue")
    await store.set("ns:2", b"x" * 100_000)  # large: diskcache keeps it in a file
    assert await store.get("ns:1") == b"\x00\xffvalue"
    assert await store.get("ns:2") == b"x" * 100_000
    await store.close()
    assert await store.get("ns:1") == b"\x00\xffvalue"
    assert await store.delete("ns:1") is True
    assert await store.delete("ns:1") is False
    assert await store.clear("ns") == 1
    assert await store.get("ns:2") is None
    await store.close()


def _rows(folder: Path) -> list[str]:
    """The keys of every row in the folder's database, expired ones included."""
    with contextlib.closing(sqlite3.connect(folder / "cache.db")) as con:
        return sorted(key for (key,) in con.execute("SELECT key FROM Cache"))


async def test_expire_drops_expired_entries_of_every_namespace(tmp_path: Path) -> None:
    """expire() deletes expired rows and their value files in every namespace; keeps the rest."""
    folder = tmp_path / "expire"
    store = DiskStore(folder)
    await store.set("a:old", b"1", ttl=3600)
    await store.set("b:old", b"x" * 100_000, ttl=3600)  # large: its value file goes too
    await store.set("a:forever", b"2")
    await store.set("b:fresh", b"3", ttl=3600)
    # Expired by hand: a short ttl could run out between two writes, and
    # diskcache drops expired rows as it writes.
    with contextlib.closing(sqlite3.connect(folder / "cache.db")) as db, db:
        db.execute("UPDATE Cache SET expire_time = 1 WHERE key LIKE '%:old'")
    assert await store.expire() == 2
    assert _rows(folder) == ["a:forever", "b:fresh"]
    assert list(folder.rglob("*.val")) == []
    assert await store.get("b:fresh") == b"3"
    assert await store.expire() == 0
    await store.close()


async def test_each_write_drops_up_to_ten_expired_entries(tmp_path: Path) -> None:
    """As docs/controlling.md says: a write also drops the ten oldest-expired rows of the folder."""
    folder = tmp_path / "cull"
    store = DiskStore(folder)
    for i in range(15):
        await store.set(f"a:{i:02}", b"1", ttl=3600)
    await store.set("b:kept", b"2", ttl=3600)
    with contextlib.closing(sqlite3.connect(folder / "cache.db")) as db, db:
        # Expired by hand, in order: a:00 expired first.
        for i in range(15):
            db.execute("UPDATE Cache SET expire_time = ? WHERE key = ?", (1 + i, f"a:{i:02}"))
    await store.set("c:new", b"3")  # any namespace's write culls
    assert _rows(folder) == [*(f"a:{i:02}" for i in range(10, 15)), "b:kept", "c:new"]
    assert await store.get("a:14") is None  # expired rows left behind read as misses
    await store.close()


async def test_clear_all_drops_every_entry_of_the_folder(tmp_path: Path) -> None:
    """clear_all() drops the entries of every namespace and function; the store stays usable."""
    folder = tmp_path / "clear-all"
    store = DiskStore(folder)
    _, compute = _counted("decorated", store=store)
    await compute(1)
    await store.set("a:1", b"1")
    await store.set("b:1", b"x" * 100_000, ttl=3600)
    assert await store.clear_all() == 3
    assert _rows(folder) == []
    assert list(folder.rglob("*.val")) == []
    assert await store.clear_all() == 0
    await store.set("a:2", b"2")
    assert await store.get("a:2") == b"2"
    await store.close()


def _exec_payload(marker: Path, padding: int) -> Any:
    """An object whose unpickling runs code that creates ``marker``."""
    code = f"open({str(marker)!r}, 'w').close()  # {'x' * padding}"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (exec, (code,))

    return Payload()


@pytest.mark.parametrize("size", [0, 100_000], ids=["row", "file"])
@pytest.mark.parametrize("warm", [False, True], ids=["cold-store", "warm-store"])
async def test_pickle_mode_entry_is_never_unpickled(
    size: int, warm: bool, tmp_path: Path, cache_dir: Path
) -> None:
    """An entry written in diskcache's pickle mode is refused unread: a miss and an error."""
    marker = tmp_path / "unpickled"
    calls, compute = _counted("crafted")
    if warm:
        await compute(0)  # the store is open, so fast paths are in play
    key = compute.cache_key(1)
    with diskcache.Cache(str(cache_dir)) as plain:
        plain.set(key, _exec_payload(marker, size))
    assert not marker.exists()
    assert await compute(1) == {"x": 1}
    assert not marker.exists()
    info = compute.cache_info()
    assert (info.hits, info.errors) == (0, 1)
    assert await compute(1) == {"x": 1}  # the refused entry was overwritten
    assert compute.cache_info().hits == 1
    assert not marker.exists()
    with diskcache.Cache(str(cache_dir)) as plain:
        assert isinstance(plain.get(key), bytes)
    assert calls == [0, 1] if warm else [1]


async def test_pickle_mode_entry_is_refused_by_the_store(tmp_path: Path) -> None:
    """DiskStore.get raises on a pickle-mode entry instead of decoding it."""
    marker = tmp_path / "unpickled"
    folder = tmp_path / "store"
    with diskcache.Cache(str(folder)) as plain:
        plain.set("ns:k", _exec_payload(marker, 0))
        plain.set("ns:text", "a str is stored in text mode")
    store = DiskStore(folder)
    with pytest.raises(ValueError, match="refus"):
        await store.get("ns:k")
    with pytest.raises(ValueError, match="refus"):
        await store.get("ns:text")
    assert not marker.exists()
    await store.close()
    with diskcache.Cache(str(folder)) as plain:  # the control: diskcache alone runs the payload
        plain.get("ns:k")
    assert marker.exists()


async def test_a_folder_is_shared_by_functions_and_stores(tmp_path: Path) -> None:
    """An entry written through directory= is read through another DiskStore on that folder."""
    folder = tmp_path / "shared"
    calls, first = _counted("same", directory=folder)
    await first(1)
    store = DiskStore(folder)
    second_calls, second = _counted("same", store=store)
    assert second.cache_key(1) == first.cache_key(1)
    assert await second(1) == {"x": 1}
    assert second.cache_info() == CacheInfo(hits=1, misses=0, errors=0)
    assert (calls, second_calls) == ([1], [])
    await store.close()
