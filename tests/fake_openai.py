"""A small OpenAI-compatible HTTP server for memo's tests, and its pytest fixtures.

It serves ``POST /v1/chat/completions`` (plain and ``stream=True`` as
server-sent events), ``/v1/embeddings`` and ``/v1/responses`` (plain and
streamed) on a free 127.0.0.1 port, from a background thread. Every answer
carries the request's sequence number (in ids, ``created``, the text, the first
embedding component), so a second HTTP request can never pass for a cache hit.
It records the path, headers and JSON body of every request. Every answer
carries headers like the API's: ``x-request-id``, ``openai-version``,
``openai-processing-ms``, and ones memo must never store (``set-cookie``,
``openai-organization``, rate limits).

Some model names change what it answers, so tests (and the docs' samples) can
ask for the awkward cases over real HTTP:

- ``fake-no-request-id``: answers without an ``x-request-id`` header, as some
  OpenAI-compatible servers do;
- ``fake-odd``: a chat completion the SDK accepts without validating it
  (``finish_reason="eos"``, ``role="model"``, a float ``created``, an unknown
  ``reasoning_content`` field);
- ``fake-length``: every choice ends with ``finish_reason="length"``;
- ``fake-error``: HTTP 500 (streamed: two chunks, then an error event);
- ``fake-error-200``: an ``{"error": ...}`` body with HTTP 200, as some
  OpenAI-compatible servers answer;
- ``fake-truncated``: streamed only: chunks, then the connection ends without
  a finish reason;
- ``fake-cut-after-finish``: streamed only: the connection ends right after the
  first choice's finish reason (before the other choices, the usage chunk and
  ``[DONE]``).

A request that offers function tools is answered with a call of the first
tool (chat: ``tool_calls``, streamed as tool-call deltas; Responses: a
``function_call`` item), until the conversation ends with that call's result
(a ``tool`` message, a ``function_call_output`` item) and ``tool_choice`` does
not force a call: then with text, as a model does in an agent's tool loop.

A Responses request with ``background=True`` is answered ``status="queued"``.
``GET /v1/models`` lists one model.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from openai import AsyncOpenAI

CREATED = 1_700_000_000
# What the server puts in headers that memo must never store.
ORGANIZATION = "org-memo-tests-private"
COOKIE = "cookie-memo-tests-private"
MODEL = {"id": "fake", "object": "model", "created": CREATED, "owned_by": "memo-tests"}


@dataclasses.dataclass(frozen=True)
class Recorded:
    """One request the server received (header names in lower case)."""

    path: str
    query: str
    headers: dict[str, str]
    body: Any


class FakeOpenAI:
    """The server's state: what it received, and a gate to hold answers back."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._answering = 0  # requests being answered right now
        self._idle = threading.Condition(self._lock)
        # Set by default; a test clears it to hold every answer until it sets it.
        self.gate = threading.Event()
        self.gate.set()
        # Set by default; a test clears it to hold every stream after its first
        # ``held_after`` events until it sets it.
        self.stream_gate = threading.Event()
        self.stream_gate.set()
        self.held_after = 2
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        host, port = self._httpd.server_address[:2]
        self.base_url = f"http://{host!s}:{port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def start(self) -> FakeOpenAI:
        """Serve from a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self.gate.set()
        self.stream_gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def reset(self, timeout: float = 10.0) -> None:
        """Forget every request, as a fresh server would, once none is being answered."""
        self.gate.set()
        self.stream_gate.set()
        with self._idle:
            idle = self._idle.wait_for(lambda: self._answering == 0, timeout=timeout)
            assert idle, "the fake OpenAI server is still answering an earlier test's request"
            self.requests.clear()

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Count a request as being answered while the block runs."""
        with self._lock:
            self._answering += 1
        try:
            yield
        finally:
            with self._idle:
                self._answering -= 1
                self._idle.notify_all()

    def record(self, request: Recorded) -> int:
        """Store a request; return its 1-based sequence number."""
        with self._arrived:
            self.requests.append(request)
            self._arrived.notify_all()
            return len(self.requests)

    def count(self, path: str | None = None) -> int:
        """How many requests arrived (for one path, e.g. ``"/v1/embeddings"``)."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def wait_for(self, n: int, timeout: float = 10.0) -> bool:
        """Block until ``n`` requests arrived (or the timeout passed)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.requests) >= n, timeout=timeout)

    @property
    def last(self) -> Recorded:
        """The most recent request."""
        with self._lock:
            return self.requests[-1]


