"""The ``openai`` SDK internals that raw-response calls build on, in one place.

``with_raw_response`` and ``with_streaming_response`` return the SDK's own
response objects (``LegacyAPIResponse``, ``AsyncAPIResponse``), built around
an HTTP response of the HTTP library the SDK uses: ``httpx`` up to openai 2,
``httpx2`` since. These are private names of the SDK that moved over time, so
they are imported here, defensively: on a release where one is missing, raw
calls go to the API uncached (and memo says so) instead of failing.
"""

from __future__ import annotations

import datetime
import importlib
from typing import TYPE_CHECKING, Any

from openai import APITimeoutError, _base_client
from openai._types import NotGiven, Omit

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from openai import AsyncOpenAI

__all__ = [
    "HTTP",
    "RAW_HEADERS",
    "api_response",
    "http_response",
    "raw_kind",
    "read_timeout",
    "request_options",
    "timeout_error",
    "without_raw_headers",
]


def _import(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):  # pragma: no cover - depends on the SDK release
        return None


# The HTTP library whose responses the SDK builds its raw-response objects around.
HTTP: Any = getattr(_base_client, "httpx2", None) or getattr(_base_client, "httpx", None)
if HTTP is None:  # pragma: no cover - depends on the SDK release
    HTTP = importlib.import_module("httpx")

LegacyAPIResponse: Any = _import("openai._legacy_response", "LegacyAPIResponse")
AsyncAPIResponse: Any = _import("openai._response", "AsyncAPIResponse")
FinalRequestOptions: Any = _import("openai._models", "FinalRequestOptions")

# The request headers the SDK's wrappers set: "true" for with_raw_response
# (a LegacyAPIResponse), "stream" for with_streaming_response (an
# AsyncAPIResponse); the other names a response class of the caller's own.
RAW_RESPONSE_HEADER = str(
    _import("openai._constants", "RAW_RESPONSE_HEADER") or "X-Stainless-Raw-Response"
).lower()
OVERRIDE_CAST_TO_HEADER = str(
    _import("openai._constants", "OVERRIDE_CAST_TO_HEADER") or "____stainless_override_cast_to"
).lower()
RAW_HEADERS = frozenset({RAW_RESPONSE_HEADER, OVERRIDE_CAST_TO_HEADER})

# Hop-by-hop and body-encoding headers, which describe the bytes on the wire,
# not the body memo hands over (decoded, and re-encoded for a stream).
_WIRE_HEADERS = frozenset({"connection", "content-encoding", "content-length", "transfer-encoding"})


def raw_kind(headers: Mapping[str, Any] | None) -> str | None:
    """Return what a call asked for: ``"legacy"``, ``"streamed"``, ``"custom"`` or None (parsed).

    ``"custom"`` is a response class of the caller's own (or one this SDK
    release does not have), which memo does not build.
    """
    values = {str(name).lower(): value for name, value in (headers or {}).items()}
    if OVERRIDE_CAST_TO_HEADER in values:
        return "custom"
    value = values.get(RAW_RESPONSE_HEADER)
    if value == "true":
        return "legacy" if LegacyAPIResponse is not None else "custom"
    if value == "stream":
        return "streamed" if AsyncAPIResponse is not None else "custom"
    return None


def without_raw_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``headers`` without the SDK's raw-response markers (they never go on the wire)."""
    return {name: value for name, value in headers.items() if str(name).lower() not in RAW_HEADERS}


def request_options(path: str, body: Any, options: Mapping[str, Any]) -> Any:
    """Return the SDK's ``FinalRequestOptions`` for a POST, as its ``post`` builds them."""
    return FinalRequestOptions.construct(method="post", url=path, json_data=body, **options)


def http_response(
    headers: Iterable[tuple[str, str]] | Mapping[str, str],
    *,
    url: str,
    content: bytes | None = None,
    stream: Any = None,
    status_code: int = 200,
) -> Any:
    """Return an HTTP response of the SDK's HTTP library, for an answer that was not received now.

    ``content`` for a body at hand, ``stream`` (an ``AsyncByteStream``) for
    one that is produced as it is read. Headers that describe the bytes on the
    wire (``content-encoding``, ``content-length``) are left out.
    """
    items = headers.items() if hasattr(headers, "items") else headers
    kept = [(name, value) for name, value in items if name.lower() not in _WIRE_HEADERS]
    request = HTTP.Request("POST", url)
    response = HTTP.Response(status_code, headers=kept, content=content, stream=stream)
    response.request = request
    response.elapsed = datetime.timedelta(0)
    return response


def wire_headers(response: Any) -> list[tuple[str, str]]:
    """Return every header of a live HTTP response, as pairs (repeated names kept)."""
    return list(response.headers.multi_items())


def retries_taken(response: Any) -> int:
    """Return how many retries the SDK made for a response it received (0 if it does not say)."""
    try:
        return int(response.request.headers.get("x-stainless-retry-count") or 0)
    except (RuntimeError, ValueError):
        return 0


def api_response(
    kind: str,
    http: Any,
    *,
    client: AsyncOpenAI,
    cast_to: Any,
    stream: bool,
    stream_cls: Any,
    options: Any,
) -> Any:
    """Return the SDK's raw-response object of ``kind`` around ``http``, as its client builds it."""
    cls = LegacyAPIResponse if kind == "legacy" else AsyncAPIResponse
    return cls(
        raw=http,
        client=client,
        cast_to=cast_to,
        stream=stream,
        stream_cls=stream_cls,
        options=options,
        retries_taken=retries_taken(http),
    )


def parse(http: Any, *, client: AsyncOpenAI, cast_to: Any, options: Any) -> Any:
    """Return the response object the SDK builds from a (read) HTTP response.

    ``options`` carry no ``post_parser``: what is parsed here is what the API
    sent, stored as it is; each caller's parser runs on its own copy later.
    """
    return api_response(
        "legacy",
        http,
        client=client,
        cast_to=cast_to,
        stream=False,
        stream_cls=None,
        options=options,
    ).parse()


def read_timeout(client: AsyncOpenAI, options: Mapping[str, Any]) -> float | None:
    """Return how long a call may wait for its answer: its ``timeout`` (the read timeout).

    The call's own ``timeout=``, else the client's. An ``httpx.Timeout`` gives
    its read timeout: the longest the SDK would wait for the answer's bytes.
    """
    timeout = options.get("timeout", client.timeout)
    if isinstance(timeout, (NotGiven, Omit)):
        timeout = client.timeout
    if timeout is None or isinstance(timeout, (int, float)):
        return None if timeout is None else float(timeout)
    read = getattr(timeout, "read", None)
    return float(read) if isinstance(read, (int, float)) else None


def timeout_error(url: str) -> APITimeoutError:
    """Return the error the SDK raises when a request's answer does not come in time."""
    return APITimeoutError(request=HTTP.Request("POST", url))
