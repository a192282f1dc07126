"""Ready-made caching for the official ``openai`` SDK (install ``memo-cache[openai]``).

Make an existing client cached where it stands::

    from openai import AsyncOpenAI
    import memo.openai

    client = memo.openai.cached(AsyncOpenAI())
    completion = await client.chat.completions.create(model="gpt-4o-mini", messages=[...])

or call the helper ``await memo.openai.cached_chat_completion(client, model=..., messages=...)``,
or decorate your own helper with ``serializer=ChatCompletionSerializer()``.
"""

try:
    import openai  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    msg = "memo.openai needs the openai package; install it with `pip install 'memo-cache[openai]'`"
    raise ImportError(msg) from exc

from memo.openai._client import (
    cache_clear,
    cache_info,
    cached,
    cached_chat_completion,
    last_call_was_hit,
)
from memo.openai._serializers import ChatCompletionSerializer, ChunksSerializer, OpenAISerializer
from memo.openai._streams import ReplayStream

__all__ = [
    "ChatCompletionSerializer",
    "ChunksSerializer",
    "OpenAISerializer",
    "ReplayStream",
    "cache_clear",
    "cache_info",
    "cached",
    "cached_chat_completion",
    "last_call_was_hit",
]
