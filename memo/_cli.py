"""The ``memo`` command line: the demo, and a look inside a cache folder.

Reading (``stats``, ``ls``, ``show``) is read-only SQL on diskcache's
``cache.db``, so looking never changes a cache, not even its access times.
Writing (``clear``, ``prune``) goes through ``DiskStore``. Stored values are
decoded only when that is safe: JSON and pydantic envelopes are parsed as
JSON; a pickled value is described, never unpickled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import sqlite3
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from memo._demo import DemoError
from memo._demo import main as demo
from memo.stores.base import namespace_of, namespace_prefix
from memo.stores.disk import DiskStore, _own_file, default_directory

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["main"]

_ENVELOPE_FORMAT = b"M\x01"  # memo/_serializers.py: format, id length, id, payload
_MODE_RAW = 1  # diskcache's modes: bytes in the row, bytes in a file, text, pickle
_MODE_BINARY = 2
_MODE_PICKLE = 4
_COLUMNS = "key, raw, store_time, expire_time, size, mode, filename"
_LAST_TIME = 253402300800  # 10000-01-01: later times cannot be printed as dates
_SIZE = "CASE WHEN filename IS NULL THEN length(value) ELSE size END"  # bytes of the value


class CliError(Exception):
    """Bad input: printed as one line on stderr, exit status 1."""


@dataclass(frozen=True, slots=True)
class _Entry:
    key: str
    namespace: str
    stored: float
    expires: float | None
    size: int
    mode: int
    filename: str | None

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now


# -- reading a cache folder ---------------------------------------------------


class _Folder:
    """A memo cache folder, opened read-only."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        if not directory.exists():
            msg = f"no cache folder at {directory} (memo creates it on first use; pass --dir)"
            raise CliError(msg)
        if not directory.is_dir():
            msg = f"{directory} is not a folder; pass --dir with a memo cache folder"
            raise CliError(msg)
        database = directory / "cache.db"
        if not database.is_file():
            msg = f"{directory} is not a memo cache (no cache.db in it)"
            raise CliError(msg)
        try:
            self._db = sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            msg = f"cannot open {database} ({exc})"
            raise CliError(msg) from None
        try:
            # diskcache's tables, with every column memo reads or writes: `clear`
            # and `prune` open the folder with diskcache, which would otherwise
            # add its tables to some other program's cache.db.
            self._db.execute(f"SELECT {_COLUMNS}, value, tag FROM Cache LIMIT 0")  # noqa: S608
            self._db.execute("SELECT key, value FROM Settings LIMIT 0")
        except sqlite3.Error as exc:
            self._db.close()
            msg = f"{directory} is not a memo cache ({database.name}: {exc})"
            raise CliError(msg) from None
        self.other = 0  # rows memo did not write (non-text keys)

    def close(self) -> None:
        self._db.close()

    def _rows(self, where: str = "", args: Sequence[Any] = ()) -> Iterator[_Entry]:
        # `where` is one of this module's fixed clauses; values are bound parameters.
        sql = f"SELECT {_COLUMNS}, {_SIZE} FROM Cache {where} ORDER BY store_time"  # noqa: S608
        for key, raw, stored, expires, _, mode, filename, size in self._db.execute(sql, args):
            # SQLite keeps whatever type a row was given: a row that diskcache
            # did not write for memo may hold text where times belong.
            stored_at = _timestamp(stored)
            expires_at = None if expires is None else _timestamp(expires)
            if (
                not raw
                or not isinstance(key, str)
                or ":" not in key
                or stored_at is None
                or (expires is not None and expires_at is None)
                or not (size is None or type(size) is int)
                or type(mode) is not int
                or not (filename is None or isinstance(filename, str))
            ):
                self.other += 1
                continue
            yield _Entry(key, namespace_of(key), stored_at, expires_at, size or 0, mode, filename)

    def entries(self) -> list[_Entry]:
        self.other = 0
        return list(self._rows())

    def namespace(self, namespace: str) -> list[_Entry]:
        prefix = namespace_prefix(namespace)
        rows = self._rows("WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
        return [entry for entry in rows if entry.namespace == namespace]

    def find(self, key: str) -> _Entry:
        exact = list(self._rows("WHERE key = ?", (key,)))
        if exact:
            return exact[0]
        # Keys are long: like git, accept any prefix that names one entry.
        matches = list(self._rows("WHERE substr(key, 1, ?) = ?", (len(key), key)))
        if len(matches) == 1:
            return matches[0]
        if matches:
            msg = f"{key!r} is the start of {len(matches)} keys; give more of it"
            raise CliError(msg)
        msg = f"no entry with key {key!r} in {self.directory} (list keys with `memo ls NAMESPACE`)"
        raise CliError(msg)

    def read(self, entry: _Entry) -> bytes:
        if entry.filename is not None:
            return (self.directory / entry.filename).read_bytes()
        row = self._db.execute("SELECT value FROM Cache WHERE key = ?", (entry.key,)).fetchone()
        if row is None:
            msg = f"the entry {entry.key!r} was removed while being read"
            raise CliError(msg)
        value = row[0]
        return value if isinstance(value, bytes) else str(value).encode()


def _timestamp(value: object) -> float | None:
    """Return ``value`` as a Unix time that can be printed, or None."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < _LAST_TIME:
        return float(value)
    return None


@contextlib.contextmanager
def _open(directory: str | None) -> Iterator[_Folder]:
    # Absolute: sqlite3 opens the folder's database through a file: URI.
    path = Path(directory).expanduser() if directory else default_directory()
    folder = _Folder(path.absolute())
    try:
        yield folder
    finally:
        folder.close()


# -- formatting ---------------------------------------------------------------


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover - the loop always returns


def _entries(n: int) -> str:
    return f"{n} entry" if n == 1 else f"{n} entries"


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds / length:.0f}{unit}"
    return f"{seconds:.0f}s"


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds")


def _expiry(entry: _Entry, now: float) -> str:
    if entry.expires is None:
        return "never"
    if entry.expired(now):
        return f"expired {_span(now - entry.expires)} ago"
    return f"in {_span(entry.expires - now)}"


def _disk_usage(directory: Path) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):  # a file removed while we walk
                total += (Path(root) / name).stat().st_size
    return total


def _table(rows: list[list[str]], right: frozenset[int] = frozenset()) -> str:
    rows = [[_printable(cell) for cell in row] for row in rows]
    widths = [max(_width(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            " " * (width - _width(cell)) + cell
            if i in right
            else cell + " " * (width - _width(cell))
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _printable(text: str) -> str:
    r"""Return ``text`` with every character a terminal could act on escaped.

    Namespaces, keys and values come from whoever wrote the cache: an ESC or
    CSI in them must reach the screen as ``\x1b``, not move the cursor.
    """
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def _width(text: str) -> int:
    # East Asian wide characters take two columns in a terminal.
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        document = json.dumps(data, indent=2, ensure_ascii=False)
        # JSON escapes C0 controls itself; escape the rest (DEL, C1, ...) the
        # same way, so the document stays valid and harmless on a terminal.
        print("".join(c if c.isprintable() or c == "\n" else json.dumps(c)[1:-1] for c in document))
    else:
        print(_printable(text))


# -- commands -----------------------------------------------------------------


def _stats(args: argparse.Namespace) -> int:
    now = time.time()
    with _open(args.dir) as folder:
        entries = folder.entries()
        other = folder.other
        directory = folder.directory
    groups: dict[str, list[_Entry]] = {}
    for entry in entries:
        groups.setdefault(entry.namespace, []).append(entry)
    namespaces: list[dict[str, Any]] = [
        {
            "namespace": name,
            "entries": len(group),
            "bytes": sum(entry.size for entry in group),
            "expired": sum(entry.expired(now) for entry in group),
        }
        for name, group in sorted(groups.items())
    ]
    oldest = entries[0].stored if entries else None
    newest = entries[-1].stored if entries else None
    data: dict[str, Any] = {
        "directory": str(directory),
        "entries": len(entries),
        "expired": sum(entry.expired(now) for entry in entries),
        "other_entries": other,
        "value_bytes": sum(entry.size for entry in entries),
        "size_on_disk": _disk_usage(directory),
        "oldest": _iso(oldest),
        "newest": _iso(newest),
        "namespaces": namespaces,
    }
    lines = [
        f"cache folder  {directory}",
        f"entries       {len(entries)} ({data['expired']} expired)",
        f"size on disk  {_size(data['size_on_disk'])} ({_size(data['value_bytes'])} of values)",
    ]
    if oldest is not None and newest is not None:
        lines.append(f"oldest entry  {_iso(oldest)} ({_span(now - oldest)} ago)")
        lines.append(f"newest entry  {_iso(newest)} ({_span(now - newest)} ago)")
    if other:
        lines.append(f"other rows    {other} (not written by memo; left alone)")
    if namespaces:
        rows = [["namespace", "entries", "size", "expired"]]
        rows += [
            [ns["namespace"], str(ns["entries"]), _size(ns["bytes"]), str(ns["expired"])]
            for ns in namespaces
        ]
        lines += ["", _table(rows, right=frozenset({1, 2, 3}))]
    _emit(args, data, "\n".join(lines))
    return 0


def _namespace_entries(folder: _Folder, namespace: str) -> list[_Entry]:
    entries = folder.namespace(namespace)
    if not entries:
        known = sorted({entry.namespace for entry in folder.entries()})
        hint = f"namespaces here: {', '.join(known)}" if known else "the cache is empty"
        msg = f"no entries in namespace {namespace!r} in {folder.directory} ({hint})"
        raise CliError(msg)
    return entries


def _ls(args: argparse.Namespace) -> int:
    now = time.time()
    with _open(args.dir) as folder:
        entries = _namespace_entries(folder, args.namespace)
    data = [
        {
            "key": entry.key,
            "bytes": entry.size,
            "stored": _iso(entry.stored),
            "expires": _iso(entry.expires),
            "expired": entry.expired(now),
        }
        for entry in entries
    ]
    rows = [["key", "size", "age", "expires"]]
    rows += [
        [entry.key, _size(entry.size), _span(now - entry.stored), _expiry(entry, now)]
        for entry in entries
    ]
    _emit(args, data, _table(rows, right=frozenset({1, 2})))
    return 0


def _decode(data: bytes) -> dict[str, Any]:
    """Describe a stored value; parse it only as JSON, never unpickle it."""
    header = len(_ENVELOPE_FORMAT) + 1
    if len(data) < header or not data.startswith(_ENVELOPE_FORMAT):
        return {"serializer": None, "decoded": False, "note": "not a memo envelope"}
    end = header + data[header - 1]
    serializer = data[header:end].decode("utf-8", errors="replace")
    payload = data[end:]
    if serializer == "pickle":
        note = f"pickled, {len(payload)} bytes, not decoded"
        return {"serializer": serializer, "decoded": False, "note": note}
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError:
        note = f"{len(payload)} bytes written by serializer {serializer!r}, not JSON"
        return {"serializer": serializer, "decoded": False, "note": note}
    return {"serializer": serializer, "decoded": True, "value": value}


def _show(args: argparse.Namespace) -> int:
    now = time.time()
    with _open(args.dir) as folder:
        entry = folder.find(args.key)
        if entry.mode == _MODE_PICKLE:
            described: dict[str, Any] = {
                "serializer": None,
                "decoded": False,
                "note": f"a diskcache pickle entry, {entry.size} bytes, not decoded",
            }
        elif entry.mode == _MODE_BINARY and not _own_file(entry.filename):
            # diskcache names its value files itself; a row naming another
            # path ("../../.ssh/id_ed25519") would print a file memo never wrote.
            note = f"the entry names the file {entry.filename!r}, not one of the cache's; not read"
            described = {"serializer": None, "decoded": False, "note": note}
        elif entry.mode in (_MODE_RAW, _MODE_BINARY):
            described = _decode(folder.read(entry))
        else:
            note = f"a diskcache entry in mode {entry.mode}, not written by memo"
            described = {"serializer": None, "decoded": False, "note": note}
    data = {
        "key": entry.key,
        "namespace": entry.namespace,
        "bytes": entry.size,
        "stored": _iso(entry.stored),
        "expires": _iso(entry.expires),
        "expired": entry.expired(now),
        **described,
    }
    lines = [
        f"key         {entry.key}",
        f"namespace   {entry.namespace}",
        f"size        {_size(entry.size)}",
        f"stored      {_iso(entry.stored)} ({_span(now - entry.stored)} ago)",
        f"expires     {_expiry(entry, now)}",
        f"serializer  {described['serializer'] or '-'}",
    ]
    if described["decoded"]:
        pretty = json.dumps(described["value"], indent=2, ensure_ascii=False)
        lines += ["", pretty]
    else:
        lines += ["", f"({described['note']})"]
    _emit(args, data, "\n".join(lines))
    return 0


def _confirm(question: str, args: argparse.Namespace) -> None:
    if args.yes:
        return
    if not sys.stdin.isatty():
        msg = "refusing to clear without confirmation: stdin is not a terminal; pass --yes"
        raise CliError(msg)
    # The question goes to stderr: stdout is the answer (`--json > out.json`),
    # and a prompt hidden in a redirected stdout would leave the user waiting.
    print(f"{_printable(question)} [y/N] ", end="", file=sys.stderr, flush=True)
    line = sys.stdin.readline()
    if not line.endswith("\n"):  # end of input (Ctrl-D): no, on a line of its own
        print(file=sys.stderr)
    answer = line.strip().lower()
    if answer not in ("y", "yes"):
        msg = "nothing cleared"
        raise CliError(msg)


def _clear(args: argparse.Namespace) -> int:
    if args.all == (args.namespace is not None):
        msg = "give a NAMESPACE or --all (not both)"
        raise CliError(msg)
    with _open(args.dir) as folder:
        directory = folder.directory
        if args.all:
            count = len(folder.entries())
            question = f"Drop all {_entries(count)} in {directory}?"
        else:
            count = len(_namespace_entries(folder, args.namespace))
            question = f"Drop {_entries(count)} of namespace {args.namespace!r} in {directory}?"
    _confirm(question, args)
    store = DiskStore(directory)

    async def drop() -> int:
        try:
            if args.all:
                return int(await store._run(lambda cache: cache.clear(retry=True)))
            return await store.clear(args.namespace)
        finally:
            await store.close()

    cleared = asyncio.run(drop())
    what = "all namespaces" if args.all else f"namespace {args.namespace!r}"
    data = {"directory": str(directory), "namespace": args.namespace, "cleared": cleared}
    _emit(args, data, f"dropped {_entries(cleared)} ({what}) from {directory}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    now = time.time()
    with _open(args.dir) as folder:
        directory = folder.directory
        expired = [entry for entry in folder.entries() if entry.expired(now)]
    store = DiskStore(directory)

    async def expire() -> int:
        try:
            return int(await store._run(lambda cache: cache.expire(now=now, retry=True)))
        finally:
            await store.close()

    dropped = asyncio.run(expire())
    freed = sum(entry.size for entry in expired)
    namespaces: dict[str, int] = {}
    for entry in expired:
        namespaces[entry.namespace] = namespaces.get(entry.namespace, 0) + 1
    data = {
        "directory": str(directory),
        "dropped": dropped,
        "freed_bytes": freed,
        "namespaces": namespaces,
    }
    text = f"dropped {_entries(dropped)} (expired), freeing {_size(freed)} of values"
    if namespaces:
        text += " (" + ", ".join(f"{ns}: {n}" for ns, n in sorted(namespaces.items())) + ")"
    _emit(args, data, text)
    return 0


# -- the parser ---------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors in one line like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--dir",
        metavar="D",
        help="cache folder (default: $MEMO_CACHE_DIR, else the user cache folder)",
    )
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser = _Parser(
        prog="memo",
        description=(
            "memo: memoize coroutines on disk. With no command, run a short demo; "
            "the commands look inside a cache folder."
        ),
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    stats = commands.add_parser(
        "stats", parents=[common], help="entries, size and namespaces of a cache folder"
    )
    stats.set_defaults(run=_stats)
    ls = commands.add_parser(
        "ls", parents=[common], help="the keys of a namespace, with size, age and expiry"
    )
    ls.add_argument("namespace", metavar="NAMESPACE")
    ls.set_defaults(run=_ls)
    show = commands.add_parser(
        "show", parents=[common], help="one stored value, decoded when it is JSON"
    )
    show.add_argument("key", metavar="KEY", help="a key as `memo ls` prints it, or its start")
    show.set_defaults(run=_show)
    clear = commands.add_parser(
        "clear", parents=[common], help="drop every entry of a namespace (or --all)"
    )
    clear.add_argument("namespace", metavar="NAMESPACE", nargs="?")
    clear.add_argument("--all", action="store_true", help="drop every entry in the folder")
    clear.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    clear.set_defaults(run=_clear)
    prune = commands.add_parser(
        "prune", parents=[common], help="drop expired entries and report what was freed"
    )
    prune.set_defaults(run=_prune)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``memo`` command line; return the exit status.

    Args:
        argv: the arguments after the program name; default ``sys.argv[1:]``.
    """
    args = _parser().parse_args(argv)
    name = args.command or "demo"
    try:
        status: int = demo() if args.command is None else args.run(args)
    except (CliError, DemoError) as exc:
        print(f"memo {name}: error: {_printable(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # also `python -m memo | head`
        # The reader left (`memo stats | head`): say nothing more, like other tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        # A command line answers in one line, not a traceback: OSError,
        # sqlite3.Error, diskcache.Timeout (a folder locked by a writer), ...
        print(f"memo {name}: error: {type(exc).__name__}: {_printable(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"memo {name}: interrupted", file=sys.stderr)
        return 130
    return status
