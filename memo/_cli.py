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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from memo._demo import main as demo
from memo._keys import namespace_of, namespace_prefix
from memo.stores.disk import DiskStore, default_directory

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = ["main"]

_ENVELOPE_FORMAT = b"M\x01"  # memo/_serializers.py: format, id length, id, payload
_MODE_RAW = 1  # diskcache's modes: bytes in the row, bytes in a file, text, pickle
_MODE_BINARY = 2
_MODE_PICKLE = 4
_COLUMNS = "key, raw, store_time, expire_time, size, mode, filename"
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
            self._db.execute("SELECT key, raw, store_time, expire_time FROM Cache LIMIT 1")
        except sqlite3.Error as exc:
            msg = f"{directory} is not a memo cache ({database.name}: {exc})"
            raise CliError(msg) from None
        self.other = 0  # rows memo did not write (non-text keys)

    def close(self) -> None:
        self._db.close()

    def _rows(self, where: str = "", args: Sequence[Any] = ()) -> Iterator[_Entry]:
        # `where` is one of this module's fixed clauses; values are bound parameters.
        sql = f"SELECT {_COLUMNS}, {_SIZE} FROM Cache {where} ORDER BY store_time"  # noqa: S608
        for key, raw, stored, expires, _, mode, filename, size in self._db.execute(sql, args):
            if not raw or not isinstance(key, str) or ":" not in key:
                self.other += 1
                continue
            yield _Entry(key, namespace_of(key), stored or 0.0, expires, size or 0, mode, filename)

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


@contextlib.contextmanager
def _open(directory: str | None) -> Iterator[_Folder]:
    folder = _Folder(Path(directory).expanduser() if directory else default_directory())
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
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(text)


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
    answer = input(f"{question} [y/N] ").strip().lower()
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
                return int(await asyncio.to_thread(store.cache.clear, retry=True))
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
            return int(await asyncio.to_thread(store.cache.expire, now=now, retry=True))
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


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dir",
        metavar="D",
        help="cache folder (default: $MEMO_CACHE_DIR, else the user cache folder)",
    )
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser = argparse.ArgumentParser(
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
    except CliError as exc:
        print(f"memo {name}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # also `python -m memo | head`
        # The reader left (`memo stats | head`): say nothing more, like other tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (OSError, sqlite3.Error) as exc:
        print(f"memo {name}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"memo {name}: interrupted", file=sys.stderr)
        return 130
    return status
