"""The ``Store`` protocol, and the layout of the keys memo hands to every store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import quote, unquote

__all__ = ["Store", "StoredEntry", "WouldBlock", "namespace_of", "namespace_prefix", "store_key"]


class WouldBlock(Exception):
    """Raised by a store's optional ``get_nowait`` when it cannot answer at once."""


@runtime_checkable
class Store(Protocol):
    """An async key-value store of bytes.

    Every key memo hands to a store begins with its namespace, escaped so that
    ``memo.stores.namespace_of(key)`` reads it back. ``clear(namespace)`` drops
    every key of that namespace (whatever its version or code fingerprint) and
    no key of another namespace, including one whose name merely starts with
    the same text: match on ``memo.stores.namespace_prefix(namespace)``.

    A store may also offer ``get_nowait(key) -> bytes | None``: a read that
    never waits on I/O it does not control (a lock, the network), raising
    ``WouldBlock`` when it would have to. memo calls it on the event loop's
    thread to serve hits without a thread hop or a task, and falls back to
    ``get`` on ``WouldBlock``.

    A store whose ``get`` makes other processes wait for a value it promised
    (``RedisStore(lock_timeout=...)``) may also offer ``async release(key)``:
    memo calls it when the run that followed a miss stored nothing (the
    function raised or was cancelled, ``cache_if`` said no, or the write
    failed), so the waiters stop waiting.

    A store may also offer ``entries(namespaces=(), *, values=True)``: an
    async iterator of ``StoredEntry``, every live entry (of ``namespaces``
    when given) in the order of their keys. ``memo export`` and the command
    line's views of a Redis store go through it; memo's three stores have it.

    The conformance suite in memo's tests (``tests/test_store_contract.py``)
    checks a store against this contract.
    """

    async def get(self, key: str) -> bytes | None:
        """Return the bytes stored under ``key``, or None when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value`` under ``key``, expiring after ``ttl`` seconds (None: never)."""
        ...

    async def delete(self, key: str) -> bool:
        """Drop ``key``; return whether it existed."""
        ...

    async def clear(self, namespace: str) -> int:
        """Drop every key of ``namespace``; return how many were dropped."""
        ...

    async def close(self) -> None:
        """Release connections and files; the store may be reopened by later use."""
        ...


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """One entry as a store holds it, for listing and moving caches.

    Attributes:
        key: the store key, as memo built it (``namespace_of(key)`` reads its namespace).
        value: the stored bytes, exactly; None when listed with ``values=False``.
        size: the length of the stored bytes.
        expires: when the entry expires, in seconds since the epoch; None: never.
    """

    key: str
    value: bytes | None
    size: int
    expires: float | None

    @property
    def namespace(self) -> str:
        """The namespace the key belongs to."""
        return namespace_of(self.key)


# -- the key layout -------------------------------------------------------------


def _escape(text: str) -> str:
    # Percent-encoding leaves only [A-Za-z0-9_.~-] bare, so ':' never appears
    # inside a part and glob characters never reach Redis patterns.
    return quote(text, safe="")


def namespace_prefix(namespace: str) -> str:
    """Return the prefix that every store key of ``namespace`` starts with.

    No other namespace's keys start with it: ``a`` and ``a:b`` have the
    prefixes ``a:`` and ``a%3Ab:``.
    """
    return _escape(namespace) + ":"


def store_key(
    namespace: str, version: str | None, digest: str, *, fingerprint: str | None = None
) -> str:
    """Join namespace, version (or code fingerprint) and digest into the key handed to a store.

    The key is ``namespace:slot:digest``. The middle slot is empty, ``v`` and
    the version, ``c`` and the fingerprint of the function's code (when no
    version is given, the fingerprint takes its place), or both joined by
    ``+``. Escaped parts contain neither ``:`` nor ``+``, so no two different
    (namespace, version, fingerprint, digest) combinations can meet, and
    ``namespace_prefix`` still covers every version and fingerprint of a
    namespace.
    """
    parts = []
    if version is not None:
        parts.append("v" + _escape(version))
    if fingerprint is not None:
        parts.append("c" + _escape(fingerprint))
    return f"{namespace_prefix(namespace)}{'+'.join(parts)}:{digest}"


def namespace_of(key: str) -> str:
    """Read the namespace back from a store key."""
    return unquote(key.partition(":")[0])
