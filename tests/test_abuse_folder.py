"""The cache folder: created private, distrusted when others can write it, never escaped."""

from __future__ import annotations

import sqlite3
import stat
import warnings
from typing import TYPE_CHECKING, Any

import pytest

from memo import DiskStore, MemoWarning, async_disk_cache
from memo.stores import RefusedEntryError

if TYPE_CHECKING:
    from pathlib import Path


def make(store: DiskStore | None = None, directory: Path | None = None) -> tuple[Any, list[int]]:
    runs: list[int] = []

    @async_disk_cache(namespace="folder-abuse", store=store, directory=directory)
    async def value(i: int) -> str:
        runs.append(i)
        return "v" * 50_000 + str(i)  # big: diskcache keeps it in a file of its own

    return value, runs


async def test_default_folder_is_created_0o700(cache_dir: Path) -> None:
    """The folder from $MEMO_CACHE_DIR is created on first use with mode 0o700."""
    value, _ = make()
    await value(1)
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700


async def test_folder_is_0o700_whatever_the_umask(tmp_path: Path) -> None:
    """A permissive umask does not loosen the folder: still 0o700."""
    import os

    old = os.umask(0)
    try:
        value, _ = make(directory=tmp_path / "a" / "cache")
        await value(1)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "cache").stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o770, 0o720, 0o707, 0o702, 0o777, 0o1777], ids=oct)
async def test_folder_others_can_write_warns(tmp_path: Path, mode: int) -> None:
    """An existing folder that group or others can write gets a MemoWarning saying how to fix it."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(mode)
    value, _ = make(directory=folder)
    with pytest.warns(MemoWarning, match="can be written by other users") as caught:
        assert await value(1) == "v" * 50_000 + "1"
    assert "chmod 700" in str(caught[0].message)


@pytest.mark.parametrize("mode", [0o700, 0o750, 0o755, 0o500], ids=oct)
async def test_folder_only_its_owner_can_write_is_quiet(tmp_path: Path, mode: int) -> None:
    """A folder only its owner can write gets no warning."""
    folder = tmp_path / "mine"
    folder.mkdir()
    folder.chmod(mode)
    value, _ = make(directory=folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert await value(1) == "v" * 50_000 + "1"


def plant_row(folder: Path, key: str, filename: str) -> None:
    """Write a Cache row as anyone who can write cache.db could: naming a file of their choice."""
    con = sqlite3.connect(folder / "cache.db")
    with con:
        con.execute("DELETE FROM Cache WHERE key = ?", (key,))
        con.execute(
            "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count,"
            " tag, size, mode, filename, value) VALUES (?, 1, 0, NULL, 0, 0, ?, 0, 2, ?, NULL)",
            (key, "folder-abuse", filename),
        )
    con.close()


@pytest.mark.parametrize(
    "target", ["../victim.txt", "../../victim.txt", "{abs}"], ids=["up-one", "up-two", "absolute"]
)
async def test_row_naming_a_file_outside_the_folder(tmp_path: Path, target: str) -> None:
    """A crafted row pointing outside the folder: the file is neither read nor deleted."""
    folder = tmp_path / "deep" / "cache"
    store = DiskStore(folder)
    value, runs = make(store)
    await value(0)  # creates the database
    victim = tmp_path / "victim.txt" if target != "../victim.txt" else folder.parent / "victim.txt"
    victim.write_text("precious")
    filename = str(victim) if target == "{abs}" else target
    key = value.cache_key(1)

    plant_row(folder, key, filename)
    with pytest.raises(RefusedEntryError, match="not its own"):
        await store.get(key)
    assert await value(1) == "v" * 50_000 + "1"  # a miss: the planted row is overwritten
    assert victim.read_text() == "precious"

    plant_row(folder, key, filename)
    assert await value.invalidate(1) is True
    plant_row(folder, key, filename)
    assert await value.cache_clear() >= 1
    assert victim.read_text() == "precious"
    assert await value(0) == "v" * 50_000 + "0"  # cleared: runs again, and is stored
    assert await value(0) == "v" * 50_000 + "0"
    assert runs == [0, 1, 0]
    await store.close()


@pytest.mark.parametrize("swap", ["link-to-a-file", "link-to-dev-zero", "fifo"])
async def test_a_value_file_swapped_for_a_link_or_a_fifo(tmp_path: Path, swap: str) -> None:
    """A value file replaced by a link or a FIFO is absent: not followed, not waited on.

    A link could point at a private file, or at /dev/zero (read forever); a
    FIFO would block the reader until some process wrote to it.
    """
    import os

    folder = tmp_path / "cache"
    store = DiskStore(folder)
    value, runs = make(store)
    await value(1)
    (value_file,) = folder.glob("??/??/*.val")
    value_file.unlink()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    if swap == "fifo":
        os.mkfifo(value_file)
    else:
        value_file.symlink_to(victim if swap == "link-to-a-file" else "/dev/zero")
    assert await store.get(value.cache_key(1)) is None
    assert await value(1) == "v" * 50_000 + "1"  # a miss: run again, stored in its place
    assert await value(1) == "v" * 50_000 + "1"
    assert runs == [1, 1]
    assert victim.read_text() == "precious"
    await store.close()
