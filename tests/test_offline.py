"""Offline mode: hits answer, and a call that would run raises NotRecordedError instead."""

from __future__ import annotations

import asyncio
import pickle
import threading
from typing import TYPE_CHECKING, Any

import pytest

import memo
from memo import CacheInfo, MemoryStore, NotRecordedError, async_disk_cache

if TYPE_CHECKING:
    from fake_openai import FakeOpenAI
    from openai import AsyncOpenAI

MESSAGES: Any = [{"role": "user", "content": "Tell me"}]


def _counted() -> tuple[list[int], memo.CachedFunction[[int], dict[str, int]], MemoryStore]:
    calls: list[int] = []
    store = MemoryStore()

    @async_disk_cache(namespace="weather", store=store)
    async def fetch(x: int) -> dict[str, int]:
        calls.append(x)
        return {"x": x, "run": len(calls)}

    return calls, fetch, store


async def test_a_hit_answers_and_a_miss_raises_without_running() -> None:
    """Offline, a stored call is answered; another raises NotRecordedError and does not run."""
    calls, fetch, _ = _counted()
    assert await fetch(1) == {"x": 1, "run": 1}
    with memo.offline():
        assert await fetch(1) == {"x": 1, "run": 1}
        with pytest.raises(NotRecordedError) as caught:
            await fetch(2)
    assert calls == [1]
    error = caught.value
    assert isinstance(error, LookupError)
    assert (error.namespace, error.key) == ("weather", fetch.cache_key(2))
    assert error.function.endswith("_counted.<locals>.fetch()")
    message = str(error)
    assert error.function in message
    assert fetch.cache_key(2) in message
    assert "pytest --memo-record" in message
    assert "MEMO_OFFLINE" in message
    assert fetch.cache_info() == CacheInfo(hits=1, misses=2, errors=0)


async def test_nothing_is_stored_for_a_refused_call() -> None:
    """After the block, the refused call runs as a plain miss would."""
    calls, fetch, store = _counted()
    with memo.offline(), pytest.raises(NotRecordedError):
        await fetch(3)
    assert await store.get(fetch.cache_key(3)) is None
    assert await fetch(3) == {"x": 3, "run": 1}
    assert calls == [3]


async def test_concurrent_misses_all_raise_and_nothing_runs() -> None:
    """Identical calls in flight together all get the error; the function never runs."""
    calls, fetch, _ = _counted()
    with memo.offline():
        outcomes = await asyncio.gather(*(fetch(5) for _ in range(20)), return_exceptions=True)
    assert all(isinstance(outcome, NotRecordedError) for outcome in outcomes)
    assert calls == []


async def test_refresh_and_refreshing_raise_and_keep_the_entry() -> None:
    """refresh() and calls under refreshing() would run the function: offline, they raise."""
    calls, fetch, store = _counted()
    await fetch(1)
    stored = await store.get(fetch.cache_key(1))
    with memo.offline():
        with pytest.raises(NotRecordedError):
            await fetch.refresh(1)
        with memo.refreshing(), pytest.raises(NotRecordedError):
            await fetch(1)
    assert calls == [1]
    assert await store.get(fetch.cache_key(1)) == stored


async def test_bypass_inside_offline_raises_and_says_why() -> None:
    """bypass() reads nothing, so offline mode refuses its calls with a reason of its own."""
    calls, fetch, _ = _counted()
    await fetch(1)
    with memo.offline(), memo.bypass(), pytest.raises(NotRecordedError) as caught:
        await fetch(1)
    assert calls == [1]
    assert caught.value.key is None
    assert "memo.bypass() reads no entry" in str(caught.value)
    assert "memo.offline(False)" in str(caught.value)


async def test_it_follows_tasks_started_inside_and_no_others() -> None:
    """A task created in the block is offline; one created before it is not."""
    calls, fetch, _ = _counted()
    release = asyncio.Event()

    async def later(x: int) -> dict[str, int]:
        await release.wait()
        return await fetch(x)

    outside = asyncio.create_task(later(1))
    with memo.offline():
        inside = asyncio.create_task(later(2))
    release.set()
    assert await outside == {"x": 1, "run": 1}
    with pytest.raises(NotRecordedError):
        await inside
    assert calls == [1]


