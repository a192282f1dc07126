"""The `memo` command line run as a subprocess against a cache that decorated functions filled."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import diskcache
import pydantic
import pytest

from memo import PickleSerializer, async_disk_cache

if TYPE_CHECKING:
    from pathlib import Path


class Forecast(pydantic.BaseModel):
    city: str
    highs_c: list[int]


def memo_cli(
    *args: str, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """Run `python -m memo ARGS` with the test's environment ($MEMO_CACHE_DIR included)."""
    return subprocess.run(
        [sys.executable, "-m", "memo", *args],
        capture_output=True,
        text=True,
        stdin=stdin,
        timeout=60,
        check=False,
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


async def fill(directory: Path) -> dict[str, str]:
    """Call real decorated functions so the folder holds one entry of each kind; return keys."""

    @async_disk_cache(namespace="weather", directory=directory)
    async def weather(city: str, days: int = 3) -> dict[str, Any]:
        return {"city": city, "days": days}

    @async_disk_cache(namespace="weather:typed", directory=directory)
    async def typed(city: str) -> Forecast:
        return Forecast(city=city, highs_c=[21, 23])

    @async_disk_cache(namespace="pickled", directory=directory, serializer=PickleSerializer())
    async def pickled(n: int) -> set[int]:
        return set(range(n))

    @async_disk_cache(namespace="big", directory=directory)
    async def big(n: int) -> str:
        return "x" * n

    @async_disk_cache(namespace="short", directory=directory, ttl=0.001)
    async def short(n: int) -> int:
        return n

    @async_disk_cache(namespace="long", directory=directory, ttl=3600)
    async def long(n: int) -> int:
        return n

    await weather("Paris")
    await weather("Lyon", days=5)
    await typed("Oslo")
    await pickled(3)
    await big(40_000)  # above diskcache's 32 KiB threshold: stored in its own file
    await long(1)
    # Last: every write culls entries already expired, and this one expires at once.
    await short(1)
    await weather.store.close()
    return {
        "json": weather.cache_key("Paris"),
        "pydantic": typed.cache_key("Oslo"),
        "pickle": pickled.cache_key(3),
        "big": big.cache_key(40_000),
        "short": short.cache_key(1),
        "long": long.cache_key(1),
    }


@pytest.fixture
async def keys(cache_dir: Path) -> dict[str, str]:
    """The default cache folder ($MEMO_CACHE_DIR), filled by decorated functions."""
    return await fill(cache_dir)


def test_stats_counts_entries_and_namespaces(keys: dict[str, str], cache_dir: Path) -> None:
    """`stats --json` reports every entry, per-namespace counts and the time span."""
    before = time.time()
    data = as_json(memo_cli("stats", "--json"))
    assert data["directory"] == str(cache_dir)
    assert data["entries"] == 7
    counts = {ns["namespace"]: ns["entries"] for ns in data["namespaces"]}
    expected = {"weather": 2, "weather:typed": 1, "pickled": 1, "big": 1, "short": 1, "long": 1}
    assert counts == expected
    sizes = {ns["namespace"]: ns["bytes"] for ns in data["namespaces"]}
    assert sizes["big"] > 40_000
    assert data["value_bytes"] == sum(sizes.values())
    assert data["size_on_disk"] >= data["value_bytes"]
    assert data["expired"] == 1
    assert data["oldest"] <= data["newest"]
    assert data["newest"] <= time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(before + 1))


def test_stats_text_is_a_readable_table(keys: dict[str, str], cache_dir: Path) -> None:
    """`stats` without --json prints the folder, the totals and one row per namespace."""
    result = memo_cli("stats", "--dir", str(cache_dir))
    assert result.returncode == 0, result.stderr
    assert f"cache folder  {cache_dir}" in result.stdout
    assert "entries       7 (1 expired)" in result.stdout
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[6:]}
    assert rows["weather"] == "2"
    assert rows["weather:typed"] == "1"


def test_ls_lists_one_namespace_only(keys: dict[str, str]) -> None:
    """`ls weather` lists its keys, and not those of `weather:typed`, which starts the same."""
    data = as_json(memo_cli("ls", "weather", "--json"))
    assert len(data) == 2
    assert keys["json"] in [row["key"] for row in data]
    assert keys["pydantic"] not in [row["key"] for row in data]
    assert all(row["expires"] is None and not row["expired"] for row in data)


def test_ls_shows_expiry(keys: dict[str, str]) -> None:
    """`ls` tells an expired entry from a live one, in text and in JSON."""
    short = as_json(memo_cli("ls", "short", "--json"))
    assert [row["expired"] for row in short] == [True]
    long = memo_cli("ls", "long")
    assert long.returncode == 0, long.stderr
    assert keys["long"] in long.stdout
    assert " in 1h" in long.stdout or " in 60m" in long.stdout


@pytest.mark.parametrize(
    ("kind", "serializer", "value"),
    [
        pytest.param("json", "json", {"city": "Paris", "days": 3}, id="json"),
        pytest.param(
            "pydantic",
            f"pydantic:{__name__}.Forecast",
            {"city": "Oslo", "highs_c": [21, 23]},
            id="pydantic",
        ),
        pytest.param("big", "json", "x" * 40_000, id="value-in-a-file"),
    ],
)
def test_show_decodes_json_envelopes(
    keys: dict[str, str], kind: str, serializer: str, value: Any
) -> None:
    """`show KEY` prints the stored value decoded, with the serializer that wrote it."""
    data = as_json(memo_cli("show", keys[kind], "--json"))
    assert data["key"] == keys[kind]
    assert data["serializer"] == serializer
    assert data["decoded"] is True
    assert data["value"] == value


