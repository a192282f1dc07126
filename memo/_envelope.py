"""The envelope around every stored value: the only module that reads or writes it.

Layout, in order::

    "M" 2                format 2 (format 1 was memo 0.1's, without the two digests)
    len(sid), sid        the id of the serializer that wrote the payload
    key digest           8 bytes: blake2b of the store key the value was written for
    checksum             4 bytes: CRC-32 of the payload, big-endian
    payload              what the serializer wrote

A value written by another serializer or format, a value moved to another key
(two rows swapped), and a value damaged on disk (a bit flip that would still
decode) all fail to open: a miss and an error counted, never a wrong object.
Everything else encodes and decodes through ``Codec``, or describes a stored
value with ``parse_envelope``.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import TYPE_CHECKING, Any, NamedTuple

from memo._roundtrip import difference
from memo._serializers import serializer_id

if TYPE_CHECKING:
    from memo._serializers import Serializer

__all__ = [
    "Codec",
    "DamagedEntryError",
    "EnvelopeError",
    "MisplacedEntryError",
    "Opened",
    "UnfaithfulError",
    "envelope_header",
    "open_envelope",
    "parse_envelope",
    "seal_envelope",
]

FORMAT = b"M\x02"
_KEY_DIGEST = 8
_CHECKSUM = 4


class EnvelopeError(ValueError):
    """A stored value was not written by this serializer in this format."""


class MisplacedEntryError(EnvelopeError):
    """A stored value was written for another key (rows moved or swapped)."""


class DamagedEntryError(EnvelopeError):
    """A stored value's payload does not match its checksum (damaged after writing)."""


class UnfaithfulError(ValueError):
    """A value would not read back as it was written, so it is not stored."""


def key_digest(key: str) -> bytes:
    """Return the digest of ``key`` that envelopes carry."""
    return hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=_KEY_DIGEST).digest()


def _checksum(payload: bytes) -> bytes:
    return zlib.crc32(payload).to_bytes(_CHECKSUM, "big")


def envelope_header(sid: bytes) -> bytes:
    """Return the bytes every envelope written with ``sid`` starts with."""
    return FORMAT + bytes((len(sid),)) + sid


def seal_envelope(sid: bytes, payload: bytes, key: str) -> bytes:
    """Wrap a payload written by serializer ``sid`` for store key ``key``."""
    return envelope_header(sid) + key_digest(key) + _checksum(payload) + payload


def open_envelope(header: bytes, data: bytes, key: str) -> bytes:
    """Return the payload of ``data``, which must start with ``header`` and belong to ``key``.

    Raises:
        EnvelopeError: ``data`` was written in another format or by another
            serializer.
        MisplacedEntryError: ``data`` was written for another key.
        DamagedEntryError: the payload does not match its checksum.
    """
    if not data.startswith(header):
        if data[:2] == b"M\x01":
            msg = "stored value was written by memo 0.1, whose entries are not read any more"
        elif not data.startswith(FORMAT):
            msg = "stored value is not in memo's envelope format (written by something else?)"
        else:
            msg = "stored value was written by a different serializer"
        raise EnvelopeError(msg)
    start = len(header)
    if data[start : start + _KEY_DIGEST] != key_digest(key):
        msg = "stored value was written for another key (moved or swapped)"
        raise MisplacedEntryError(msg)
    start += _KEY_DIGEST
    checksum, payload = data[start : start + _CHECKSUM], data[start + _CHECKSUM :]
    if len(checksum) < _CHECKSUM or checksum != _checksum(payload):
        msg = "stored value is damaged: its payload does not match its checksum"
        raise DamagedEntryError(msg)
    return payload


class Opened(NamedTuple):
    """What ``parse_envelope`` reads of a stored value."""

    serializer: str
    payload: bytes
    problem: str | None  # why the value would not be read, if it would not


def parse_envelope(data: bytes, key: str) -> Opened | None:
    """Split a value stored under ``key`` into the id of its serializer and its payload.

    For tools that describe what a cache holds (``memo show``) without
    knowing which serializer to expect. ``problem`` says why memo would not
    read it (written for another key, damaged). Returns None for bytes that
    are not in memo's current envelope format.
    """
    start = len(FORMAT) + 1
    if len(data) < start or not data.startswith(FORMAT):
        return None
    end = start + data[start - 1]
    payload_start = end + _KEY_DIGEST + _CHECKSUM
    if len(data) < payload_start:
        return None
    header = data[:end]
    sid = data[start:end].decode("utf-8", errors="replace")
    try:
        return Opened(sid, open_envelope(header, data, key), None)
    except EnvelopeError as exc:
        return Opened(sid, data[payload_start:], str(exc))


class Codec:
    """A serializer and the envelope around what it writes: values to stored bytes and back.

    Args:
        serializer: the serializer whose id the envelope carries.
    """

    __slots__ = ("_header", "serializer")

    def __init__(self, serializer: Serializer[Any]) -> None:
        self.serializer = serializer
        self._header = envelope_header(serializer_id(serializer))

    def encode(self, value: Any, key: str) -> bytes:
        """Return ``value`` serialized for ``key``, in its envelope, if it reads back as it is.

        The bytes are decoded again and compared with ``value``: equal, and
        of the same types all the way down (a tuple that would come back as
        a list, a subclass as its base class, a ``SecretStr`` masked). This
        costs one decode per write, and it is what makes a hit the value the
        function returned.

        Raises:
            UnfaithfulError: the value would read back different; the message
                says where and how.
            Exception: whatever the serializer raises for a value it cannot write.
        """
        payload = self.serializer.dumps(value)
        where = difference(value, self.serializer.loads(payload))
        if where is not None:
            msg = (
                f"{type(value).__qualname__} result would read back different from what was "
                f"returned ({where}) with {self.serializer!r}; annotate the return type or "
                f"pass a serializer that keeps it"
            )
            raise UnfaithfulError(msg)
        return self._header + key_digest(key) + _checksum(payload) + payload

    def decode(self, data: bytes, key: str) -> Any:
        """Return the value stored in ``data`` for ``key``.

        Raises:
            EnvelopeError: ``data`` was written in another format, by another
                serializer, for another key, or was damaged since.
            Exception: whatever the serializer raises for a payload it cannot read.
        """
        return self.serializer.loads(open_envelope(self._header, data, key))
