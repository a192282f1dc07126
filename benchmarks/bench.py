"""memo's benchmark: medians and ratios against baselines measured in the same run.

Run with ``nox -s bench`` (or ``python benchmarks/bench.py``; ``--quick`` for a
short run). Every figure is a median over several rounds; the machines this
runs on are shared and noisy, so compare the ratios, not the microseconds.

Baselines, each a hand-written cache of the same function on the same disk:

- floor:     orjson (sorted keys) + sha256 key, ``diskcache.Cache.get`` inline,
             ``model_validate_json``: the physical floor of a disk hit;
- thread:    the same with every diskcache call through ``asyncio.to_thread``:
             the floor of a hit that never touches the event loop's thread;
- notebook:  the seed notebook's way: ``json.dumps(sort_keys=True)`` + md5,
             ``asyncio.to_thread(cache.get)``,
             ``ChatCompletion.model_validate(json.loads(...))``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import sqlite3
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import diskcache
import orjson
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

import memo
from memo import async_disk_cache
from memo._envelope import seal_envelope
from memo._serializers import serializer_id

ROUNDS = 7
# The sections, in the order they run; --only picks some.
SECTIONS = ("hits", "misses", "concurrency", "openai", "size", "redis", "stall", "import")


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def per_op(op: Any, args: list[Any], rounds: int = ROUNDS) -> float:
    """Median seconds per call of ``await op(arg)`` over ``rounds`` passes of ``args``."""
    for arg in args[: max(1, len(args) // 10)]:  # warm up connections and caches
        await op(arg)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for arg in args:
            await op(arg)
        times.append((time.perf_counter() - start) / len(args))
    return statistics.median(times)


async def per_op_each(ops: list[Any], args: list[Any], rounds: int = ROUNDS) -> list[float]:
    """``per_op`` for several ops, their rounds interleaved.

    On a shared machine the load changes from second to second; taking turns
    gives every op the same share of it, so their ratio holds.
    """
    for op in ops:
        for arg in args[: max(1, len(args) // 10)]:
            await op(arg)
    times: list[list[float]] = [[] for _ in ops]
    for _ in range(rounds):
        for op, samples in zip(ops, times, strict=True):
            start = time.perf_counter()
            for arg in args:
                await op(arg)
            samples.append((time.perf_counter() - start) / len(args))
    return [statistics.median(samples) for samples in times]


def per_op_sync(ops: list[Any], args: list[Any], rounds: int = ROUNDS) -> list[float]:
    """Median seconds per call of each ``op(arg)``, their rounds interleaved."""
    times: list[list[float]] = [[] for _ in ops]
    for _ in range(rounds):
        for op, samples in zip(ops, times, strict=True):
            start = time.perf_counter()
            for arg in args:
                op(arg)
            samples.append((time.perf_counter() - start) / len(args))
    return [statistics.median(samples) for samples in times]


# -- workloads ----------------------------------------------------------------


def chat_request(seed: int) -> dict[str, Any]:
    """A realistic chat request: 12 messages of ~300 characters (~4 KB of JSON)."""
    rng = random.Random(seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(400)]
    messages = []
    for turn in range(12):
        text = ""
        while len(text) < 300:
            text += rng.choice(words) + " "
        role = "system" if turn == 0 else ("user" if turn % 2 else "assistant")
        messages.append({"role": role, "content": text.strip()})
    return {"model": "gpt-4o-mini", "messages": messages, "temperature": 0.0, "max_tokens": 1000}


def chat_completion(seed: int) -> ChatCompletion:
    """A ~2 KB ChatCompletion, as the API would send it."""
    rng = random.Random(seed)
    content = " ".join(
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(260)
    )
    return ChatCompletion.model_validate(
        {
            "id": f"chatcmpl-{seed:020d}",
            "object": "chat.completion",
            "created": 1_760_000_000 + seed,
            "model": "gpt-4o-mini-2024-07-18",
            "system_fingerprint": "fp_0123456789",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                }
            ],
            "usage": {"prompt_tokens": 812, "completion_tokens": 402, "total_tokens": 1214},
        }
    )


class Baselines:
    """The hand-written caches memo is compared with, on one diskcache folder."""

    def __init__(self, folder: Path) -> None:
        self.cache = diskcache.Cache(str(folder))

    @staticmethod
    def floor_key(name: str, kwargs: dict[str, Any]) -> str:
        return name + hashlib.sha256(orjson.dumps(kwargs, option=orjson.OPT_SORT_KEYS)).hexdigest()

    @staticmethod
    def notebook_key(name: str, kwargs: dict[str, Any]) -> str:
        digest = hashlib.md5(json.dumps(kwargs, sort_keys=True).encode()).hexdigest()
        return f"{name}__{digest}"


def loop_stall_ticker(stop: asyncio.Event, worst: list[float]) -> asyncio.Task[None]:
    """A task that wakes every millisecond and records how late it woke."""

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.001)
            worst.append(loop.time() - before - 0.001)

    return asyncio.ensure_future(tick())


# -- the benchmark ------------------------------------------------------------


class Report:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        # (group, what, ratio, target): what the chart draws and --json keeps.
        self.headlines: list[tuple[str, str, float, float | None]] = []

    def headline(self, group: str, what: str, ratio: float, target: float | None = None) -> None:
        """Keep a ratio for the chart: memo's cost over a baseline's (lower is better)."""
        self.headlines.append((group, what, ratio, target))

    def section(self, title: str) -> None:
        print(f"\n## {title}\n")
        print(f"| {'what':<44} | {'median':>12} | {'ratio':>24} |")
        print(f"|{'-' * 46}|{'-' * 14}|{'-' * 26}|")

    def row(self, what: str, value: str, ratio: str = "") -> None:
        print(f"| {what:<44} | {value:>12} | {ratio:>24} |", flush=True)


async def bench_hits(folder: Path, report: Report, n: int) -> float:
    base = Baselines(folder / "baselines")
    ids = list(range(n))

    # Small hit: an int argument, a dict result.
    report.section("Small hit: f(x: int) -> dict")
    for x in ids:
        value = {"x": x, "double": 2 * x}
        base.cache.set(base.floor_key("small", {"x": x}), orjson.dumps(value))
        base.cache.set(base.notebook_key("small", {"x": x}), json.dumps(value))

    async def small_floor(x: int) -> Any:
        return orjson.loads(base.cache.get(base.floor_key("small", {"x": x})))

    async def small_thread(x: int) -> Any:
        key = base.floor_key("small", {"x": x})
        return orjson.loads(await asyncio.to_thread(base.cache.get, key))

    async def small_notebook(x: int) -> Any:
        key = base.notebook_key("small", {"x": x})
        return json.loads(await asyncio.to_thread(base.cache.get, key))

    @async_disk_cache(directory=folder / "memo")
    async def small(x: int) -> dict[str, int]:
        return {"x": x, "double": 2 * x}

    for x in ids:
        await small(x)
    floor, thread, notebook, mine = await per_op_each(
        [small_floor, small_thread, small_notebook, small], ids
    )
    small_floor_cost = floor
    report.row("floor (inline diskcache)", f"{median_us([floor]):.1f} µs")
    report.row("thread floor (asyncio.to_thread)", f"{median_us([thread]):.1f} µs")
    report.row("notebook approach", f"{median_us([notebook]):.1f} µs")
    report.row("memo", f"{median_us([mine]):.1f} µs", f"{mine / floor:.2f}× floor (target ≤ 2)")
    report.row("", "", f"{notebook / mine:.1f}× faster than notebook")
    report.headline("vs the floor", "small hit", mine / floor, 2)
    report.headline("vs the notebook", "small hit", mine / notebook)
    info = small.cache_info()
    assert info.errors == 0, info

    # Chat hit: a ~4 KB request, a ~2 KB ChatCompletion.
    report.section("Chat hit: 12 messages (~4 KB) -> ChatCompletion (~2 KB)")
    requests = [chat_request(i) for i in range(n)]
    for i, request in enumerate(requests):
        completion = chat_completion(i)
        base.cache.set(base.floor_key("chat", request), completion.model_dump_json().encode())
        base.cache.set(base.notebook_key("chat", request), completion.model_dump_json())

    async def chat_floor(request: dict[str, Any]) -> ChatCompletion:
        data = base.cache.get(base.floor_key("chat", request))
        return ChatCompletion.model_validate_json(data)

    async def chat_thread(request: dict[str, Any]) -> ChatCompletion:
        data = await asyncio.to_thread(base.cache.get, base.floor_key("chat", request))
        return ChatCompletion.model_validate_json(data)

    async def chat_notebook(request: dict[str, Any]) -> ChatCompletion:
        data = await asyncio.to_thread(base.cache.get, base.notebook_key("chat", request))
        return ChatCompletion.model_validate(json.loads(data))

    @async_disk_cache(directory=folder / "memo")
    async def ask(
        model: str,
        messages: list[dict[str, str]],
        temperature: float = 1.0,
        max_tokens: int | None = None,
    ) -> ChatCompletion:
        raise AssertionError("every request is stored before the run")

    # Fill memo's store directly, with the envelope memo writes.
    sid = serializer_id(memo.PydanticSerializer(ChatCompletion))
    for i, request in enumerate(requests):
        key = ask.cache_key(**request)
        data = seal_envelope(sid, chat_completion(i).model_dump_json().encode(), key)
        await ask.store.set(key, data)

    async def chat_memo(request: dict[str, Any]) -> ChatCompletion:
        return await ask(**request)

    floor, thread, notebook, mine = await per_op_each(
        [chat_floor, chat_thread, chat_notebook, chat_memo], requests
    )
    assert await chat_memo(requests[3]) == chat_completion(3)
    assert ask.cache_info().errors == 0, ask.cache_info()
    report.row("floor (inline diskcache)", f"{median_us([floor]):.1f} µs")
    report.row("thread floor (asyncio.to_thread)", f"{median_us([thread]):.1f} µs")
    report.row("notebook approach", f"{median_us([notebook]):.1f} µs")
    report.row("memo", f"{median_us([mine]):.1f} µs", f"{mine / floor:.2f}× floor (target ≤ 1.5)")
    report.row("", "", f"{notebook / mine:.1f}× faster than notebook")
    report.headline("vs the floor", "chat hit", mine / floor, 1.5)
    report.headline("vs the notebook", "chat hit", mine / notebook)

    # Key building alone, for the chat request.
    report.section("Key building alone (the chat request)")
    bare, old, mine = per_op_sync(
        [
            lambda r: hashlib.sha256(orjson.dumps(r, option=orjson.OPT_SORT_KEYS)).hexdigest(),
            lambda r: hashlib.md5(json.dumps(r, sort_keys=True).encode()).hexdigest(),
            lambda r: ask.cache_key(**r),
        ],
        requests,
    )
    report.row("orjson + sha256 of the dict", f"{median_us([bare]):.2f} µs")
    report.row("json.dumps + md5 (notebook)", f"{median_us([old]):.2f} µs")
    report.row(
        "memo cache_key (bind + canonical + sha256)",
        f"{median_us([mine]):.2f} µs",
        f"{mine / bare:.2f}× bare (target ≤ 1.5)",
    )
    report.row("", "", f"{old / mine:.1f}× faster than notebook (≥ 4)")
    report.headline("vs the floor", "key building", mine / bare, 1.5)
    report.headline("vs the notebook", "key building", mine / old, 0.25)
    return small_floor_cost


async def bench_misses(folder: Path, report: Report, n: int) -> float:
    report.section("Miss: lookup + run (instant) + serialize + store, distinct requests")
    base = Baselines(folder / "baselines-miss")
    rounds = 5
    batches = [[chat_request(10_000 + r * n + i) for i in range(n)] for r in range(rounds + 1)]

    answer = chat_completion(1)

    async def thread_floor(request: dict[str, Any]) -> ChatCompletion:
        key = base.floor_key("chat", request)
        data = await asyncio.to_thread(base.cache.get, key)
        if data is not None:
            return ChatCompletion.model_validate_json(data)
        completion = answer
        await asyncio.to_thread(base.cache.set, key, completion.model_dump_json().encode())
        return completion

    @async_disk_cache(directory=folder / "memo-miss")
    async def ask(
        model: str,
        messages: list[dict[str, str]],
        temperature: float = 1.0,
        max_tokens: int | None = None,
    ) -> ChatCompletion:
        return answer

    async def memo_miss(request: dict[str, Any]) -> ChatCompletion:
        return await ask(**request)

    floor_times, memo_times = [], []
    for request in batches[0]:  # warm-up: open both caches and their threads
        await thread_floor(request)
        await memo_miss(request)
    for r in range(rounds):
        batch = batches[r + 1]
        # Alternate who goes first: the disk warms up as it fills.
        order = [(thread_floor, floor_times), (memo_miss, memo_times)]
        for op, times in order if r % 2 else reversed(order):
            start = time.perf_counter()
            for request in batch:
                await op(request)
            times.append((time.perf_counter() - start) / len(batch))
    assert ask.cache_info().misses == (rounds + 1) * n, ask.cache_info()
    floor, mine = statistics.median(floor_times), statistics.median(memo_times)
    report.row("thread floor (to_thread get + set)", f"{median_us([floor]):.1f} µs")
    report.row("memo", f"{median_us([mine]):.1f} µs", f"{mine / floor:.2f}× floor (target ≤ 1.2)")
    report.headline("vs the floor", "miss", mine / floor, 1.2)
    return floor


async def bench_concurrency(folder: Path, report: Report) -> float:
    report.section("1,000 concurrent calls over 50 keys, a 20 ms function")
    calls = {"memo": 0, "notebook": 0}
    cache = diskcache.Cache(str(folder / "baselines-conc"))

    @async_disk_cache(directory=folder / "memo-conc")
    async def slow(x: int) -> dict[str, int]:
        calls["memo"] += 1
        await asyncio.sleep(0.020)
        return {"x": x}

    async def notebook(x: int) -> Any:
        key = Baselines.notebook_key("slow", {"x": x})
        hit = await asyncio.to_thread(cache.get, key)
        if hit is not None:
            return json.loads(hit)
        calls["notebook"] += 1
        await asyncio.sleep(0.020)
        await asyncio.to_thread(cache.set, key, json.dumps({"x": x}))
        return {"x": x}

    await slow(-1)  # open the store: a one-time cost, not part of the figure
    await notebook(-1)
    calls.update(memo=0, notebook=0)
    args = [i % 50 for i in range(1000)]
    start = time.perf_counter()
    await asyncio.gather(*(notebook(x) for x in args))
    nb_wall = time.perf_counter() - start
    start = time.perf_counter()
    results = await asyncio.gather(*(slow(x) for x in args))
    wall = time.perf_counter() - start
    assert all(r == {"x": x} for r, x in zip(results, args, strict=True))
    report.row("notebook: invocations", str(calls["notebook"]))
    report.row("notebook: wall time", f"{nb_wall * 1e3:.1f} ms")
    report.row("memo: invocations", str(calls["memo"]), "target: exactly 50")
    report.row("memo: wall time", f"{wall * 1e3:.1f} ms", f"{wall / 0.020:.2f}× the 20 ms function")
    report.headline("vs the notebook", "1,000-call burst", wall / nb_wall)
    return wall


async def bench_size(folder: Path, report: Report, big: int, n: int) -> None:
    report.section(f"Hit cost with 1,000 vs {big:,} entries in the store")

    def make(directory: Path, count: int) -> Any:
        @async_disk_cache(directory=directory, namespace="size")
        async def small(x: int) -> dict[str, int]:
            return {"x": x}

        cache = diskcache.Cache(str(directory))
        with cache.transact():
            for x in range(count):
                key = small.cache_key(x)
                cache.set(key, seal_envelope(b"json", orjson.dumps({"x": x}), key), tag="size")
        cache.close()
        return small

    functions, samples = {}, {}
    for count in (1000, big):
        functions[count] = make(folder / f"size-{count}", count)
        rng = random.Random(count)
        samples[count] = [rng.randrange(count) for _ in range(n)]
        for x in samples[count]:  # warm up
            await functions[count](x)
    # Interleave the rounds, so that noise from the machine falls on both.
    times: dict[int, list[float]] = {1000: [], big: []}
    for _ in range(ROUNDS * 2):
        for count in (1000, big):
            times[count].append(await per_op(functions[count], samples[count], rounds=1))
    results = {count: statistics.median(values) for count, values in times.items()}
    assert all(f.cache_info().misses == 0 for f in functions.values())
    report.row("1,000 entries", f"{median_us([results[1000]]):.1f} µs")
    report.row(
        f"{big:,} entries",
        f"{median_us([results[big]]):.1f} µs",
        f"{results[big] / results[1000]:.2f}× (target ≤ 1.1)",
    )


async def bench_openai_client(folder: Path, report: Report, n: int) -> None:
    """A cached client's hit against the SDK's own call and a decorated helper's hit."""
    import memo.openai
    from memo.openai._sdk import HTTP

    report.section("Cached OpenAI client: the chat request (12 messages), a hit")
    # The API, answering at once from memory: what the SDK costs without a network.
    answer = orjson.dumps(chat_completion(1).model_dump(mode="json", exclude_unset=True))
    headers = {"content-type": "application/json", "x-request-id": "req_bench"}

    def respond(request: Any) -> Any:
        return HTTP.Response(200, headers=headers, content=answer)

    sdk = AsyncOpenAI(
        api_key="sk-bench",
        base_url="http://api.bench.invalid/v1",
        http_client=HTTP.AsyncClient(transport=HTTP.MockTransport(respond)),
        max_retries=0,
    )
    client = memo.openai.cached(sdk, directory=folder / "memo-openai")

    # The helper memo.openai's docs show: the SDK's object, stored as the API sent it.
    @async_disk_cache(
        directory=folder / "memo-openai-helper",
        serializer=memo.openai.ChatCompletionSerializer(),
        ignore=("client",),
    )
    async def ask(
        client: AsyncOpenAI,
        model: str,
        messages: list[dict[str, str]],
        temperature: float = 1.0,
        max_tokens: int | None = None,
    ) -> ChatCompletion:
        return await client.chat.completions.create(
            model=model, messages=messages, temperature=temperature, max_tokens=max_tokens
        )

    requests = [chat_request(i) for i in range(n)]

    async def sdk_call(request: dict[str, Any]) -> Any:
        return await sdk.chat.completions.create(**request)

    async def client_hit(request: dict[str, Any]) -> Any:
        return await client.chat.completions.create(**request)

    async def helper_hit(request: dict[str, Any]) -> Any:
        return await ask(sdk, **request)

    for request in requests:  # store every answer: what follows are hits
        await client_hit(request)
        await helper_hit(request)
    direct, mine, helper = await per_op_each([sdk_call, client_hit, helper_hit], requests)
    info = memo.openai.cache_info(client)
    assert (info.misses, info.errors) == (n, 0), info
    assert await client_hit(requests[3]) == await sdk_call(requests[3])
    report.row("the SDK's own call (in-memory transport)", f"{median_us([direct]):.1f} µs")
    report.row("helper hit, ChatCompletionSerializer", f"{median_us([helper]):.1f} µs")
    report.row(
        "memo.openai.cached(client) hit",
        f"{median_us([mine]):.1f} µs",
        f"{mine / direct:.2f}× SDK (target ≤ 0.1)",
    )
    report.row("", "", f"{mine / helper:.2f}× helper (target ≤ 2)")
    group = "vs the SDK and a helper"
    report.headline(group, "cached-client hit vs the SDK's call", mine / direct, 0.1)
    report.headline(group, "cached-client hit vs a helper's hit", mine / helper, 2)
    await sdk.close()


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    """Start a throwaway redis-server on a free port; None when it is not installed."""
    import shutil
    import socket

    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(folder), "--logfile", str(folder / "redis.log")],
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server, port
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                return None
            time.sleep(0.02)