def test_show_pretty_prints(keys: dict[str, str]) -> None:
    """`show` in text mode pretty-prints the JSON value."""
    result = memo_cli("show", keys["json"])
    assert result.returncode == 0, result.stderr
    assert '  "city": "Paris",' in result.stdout
    assert "serializer  json" in result.stdout


def test_show_accepts_a_unique_prefix(keys: dict[str, str]) -> None:
    """A key can be shortened to any start that names one entry."""
    data = as_json(memo_cli("show", keys["pydantic"][:30], "--json"))
    assert data["key"] == keys["pydantic"]


def test_show_never_unpickles_a_pickle_envelope(keys: dict[str, str]) -> None:
    """A PickleSerializer value is described, not decoded."""
    data = as_json(memo_cli("show", keys["pickle"], "--json"))
    assert data["serializer"] == "pickle"
    assert data["decoded"] is False
    assert data["note"].startswith("pickled, ")
    assert data["note"].endswith(" bytes, not decoded")


class _Trap:
    """Unpickling this creates a folder: proof that someone unpickled it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_show_never_unpickles_a_diskcache_pickle_row(cache_dir: Path, tmp_path: Path) -> None:
    """A crafted diskcache pickle row under a memo key is described, and never runs."""
    marker = tmp_path / "unpickled"
    key = "weather::" + "0" * 64
    with diskcache.Cache(str(cache_dir)) as cache:
        cache.set(key, _Trap(marker))
    data = as_json(memo_cli("show", key, "--json"))
    assert data["decoded"] is False
    assert "pickle" in data["note"]
    assert not marker.exists()


def test_clear_drops_one_namespace(keys: dict[str, str]) -> None:
    """`clear weather --yes` drops its entries and keeps `weather:typed`'s."""
    result = memo_cli("clear", "weather", "--yes", "--json")
    assert as_json(result)["cleared"] == 2
    counts = {
        ns["namespace"]: ns["entries"] for ns in as_json(memo_cli("stats", "--json"))["namespaces"]
    }
    assert "weather" not in counts
    assert counts["weather:typed"] == 1


def test_clear_all(keys: dict[str, str]) -> None:
    """`clear --all --yes` empties the folder."""
    result = memo_cli("clear", "--all", "--yes")
    assert result.returncode == 0, result.stderr
    assert "dropped 7 entries" in result.stdout
    assert as_json(memo_cli("stats", "--json"))["entries"] == 0


def test_clear_refuses_without_a_terminal(keys: dict[str, str]) -> None:
    """Without --yes and with no terminal to ask on, `clear` refuses and drops nothing."""
    result = memo_cli("clear", "weather")
    assert result.returncode == 1
    assert "pass --yes" in result.stderr
    assert as_json(memo_cli("stats", "--json"))["entries"] == 7


@pytest.mark.parametrize(
    ("answer", "left"), [pytest.param(b"y\n", 0, id="yes"), pytest.param(b"n\n", 2, id="no")]
)
def test_clear_asks_on_a_terminal(keys: dict[str, str], answer: bytes, left: int) -> None:
    """On a terminal, `clear` asks first and acts on the answer."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer)
        result = memo_cli("clear", "weather", stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert "Drop 2 entries of namespace 'weather'" in result.stdout
    assert result.returncode == (0 if left == 0 else 1)
    counts = {
        ns["namespace"]: ns["entries"] for ns in as_json(memo_cli("stats", "--json"))["namespaces"]
    }
    assert counts.get("weather", 0) == left


def test_prune_drops_expired_entries_only(keys: dict[str, str]) -> None:
    """`prune` drops the expired entries, says how much it freed, and keeps live ones."""
    data = as_json(memo_cli("prune", "--json"))
    assert data["dropped"] == 1
    assert data["namespaces"] == {"short": 1}
    assert data["freed_bytes"] > 0
    after = as_json(memo_cli("stats", "--json"))
    assert after["entries"] == 6
    assert after["expired"] == 0
    again = memo_cli("prune")
    assert again.returncode == 0, again.stderr
    assert "dropped 0 entries (expired)" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("stats", "--dir", "{missing}"), "no cache folder at", id="no-such-folder"),
        pytest.param(("stats", "--dir", "{plain}"), "is not a memo cache", id="not-a-cache"),
        pytest.param(("stats", "--dir", "{file}"), "is not a folder", id="a-file"),
        pytest.param(("stats", "--dir", "{garbage}"), "is not a memo cache", id="garbage-db"),
        pytest.param(("ls", "nowhere"), "no entries in namespace 'nowhere'", id="no-namespace"),
        pytest.param(("show", "weather::nope"), "no entry with key", id="no-key"),
        pytest.param(("show", "weather::"), "is the start of 2 keys", id="ambiguous-key"),
        pytest.param(("clear", "nowhere", "--yes"), "no entries in namespace", id="clear-nothing"),
        pytest.param(("clear", "--yes"), "give a NAMESPACE or --all", id="clear-what"),
        pytest.param(("prune", "--dir", "{missing}"), "no cache folder at", id="prune-no-folder"),
    ],
)
def test_bad_input_is_one_line_on_stderr(
    keys: dict[str, str], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    """Bad input gets a one-line error on stderr and exit status 1, never a traceback."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "cache.db").write_bytes(b"this is not SQLite" * 100)
    places = {name: str(tmp_path / name) for name in ("missing", "plain", "file", "garbage")}
    result = memo_cli(*(arg.format(**places) for arg in args))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert not (tmp_path / "missing").exists()
    assert not (tmp_path / "plain" / "cache.db").exists()


def test_help_lists_the_commands() -> None:
    """`--help` names every command."""
    result = memo_cli("--help")
    assert result.returncode == 0
    for command in ("stats", "ls", "show", "clear", "prune"):
        assert command in result.stdout
