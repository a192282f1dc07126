r"""Export files: a cache's entries as JSON Lines, the only module that reads or writes them.

An export is UTF-8 text, one JSON object a line, every line ending in a newline::

    {"format": "memo-export", "version": 1}
    {"namespace": "weather", "key": "weather::3d2e...", "expires": null, "value_text": "M\u0002..."}
    {"namespace": "pics", "key": "pics:v2:9f1c...", "expires": 1767225600.5, "value_b64": "TQI..."}
    {"end": "memo-export", "entries": 2}

The header comes first and holds nothing that changes between runs (no date,
no memo version), and entries follow in the order of their keys, so two
exports of the same cache are byte for byte the same and a change to one
entry is a change to one line in ``git diff``. The last line says the
export ended and how many entries it holds: a file cut at a line boundary
(``head -n 3``) is then refused like one cut mid-line. ``expires`` is a Unix time
(seconds since the epoch) or null for never.

The value is the stored bytes exactly (memo's envelope included), in one of
two fields. ``value_text`` holds them as text, for values that are mostly
UTF-8, as memo's JSON and pydantic entries are (a short binary header, then
the JSON the serializer wrote): the text is the bytes decoded as UTF-8, and
each byte that is not part of valid UTF-8 is the lone surrogate U+DC80 to
U+DCFF (written ``\udc80`` ... ``\udcff``, Python's ``surrogateescape``), so
a diff shows what changed in the answer itself. ``value_b64`` holds them in
standard base64 (with padding), for values with more than ``TEXT_ESCAPES``
bytes that are not UTF-8 (pickles, compressed data). Either way, decoding
the field gives back the same bytes.

Reading is all or nothing: the whole file is checked (the header, the
version, every line's fields, the base64, keys appearing twice, the end
line and its count) before the
first entry is written, so a file cut short or not an export at all changes
nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from memo.stores.base import StoredEntry, namespace_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from memo.stores.base import Store

__all__ = [
    "FORMAT",
    "TEXT_ESCAPES",
    "VERSION",
    "ExportError",
    "Imported",
    "parse_export",
    "read_export",
    "write_entries",
    "write_export",
]

FORMAT = "memo-export"
VERSION = 1
# A value with at most this many bytes outside UTF-8 is written as text.
TEXT_ESCAPES = 32
_FIELDS = {"namespace", "key", "expires"}
_VALUES = ("value_text", "value_b64")
# 10000-01-01: no store takes (Redis) or lists (a folder) a later expiry.
_LAST_EXPIRY = 253402300800
# What ends an export that failed midway: a line with no newline, which
# every import refuses as a file cut short.
_INCOMPLETE = b'{"error": "memo export failed here; this file is incomplete"'
# Entries written to a store at once: enough to overlap Redis round trips,
# few enough that a DiskStore's queue stays far inside its timeout.
_WRITES_AT_ONCE = 32


class ExportError(ValueError):
    """A file is not a memo export this memo can read; nothing was written."""


@dataclass(frozen=True, slots=True)
class Imported:
    """What ``read_export`` did.

    Attributes:
        written: entries written to the store.
        expired: entries skipped because their expiry had passed.
    """

    written: int
    expired: int


def _line(document: dict[str, Any]) -> bytes:
    text = json.dumps(document, ensure_ascii=False)
    # JSON escapes C0 controls itself; escape the rest (DEL, C1, U+2028...) the
    # same way: the file stays valid, exact, and harmless printed on a terminal.
    text = "".join(c if c.isprintable() else json.dumps(c)[1:-1] for c in text)
    return text.encode() + b"\n"


def _header() -> bytes:
    return _line({"format": FORMAT, "version": VERSION})


def _end(count: int) -> bytes:
    return _line({"end": FORMAT, "entries": count})


def _entry_line(entry: StoredEntry) -> bytes:
    if entry.value is None:
        msg = f"entry {entry.key!r} was listed without its value; list it with values=True"
        raise ValueError(msg)
    document: dict[str, Any] = {
        "namespace": entry.namespace,
        "key": entry.key,
        "expires": entry.expires,
    }
    text = entry.value.decode("utf-8", "surrogateescape")
    escapes = sum(1 for c in text if "\udc80" <= c <= "\udcff")
    if escapes <= TEXT_ESCAPES:
        document["value_text"] = text
    else:
        document["value_b64"] = base64.b64encode(entry.value).decode()
    return _line(document)


async def write_export(
    store: Any,
    out: BinaryIO,
    namespaces: Iterable[str] = (),
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the live entries of ``store`` (of ``namespaces`` when given) to ``out`` as an export.

    Args:
        store: a store with ``entries()`` (``DiskStore``, ``RedisStore``, ``MemoryStore``).
        out: a binary file open for writing.
        namespaces: the namespaces to export; empty: all of them.
        progress: called with the count of entries written so far, after each one.

    Returns:
        How many entries were written.

    Raises:
        TypeError: the store cannot list its entries.
    """
    entries = getattr(store, "entries", None)
    if entries is None:
        msg = f"{store!r} cannot list its entries: it has no entries() method"
        raise TypeError(msg)
    out.write(_header())
    count = 0
    try:
        async for entry in entries(tuple(namespaces)):
            out.write(_entry_line(entry))
            count += 1
            if progress is not None:
                progress(count)
    except BaseException:
        # On stdout there is no partial file to throw away: end what was written
        # with a line cut short, so no import takes it for a smaller export.
        with contextlib.suppress(OSError, ValueError):
            out.write(_INCOMPLETE)
        raise
    out.write(_end(count))
    return count


