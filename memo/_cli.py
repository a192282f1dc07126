"""The ``memo`` command line: the demo, a look inside a cache, and moving one.

A cache is a folder (``--dir``, the default) or the entries under a prefix
of a Redis server (``--redis URL``). Reading a folder (``stats``, ``ls``,
``show``) goes through the read-only folder view of
``memo.stores._diskcache``, so looking never changes a cache, not even its
access times; reading Redis goes through ``memo._views.RedisView``, which
answers the same questions. Writing (``clear``, ``prune``, ``import``) and
``export`` go through the store itself (``DiskStore``, ``RedisStore``); the
one exception is ``prune`` removing value files that no entry names. Export
files are read and written by ``memo._transfer`` alone. Stored values are
decoded only when that is safe: JSON and pydantic envelopes are parsed as
JSON; a pickled value is described, never unpickled.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import time
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, TypeVar

import orjson

from memo._envelope import parse_envelope
from memo._transfer import ExportError, parse_export, write_entries, write_export
from memo._views import Progress, RedisView, describe
from memo.stores._diskcache import (
    MODE_BINARY,
    MODE_PICKLE,
    MODE_RAW,
    Entry,
    Folder,
    FolderError,
    being_created,
    damaged_message,
    is_damaged,
    own_file,
    remove_value_file,
)
from memo.stores.disk import DiskStore, default_directory

if TYPE_CHECKING:
    from collections.abc import Coroutine, Sequence

    from memo.stores.redis import RedisStore

    View = Folder | RedisView

__all__ = ["main"]

T = TypeVar("T")


class CliError(Exception):
    """Bad input: printed as one line on stderr, exit status 1."""


# asyncio and the demo (which loads the decorator) are imported by the commands
# that use them: `memo stats` and `memo ls` start in a fraction of the time.
def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    import asyncio  # noqa: PLC0415 - see above

    return asyncio.run(coroutine)


def _demo() -> int:
    from memo._demo import DemoError, main  # noqa: PLC0415 - see above

    try:
        return main()
    except DemoError as exc:
        raise CliError(str(exc)) from None


# A value file is written before the row that names it: one younger than this
# may belong to a write in progress (in any process), so prune leaves it.
ORPHAN_GRACE = 60.0


def _folder_path(directory: str | None) -> Path:
    # Absolute: sqlite3 opens the folder's database through a file: URI.
    path = Path(directory).expanduser() if directory else default_directory()
    return path.absolute()


def _open(args: argparse.Namespace) -> View:
    """Open the cache the command line names: a Redis prefix, or a folder."""
    if args.redis is not None:
        if args.dir is not None:
            msg = "give --dir or --redis, not both"
            raise CliError(msg)
        return RedisView(args.redis, args.prefix)
    if args.prefix is not None:
        msg = "--prefix goes with --redis URL (a cache folder has no prefix)"
        raise CliError(msg)
    return Folder(_folder_path(args.dir))


def _writer(view: View) -> DiskStore | RedisStore:
    """Return the store that writes to the cache ``view`` reads."""
    if isinstance(view, RedisView):
        return view.store
    return DiskStore(view.directory)


def _find(view: View, key: str) -> Entry:
    # Keys are long: like git, accept any prefix that names one entry.
    matches = view.matching(key)
    if len(matches) == 1:
        return matches[0]
    if matches:
        msg = f"{key!r} is the start of {len(matches)} keys; give more of it"
        raise CliError(msg)
    msg = f"no entry with key {key!r} in {describe(view)} (list keys with `memo ls NAMESPACE`)"
    raise CliError(msg)


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


def _age(stored: float | None, now: float) -> str:
    return "-" if stored is None else _span(now - stored)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="seconds")


def _expiry(entry: Entry, now: float) -> str:
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


def _where(view: View) -> tuple[dict[str, Any], list[str]]:
    """Where a cache lives, as JSON fields and as the first lines of `stats`."""
    if isinstance(view, RedisView):
        data = {"redis": view.url, "prefix": view.prefix}
        return data, [f"redis         {view.url}", f"prefix        {view.prefix}"]
    return {"directory": str(view.directory)}, [f"cache folder  {view.directory}"]


def _stats(args: argparse.Namespace) -> int:
    now = time.time()
    with _open(args) as view:
        entries = view.entries()
        other = view.other
    where, lines = _where(view)
    groups: dict[str, list[Entry]] = {}
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
    data: dict[str, Any] = {
        **where,
        "entries": len(entries),
        "expired": sum(entry.expired(now) for entry in entries),
        "other_entries": other,
        "value_bytes": sum(entry.size for entry in entries),
    }
    if isinstance(view, Folder):
        lines.append(f"entries       {len(entries)} ({data['expired']} expired)")
        data["size_on_disk"] = _disk_usage(view.directory)
        values = _size(data["value_bytes"])
        lines.append(f"size on disk  {_size(data['size_on_disk'])} ({values} of values)")
        oldest = entries[0].stored if entries else None
        newest = entries[-1].stored if entries else None
        data |= {"oldest": _iso(oldest), "newest": _iso(newest)}
    else:  # Redis drops expired entries itself, and keeps no time of writing
        oldest = newest = None
        lines.append(f"entries       {len(entries)}")
        lines.append(f"size          {_size(data['value_bytes'])} of values")
    data["namespaces"] = namespaces
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


def _namespace_entries(view: View, namespace: str) -> list[Entry]:
    entries = view.namespace(namespace)
    if not entries:
        known = sorted({entry.namespace for entry in view.entries()})
        hint = f"namespaces here: {', '.join(known)}" if known else "the cache is empty"
        msg = f"no entries in namespace {namespace!r} in {describe(view)} ({hint})"
        raise CliError(msg)
    return entries


def _ls(args: argparse.Namespace) -> int:
    now = time.time()
    with _open(args) as view:
        entries = _namespace_entries(view, args.namespace)
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
        [entry.key, _size(entry.size), _age(entry.stored, now), _expiry(entry, now)]
        for entry in entries
    ]
    _emit(args, data, _table(rows, right=frozenset({1, 2})))
    return 0


def _decode(data: bytes, key: str) -> dict[str, Any]:
    """Describe a stored value; parse it only as JSON, never unpickle it."""
    envelope = parse_envelope(data, key)
    if envelope is None:
        return {"serializer": None, "decoded": False, "note": "not a memo envelope"}
    serializer, payload, problem = envelope
    if problem is not None:
        note = f"{problem}; memo reads it as a miss"
        return {"serializer": serializer, "decoded": False, "note": note}
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
    with _open(args) as view:
        entry = _find(view, args.key)
        if entry.mode == MODE_PICKLE:
            described: dict[str, Any] = {
                "serializer": None,
                "decoded": False,
                "note": f"a diskcache pickle entry, {entry.size} bytes, not decoded",
            }
        elif entry.mode == MODE_BINARY and not own_file(entry.filename):
            # diskcache names its value files itself; a row naming another
            # path ("../../.ssh/id_ed25519") would print a file memo never wrote.
            note = f"the entry names the file {entry.filename!r}, not one of the cache's; not read"
            described = {"serializer": None, "decoded": False, "note": note}
        elif entry.mode in (MODE_RAW, MODE_BINARY):
            described = _decode(view.read(entry), entry.key)
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
        f"stored      {_iso(entry.stored)} ({_age(entry.stored, now)} ago)"
        if entry.stored is not None
        else "stored      - (Redis does not record it)",
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
    with _open(args) as view:
        where = describe(view)
        if args.all:
            count = len(view.entries())
            question = f"Drop all {_entries(count)} in {where}?"
        else:
            count = len(_namespace_entries(view, args.namespace))
            question = f"Drop {_entries(count)} of namespace {args.namespace!r} in {where}?"
    _confirm(question, args)
    store = _writer(view)

    async def drop() -> int:
        try:
            if args.all:
                return await store.clear_all()
            return await store.clear(args.namespace)
        finally:
            await store.close()

    cleared = _run(drop())
    what = "all namespaces" if args.all else f"namespace {args.namespace!r}"
    data = {**_where(view)[0], "namespace": args.namespace, "cleared": cleared}
    _emit(args, data, f"dropped {_entries(cleared)} ({what}) from {where}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    now = time.time()
    if args.redis is not None:
        msg = "prune works on cache folders: Redis drops expired entries itself"
        raise CliError(msg)
    with _open(args) as folder:
        assert isinstance(folder, Folder)
        directory = folder.directory
        expired = [entry for entry in folder.entries() if entry.expired(now)]
    store = DiskStore(directory)

    async def expire() -> int:
        try:
            return await store.expire()
        finally:
            await store.close()

    dropped = _run(expire())
    # After the expired entries (their files go with them): files no row names.
    with Folder(directory) as folder:
        orphans = folder.unreferenced_files(written_before=time.time() - ORPHAN_GRACE)
    for filename, _ in orphans:
        remove_value_file(directory, filename)
    freed = sum(entry.size for entry in expired)
    orphan_bytes = sum(size for _, size in orphans)
    namespaces: dict[str, int] = {}
    for entry in expired:
        namespaces[entry.namespace] = namespaces.get(entry.namespace, 0) + 1
    data = {
        "directory": str(directory),
        "dropped": dropped,
        "freed_bytes": freed,
        "namespaces": namespaces,
        "orphan_files": len(orphans),
        "orphan_bytes": orphan_bytes,
    }
    text = f"dropped {_entries(dropped)} (expired), freeing {_size(freed)} of values"
    if namespaces:
        text += " (" + ", ".join(f"{ns}: {n}" for ns, n in sorted(namespaces.items())) + ")"
    if orphans:
        files = "1 value file" if len(orphans) == 1 else f"{len(orphans)} value files"
        text += f"; removed {files} no entry names ({_size(orphan_bytes)})"
    _emit(args, data, text)
    return 0


def _export(args: argparse.Namespace) -> int:
    with _open(args) as view:
        where = describe(view)
    store = _writer(view)
    progress = Progress("exported")

    async def export(out: BinaryIO) -> int:
        try:
            return await write_export(store, out, args.namespaces, progress=progress)
        finally:
            await store.close()
            progress.done()

    if args.output in (None, "-"):
        sys.stdout.flush()
        _run(export(sys.stdout.buffer))
        sys.stdout.buffer.flush()
        return 0
    # Written beside the target, then renamed: a failed export leaves no file cut short.
    target = Path(args.output)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as out:
            count = _run(export(out))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    message = f"exported {_entries(count)} from {where} to {target}"
    print(_printable(message), file=sys.stderr)
    return 0


def _read_file(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        msg = f"cannot read {name}: {exc.strerror or exc}"
        raise CliError(msg) from None


def _import_target(args: argparse.Namespace) -> tuple[DiskStore | RedisStore, str, dict[str, Any]]:
    """The store to import into, where it is (in text and as JSON fields).

    A folder is created if need be; one that exists must be a memo cache.
    """
    if args.redis is not None or args.prefix is not None:
        view = _open(args)
        return _writer(view), describe(view), _where(view)[0]
    directory = _folder_path(args.dir)
    database = directory / "cache.db"
    if database.exists() or (directory.exists() and not directory.is_dir()):
        try:
            Folder(directory).close()  # refuses a folder that is not a memo cache
        except FolderError:
            # Another process's memo may be creating it right now: the store finishes it.
            if not being_created(database):
                raise
    return DiskStore(directory), str(directory), {"directory": str(directory)}


def _import(args: argparse.Namespace) -> int:
    source = "stdin" if args.file == "-" else args.file
    # Checked whole before the cache is even opened: a bad file writes nothing.
    entries = parse_export(_read_file(args.file), source=source)
    store, where, fields = _import_target(args)
    progress = Progress("imported")

    async def write() -> tuple[int, int]:
        try:
            done = await write_entries(store, entries, progress=progress)
        finally:
            await store.close()
            progress.done()
        return done.written, done.expired

    written, expired = _run(write())
    data = {**fields, "source": source, "imported": written, "expired": expired}
    text = f"imported {_entries(written)} from {source} into {where}"
    if expired:
        text += f" ({_entries(expired)} already expired, skipped)"
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
    common.add_argument(
        "--redis",
        metavar="URL",
        help="a cache in Redis instead of a folder (redis://host:6379/0, rediss://, unix://)",
    )
    common.add_argument(
        "--prefix",
        metavar="P",
        help="with --redis: the RedisStore prefix of the cache (default: memo:)",
    )
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser = _Parser(
        prog="memo",
        description=(
            "memo: memoize coroutines on disk. With no command, run a short demo; "
            "the commands look inside a cache (a folder, or Redis with --redis) and move it."
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
        "prune",
        parents=[common],
        help=(
            "drop expired entries, and value files no entry names (older than a minute); "
            "report what was freed"
        ),
    )
    prune.set_defaults(run=_prune)
    export = commands.add_parser(
        "export",
        parents=[common],
        help="write the live entries (of some namespaces) as JSON Lines, to move or diff them",
    )
    export.add_argument("namespaces", metavar="NAMESPACE", nargs="*")
    export.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")
    export.set_defaults(run=_export)
    import_ = commands.add_parser(
        "import",
        parents=[common],
        help="write the entries of an export into the cache, keeping their expiries",
    )
    import_.add_argument("file", metavar="FILE", help="a file `memo export` wrote, or - for stdin")
    import_.set_defaults(run=_import)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``memo`` command line; return the exit status.

    Args:
        argv: the arguments after the program name; default ``sys.argv[1:]``.
    """
    args = _parser().parse_args(argv)
    name = args.command or "demo"
    try:
        status: int = _demo() if args.command is None else args.run(args)
    except (CliError, FolderError, ExportError) as exc:
        print(f"memo {name}: error: {_printable(str(exc))}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # also `python -m memo | head`
        # The reader left (`memo stats | head`): say nothing more, like other tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        # A command line answers in one line, not a traceback: OSError,
        # sqlite3.Error, DiskTimeoutError (a folder locked by a writer), ...
        message = f"{type(exc).__name__}: {exc}"
        if is_damaged(exc):  # found past the first look, deep in the file: say what to do
            message = damaged_message(_folder_path(getattr(args, "dir", None)), exc)
        print(f"memo {name}: error: {_printable(message)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"memo {name}: interrupted", file=sys.stderr)
        return 130
    return status