async def bench_redis_near(folder: Path, report: Report, n: int) -> None:
    """Redis hits with and without the near cache, beside a bare GET and a MemoryStore hit."""
    import redis.asyncio

    from memo import MemoryStore, RedisStore

    report.section("Redis hit: f(x: int) -> dict, with and without the near cache")
    (folder / "redis").mkdir()
    started = start_redis(folder / "redis")
    if started is None:
        report.row("redis-server not installed", "skipped")
        return
    server, port = started
    url = f"redis://127.0.0.1:{port}/0"
    plain, near = RedisStore(url), RedisStore(url, near_cache=2 * n)
    bare = redis.asyncio.Redis.from_url(url)
    other = redis.asyncio.Redis.from_url(url)
    try:

        def cached(store: Any) -> Any:
            @async_disk_cache(store=store, namespace="redis-hit")
            async def small(x: int) -> dict[str, int]:
                return {"x": x, "double": 2 * x}

            return small

        ids = list(range(n))
        memory, redis_hit, near_hit = cached(MemoryStore()), cached(plain), cached(near)
        names = {x: plain._base + redis_hit.cache_key(x) for x in ids}

        async def bare_get(x: int) -> Any:
            return await bare.get(names[x])

        assert near._near is not None
        await near.get("probe")  # opens the connections, the tracking one too
        while not near._near.serving():
            await asyncio.sleep(0.001)
        for x in ids:  # one store is written, the others see the same entries
            await memory(x)
            await redis_hit(x)
            await near_hit(x)  # read from Redis: the near cache keeps it
        got, plain_t, near_t, memory_t = await per_op_each(
            [bare_get, redis_hit, near_hit, memory], ids
        )
        assert redis_hit.cache_info().misses == n, redis_hit.cache_info()
        assert near_hit.cache_info().misses == 0, near_hit.cache_info()
        assert len(near._near) == n
        report.row("bare redis-py GET", f"{median_us([got]):.1f} µs")
        report.row(
            "memo, RedisStore", f"{median_us([plain_t]):.1f} µs", f"{plain_t / got:.2f}× bare GET"
        )
        report.row("memo, MemoryStore", f"{median_us([memory_t]):.1f} µs")
        report.row(
            "memo, RedisStore(near_cache=...)",
            f"{median_us([near_t]):.1f} µs",
            f"{near_t / memory_t:.2f}× MemoryStore (target ≤ 2)",
        )
        report.row("", "", f"{plain_t / near_t:.0f}× faster than without")
        report.headline("vs MemoryStore", "near hit", near_t / memory_t, 2)
        report.headline("vs a bare GET", "RedisStore hit", plain_t / got)

        # The invalidation window: from another client sending SET to this
        # process no longer serving its copy.
        key = redis_hit.cache_key(0)
        windows = []
        for i in range(200):
            await near.get(key)  # a fill
            assert near.get_nowait(key) is not None
            start = time.perf_counter()
            await other.set(names[0], orjson.dumps({"x": 0, "double": 0, "i": i}))
            while near._near.get(key) is not None:
                await asyncio.sleep(0)
            windows.append(time.perf_counter() - start)
            # Not served once the news is in the socket; wait until it is read too,
            # lest the next fill race with it and keep nothing.
            while key in near._near._entries:
                await asyncio.sleep(0)
        report.row(
            "invalidation window (another client's SET)",
            f"{median_us(windows):.0f} µs",
            f"p90 {sorted(windows)[len(windows) * 9 // 10] * 1e6:.0f} µs, 200 writes",
        )
    finally:
        await plain.close()
        await near.close()
        await bare.aclose()
        await other.aclose()
        server.terminate()
        server.wait()