async def test_threads_follow_the_environment_variable_not_the_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the docs say: to_thread inherits offline(); a thread of its own needs MEMO_OFFLINE=1."""
    calls, fetch, _ = _counted()
    outcomes: list[object] = []

    def in_a_thread_of_its_own(x: int) -> None:
        try:
            outcomes.append(asyncio.run(fetch(x)))
        except NotRecordedError as exc:
            outcomes.append(exc)

    with memo.offline():
        with pytest.raises(NotRecordedError):
            await asyncio.to_thread(asyncio.run, fetch(1))
        thread = threading.Thread(target=in_a_thread_of_its_own, args=(2,))
        thread.start()
        thread.join()
    monkeypatch.setenv("MEMO_OFFLINE", "1")
    thread = threading.Thread(target=in_a_thread_of_its_own, args=(3,))
    thread.start()
    thread.join()
    assert outcomes[0] == {"x": 2, "run": 1}
    assert isinstance(outcomes[1], NotRecordedError)
    assert calls == [2]


@pytest.mark.parametrize("value", ["1", "true", "YES", " on "])
async def test_the_environment_variable_turns_it_on(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """MEMO_OFFLINE=1 (or true, yes, on) makes every miss raise; offline(False) turns it off."""
    calls, fetch, _ = _counted()
    monkeypatch.setenv("MEMO_OFFLINE", value)
    with pytest.raises(NotRecordedError):
        await fetch(1)
    with memo.offline(False):
        assert await fetch(1) == {"x": 1, "run": 1}
    assert await fetch(1) == {"x": 1, "run": 1}
    assert calls == [1]


@pytest.mark.parametrize("value", ["", "0", "false", "No", "off"])
async def test_the_environment_variable_turns_it_off(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """MEMO_OFFLINE=0 (or empty, false, no, off) leaves memo online."""
    calls, fetch, _ = _counted()
    monkeypatch.setenv("MEMO_OFFLINE", value)
    await fetch(1)
    assert calls == [1]


async def test_a_misspelled_environment_variable_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """MEMO_OFFLINE=ture raises ValueError at a miss instead of reaching the API."""
    calls, fetch, _ = _counted()
    monkeypatch.setenv("MEMO_OFFLINE", "ture")
    with pytest.raises(ValueError, match="MEMO_OFFLINE must be 1 or 0"):
        await fetch(1)
    assert calls == []


def test_offline_takes_a_bool() -> None:
    """offline("false") is a TypeError, not offline mode turned on by a truthy string."""
    with pytest.raises(TypeError, match="offline\\(\\) takes True or False"):
        memo.offline("false")  # type: ignore[arg-type]


async def test_a_damaged_recording_is_not_called_missing(caplog: pytest.LogCaptureFixture) -> None:
    """An entry that is there but unreadable (edited by hand) is said so, not 'nothing recorded'."""
    calls, fetch, store = _counted()
    await fetch(1)
    key = fetch.cache_key(1)
    stored = await store.get(key)
    assert stored is not None
    await store.set(key, stored[:-1] + b"!")  # one byte of the answer changed
    with memo.offline(), pytest.raises(NotRecordedError) as caught:
        await fetch(1)
    error = caught.value
    assert error.key == key
    assert "nothing recorded" not in str(error)
    assert "the recording of this call cannot be read (DamagedEntryError: " in str(error)
    assert "Record it by running it once with offline mode off" in str(error)
    assert calls == [1]
    # Another key missing afterwards is missing, not damaged.
    with memo.offline(), pytest.raises(NotRecordedError, match="nothing recorded"):
        await fetch(2)


def test_the_error_pickles_with_its_attributes() -> None:
    """It crosses process boundaries (pytest-xdist, multiprocessing) whole."""
    error = NotRecordedError("app.ask()", "app.ask", "key-1")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.function, copy.namespace, copy.key, str(copy)) == (
        "app.ask()",
        "app.ask",
        "key-1",
        str(error),
    )


# -- memo.openai -------------------------------------------------------------------


async def test_a_cached_client_sends_nothing_offline(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A recorded request is answered; a new one raises naming the URL and model, unsent."""
    import memo.openai

    client = memo.openai.cached(openai_client, store=MemoryStore())
    first = await client.chat.completions.create(model="fake", messages=MESSAGES)
    with memo.offline():
        again = await client.chat.completions.create(model="fake", messages=MESSAGES)
        with pytest.raises(NotRecordedError) as caught:
            await client.chat.completions.create(model="fake-odd", messages=MESSAGES)
        with pytest.raises(NotRecordedError):
            await client.embeddings.create(model="fake", input="hello")
    assert again == first
    assert openai_server.count() == 1
    error = caught.value
    assert error.namespace == "memo.openai"
    assert error.key is not None
    assert error.function == (
        f"memo.openai: POST {openai_server.base_url}/chat/completions (model 'fake-odd')"
    )
    assert error.function in str(error)


