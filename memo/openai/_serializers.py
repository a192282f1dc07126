"""Serializers for the ``openai`` SDK's response objects.

The SDK builds responses without validating them (``construct_type``): a
provider that answers ``finish_reason="eos"`` or adds fields of its own still
gets an object. These serializers store the response as the JSON the API sent
and load it back through that same ``construct_type``, so a loaded object
equals the one the SDK built, however unusual the payload.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson
import pydantic
from openai._models import construct_type
from openai.types.chat import ChatCompletion

from memo._names import qualified_name

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "Answer",
    "AnswerSerializer",
    "ChatCompletionSerializer",
    "ChunksSerializer",
    "OpenAISerializer",
    "Recorded",
    "RecordedChunks",
    "RecordingSerializer",
]

T = TypeVar("T")


def api_json(value: Any) -> Any:
    """Return the JSON the SDK built ``value`` from: the fields it received, as received.

    ``exclude_unset`` keeps exactly the keys that were in the payload (the SDK
    marks those as set); ``warnings=False`` because a payload the SDK accepted
    unvalidated (a float where an int is declared) is still worth storing.
    """
    if not isinstance(value, pydantic.BaseModel):
        msg = (
            f"expected an openai response object (a pydantic model), got {type(value).__qualname__}"
        )
        raise TypeError(msg)
    return value.model_dump(mode="json", by_alias=True, exclude_unset=True, warnings=False)


class OpenAISerializer(Generic[T]):
    """An ``openai`` response type (``ChatCompletion``, ``Response``, ...) as the API's JSON.

    ``dumps`` stores the JSON the API sent (and the request id the SDK keeps in
    ``_request_id``); ``loads`` rebuilds the object the way the SDK does, without
    validation, so the loaded object equals the original and a payload the SDK
    accepted never fails to load. A stored value that is not such a payload
    raises ``ValueError``, which memo treats as a miss.

    Args:
        tp: the response type, e.g. ``openai.types.chat.ChatCompletion``.
    """

    def __init__(self, tp: type[T] | Any) -> None:
        self.type = tp
        self.memo_id = f"openai:{qualified_name(tp)}"

    def dumps(self, value: T) -> bytes:
        """Return the response as JSON bytes: ``{"response": ..., "request_id": ...}``.

        Raises:
            TypeError: ``value`` is not a pydantic model.
        """
        return orjson.dumps(self._payload(value))

    def _payload(self, value: T) -> dict[str, Any]:
        payload = {"response": api_json(value)}
        # The SDK sets _request_id on what it returns: None when the server
        # sent no x-request-id (some compatible servers). Kept as it was set,
        # so the object loaded has it exactly when the original had it.
        attributes = getattr(value, "__dict__", {})
        request_id = attributes.get("_request_id", getattr(value, "_request_id", None))
        if isinstance(request_id, str) or (request_id is None and "_request_id" in attributes):
            payload["request_id"] = request_id
        return payload

    def loads(self, data: bytes) -> T:
        """Rebuild the response object from ``dumps``'s bytes.

        Raises:
            ValueError: the bytes are not a stored response.
        """
        return self._value(orjson.loads(data))

    def _value(self, payload: Any) -> T:
        if not isinstance(payload, dict) or not isinstance(payload.get("response"), dict):
            msg = f"stored value is not a {qualified_name(self.type)} payload"
            raise ValueError(msg)
        value: Any = construct_type(type_=self.type, value=payload["response"])
        request_id = payload.get("request_id")
        if isinstance(request_id, str) or (request_id is None and "request_id" in payload):
            # The SDK sets this public attribute on every response it returns.
            value._request_id = request_id
        return value  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"OpenAISerializer({qualified_name(self.type)})"


class ChatCompletionSerializer(OpenAISerializer[ChatCompletion]):
    """``OpenAISerializer(ChatCompletion)``: for ``chat.completions.create`` results.

    Use it with the decorator when a helper returns a ``ChatCompletion``::

        @async_disk_cache(serializer=ChatCompletionSerializer(), ignore=("client",))
        async def ask(client: AsyncOpenAI, question: str) -> ChatCompletion: ...
    """

    def __init__(self) -> None:
        super().__init__(ChatCompletion)

    def __repr__(self) -> str:
        return "ChatCompletionSerializer()"


class ChunksSerializer:
    """The chunks of a streamed response, recorded as the JSON the API sent.

    ``dumps`` takes the chunks already turned into JSON values (they are
    recorded one by one as they arrive); ``loads`` rebuilds each with the
    SDK's ``construct_type``.

    Args:
        chunk_type: the type of one chunk (``ChatCompletionChunk``, the Responses
            API's event union, ...).
    """

    memo_id = "openai-stream"

    def __init__(self, chunk_type: Any) -> None:
        self.chunk_type = chunk_type

    def dumps(self, value: Sequence[Any]) -> bytes:
        """Return recorded chunks (JSON values) as JSON bytes."""
        return RecordedChunks().dumps(value)

    def loads(self, data: bytes) -> list[Any]:
        """Rebuild the chunk objects.

        Raises:
            ValueError: the bytes are not recorded chunks.
        """
        return [self.build(chunk) for chunk in self.loads_json(data)]

    def loads_json(self, data: bytes) -> list[dict[str, Any]]:
        """Return the recorded chunks as JSON objects, to ``build`` one at a time.

        Raises:
            ValueError: the bytes are not recorded chunks.
        """
        return RecordedChunks().loads(data)

    def build(self, chunk: dict[str, Any]) -> Any:
        """Rebuild one chunk object from its JSON, as the SDK builds a live one."""
        return construct_type(type_=self.chunk_type, value=chunk)


class RecordedChunks:
    """The chunks of a streamed response as JSON objects, whatever the chunk type.

    The format ``ChunksSerializer`` writes (and its envelope id), read back
    as JSON only, so that a replay builds each chunk object when it reaches it.
    """

    memo_id = ChunksSerializer.memo_id

    def dumps(self, value: Sequence[Any]) -> bytes:
        """Return recorded chunks (JSON values) as JSON bytes."""
        return orjson.dumps({"chunks": list(value)})

    def loads(self, data: bytes) -> list[dict[str, Any]]:
        """Return the recorded chunks as JSON objects.

        Raises:
            ValueError: the bytes are not recorded chunks.
        """
        return _chunks(orjson.loads(data))


def _chunks(payload: Any) -> list[dict[str, Any]]:
    chunks = payload.get("chunks") if isinstance(payload, dict) else None
    if not isinstance(chunks, list) or not all(isinstance(c, dict) for c in chunks):
        msg = "stored value is not a recorded stream"
        raise ValueError(msg)
    return chunks


def _headers(payload: dict[str, Any]) -> dict[str, str]:
    # Entries written before memo kept headers have none: an empty mapping.
    headers = payload.get("headers")
    if not isinstance(headers, dict):
        return {}
    return {k: v for k, v in headers.items() if isinstance(k, str) and isinstance(v, str)}


@dataclasses.dataclass(frozen=True)
class Answer(Generic[T]):
    """A response object and the response headers kept with it (see ``memo.openai``)."""

    value: T
    headers: dict[str, str]


class AnswerSerializer(Generic[T]):
    """``OpenAISerializer``'s format, with the kept response headers beside the response.

    It writes ``{"response": ..., "request_id": ..., "headers": {...}}`` under
    ``OpenAISerializer``'s id: each reads what the other wrote (an entry
    without headers reads back with none).
    """

    def __init__(self, tp: type[T] | Any) -> None:
        self._response = OpenAISerializer[T](tp)
        self.memo_id = self._response.memo_id

    def dumps(self, value: Answer[T]) -> bytes:
        """Return the answer as JSON bytes."""
        payload = self._response._payload(value.value)
        if value.headers:
            payload["headers"] = value.headers
        return orjson.dumps(payload)

    def loads(self, data: bytes) -> Answer[T]:
        """Rebuild the answer from ``dumps``'s (or ``OpenAISerializer.dumps``'s) bytes.

        Raises:
            ValueError: the bytes are not a stored response.
        """
        payload = orjson.loads(data)
        value = self._response._value(payload)
        return Answer(value, _headers(payload))

    def __repr__(self) -> str:
        return f"AnswerSerializer({qualified_name(self._response.type)})"


@dataclasses.dataclass(frozen=True)
class Recorded:
    """A recorded stream: its chunks as JSON objects, and the response headers kept with them."""

    chunks: list[dict[str, Any]]
    headers: dict[str, str]


class RecordingSerializer:
    """``RecordedChunks``'s format, with the kept response headers beside the chunks.

    It writes ``{"chunks": [...], "headers": {...}}`` under the same id:
    each reads what the other wrote.
    """

    memo_id = RecordedChunks.memo_id

    def dumps(self, value: Recorded) -> bytes:
        """Return the recording as JSON bytes."""
        payload: dict[str, Any] = {"chunks": list(value.chunks)}
        if value.headers:
            payload["headers"] = value.headers
        return orjson.dumps(payload)

    def loads(self, data: bytes) -> Recorded:
        """Return the recording.

        Raises:
            ValueError: the bytes are not recorded chunks.
        """
        payload = orjson.loads(data)
        return Recorded(_chunks(payload), _headers(payload))