# -- answers --------------------------------------------------------------------


def _last_user_text(messages: Any) -> str:
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(
                    str(part.get("text", "")) for part in content if isinstance(part, dict)
                )
    return ""


def example_for(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """Return a value that satisfies a (simple) JSON schema."""
    if not isinstance(schema, dict):
        return None
    defs = {**(defs or {}), **schema.get("$defs", {})}
    if "$ref" in schema:
        return example_for(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return example_for(schema[key][0], defs)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        return {name: example_for(sub, defs) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_for(schema.get("items", {}), defs)]
    return {"string": "example", "integer": 42, "number": 1.5, "boolean": True}.get(kind)


def _json_schema(body: dict[str, Any]) -> Any:
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        return response_format["json_schema"]["schema"]
    text = body.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict):
        fmt = text["format"]
        if fmt.get("type") == "json_schema":
            return fmt["schema"]
    return None


def _calls_tool(body: dict[str, Any]) -> bool:
    """Whether offered tools are called: unless the last turn is a tool's result, not forced."""
    choice = body.get("tool_choice")
    if choice == "required" or isinstance(choice, dict):
        return True
    turns = body.get("messages") or body.get("input")
    if not isinstance(turns, list) or not turns or not isinstance(turns[-1], dict):
        return True
    return turns[-1].get("role") != "tool" and turns[-1].get("type") != "function_call_output"


def _function_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The first function tool a Responses request offers, if it offers one."""
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and tool.get("type") == "function":
            return tool
    return None


def _usage(n: int) -> dict[str, Any]:
    return {"prompt_tokens": 10 + n, "completion_tokens": 5, "total_tokens": 15 + n}


def chat_completion(n: int, body: dict[str, Any]) -> dict[str, Any]:
    """Answer a non-streamed chat completion request."""
    model = body.get("model", "fake")
    schema = _json_schema(body)
    text = f"Echo #{n}: {_last_user_text(body.get('messages'))}"
    if schema is not None:
        text = json.dumps(example_for(schema))
    choices = []
    for index in range(body.get("n") or 1):
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
        finish = "stop"
        tools = body.get("tools")
        if tools and _calls_tool(body):
            function = tools[0]["function"]
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_{n}_{index}",
                    "type": "function",
                    "function": {
                        "name": function["name"],
                        "arguments": json.dumps(example_for(function.get("parameters", {}))),
                    },
                }
            ]
            finish = "tool_calls"
        choices.append(
            {"index": index, "message": message, "logprobs": None, "finish_reason": finish}
        )
    answer: dict[str, Any] = {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": CREATED + n,
        "model": model,
        "choices": choices,
        "usage": _usage(n),
        "system_fingerprint": f"fp_{n}",
    }
    if model == "fake-length":
        for choice in choices:
            choice["finish_reason"] = "length"
    if model == "fake-odd":
        answer["created"] = CREATED + n + 0.5
        answer["choices"][0]["finish_reason"] = "eos"
        answer["choices"][0]["message"]["role"] = "model"
        answer["choices"][0]["message"]["reasoning_content"] = "thinking..."
        answer["provider"] = "somewhere"
    return answer


def chat_chunks(n: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Answer a streamed chat completion request, as the chunks to send (choice by choice)."""
    answers = chat_completion(n, body)["choices"]
    words = answers[0]["message"]["content"] or ""
    base = {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion.chunk",
        "created": CREATED + n,
        "model": body.get("model", "fake"),
        "system_fingerprint": f"fp_{n}",
    }
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece + " "} for piece in words.split(" ")]
    chunks = []
    for index in range(body.get("n") or 1):
        calls = answers[index]["message"].get("tool_calls")
        chunks += [
            {
                **base,
                "choices": [
                    {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
                ],
            }
            for delta in (_tool_call_deltas(calls) if calls else deltas)
        ]
        finish = "tool_calls" if calls else "stop"
        chunks.append(
            {
                **base,
                "choices": [
                    {"index": index, "delta": {}, "logprobs": None, "finish_reason": finish}
                ],
            }
        )
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append({**base, "choices": [], "usage": _usage(n)})
    return chunks


def _tool_call_deltas(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The deltas that stream tool calls: id and name first, then the arguments."""
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None}]
    for position, call in enumerate(calls):
        head = {**call, "index": position, "function": {**call["function"], "arguments": ""}}
        tail = {"index": position, "function": {"arguments": call["function"]["arguments"]}}
        deltas += [{"tool_calls": [head]}, {"tool_calls": [tail]}]
    return deltas


def streamed_chat_chunks(n: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The chunks sent for a streamed chat request, as the awkward models change them."""
    chunks = chat_chunks(n, body)
    model = body.get("model")
    if model == "fake-error":
        return [*chunks[:2], {"error": {"message": "boom", "type": "server"}}]
    if model == "fake-truncated":
        return [c for c in chunks if c["choices"] and not c["choices"][0]["finish_reason"]]
    if model == "fake-cut-after-finish":
        finished = [
            i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["finish_reason"]
        ]
        return chunks[: finished[0] + 1]
    return chunks


def embeddings(n: int, body: dict[str, Any]) -> dict[str, Any]:
    """Answer an embeddings request (base64 when asked, as the SDK asks by default)."""
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    data = []
    for index, text in enumerate(inputs):
        vector = [float(n), float(len(str(text))), float(index), 0.25]
        encoded: Any = vector
        if body.get("encoding_format") == "base64":
            encoded = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    return {
        "object": "list",
        "data": data,
        "model": body.get("model", "fake"),
        "usage": {"prompt_tokens": 3 + n, "total_tokens": 3 + n},
    }


def response(n: int, body: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """Answer a Responses API request."""
    schema = _json_schema(body)
    prompt = body.get("input")
    if isinstance(prompt, list):
        prompt = _last_user_text(prompt)
    text = f"Echo #{n}: {prompt}"
    if schema is not None:
        text = json.dumps(example_for(schema))
    item: dict[str, Any] = {
        "type": "message",
        "id": f"msg_{n}",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    tool = _function_tool(body)
    if tool is not None and _calls_tool(body):
        item = {
            "type": "function_call",
            "id": f"fc_{n}",
            "call_id": f"call_{n}",
            "name": tool["name"],
            "arguments": json.dumps(example_for(tool.get("parameters", {}))),
            "status": "completed",
        }
    return {
        "id": f"resp_{n}",
        "object": "response",
        "created_at": CREATED + n,
        "status": status,
        "model": body.get("model", "fake"),
        "output": [item],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 10 + n,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15 + n,
        },
    }


def response_events(n: int, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Answer a streamed Responses API request, as the events to send (as the API orders them)."""
    done = response(n, body)
    item = done["output"][0]
    if item["type"] == "function_call":
        return _function_call_events(done)
    part = item["content"][0]
    text = part["text"]
    started = {**response(n, body, status="in_progress"), "output": []}
    where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
    ]
    pieces = text.split(" ")
    events += [
        {"type": "response.output_text.delta", **where, "delta": delta, "logprobs": []}
        for delta in [piece + " " for piece in pieces[:-1]] + pieces[-1:]
    ]
    events += [
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": done},
    ]
    return [{**event, "sequence_number": i} for i, event in enumerate(events)]


def _function_call_events(done: dict[str, Any]) -> list[dict[str, Any]]:
    """Stream a Responses answer whose output is one function call, as the API does."""
    item = done["output"][0]
    started = {**done, "status": "in_progress", "output": []}
    where = {"item_id": item["id"], "output_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "status": "in_progress", "arguments": ""},
        },
        {"type": "response.function_call_arguments.delta", **where, "delta": item["arguments"]},
        {"type": "response.function_call_arguments.done", **where, "arguments": item["arguments"]},
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": done},
    ]
    return [{**event, "sequence_number": i} for i, event in enumerate(events)]


# -- HTTP -----------------------------------------------------------------------


def _handler_for(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Keep test output quiet."""

        def do_GET(self) -> None:
            with server.answering():
                self._get()

        def do_POST(self) -> None:
            with server.answering():
                self._post()

        def _get(self) -> None:
            path, _, query = self.path.partition("?")
            server.record(
                Recorded(path, query, {k.lower(): v for k, v in self.headers.items()}, None)
            )
            if path == "/v1/models":
                self._send_json(200, {"object": "list", "data": [MODEL]})
            else:
                self._send_json(404, {"error": {"message": f"no route {path}"}})

        def _post(self) -> None:
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            body = json.loads(raw) if raw else None
            n = server.record(
                Recorded(path, query, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            server.gate.wait(timeout=30)
            if not isinstance(body, dict):
                self._send_json(400, {"error": {"message": "expected a JSON object"}})
                return
            model = body.get("model")
            self.sends_request_id = model != "fake-no-request-id"
            stream = bool(body.get("stream"))
            if path == "/v1/chat/completions":
                if stream:
                    cut = model in {"fake-truncated", "fake-cut-after-finish"}
                    self._send_events(streamed_chat_chunks(n, body), done=not cut)
                elif model == "fake-error":
                    self._send_json(500, {"error": {"message": "boom", "type": "server"}})
                elif model == "fake-error-200":
                    self._send_json(200, {"error": {"message": f"overloaded #{n}", "code": 429}})
                else:
                    self._send_json(200, chat_completion(n, body))
            elif path == "/v1/embeddings":
                self._send_json(200, embeddings(n, body))
            elif path == "/v1/responses":
                if stream:
                    self._send_events(response_events(n, body), done=False, named=True)
                else:
                    status = "queued" if body.get("background") else "completed"
                    self._send_json(200, response(n, body, status=status))
            else:
                self._send_json(404, {"error": {"message": f"no route {path}"}})

        def _send_json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self._send_api_headers()
            self.end_headers()
            self.wfile.write(data)

        def _send_api_headers(self) -> None:
            if getattr(self, "sends_request_id", True):
                self.send_header("x-request-id", f"req_{time.monotonic_ns()}")
            self.send_header("openai-version", "2020-10-01")
            self.send_header("openai-processing-ms", "7")
            self.send_header("openai-organization", ORGANIZATION)
            self.send_header("x-ratelimit-remaining-requests", "99")
            self.send_header("set-cookie", f"__cf_bm={COOKIE}; path=/; HttpOnly")

        def _send_events(
            self, events: list[dict[str, Any]], *, done: bool, named: bool = False
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self._send_api_headers()
            self.end_headers()
            self.close_connection = True
            try:
                for sent, event in enumerate(events, 1):
                    head = f"event: {event['type']}\n" if named and "type" in event else ""
                    self.wfile.write(f"{head}data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                    if sent == server.held_after:
                        server.stream_gate.wait(timeout=30)
                if done:
                    self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client closed the stream before its end: nothing to say

    return Handler


API_KEY = "sk-test-memo-0123456789abcdef"


@pytest.fixture(scope="session")
def session_openai_server() -> Iterator[FakeOpenAI]:
    """The session's one fake OpenAI server; tests ask for ``openai_server`` instead."""
    server = FakeOpenAI().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openai_server(session_openai_server: FakeOpenAI) -> FakeOpenAI:
    """An OpenAI-compatible server on a free 127.0.0.1 port that has seen no request yet.

    One server serves the session: starting and stopping one per test cost
    more than the tests that use it. Each test finds it reset (no request
    recorded, the gate open, no earlier request still being answered), so
    sequence numbers and counts start from 1 as on a fresh server.
    """
    session_openai_server.reset()
    return session_openai_server


@pytest.fixture
async def openai_client(openai_server: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    """A real ``openai.AsyncOpenAI`` talking to ``openai_server``, closed after the test."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=openai_server.base_url, api_key=API_KEY, max_retries=0)
    try:
        yield client
    finally:
        await client.close()