async def test_a_cached_client_streams_only_recordings_offline(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """A recorded stream replays offline; an unrecorded one raises before any request."""
    import memo.openai

    client = memo.openai.cached(openai_client, store=MemoryStore())
    stream = await client.chat.completions.create(model="fake", messages=MESSAGES, stream=True)
    first = [chunk async for chunk in stream]
    with memo.offline():
        replay = await client.chat.completions.create(model="fake", messages=MESSAGES, stream=True)
        assert [chunk async for chunk in replay] == first
        with pytest.raises(NotRecordedError, match="/chat/completions"):
            await client.chat.completions.create(model="fake-odd", messages=MESSAGES, stream=True)
        with memo.refreshing(), pytest.raises(NotRecordedError):
            await client.chat.completions.create(model="fake", messages=MESSAGES, stream=True)
    assert openai_server.count() == 1


async def test_bypass_and_uncached_requests_of_a_cached_client_offline(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """Offline, bypass() on a cached endpoint raises; endpoints memo does not cache still work."""
    import memo.openai

    client = memo.openai.cached(openai_client, store=MemoryStore())
    with memo.offline():
        with memo.bypass(), pytest.raises(NotRecordedError, match="bypass"):
            await client.chat.completions.create(model="fake", messages=MESSAGES)
        assert openai_server.count() == 0
        models = await client.models.list()
    assert [model.id async for model in models] == ["fake"]
    assert openai_server.count() == 1


async def test_a_caller_online_never_gets_the_error_of_one_offline() -> None:
    """An online call that joins an offline call's refused run runs the function itself."""
    calls, fetch, _ = _counted()
    with memo.offline():
        refused = asyncio.create_task(fetch(1))  # starts the run the next one joins
    answered = asyncio.create_task(fetch(1))
    outcomes = await asyncio.gather(refused, answered, return_exceptions=True)
    assert isinstance(outcomes[0], NotRecordedError)
    assert outcomes[1] == {"x": 1, "run": 1}
    assert calls == [1]


async def test_an_online_stream_never_gets_the_error_of_an_offline_one(
    openai_server: FakeOpenAI, openai_client: AsyncOpenAI
) -> None:
    """An online stream request that joins an offline one's refused start sends its own."""
    import memo.openai

    client = memo.openai.cached(openai_client, store=MemoryStore())

    async def stream() -> list[Any]:
        answer = await client.chat.completions.create(model="fake", messages=MESSAGES, stream=True)
        return [chunk async for chunk in answer]

    with memo.offline():
        refused = asyncio.create_task(stream())
    answered = asyncio.create_task(stream())
    outcomes = await asyncio.gather(refused, answered, return_exceptions=True)
    assert isinstance(outcomes[0], NotRecordedError)
    assert isinstance(outcomes[1], list)
    assert len(outcomes[1]) > 1
    assert openai_server.count() == 1