HOLDER = r"""
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
mode, hold = sys.argv[2], float(sys.argv[3])
if mode == "write":
    con.execute("BEGIN IMMEDIATE")
    con.execute("INSERT OR REPLACE INTO Settings VALUES ('memo_bench', 1)")
print("ready", flush=True)
if mode == "write":
    time.sleep(hold)
    con.execute("COMMIT")
elif mode == "checkpoint":
    end = time.time() + hold
    while time.time() < end:
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT OR REPLACE INTO Settings VALUES ('memo_bench', 1)")
        con.execute("COMMIT")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("VACUUM")
else:
    time.sleep(hold)
"""


async def bench_stall(folder: Path, report: Report, hold: float) -> None:
    report.section("Event-loop stalls while hits run and another process uses the cache")
    directory = folder / "stall"

    @async_disk_cache(directory=directory)
    async def small(x: int) -> dict[str, int]:
        return {"x": x}

    for x in range(200):
        await small(x)

    async def run(mode: str) -> tuple[list[float], float, int]:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(directory / "cache.db"), mode, str(hold)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        stop, late = asyncio.Event(), [0.0]
        ticker = loop_stall_ticker(stop, late)
        durations = []
        deadline = time.perf_counter() + hold
        while time.perf_counter() < deadline:
            for x in range(20):
                start = time.perf_counter()
                await small(x)
                durations.append(time.perf_counter() - start)
            await asyncio.sleep(0)  # let the ticker see the loop between batches
        stop.set()
        await ticker
        assert holder.wait() == 0
        return sorted(durations), max(late), len(durations)

    for mode, label in (
        ("idle", "no other process (the machine's own noise)"),
        ("write", "another process holds the write lock"),
        ("checkpoint", "another process commits, checkpoints, vacuums"),
    ):
        durations, late, calls = await run(mode)
        p999 = durations[int(len(durations) * 0.999)]
        report.row(
            f"{label}: slowest hit",
            f"{durations[-1] * 1e3:.2f} ms",
            f"p99.9 {p999 * 1e3:.3f} ms, {calls:,} hits",
        )
        report.row(f"{label}: latest 1 ms timer", f"{late * 1e3:.2f} ms", "target < 10 ms")
    info = small.cache_info()
    report.row("errors counted", str(info.errors), f"{info.hits:,} hits, {info.misses} misses")


