"""The `memo` command line against a cache that decorated functions filled.

Most tests run `memo._cli.main` in this process, as a child process would run
it: the same arguments, environment, working directory and stdin (no terminal
unless the test opens one), its output read with ``capsys``. Three run the
real thing in a child process (marked ``slow``): the installed ``memo`` script,
``python -m memo``, and a ``clear`` that finds no terminal on its stdin.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import pty
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

import diskcache
import pydantic
import pytest

from memo import PickleSerializer, async_disk_cache
from memo._cli import main

if TYPE_CHECKING:
    from collections.abc import Iterator


class Forecast(pydantic.BaseModel):
    city: str
    highs_c: list[int]


@dataclasses.dataclass(frozen=True)
class Ran:
    """What one run of the command line left: its exit status and what it printed."""

    returncode: int
    stdout: str
    stderr: str


class MemoCli(Protocol):
    def __call__(
        self,
        *args: str,
        stdin: TextIO | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Ran: ...


@pytest.fixture
def memo_cli(capsys: pytest.CaptureFixture[str]) -> MemoCli:
    """Run `memo ARGS` in this process with the test's environment ($MEMO_CACHE_DIR included)."""
    return in_process(capsys)


def in_process(capsys: pytest.CaptureFixture[str]) -> MemoCli:
    """Return what runs `memo ARGS` in this process, its output read from ``capsys``."""

    def run(
        *args: str,
        stdin: TextIO | None = None,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Ran:
        capsys.readouterr()  # only what this run prints
        with pytest.MonkeyPatch.context() as patch:
            # Like a child's stdin=DEVNULL: empty, and not a terminal.
            patch.setattr(sys, "stdin", io.StringIO() if stdin is None else stdin)
            if cwd is not None:
                patch.chdir(cwd)
            for name, value in (env or {}).items():
                patch.setenv(name, value)
            try:
                status = main(list(args))
            except SystemExit as exc:  # argparse's exits: --help, and usage errors
                status = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        out, err = capsys.readouterr()
        return Ran(status, out, err)

    return run


def memo_process(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m memo ARGS` in a child, with the test's environment and no stdin."""
    return subprocess.run(
        [sys.executable, "-m", "memo", *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def terminal(answer: bytes) -> Iterator[TextIO]:
    """A real terminal (a pty) to use as stdin, with ``answer`` typed into it."""
    controller, device = pty.openpty()
    try:
        os.write(controller, answer)
        with open(device, encoding="utf-8", closefd=False) as stdin:
            yield stdin
    finally:
        os.close(device)
        os.close(controller)


def as_json(result: Ran | subprocess.CompletedProcess[str]) -> Any:
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


def test_stats_counts_entries_and_namespaces(
    keys: dict[str, str], cache_dir: Path, memo_cli: MemoCli
) -> None:
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


def test_stats_text_is_a_readable_table(
    keys: dict[str, str], cache_dir: Path, memo_cli: MemoCli
) -> None:
    """`stats` without --json prints the folder, the totals and one row per namespace."""
    result = memo_cli("stats", "--dir", str(cache_dir))
    assert result.returncode == 0, result.stderr
    assert f"cache folder  {cache_dir}" in result.stdout
    assert "entries       7 (1 expired)" in result.stdout
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[6:]}
    assert rows["weather"] == "2"
    assert rows["weather:typed"] == "1"


def test_ls_lists_one_namespace_only(keys: dict[str, str], memo_cli: MemoCli) -> None:
    """`ls weather` lists its keys, and not those of `weather:typed`, which starts the same."""
    data = as_json(memo_cli("ls", "weather", "--json"))
    assert len(data) == 2
    assert keys["json"] in [row["key"] for row in data]
    assert keys["pydantic"] not in [row["key"] for row in data]
    assert all(row["expires"] is None and not row["expired"] for row in data)


def test_ls_shows_expiry(keys: dict[str, str], memo_cli: MemoCli) -> None:
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
    keys: dict[str, str], kind: str, serializer: str, value: Any, memo_cli: MemoCli
) -> None:
    """`show KEY` prints the stored value decoded, with the serializer that wrote it."""
    data = as_json(memo_cli("show", keys[kind], "--json"))
    assert data["key"] == keys[kind]
    assert data["serializer"] == serializer
    assert data["decoded"] is True
    assert data["value"] == value


def test_show_pretty_prints(keys: dict[str, str], memo_cli: MemoCli) -> None:
    """`show` in text mode pretty-prints the JSON value."""
    result = memo_cli("show", keys["json"])
    assert result.returncode == 0, result.stderr
    assert '  "city": "Paris",' in result.stdout
    assert "serializer  json" in result.stdout


def test_show_accepts_a_unique_prefix(keys: dict[str, str], memo_cli: MemoCli) -> None:
    """A key can be shortened to any start that names one entry."""
    data = as_json(memo_cli("show", keys["pydantic"][:30], "--json"))
    assert data["key"] == keys["pydantic"]


def test_show_never_unpickles_a_pickle_envelope(keys: dict[str, str], memo_cli: MemoCli) -> None:
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


def test_show_never_unpickles_a_diskcache_pickle_row(
    cache_dir: Path, tmp_path: Path, memo_cli: MemoCli
) -> None:
    """A crafted diskcache pickle row under a memo key is described, and never runs."""
    marker = tmp_path / "unpickled"
    key = "weather::" + "0" * 64
    with diskcache.Cache(str(cache_dir)) as cache:
        cache.set(key, _Trap(marker))
    data = as_json(memo_cli("show", key, "--json"))
    assert data["decoded"] is False
    assert "pickle" in data["note"]
    assert not marker.exists()


def test_clear_drops_one_namespace(keys: dict[str, str], memo_cli: MemoCli) -> None:
    """`clear weather --yes` drops its entries and keeps `weather:typed`'s."""
    result = memo_cli("clear", "weather", "--yes", "--json")
    assert as_json(result)["cleared"] == 2
    counts = {
        ns["namespace"]: ns["entries"] for ns in as_json(memo_cli("stats", "--json"))["namespaces"]
    }
    assert "weather" not in counts
    assert counts["weather:typed"] == 1


def test_clear_all(keys: dict[str, str], memo_cli: MemoCli) -> None:
    """`clear --all --yes` empties the folder."""
    result = memo_cli("clear", "--all", "--yes")
    assert result.returncode == 0, result.stderr
    assert "dropped 7 entries" in result.stdout
    assert as_json(memo_cli("stats", "--json"))["entries"] == 0


@pytest.mark.slow
def test_clear_refuses_without_a_terminal(keys: dict[str, str], memo_cli: MemoCli) -> None:
    """Without --yes and with no terminal to ask on, `clear` refuses and drops nothing."""
    result = memo_process("clear", "weather")
    assert result.returncode == 1
    assert "pass --yes" in result.stderr
    assert as_json(memo_cli("stats", "--json"))["entries"] == 7


@pytest.mark.parametrize(
    ("answer", "left"), [pytest.param(b"y\n", 0, id="yes"), pytest.param(b"n\n", 2, id="no")]
)
def test_clear_asks_on_a_terminal(
    keys: dict[str, str], answer: bytes, left: int, memo_cli: MemoCli
) -> None:
    """On a terminal, `clear` asks first and acts on the answer."""
    with terminal(answer) as stdin:
        result = memo_cli("clear", "weather", stdin=stdin)
    assert "Drop 2 entries of namespace 'weather'" in result.stderr
    assert result.returncode == (0 if left == 0 else 1)
    counts = {
        ns["namespace"]: ns["entries"] for ns in as_json(memo_cli("stats", "--json"))["namespaces"]
    }
    assert counts.get("weather", 0) == left


def test_prune_drops_expired_entries_only(keys: dict[str, str], memo_cli: MemoCli) -> None:
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
        pytest.param(("show", "{weather}"), "is the start of 2 keys", id="ambiguous-key"),
        pytest.param(("clear", "nowhere", "--yes"), "no entries in namespace", id="clear-nothing"),
        pytest.param(("clear", "--yes"), "give a NAMESPACE or --all", id="clear-what"),
        pytest.param(("prune", "--dir", "{missing}"), "no cache folder at", id="prune-no-folder"),
    ],
)
def test_bad_input_is_one_line_on_stderr(
    keys: dict[str, str], tmp_path: Path, args: tuple[str, ...], message: str, memo_cli: MemoCli
) -> None:
    """Bad input gets a one-line error on stderr and exit status 1, never a traceback."""
    (tmp_path / "plain").mkdir()
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "cache.db").write_bytes(b"this is not SQLite" * 100)
    places = {name: str(tmp_path / name) for name in ("missing", "plain", "file", "garbage")}
    places["weather"] = keys["json"].rpartition(":")[0] + ":"  # both weather keys start so
    result = memo_cli(*(arg.format(**places) for arg in args))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert not (tmp_path / "missing").exists()
    assert not (tmp_path / "plain" / "cache.db").exists()


@pytest.mark.slow
def test_help_lists_the_commands() -> None:
    """`--help` names every command."""
    result = memo_process("--help")
    assert result.returncode == 0
    for command in ("stats", "ls", "show", "clear", "prune", "export", "import"):
        assert command in result.stdout


def test_clear_asks_on_stderr_so_stdout_stays_json(keys: dict[str, str], memo_cli: MemoCli) -> None:
    """The question goes to stderr: `clear --json` on a terminal still prints only JSON."""
    with terminal(b"y\n") as stdin:
        result = memo_cli("clear", "weather", "--json", stdin=stdin)
    assert "Drop 2 entries" in result.stderr
    assert as_json(result)["cleared"] == 2


def test_clear_end_of_input_at_the_question_drops_nothing(
    keys: dict[str, str], memo_cli: MemoCli
) -> None:
    """Ctrl-D at the question means no: one line, exit status 1, no traceback."""
    with terminal(b"\x04") as stdin:
        result = memo_cli("clear", "weather", stdin=stdin)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "memo clear: error: nothing cleared"
    assert "Traceback" not in result.stderr
    assert as_json(memo_cli("stats", "--json"))["entries"] == 7


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("ls",), id="missing-namespace"),
        pytest.param(("bogus",), id="unknown-command"),
        pytest.param(("stats", "--dir"), id="dir-without-value"),
        pytest.param(("stats", "--bogus"), id="unknown-option"),
    ],
)
def test_malformed_command_line_is_one_line(args: tuple[str, ...], memo_cli: MemoCli) -> None:
    """A malformed command line is one line on stderr pointing at --help, exit status 2."""
    result = memo_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "error: " in lines[0]
    assert "--help" in lines[0]


@pytest.mark.parametrize("how", ["--dir", "MEMO_CACHE_DIR"])
async def test_relative_cache_folder(tmp_path: Path, how: str, memo_cli: MemoCli) -> None:
    """A folder given relative to the working directory is read like an absolute one."""
    await fill(tmp_path / "here")
    if how == "--dir":
        result = memo_cli("stats", "--json", "--dir", "here", cwd=tmp_path)
    else:
        result = memo_cli("stats", "--json", cwd=tmp_path, env={"MEMO_CACHE_DIR": "here"})
    data = as_json(result)
    assert data["directory"] == str(tmp_path / "here")
    assert data["entries"] == 7


def plant_rows(cache_dir: Path, rows: list[dict[str, Any]]) -> None:
    """Insert rows into the folder's diskcache table behind diskcache's back."""
    defaults = {"raw": 1, "store_time": 1.0, "expire_time": None, "access_time": 1.0}
    defaults |= {"access_count": 0, "tag": None, "size": 0, "mode": 1, "filename": None}
    # closing(): a connection's own `with` commits but leaves it open.
    with contextlib.closing(sqlite3.connect(cache_dir / "cache.db")) as db, db:
        for row in rows:
            full = {**defaults, "value": b"x", **row}
            columns = ", ".join(full)
            marks = ", ".join("?" * len(full))
            db.execute(f"INSERT INTO Cache ({columns}) VALUES ({marks})", list(full.values()))


CRAFTED = [
    {"key": "weather::text-time", "store_time": "yesterday"},
    {"key": "weather::far-future", "store_time": 1e300},
    {"key": "weather::text-expiry", "expire_time": "soon"},
    {"key": "weather::text-size", "size": "big", "mode": 2, "filename": "00/00/x.val"},
    {"key": "weather::blob-mode", "mode": b"\x01"},
]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("stats",), id="stats"),
        pytest.param(("ls", "weather"), id="ls"),
        pytest.param(("show", "weather::text-time"), id="show"),
        pytest.param(("prune",), id="prune"),
    ],
)
def test_rows_of_the_wrong_types_are_other_rows(
    keys: dict[str, str], cache_dir: Path, args: tuple[str, ...], memo_cli: MemoCli
) -> None:
    """Rows holding text or absurd numbers where times and sizes belong are left alone."""
    plant_rows(cache_dir, CRAFTED)
    result = memo_cli(*args, "--json")
    if args[0] == "show":
        assert result.returncode == 1
        assert result.stderr.startswith("memo show: error: no entry with key")
        return
    data = as_json(result)
    if args[0] == "stats":
        assert data["entries"] == 7
        assert data["other_entries"] == len(CRAFTED)
    elif args[0] == "ls":
        assert sorted(row["key"] for row in data) == sorted(
            [keys["json"], memo_key("weather", {"city": "Lyon", "days": 5})]
        )
    else:
        assert data["dropped"] == 1


def memo_key(namespace: str, arguments: dict[str, Any]) -> str:
    """The key `weather(**arguments)` has in `fill`'s cache."""

    # The same code as fill's weather: the code's fingerprint is part of the key.
    @async_disk_cache(namespace=namespace)
    async def weather(city: str, days: int = 3) -> dict[str, Any]:
        return {"city": city, "days": days}

    return weather.cache_key(**arguments)


def test_show_never_reads_a_file_outside_the_folder(
    keys: dict[str, str], cache_dir: Path, tmp_path: Path, memo_cli: MemoCli
) -> None:
    """A crafted row naming a file elsewhere is described; the file is never printed."""
    secret = tmp_path / "id_ed25519"
    secret.write_bytes(b'M\x01\x04json"the private key"')
    plant_rows(
        cache_dir,
        [
            {"key": "weather::absolute", "mode": 2, "filename": str(secret), "value": None},
            {"key": "weather::dots", "mode": 2, "filename": "../../id_ed25519", "value": None},
        ],
    )
    for key in ("weather::absolute", "weather::dots"):
        data = as_json(memo_cli("show", key, "--json"))
        assert data["decoded"] is False
        assert "not read" in data["note"]
        text = memo_cli("show", key)
        assert "private key" not in text.stdout


PAINTED_NAMESPACE = "paint\x1b[2J\x1b]0;owned\x07"
PAINTED_VALUE = "red\x1b[31m\x9b2J\u2028"


@pytest.fixture
async def painted_key(cache_dir: Path) -> str:
    """The key of one entry whose namespace and value are full of terminal controls."""

    @async_disk_cache(namespace=PAINTED_NAMESPACE)
    async def painted() -> str:
        return PAINTED_VALUE

    await painted()
    await painted.store.close()
    return painted.cache_key()


def test_terminal_controls_are_escaped(painted_key: str, memo_cli: MemoCli) -> None:
    """ESC and CSI in namespaces and values never reach the terminal; JSON keeps them exact."""
    namespace, value = PAINTED_NAMESPACE, PAINTED_VALUE
    outputs = [
        memo_cli("stats"),
        memo_cli("ls", namespace),
        memo_cli("show", painted_key),
        memo_cli("prune"),
        memo_cli("ls", "nowhere"),  # the error names the namespaces it found
        memo_cli("stats", "--json"),
        memo_cli("show", painted_key, "--json"),
    ]
    for result in outputs:
        for control in ("\x1b", "\x07", "\x9b", "\u2028"):
            assert control not in result.stdout + result.stderr
    assert "paint\\x1b[2J" in outputs[0].stdout
    assert json.loads(outputs[5].stdout)["namespaces"][0]["namespace"] == namespace
    shown = json.loads(outputs[6].stdout)
    assert (shown["namespace"], shown["value"]) == (namespace, value)


async def test_tables_line_up_with_wide_characters(cache_dir: Path, memo_cli: MemoCli) -> None:
    """Namespaces in CJK (two columns per character) keep the stats table aligned."""
    for namespace in ("天気", "weather"):

        @async_disk_cache(namespace=namespace)
        async def f() -> int:
            return 1

        await f()
    await f.store.close()
    lines = memo_cli("stats").stdout.splitlines()
    table = lines[lines.index("") + 1 :]
    ends = {sum(2 if "\u4e00" <= c <= "\u9fff" else 1 for c in line) for line in table}
    assert len(ends) == 1, table


def test_a_foreign_cache_db_is_refused_and_left_alone(tmp_path: Path, memo_cli: MemoCli) -> None:
    """A cache.db of another program with a `Cache` table is not a memo cache, and not written."""
    folder = tmp_path / "other"
    folder.mkdir()
    with contextlib.closing(sqlite3.connect(folder / "cache.db")) as db, db:
        db.execute("CREATE TABLE Cache (key, raw, store_time, expire_time, size, mode, filename)")
        db.execute("INSERT INTO Cache VALUES ('a::x', 1, 1.0, NULL, 1, 1, NULL)")
    before = (folder / "cache.db").read_bytes()
    for args in (("stats",), ("clear", "a", "--yes"), ("prune",)):
        result = memo_cli(*args, "--dir", str(folder))
        assert result.returncode == 1
        assert "is not a memo cache" in result.stderr
        assert len(result.stderr.splitlines()) == 1
    assert (folder / "cache.db").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["cache.db"]


@pytest.mark.slow
def test_console_script_runs_the_same_command_line(
    keys: dict[str, str], cache_dir: Path, memo_cli: MemoCli
) -> None:
    """The `memo` script installed beside this Python answers like `python -m memo`."""
    script = Path(sys.executable).parent / ("memo.exe" if os.name == "nt" else "memo")
    assert script.exists(), f"no `memo` script beside {sys.executable}: reinstall memo"
    result = subprocess.run(
        [str(script), "stats", "--json"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert as_json(result) == as_json(memo_cli("stats", "--json"))
