"""`memo export` and `memo import` on cache folders: round trips, stable files, refusals.

The caches are filled and read back by real decorated functions; the command
line runs in this process (``memo_cli`` from ``test_cli``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import sqlite3
import time
from typing import TYPE_CHECKING, Any

import diskcache
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_cli import _Trap, in_process, plant_rows

from memo import DiskStore, MemoryStore, PickleSerializer, async_disk_cache
from memo._transfer import (
    ExportError,
    _end,
    _entry_line,
    _header,
    parse_export,
    read_export,
    write_export,
)
from memo.stores.base import StoredEntry, store_key

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from test_cli import MemoCli


class Forecast(pydantic.BaseModel):
    city: str
    highs_c: list[int]


class Functions:
    """The same decorated functions, pointed at one folder, counting their runs."""

    def __init__(self, directory: Path) -> None:
        self.runs = 0

        @async_disk_cache(namespace="weather", directory=directory)
        async def weather(city: str, days: int = 3) -> dict[str, Any]:
            self.runs += 1
            return {"city": city, "days": days, "note": "ensoleillé ☀"}

        @async_disk_cache(namespace="weather:typed", directory=directory)
        async def typed(city: str) -> Forecast:
            self.runs += 1
            return Forecast(city=city, highs_c=[21, 23])

        @async_disk_cache(namespace="pickled", directory=directory, serializer=PickleSerializer())
        async def pickled(n: int) -> set[int]:
            self.runs += 1
            return set(range(n))

        @async_disk_cache(namespace="big", directory=directory, version="2")
        async def big(n: int) -> str:
            self.runs += 1
            return "x" * n

        @async_disk_cache(namespace="long", directory=directory, ttl=3600)
        async def long(n: int) -> int:
            self.runs += 1
            return n

        self.calls: list[Callable[[], Any]] = [
            lambda: weather("Paris"),
            lambda: weather("Lyon", days=5),
            lambda: typed("Oslo"),
            lambda: pickled(300),  # a pickle of this size is written as base64
            lambda: big(40_000),  # a value file of its own on disk
            lambda: long(7),
        ]
        self.store = weather.store

    async def results(self) -> list[Any]:
        """Call every function once; return the results."""
        results = [await call() for call in self.calls]
        await self.store.close()
        return results


@pytest.fixture
def memo_cli(capsys: pytest.CaptureFixture[str]) -> MemoCli:
    """Run `memo ARGS` in this process (as in ``test_cli``)."""
    return in_process(capsys)


async def listed(store: DiskStore) -> list[StoredEntry]:
    """Every entry of ``store``; the store closed after."""
    try:
        return [entry async for entry in store.entries()]
    finally:
        await store.close()


@pytest.fixture
async def filled(tmp_path: Path) -> tuple[Path, list[Any]]:
    """A folder filled by the decorated functions, and what they returned."""
    folder = tmp_path / "source"
    return folder, await Functions(folder).results()


def test_round_trip_keeps_every_hit(
    filled: tuple[Path, list[Any]], tmp_path: Path, memo_cli: MemoCli
) -> None:
    """Export, import into an empty folder: every call hits there, with equal results."""
    source, results = filled
    file = tmp_path / "cache.jsonl"
    ran = memo_cli("export", "--dir", str(source), "-o", str(file))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == ""
    assert f"exported 6 entries from {source} to {file}" in ran.stderr
    target = tmp_path / "target"
    imported = memo_cli("import", str(file), "--dir", str(target), "--json")
    assert json.loads(imported.stdout) == {
        "directory": str(target),
        "source": str(file),
        "imported": 6,
        "expired": 0,
    }
    functions = Functions(target)
    assert asyncio.run(functions.results()) == results
    assert functions.runs == 0
    # Imported entries belong to their namespace as written ones do.
    cleared = memo_cli("clear", "weather", "--dir", str(target), "--yes", "--json")
    assert json.loads(cleared.stdout)["cleared"] == 2
    # And the expiry came along: the entry with a ttl still has about an hour left.
    expiries = {entry.namespace: entry.expires for entry in asyncio.run(listed(DiskStore(target)))}
    assert expiries["weather:typed"] is None
    assert time.time() + 3500 < expiries["long"] < time.time() + 3601


def test_export_is_byte_identical_and_readable(
    filled: tuple[Path, list[Any]], tmp_path: Path, memo_cli: MemoCli
) -> None:
    """Two exports of one cache are the same bytes; JSON values read as text, pickles as base64."""
    source, _ = filled
    first = memo_cli("export", "--dir", str(source))
    second = memo_cli("export", "--dir", str(source))
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    lines = first.stdout.splitlines()
    assert json.loads(lines[0]) == {"format": "memo-export", "version": 1}
    assert json.loads(lines[-1]) == {"end": "memo-export", "entries": len(lines) - 2}
    entries = [json.loads(line) for line in lines[1:-1]]
    assert [entry["key"] for entry in entries] == sorted(entry["key"] for entry in entries)
    by_namespace = {entry["namespace"]: entry for entry in entries}
    assert '"note":"ensoleillé ☀"' in by_namespace["weather"]["value_text"]
    assert "value_b64" in by_namespace["pickled"]
    assert by_namespace["long"]["expires"] > time.time()
    # Re-exported after an import, the entries without expiry are the same lines.
    file = tmp_path / "a.jsonl"
    file.write_text(first.stdout)
    target = tmp_path / "target"
    assert memo_cli("import", str(file), "--dir", str(target)).returncode == 0
    again = memo_cli("export", "--dir", str(target)).stdout.splitlines()
    assert [line for line in again if '"expires": null' in line] == [
        line for line in lines if '"expires": null' in line
    ]


def test_export_leaves_out_rows_memo_never_writes(
    filled: tuple[Path, list[Any]], tmp_path: Path, memo_cli: MemoCli
) -> None:
    """A diskcache pickle row, or one naming a file elsewhere, is not exported, never unpickled."""
    source, _ = filled
    marker = tmp_path / "unpickled"
    with diskcache.Cache(str(source)) as cache:
        cache.set("weather::" + "0" * 64, _Trap(marker))
    secret = tmp_path / "id_ed25519"
    secret.write_bytes(b"the private key")
    plant_rows(source, [{"key": "weather::1", "mode": 2, "filename": str(secret), "value": None}])
    result = memo_cli("export", "--dir", str(source))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 8  # the header, six entries, the end line
    assert "0" * 64 not in result.stdout
    assert "weather::1" not in result.stdout
    assert not marker.exists()


def test_export_some_namespaces(filled: tuple[Path, list[Any]], memo_cli: MemoCli) -> None:
    """`export weather big` writes those namespaces only (not `weather:typed`)."""
    source, _ = filled
    result = memo_cli("export", "weather", "big", "--dir", str(source))
    namespaces = [json.loads(line)["namespace"] for line in result.stdout.splitlines()[1:-1]]
    assert sorted(namespaces) == ["big", "weather", "weather"]


def test_import_from_stdin_skips_expired_entries(tmp_path: Path, memo_cli: MemoCli) -> None:
    """`import -` reads stdin; an entry whose expiry has passed is skipped and counted."""
    lines = [
        {"format": "memo-export", "version": 1},
        {"namespace": "a", "key": "a::1", "expires": time.time() - 5, "value_text": "old"},
        {"namespace": "a", "key": "a::2", "expires": time.time() + 600, "value_text": "new"},
        {"namespace": "b", "key": "b::3", "expires": None, "value_b64": "AP8="},
        {"end": "memo-export", "entries": 3},
    ]
    text = "".join(json.dumps(line) + "\n" for line in lines)
    stdin = io.TextIOWrapper(io.BytesIO(text.encode()))
    target = tmp_path / "target"
    result = memo_cli("import", "-", "--dir", str(target), stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"imported 2 entries from stdin into {target} (1 entry already expired, skipped)"
    )
    entries = asyncio.run(listed(DiskStore(target)))
    assert [(entry.key, entry.value) for entry in entries] == [
        ("a::2", b"new"),
        ("b::3", b"\x00\xff"),
    ]


GOOD_LINE = {"namespace": "a", "key": "a::1", "expires": None, "value_text": "v"}
BINARY_LINE = {"namespace": "a", "key": "a::2", "expires": None, "value_b64": "AP8="}


def _lines(*documents: Any) -> bytes:
    return b"".join(json.dumps(d).encode() + b"\n" for d in documents)


HEADER = {"format": "memo-export", "version": 1}


def _export(*entries: Any) -> bytes:
    """A whole export of ``entries``: the header, the entries, the end line counting them."""
    return _lines(HEADER, *entries, {"end": "memo-export", "entries": len(entries)})


BAD_FILES = [
    pytest.param(b"", "is empty", id="empty"),
    pytest.param(b"hello, world\nthis is text\n", "line 1 is not the header", id="text-file"),
    pytest.param(_lines({"a": 1}, GOOD_LINE), "line 1 is not the header", id="foreign-json"),
    pytest.param(_lines([1, 2]), "line 1 is not the header", id="json-list"),
    pytest.param(
        _lines({"format": "memo-export", "version": 2}, GOOD_LINE),
        "format version 2, newer than this memo reads (1): upgrade memo-cache",
        id="newer-version",
    ),
    pytest.param(
        _lines({"format": "memo-export", "version": "1"}, GOOD_LINE),
        "line 1 has version '1', not 1",
        id="version-as-text",
    ),
    pytest.param(
        _lines(HEADER, GOOD_LINE)[:-9],
        "line 2 does not end the line: the file was cut short",
        id="truncated",
    ),
    pytest.param(
        _lines(HEADER, {**BINARY_LINE, "value_b64": "not base64!"}),
        "line 2 has a value_b64 that is not base64",
        id="bad-base64",
    ),
    pytest.param(
        _lines(HEADER, {**BINARY_LINE, "value_b64": "AAA"}),
        "line 2 has a value_b64 that is not base64",
        id="base64-without-padding",
    ),
    pytest.param(
        _lines(HEADER, GOOD_LINE, {**GOOD_LINE, "value_text": "w"}),
        "line 3 repeats the key of line 2",
        id="key-twice",
    ),
    pytest.param(
        _lines(HEADER, {**GOOD_LINE, "namespace": "b"}),
        "line 2 says namespace 'b', but its key belongs to 'a'",
        id="wrong-namespace",
    ),
    pytest.param(
        _lines(HEADER, {**GOOD_LINE, "expires": "tomorrow"}),
        "line 2 has the expiry 'tomorrow'",
        id="expiry-as-text",
    ),
    pytest.param(
        _lines(HEADER, GOOD_LINE, {**BINARY_LINE, "key": "a::\ud800"}),
        "line 3 has the key 'a::\\ud800', which memo could not have written",
        id="key-with-a-lone-surrogate",
    ),
    pytest.param(
        _lines(HEADER, GOOD_LINE, {**BINARY_LINE, "expires": 1e300}),
        "line 3 has the expiry 1e+300",
        id="expiry-after-year-9999",
    ),
    pytest.param(
        _lines(HEADER, {**GOOD_LINE, "extra": 1}), "line 2 has the fields", id="unknown-field"
    ),
    pytest.param(
        _lines(HEADER, {**GOOD_LINE, "value_b64": "AA=="}),
        "line 2 has the fields",
        id="two-values",
    ),
    pytest.param(
        _lines(HEADER, {**GOOD_LINE, "key": "no-colon"}),
        "line 2 has the key 'no-colon', which memo could not have written",
        id="not-a-memo-key",
    ),
    pytest.param(_lines(HEADER, GOOD_LINE) + b"\n", "line 3 is not JSON", id="blank-line"),
    pytest.param(
        _lines(HEADER) + b'{"namespace": "a", "key": "a::1", "expires": null, '
        b'"value_text": "\\ud800"}\n',
        "line 2 has a value_text with a surrogate that stands for no byte",
        id="stray-surrogate",
    ),
]


@pytest.mark.parametrize(("content", "message"), BAD_FILES)
def test_a_file_that_is_not_an_export_changes_nothing(
    filled: tuple[Path, list[Any]], tmp_path: Path, content: bytes, message: str, memo_cli: MemoCli
) -> None:
    """A bad file is refused in one line naming the problem; the target cache is unchanged."""
    target, _ = filled
    before = memo_cli("export", "--dir", str(target)).stdout
    file = tmp_path / "bad.jsonl"
    file.write_bytes(content)
    result = memo_cli("import", str(file), "--dir", str(target))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("memo import: error: ")
    assert message in lines[0]
    assert "nothing was written" in lines[0]
    assert memo_cli("export", "--dir", str(target)).stdout == before


def test_a_bad_line_after_good_ones_writes_none_of_them(tmp_path: Path, memo_cli: MemoCli) -> None:
    """Good entries before a bad line are not written either: the whole file is checked first."""
    good = {"namespace": "a", "key": "a::good", "expires": None, "value_text": "v"}
    file = tmp_path / "half.jsonl"
    file.write_bytes(_lines(HEADER, good) + b'{"namespace": "a", "key": "a::cut", "exp')
    target = tmp_path / "target"
    result = memo_cli("import", str(file), "--dir", str(target))
    assert result.returncode == 1
    assert "line 3 does not end the line" in result.stderr
    assert not target.exists()


def test_import_refuses_a_folder_that_is_not_a_memo_cache(
    tmp_path: Path, memo_cli: MemoCli
) -> None:
    """A target folder holding another program's cache.db is refused, not written."""
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "cache.db").write_bytes(b"not sqlite" * 100)
    file = tmp_path / "ok.jsonl"
    file.write_bytes(_export(GOOD_LINE))
    result = memo_cli("import", str(file), "--dir", str(folder))
    assert result.returncode == 1
    assert "is not a memo cache" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["cache.db"]


