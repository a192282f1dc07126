"""OpenAISerializer: stores the API's JSON and loads an equal object, however odd the payload."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from openai._models import construct_type
from openai.types import CreateEmbeddingResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from memo import PydanticSerializer, async_disk_cache
from memo.openai import ChatCompletionSerializer, OpenAISerializer

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

import fake_openai

BODY: dict[str, Any] = {"model": "fake", "messages": [{"role": "user", "content": "Hi"}]}


def _odd(**changes: Any) -> dict[str, Any]:
    payload = copy.deepcopy(fake_openai.chat_completion(1, BODY))
    for path, value in changes.items():
        target = payload
        *parents, last = path.split("__")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value
    return payload


# Payloads the SDK accepts without validation, as some providers send them.
ODD = {
    "finish_reason-eos": _odd(choices__0__finish_reason="eos"),
    "role-model": _odd(choices__0__message__role="model"),
    "float-created": _odd(created=1_700_000_000.25),
    "reasoning_content": _odd(choices__0__message__reasoning_content="Let me think"),
    "unknown-top-level": _odd(provider="acme", x_groq={"id": "q"}),
    "usage-extra": _odd(
        usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "cost": 0.1}
    ),
    "null-usage": _odd(usage=None),
    "missing-object": {k: v for k, v in _odd().items() if k != "object"},
    "string-index": _odd(choices__0__index="0"),
}


@pytest.mark.parametrize("payload", ODD.values(), ids=ODD.keys())
def test_odd_payloads_round_trip(payload: dict[str, Any]) -> None:
    """What the SDK built from an odd payload loads back equal, with the same JSON."""
    original = construct_type(type_=ChatCompletion, value=payload)
    serializer = ChatCompletionSerializer()
    data = serializer.dumps(original)
    loaded = serializer.loads(data)
    assert loaded == original
    assert orjson.loads(data)["response"] == payload


def test_strict_validation_would_refuse_them() -> None:
    """The odd payloads really are odd: a validating serializer cannot load one."""
    original = construct_type(type_=ChatCompletion, value=ODD["finish_reason-eos"])
    with pytest.raises(ValueError, match="finish_reason"):
        PydanticSerializer(ChatCompletion).loads(orjson.dumps(orjson.loads(original.to_json())))


@pytest.mark.parametrize(
    ("tp", "payload"),
    [
        pytest.param(ChatCompletion, fake_openai.chat_completion(3, {**BODY, "n": 2}), id="chat"),
        pytest.param(
            CreateEmbeddingResponse,
            fake_openai.embeddings(2, {"input": ["a", "b"], "encoding_format": "base64"}),
            id="embeddings-base64",
        ),
        pytest.param(Response, fake_openai.response(4, {"input": "Hi"}), id="responses"),
    ],
)
def test_response_types_round_trip(tp: Any, payload: dict[str, Any]) -> None:
    """Each cached response type loads equal to the original and keeps the API's JSON."""
    original = construct_type(type_=tp, value=payload)
    original._request_id = "req_123"
    serializer = OpenAISerializer(tp)
    loaded = serializer.loads(serializer.dumps(original))
    assert type(loaded) is tp
    assert loaded == original
    assert loaded._request_id == "req_123"
    assert orjson.loads(serializer.dumps(original))["response"] == payload


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"[1, 2]", id="list"),
        pytest.param(b'{"response": "text"}', id="not-an-object"),
        pytest.param(b"not json", id="garbage"),
    ],
)
def test_unreadable_values_raise_value_error(data: bytes) -> None:
    """A stored value that is not a response raises ValueError, which memo reads as a miss."""
    with pytest.raises(ValueError):  # noqa: PT011 - orjson's and memo's errors say different things
        ChatCompletionSerializer().loads(data)


def test_serializers_have_distinct_envelope_ids() -> None:
    """Each response type has its own envelope id, apart from PydanticSerializer's."""
    ids = {
        ChatCompletionSerializer().memo_id,
        OpenAISerializer(Response).memo_id,
        PydanticSerializer(ChatCompletion).memo_id,
    }
    assert len(ids) == 3
    assert ChatCompletionSerializer().memo_id == OpenAISerializer(ChatCompletion).memo_id


async def test_decorated_helper_with_odd_payload_is_a_hit(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """@async_disk_cache(serializer=ChatCompletionSerializer()) serves an odd answer from disk."""

    @async_disk_cache(serializer=ChatCompletionSerializer(), ignore=("client",))
    async def ask(client: AsyncOpenAI, question: str) -> ChatCompletion:
        return await client.chat.completions.create(
            model="fake-odd", messages=[{"role": "user", "content": question}]
        )

    first = await ask(openai_client, "Hi")
    second = await ask(openai_client, "Hi")
    assert openai_server.count() == 1
    assert second == first
    assert second.choices[0].finish_reason == "eos"  # type: ignore[comparison-overlap]
    assert second.choices[0].message.reasoning_content == "thinking..."  # type: ignore[attr-defined]
    info = ask.cache_info()
    assert (info.hits, info.misses, info.errors) == (1, 1, 0)