DECORATE = """
import memo

@memo.async_disk_cache(namespace="bench.import")
async def forecast(city: str, days: int = 3) -> dict[str, float]:
    return {}

forecast.cache_key("Paris")
"""


def bench_import(report: Report, runs: int) -> None:
    report.section(f"Import time: whole processes, median of {runs} runs each")
    # Compiled like an installed wheel: a checkout run with PYTHONDONTWRITEBYTECODE
    # would otherwise pay for compiling memo in every process.
    package = Path(memo.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True)
    with tempfile.TemporaryDirectory(prefix="memo-bench-import-") as folder:
        diskcache.Cache(folder).close()
        cases = {
            "bare interpreter": ["-c", "pass"],
            "import diskcache": ["-c", "import diskcache"],
            "import memo": ["-c", "import memo"],
            "import memo + decorate + cache_key": ["-c", DECORATE],
            "python -m memo stats": ["-m", "memo", "stats", "--dir", folder],
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(runs):  # interleaved: a load spike falls on every case alike
            for name, args in cases.items():
                start = time.perf_counter()
                subprocess.run([sys.executable, *args], check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
    bare = statistics.median(times["bare interpreter"])
    targets = {"import memo": 0.050, "import memo + decorate + cache_key": 0.050}
    for name, samples in times.items():
        took = statistics.median(samples)
        over = f"+{(took - bare) * 1e3:.1f} ms over bare" if name != "bare interpreter" else ""
        if name in targets:
            over += f" (target ≤ +{targets[name] * 1e3:.0f})"
        report.row(name, f"{took * 1e3:.1f} ms", over)
        if name in targets:
            target = (bare + targets[name]) / bare
            report.headline("vs a bare interpreter", name, took / bare, target)
    stats = statistics.median(times["python -m memo stats"])
    report.headline("vs a bare interpreter", "python -m memo stats", stats / bare)


def draw_chart(
    headlines: list[tuple[str, str, float, float | None]], path: Path, machine: str
) -> None:
    """One panel per group: memo's cost as a multiple of each baseline, targets marked."""
    import matplotlib

    matplotlib.use("Agg")  # no screen: draw straight to the file
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(group for group, *_ in headlines))
    figure, axes = plt.subplots(
        len(groups), 1, figsize=(8, 1.2 + 0.45 * len(headlines)), squeeze=False
    )
    for ax, group in zip(axes[:, 0], groups, strict=True):
        rows = [(what, ratio, target) for g, what, ratio, target in headlines if g == group]
        names = [what for what, _, _ in rows][::-1]
        ratios = [ratio for _, ratio, _ in rows][::-1]
        targets = [target for _, _, target in rows][::-1]
        colors = [
            "#2e7d32" if target is None or ratio <= target else "#c62828"
            for ratio, target in zip(ratios, targets, strict=True)
        ]
        bars = ax.barh(names, ratios, color=colors)
        for bar, ratio in zip(bars, ratios, strict=True):
            ax.text(
                bar.get_width(),
                bar.get_y() + bar.get_height() / 2,
                f" {ratio:.2f}×",
                va="center",
                fontsize=9,
            )
        for y, target in enumerate(targets):
            if target is not None:
                ax.plot([target, target], [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
        ax.set_title(
            f"memo's cost {group} (× its cost; lower is better; | = target)",
            fontsize=10,
            loc="left",
        )
        ax.set_xlim(0, max([*ratios, *(t for t in targets if t is not None)]) * 1.25)
    figure.suptitle(f"memo benchmark: {machine}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls and entries")
    parser.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run this section only (repeat to run several)",
    )
    parser.add_argument("--json", type=Path, help="also write the headline ratios to this file")
    parser.add_argument(
        "--chart", type=Path, help="draw the headline ratios to this PNG (needs matplotlib)"
    )
    options = parser.parse_args()
    n = 200 if options.quick else 1000
    big = 20_000 if options.quick else 200_000
    print("# memo benchmark")
    print(
        f"\n`python benchmarks/bench.py{' --quick' if options.quick else ''}` on "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} cores, memo {memo.__version__}, "
        f"diskcache {diskcache.__version__}, sqlite {sqlite3.sqlite_version}; "
        f"median of {ROUNDS} rounds of {n} calls."
    )
    report = Report()
    with tempfile.TemporaryDirectory(prefix="memo-bench-") as tmp:
        folder = Path(tmp)
        wanted = set(options.only or SECTIONS)
        hit_floor = await bench_hits(folder, report, n) if "hits" in wanted else None
        miss_floor = await bench_misses(folder, report, n // 2) if "misses" in wanted else None
        if "concurrency" in wanted:
            wall = await bench_concurrency(folder, report)
            if hit_floor is not None and miss_floor is not None:
                floor = 0.020 + 950 * hit_floor + 50 * miss_floor
                report.row(
                    "20 ms + the floor's 950 hits and 50 misses",
                    f"{floor * 1e3:.1f} ms",
                    f"memo {wall / floor:.2f}× of it (target ≤ 2)",
                )
        if "openai" in wanted:
            await bench_openai_client(folder, report, n)
        if "size" in wanted:
            await bench_size(folder, report, big, n)
        if "redis" in wanted:
            await bench_redis_near(folder, report, n)
        if "stall" in wanted:
            await bench_stall(folder, report, hold=1.0 if options.quick else 2.0)
    if "import" in wanted:
        bench_import(report, runs=10 if options.quick else 30)
    machine = (
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} cores, memo {memo.__version__}"
    )
    for path in (options.json, options.chart):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    if options.json:
        rows = [
            {"group": group, "what": what, "ratio": round(ratio, 4), "target": target}
            for group, what, ratio, target in report.headlines
        ]
        options.json.write_text(json.dumps({"machine": machine, "ratios": rows}, indent=2) + "\n")
    if options.chart:
        draw_chart(report.headlines, options.chart, machine)
        print(f"\nchart: {options.chart}")


if __name__ == "__main__":
    asyncio.run(main())