def test_import_of_a_missing_file(tmp_path: Path, memo_cli: MemoCli) -> None:
    """A file that does not exist is one line, and no folder is created."""
    result = memo_cli("import", str(tmp_path / "nope.jsonl"), "--dir", str(tmp_path / "t"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr
    assert not (tmp_path / "t").exists()


def test_export_of_a_missing_folder(tmp_path: Path, memo_cli: MemoCli) -> None:
    """Exporting a folder that does not exist is refused, and leaves no file behind."""
    out = tmp_path / "out.jsonl"
    result = memo_cli("export", "--dir", str(tmp_path / "missing"), "-o", str(out))
    assert result.returncode == 1
    assert "no cache folder at" in result.stderr
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_progress_on_a_terminal(
    filled: tuple[Path, list[Any]],
    tmp_path: Path,
    memo_cli: MemoCli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With stderr on a terminal, export counts on stderr and erases the count at the end."""
    source, _ = filled

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    err = Terminal()
    monkeypatch.setattr("sys.stderr", err)
    result = memo_cli("export", "--dir", str(source), "-o", str(tmp_path / "out.jsonl"))
    assert result.returncode == 0
    shown = err.getvalue()
    assert "\rexported 1 entries" in shown
    assert "\r\x1b[K" in shown
    assert shown.rstrip("\n").endswith("out.jsonl")


# -- the functions behind the commands, as other code uses them ------------------


async def test_functions_round_trip_any_bytes() -> None:
    """write_export / read_export move every byte string exactly, between any stores."""
    values = [b"", b"\x00", bytes(range(256)), "é日本\u2028\x1b".encode(), b"\xff" * 40]
    source, target = MemoryStore(), MemoryStore()
    for i, value in enumerate(values):
        await source.set(store_key("ns", None, str(i)), value)
    out = io.BytesIO()
    assert await write_export(source, out, ["ns"]) == len(values)
    text = out.getvalue().decode()
    assert "\u2028" not in text  # escaped: one entry is one line for every reader
    assert "\x1b" not in text
    done = await read_export(target, io.BytesIO(out.getvalue()))
    assert (done.written, done.expired) == (len(values), 0)
    for i, value in enumerate(values):
        assert await target.get(store_key("ns", None, str(i))) == value


def test_parse_export_returns_the_entries() -> None:
    """parse_export checks a whole file and returns its entries, values decoded."""
    assert parse_export(_export(GOOD_LINE, BINARY_LINE)) == [
        StoredEntry("a::1", b"v", 1, None),
        StoredEntry("a::2", b"\x00\xff", 2, None),
    ]
    with pytest.raises(ExportError, match="line 1 is not the header"):
        parse_export(b"{}\n")


@given(
    namespace=st.text(),
    digest=st.text(min_size=1),
    value=st.binary() | st.text().map(str.encode),
    expires=st.none() | st.floats(min_value=0, max_value=4e9),
)
def test_any_entry_round_trips_through_one_line(
    namespace: str, digest: str, value: bytes, expires: float | None
) -> None:
    """Any key, bytes and expiry read back exactly from an export, on one line of its own."""
    entry = StoredEntry(store_key(namespace, None, digest), value, len(value), expires)
    line = _entry_line(entry)
    assert line.count(b"\n") == 1
    assert parse_export(_header() + line + _end(1)) == [entry]


async def test_an_export_that_fails_midway_is_refused_whole() -> None:
    """A store that fails after some entries leaves output an import refuses as cut short.

    On stdout there is no file to rename into place: the entries written
    before the failure must not read as a complete (smaller) export.
    """

    class Failing(MemoryStore):
        async def entries(self, namespaces: Any = (), *, values: bool = True) -> Any:
            async for entry in super().entries(namespaces, values=values):
                yield entry
            msg = "the store went away"
            raise ConnectionError(msg)

    source = Failing()
    for i in range(3):
        await source.set(store_key("ns", None, str(i)), b"value")
    out = io.BytesIO()
    with pytest.raises(ConnectionError):
        await write_export(source, out)
    with pytest.raises(ExportError, match="cut short"):
        parse_export(out.getvalue())


def test_a_value_edited_by_hand_is_never_returned(
    filled: tuple[Path, list[Any]], tmp_path: Path, memo_cli: MemoCli
) -> None:
    """An answer changed in an export is imported, but read as damaged: the call runs again.

    The stored bytes carry a checksum of the payload, so an edit (a changed
    answer in a diff) is a miss and a counted error, never the edited value.
    """
    source, results = filled
    exported = memo_cli("export", "--dir", str(source)).stdout
    assert exported.count("ensoleillé") == 2
    file = tmp_path / "edited.jsonl"
    file.write_text(exported.replace("ensoleillé", "pluvieux!!"))
    target = tmp_path / "target"
    assert memo_cli("import", str(file), "--dir", str(target)).returncode == 0
    functions = Functions(target)
    assert asyncio.run(functions.results()) == results
    assert functions.runs == 2  # the two edited entries were misses; the rest hit
    assert asyncio.run(functions.results()) == results
    assert functions.runs == 2  # what they returned was stored in place of the edits


def test_an_export_cut_at_a_line_boundary_is_refused(
    filled: tuple[Path, list[Any]], tmp_path: Path, memo_cli: MemoCli
) -> None:
    """The docs: an export "cut short is refused"; `head -n 3 full.jsonl` is cut short too."""
    source, _ = filled
    exported = memo_cli("export", "--dir", str(source)).stdout
    file = tmp_path / "cut.jsonl"
    file.write_text("".join(exported.splitlines(keepends=True)[:3]))
    target = tmp_path / "target"
    result = memo_cli("import", str(file), "--dir", str(target))
    assert result.returncode == 1
    assert not target.exists()


@pytest.mark.parametrize(
    "made",
    [
        pytest.param([], id="empty-file"),
        pytest.param(["CREATE TABLE Settings (key TEXT NOT NULL UNIQUE, value)"], id="settings"),
    ],
)
def test_import_into_a_folder_another_process_is_creating(
    filled: tuple[Path, list[Any]], tmp_path: Path, made: list[str], memo_cli: MemoCli
) -> None:
    """A cache.db caught while another process's memo creates it is a cache, not refused.

    diskcache creates the file, then its Settings table, then Cache, each
    committed on its own: an import that starts in between writes its entries.
    """
    source, results = filled
    file = tmp_path / "cache.jsonl"
    assert memo_cli("export", "--dir", str(source), "-o", str(file)).returncode == 0
    target = tmp_path / "target"
    target.mkdir()
    with contextlib.closing(sqlite3.connect(target / "cache.db")) as db:
        for statement in made:
            db.execute(statement)
        db.commit()
    result = memo_cli("import", str(file), "--dir", str(target))
    assert result.returncode == 0, result.stderr
    functions = Functions(target)
    assert asyncio.run(functions.results()) == results
    assert functions.runs == 0


def test_import_refuses_a_database_of_another_program(tmp_path: Path, memo_cli: MemoCli) -> None:
    """A cache.db with tables of its own is not taken for one being created: refused, unchanged."""
    folder = tmp_path / "other"
    folder.mkdir()
    with contextlib.closing(sqlite3.connect(folder / "cache.db")) as db:
        db.execute("CREATE TABLE Settings (key TEXT NOT NULL UNIQUE, value)")
        db.execute("CREATE TABLE Orders (id INTEGER)")
        db.commit()
    file = tmp_path / "ok.jsonl"
    file.write_bytes(_export(GOOD_LINE))
    result = memo_cli("import", str(file), "--dir", str(folder))
    assert result.returncode == 1
    assert "is not a memo cache" in result.stderr
    with contextlib.closing(sqlite3.connect(folder / "cache.db")) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert tables == {"Settings", "Orders", "sqlite_autoindex_Settings_1"}


def test_a_value_file_replaced_by_a_symlink_is_never_read(
    filled: tuple[Path, list[Any]], tmp_path: Path, memo_cli: MemoCli
) -> None:
    """A value file swapped for a link to a file elsewhere is not exported, shown or read.

    Whoever can write a shared folder could otherwise make `memo export`
    copy a private file of the exporter's into a file meant for git.
    """
    source, _ = filled
    (value_file,) = source.glob("??/??/*.val")  # the big entry's
    (key,) = (
        entry.key for entry in asyncio.run(listed(DiskStore(source))) if entry.namespace == "big"
    )
    secret = tmp_path / "id_ed25519"
    secret.write_bytes(b"the private key")
    value_file.unlink()
    value_file.symlink_to(secret)
    exported = memo_cli("export", "--dir", str(source))
    assert exported.returncode == 0, exported.stderr
    assert "private key" not in exported.stdout
    assert (
        len(exported.stdout.splitlines()) == 7
    )  # the header, the other five entries, the end line
    shown = memo_cli("show", key, "--dir", str(source))
    assert "private key" not in shown.stdout + shown.stderr

    async def read() -> bytes | None:
        store = DiskStore(source)
        try:
            return await store.get(key)
        finally:
            await store.close()

    assert asyncio.run(read()) is None  # absent: the call runs again and stores in its place


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param(
            _export(GOOD_LINE, BINARY_LINE).replace(b'"entries": 2', b'"entries": 3'),
            "line 4 counts 3 entries, but the file holds 2",
            id="count-too-high",
        ),
        pytest.param(
            _export(GOOD_LINE) + _lines(BINARY_LINE),
            "line 3 ends the export, but lines follow",
            id="lines-after-the-end",
        ),
        pytest.param(
            _lines(HEADER, GOOD_LINE, BINARY_LINE),
            "line 3 is not the end line",
            id="no-end-line",
        ),
        pytest.param(
            _export(GOOD_LINE).replace(b'"entries": 1', b'"entries": true'),
            "line 3 counts true entries, but the file holds 1",
            id="count-not-a-number",
        ),
    ],
)
def test_the_end_line_must_count_every_entry(data: bytes, problem: str) -> None:
    """The end line closes the file and counts its entries: missing or extra lines are refused."""
    with pytest.raises(ExportError, match=re.escape(problem)):
        parse_export(data)