def _fail(source: str, number: int, problem: str) -> ExportError:
    return ExportError(f"{source} is not a memo export this memo can read: line {number} {problem}")


def _check_header(source: str, line: bytes) -> None:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        problem = f'is not the header {{"format": "{FORMAT}", ...}}; nothing was written'
        raise _fail(source, 1, problem)
    version = header.get("version")
    if version != VERSION:
        if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
            msg = (
                f"{source} is an export in format version {version}, newer than this memo "
                f"reads ({VERSION}): upgrade memo-cache (pip install -U memo-cache); "
                f"nothing was written"
            )
            raise ExportError(msg)
        raise _fail(source, 1, f"has version {version!r}, not {VERSION}; nothing was written")


def _end_line(line: bytes) -> dict[str, Any] | None:
    """The end line's document, or None for any other line."""
    if not line.startswith(b'{"end"'):
        return None
    try:
        end = json.loads(line)
    except ValueError:
        return None
    if not isinstance(end, dict) or set(end) != {"end", "entries"} or end["end"] != FORMAT:
        return None
    return end


def _is_utf8(text: str) -> bool:
    """Whether ``text`` has no lone surrogate: a store's keys are UTF-8."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _parse_entry(line: bytes) -> StoredEntry | str:
    """Return the entry on ``line``, or what is wrong with the line."""
    try:
        document = json.loads(line)
    except ValueError:
        return "is not JSON"
    if not isinstance(document, dict):
        return "is not a JSON object"
    given = set(document)
    values = [name for name in _VALUES if name in given]
    if given - _FIELDS - set(_VALUES) or not given >= _FIELDS or len(values) != 1:
        fields = ", ".join(sorted(given))
        return f"has the fields {{{fields}}}, not namespace, key, expires and one value"
    key, namespace, expires = document["key"], document["namespace"], document["expires"]
    if not isinstance(key, str) or ":" not in key or not _is_utf8(key):
        return f"has the key {key!r}, which memo could not have written"
    if namespace != namespace_of(key):
        return f"says namespace {namespace!r}, but its key belongs to {namespace_of(key)!r}"
    if expires is not None and (
        not isinstance(expires, (int, float))
        or isinstance(expires, bool)
        or not math.isfinite(expires)
    ):
        return f"has the expiry {expires!r}, not a Unix time or null"
    if expires is not None and expires >= _LAST_EXPIRY:
        return f"has the expiry {expires!r}, after the year 9999 (null is never)"
    value = document[values[0]]
    if not isinstance(value, str):
        return f"has a {values[0]} that is not a string"
    if values[0] == "value_text":
        try:
            data = value.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return "has a value_text with a surrogate that stands for no byte"
    else:
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return "has a value_b64 that is not base64"
    return StoredEntry(key, data, len(data), None if expires is None else float(expires))


def parse_export(data: bytes, *, source: str = "the file") -> list[StoredEntry]:
    """Check a whole export and return its entries, in file order.

    Args:
        data: the file's bytes.
        source: how messages name the file.

    Raises:
        ExportError: the file is not a memo export, is cut short, is of
            another version, or has a line this memo cannot read; the
            message names the line.
    """
    if not data:
        msg = f"{source} is empty, not a memo export; nothing was written"
        raise ExportError(msg)
    lines = data.split(b"\n")
    if lines[-1]:
        # Every line ends in "\n": a last line without one was cut short.
        problem = "does not end the line: the file was cut short; nothing was written"
        raise _fail(source, len(lines), problem)
    lines.pop()
    _check_header(source, lines[0])
    entries: list[StoredEntry] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines[1:], start=2):
        end = _end_line(line)
        if end is not None:
            if number != len(lines):
                problem = "ends the export, but lines follow; nothing was written"
                raise _fail(source, number, problem)
            count = end["entries"]
            if type(count) is not int or count != len(entries):
                problem = (
                    f"counts {json.dumps(count)} entries, but the file holds {len(entries)}: "
                    f"lines are missing or were added; nothing was written"
                )
                raise _fail(source, number, problem)
            return entries
        entry = _parse_entry(line)
        if isinstance(entry, str):
            raise _fail(source, number, f"{entry}; nothing was written")
        if entry.key in seen:
            problem = f"repeats the key of line {seen[entry.key]}; nothing was written"
            raise _fail(source, number, problem)
        seen[entry.key] = number
        entries.append(entry)
    # Every line is whole, but the end line never came: cut at a line boundary.
    problem = (
        f'is not the end line {{"end": "{FORMAT}", ...}}: the file was cut short; '
        f"nothing was written"
    )
    raise _fail(source, len(lines), problem)


async def write_entries(
    store: Store,
    entries: Iterable[StoredEntry],
    *,
    progress: Callable[[int], None] | None = None,
) -> Imported:
    """Write ``entries`` to ``store``, keeping their expiries; skip those already expired.

    Each entry's time to live is what is left of it when it is written. An
    entry that exists in the store already is overwritten.

    Args:
        store: any ``Store``.
        entries: entries with their values, as ``parse_export`` returns them.
        progress: called with the count of entries handled so far, after each batch.
    """
    written = expired = 0
    batch: list[tuple[StoredEntry, float | None]] = []

    async def flush() -> None:
        import asyncio  # noqa: PLC0415 - loaded by the running loop already

        await asyncio.gather(*(store.set(e.key, e.value or b"", ttl=ttl) for e, ttl in batch))
        batch.clear()
        if progress is not None:
            progress(written + expired)

    for entry in entries:
        if entry.value is None:
            msg = f"entry {entry.key!r} has no value to write"
            raise ValueError(msg)
        ttl = None if entry.expires is None else entry.expires - time.time()
        if ttl is not None and ttl <= 0:
            expired += 1
            continue
        batch.append((entry, ttl))
        written += 1
        if len(batch) >= _WRITES_AT_ONCE:
            await flush()
    if batch:
        await flush()
    return Imported(written, expired)


async def read_export(
    store: Store,
    src: BinaryIO,
    *,
    source: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Imported:
    """Check the export in ``src`` whole, then write its entries to ``store``.

    Args:
        store: any ``Store``.
        src: a binary file open for reading.
        source: how messages name the file (default: its name).
        progress: called with the count of entries handled so far.

    Raises:
        ExportError: the file is not an export this memo can read (nothing written).
    """
    name = source or str(getattr(src, "name", "the file"))
    entries = parse_export(src.read(), source=name)
    return await write_entries(store, entries, progress=progress)
