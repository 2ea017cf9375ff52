"""AIManager.stream: the layer's side of streaming, against scripted provider streams.

Each provider's ``open_stream`` is replaced by a script (chunks, delays, errors)
that honours the ProviderStream contract, so that fallback, interruption, idle
timeouts, cancellation, single-flight and cached replay are tested without a
network; the same paths against the real emulator are in ``tests/test_stream_emulator.py``.
The cache runs on fakeredis here and on a real redis-server there.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest

from samplemind_core import (
    AllProvidersFailedError,
    CacheConfig,
    ChatRequest,
    ChatResponse,
    ClientStateError,
    ConfigError,
    ProviderServerError,
    RateLimitError,
    ResponseCache,
    SampleMindError,
    Secret,
    Settings,
    StreamChunk,
    StreamConfig,
    StreamInterrupted,
    Usage,
)
from samplemind_core._cache.envelope import decode
from samplemind_core._streaming import CHUNKS_KEY, split_text
from samplemind_core.manager import AIManager

Step = str | BaseException | float  # a chunk, an error to raise, or a pause in seconds


class FakeStream:
    """A ProviderStream over a script (the contract of ``providers.base.ProviderStream``)."""

    def __init__(self, provider: str, model: str, script: list[Step]) -> None:
        self.provider = provider
        self.model = model
        self._script = script
        self._done = False
        self._text: list[str] = []
        self.closed = False

    def __aiter__(self) -> AsyncIterator[str]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[str]:
        for step in self._script:
            if isinstance(step, BaseException):
                raise step
            if isinstance(step, float):
                await asyncio.sleep(step)
                continue
            self._text.append(step)
            yield step
        self._done = True

    @property
    def response(self) -> ChatResponse:
        if not self._done:
            raise ClientStateError("not finished")
        return ChatResponse(
            text="".join(self._text),
            provider=self.provider,
            model=self.model,
            finish_reason="stop",
            usage=Usage(5, len(self._text)),
            cost_usd=0.001,
        )

    async def aclose(self) -> None:
        self.closed = True


class Scripts:
    """Per-provider scripts for the next streams opened; counts opens and closes."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[list[Step] | BaseException]] = {}
        self.default: dict[str, list[Step]] = {}
        self.opened: Counter[str] = Counter()
        self.streams: list[FakeStream] = []
        self.first_open = asyncio.Event()

    def install(self, ai: AIManager) -> None:
        for name in ("ollama", "openai", "anthropic", "gemini"):
            adapter = ai.provider(name)

            async def open_stream(
                http: Any, req: ChatRequest, model: str | None = None, _name: str = name
            ) -> FakeStream:
                self.opened[_name] += 1
                await asyncio.sleep(0)
                queue = self.scripts.get(_name)
                script = queue.pop(0) if queue else self.default.get(_name)
                if script is None:
                    raise ProviderServerError(f"{_name}: HTTP 503", provider=_name, status=503)
                if isinstance(script, BaseException):
                    raise script
                stream = FakeStream(_name, model or "m", list(script))
                self.streams.append(stream)
                self.first_open.set()
                return stream

            adapter.open_stream = open_stream  # type: ignore[method-assign]


def settings(**stream: Any) -> Settings:
    s = Settings(stream=StreamConfig(**stream))
    for name in ("openai", "anthropic", "gemini"):
        s = s.with_provider(name, api_key=Secret(f"sk-test-{name}-000000"))
    return s


def req(text: str = "describe this kick") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], provider="ollama")


@pytest.fixture
def cache() -> ResponseCache:
    return ResponseCache(fakeredis.FakeAsyncRedis(), config=CacheConfig(lease_s=None))


async def read(ai: AIManager, request: ChatRequest, **kw: Any) -> tuple[list[str], ChatResponse]:
    async with ai.stream(request, **kw) as stream:
        chunks = [c.text async for c in stream]
        return chunks, stream.response


async def test_chunks_in_order_and_the_response(cache: ResponseCache) -> None:
    scripts = Scripts()
    scripts.default["ollama"] = ["Deep ", "kick, ", "short tail."]
    async with AIManager(settings(), cache=cache) as ai:
        scripts.install(ai)
        async with ai.stream(req(), task="chat", priority="speed") as stream:
            with pytest.raises(ClientStateError, match="after the last chunk"):
                _ = stream.response
            got = [c async for c in stream]
            resp = stream.response
    assert got == [
        StreamChunk("Deep ", 0),
        StreamChunk("kick, ", 1),
        StreamChunk("short tail.", 2),
    ]
    assert resp.text == "Deep kick, short tail."
    assert resp.provider == "ollama" and not resp.cached and resp.cost_usd == 0.001
    assert resp.finish_reason == "stop" and resp.usage.output_tokens == 3
    assert 0 < resp.metadata["ttft_ms"] <= resp.latency_ms
    assert resp.metadata["route"][-1]["outcome"] == "ok"
    assert CHUNKS_KEY not in resp.metadata
    assert scripts.streams[0].closed


async def test_iterating_outside_the_block_is_a_clear_error() -> None:
    async with AIManager(settings()) as ai:
        stream = ai.stream(req())
        with pytest.raises(ClientStateError, match="async with"):
            await stream.__anext__()


async def test_bad_arguments_fail_before_anything_is_sent() -> None:
    async with AIManager(settings()) as ai:
        with pytest.raises(ConfigError, match="idle_timeout_s"):
            ai.stream(req(), idle_timeout_s=-1)
        with pytest.raises(ConfigError, match="on_interrupt"):
            ai.stream(req(), on_interrupt="retry")  # type: ignore[arg-type]
        with pytest.raises(ConfigError):
            ai.stream(req(), task="no-such-task")
    with pytest.raises(ConfigError, match="idle_timeout_s"):
        StreamConfig(idle_timeout_s=float("nan"))
    with pytest.raises(ConfigError, match="SAMPLEMIND_STREAM_IDLE_TIMEOUT"):
        Settings.from_env({"SAMPLEMIND_STREAM_IDLE_TIMEOUT": "soon"})
    assert Settings.from_env({"SAMPLEMIND_STREAM_IDLE_TIMEOUT": "2.5"}).stream.idle_timeout_s == 2.5


@pytest.mark.parametrize(
    "failure",
    [
        ProviderServerError("ollama: HTTP 503", provider="ollama", status=503),
        RateLimitError("ollama: HTTP 429", provider="ollama", retry_after=1.0),
    ],
)
async def test_a_failure_before_the_first_chunk_falls_back(failure: BaseException) -> None:
    scripts = Scripts()
    scripts.scripts["ollama"] = [failure]
    scripts.default["gemini"] = ["from ", "gemini"]
    scripts.default["anthropic"] = ["from ", "anthropic"]
    scripts.default["openai"] = ["from ", "openai"]
    async with AIManager(settings()) as ai:
        scripts.install(ai)
        chunks, resp = await read(ai, req())
        assert resp.provider != "ollama" and "".join(chunks) == resp.text
        route = resp.metadata["route"]
        assert route[0]["provider"] == "ollama" and route[0]["outcome"] == "error"
        assert ai.router.health("ollama").consecutive_failures == 1


async def test_a_malformed_or_silent_first_event_falls_back() -> None:
    from samplemind_core import MalformedResponseError

    scripts = Scripts()
    scripts.scripts["ollama"] = [[MalformedResponseError("ollama: bad event", provider="ollama")]]
    scripts.scripts["gemini"] = [[5.0, "never"]]  # silent past the idle timeout
    scripts.default["anthropic"] = ["ok"]
    scripts.default["openai"] = ["ok"]
    async with AIManager(settings(idle_timeout_s=0.05)) as ai:
        scripts.install(ai)
        chunks, resp = await asyncio.wait_for(read(ai, req()), 30)
    outcomes = [(s["provider"], s["outcome"]) for s in resp.metadata["route"]]
    assert ("ollama", "error") in outcomes and chunks == ["ok"]
    assert all(s.closed for s in scripts.streams)


async def test_all_failing_before_text_raises_all_providers_failed() -> None:
    scripts = Scripts()  # no scripts: every open raises 503
    async with AIManager(settings()) as ai:
        scripts.install(ai)
        with pytest.raises(AllProvidersFailedError) as info:
            await read(ai, req())
    assert len(info.value.attempts) == 4


async def test_interruption_after_text_raises_with_the_partial_text(
    cache: ResponseCache,
) -> None:
    scripts = Scripts()
    cut = RateLimitError("ollama: rate limited mid-stream", provider="ollama")
    scripts.scripts["ollama"] = [["Deep ", "kick", cut]]
    scripts.default["gemini"] = ["other"]
    async with AIManager(settings(), cache=cache) as ai:
        scripts.install(ai)
        seen: list[str] = []
        cpu0 = time.process_time()
        with pytest.raises(StreamInterrupted) as info:
            async with ai.stream(req()) as stream:
                async for chunk in stream:
                    seen.append(chunk.text)
        cpu = time.process_time() - cpu0
        with pytest.raises(ClientStateError, match="failed"):
            _ = stream.response
        err = info.value
        assert isinstance(err, SampleMindError)
        assert err.partial_text == "Deep kick" == "".join(seen)
        assert err.provider == "ollama" and err.chunks == 2
        assert "RateLimitError" in err.cause and "Deep" not in str(err)
        assert ai.router.health("ollama").consecutive_failures == 1
        assert scripts.opened["gemini"] == 0  # no transparent fallback after text
        assert await cache.get(req()) is None  # nothing stored
        assert cache.stats().sets == 0
    assert cpu < 0.5  # a 429 mid-stream never spins


async def test_idle_timeout_after_text_is_an_interruption() -> None:
    scripts = Scripts()
    scripts.scripts["ollama"] = [["first", 10.0, "late"]]
    async with AIManager(settings(idle_timeout_s=0.05)) as ai:
        scripts.install(ai)
        with pytest.raises(StreamInterrupted, match="idle_timeout_s") as info:
            await asyncio.wait_for(read(ai, req()), 30)
    assert info.value.partial_text == "first"
    assert scripts.streams[0].closed


async def test_restart_on_interrupt_flags_the_fresh_stream(cache: ResponseCache) -> None:
    scripts = Scripts()
    cut = ProviderServerError("ollama: overloaded", provider="ollama", status=529)
    scripts.scripts["ollama"] = [["Half ", "an ", cut]]
    scripts.default["gemini"] = ["A whole ", "answer."]
    scripts.default["anthropic"] = ["A whole ", "answer."]
    scripts.default["openai"] = ["A whole ", "answer."]
    async with AIManager(settings(), cache=cache) as ai:
        scripts.install(ai)
        async with ai.stream(req(), on_interrupt="restart") as stream:
            got = [c async for c in stream]
            resp = stream.response
        assert [c.restarted for c in got] == [False, False, True, False]
        assert [c.index for c in got] == [0, 1, 2, 3]
        assert resp.text == "A whole answer." and resp.provider != "ollama"
        assert resp.metadata["interruptions"][0]["provider"] == "ollama"
        # Only the stream that completed is stored, with its own chunks.
        chunks, _ = await read(ai, req())
        assert chunks == ["A whole ", "answer."]


async def test_cached_replay_is_chunk_faithful_and_counts_savings(cache: ResponseCache) -> None:
    scripts = Scripts()
    scripts.default["ollama"] = ["Tight", " snare", ",", " 120", " bpm."]
    async with AIManager(settings(), cache=cache) as ai:
        scripts.install(ai)
        first, _ = await read(ai, req())
        again, resp = await read(ai, req())
        assert again == first and scripts.opened["ollama"] == 1
        assert resp.cached and resp.cost_usd == 0.0 and resp.metadata["stream"]["role"] == "cache"
        assert CHUNKS_KEY not in resp.metadata and resp.metadata["ttft_ms"] is not None
        assert cache.stats().cost_saved_usd == pytest.approx(0.001)
        # the stored stream answers complete(), the boundaries stay inside the cache
        plain = await ai.complete(req())
        assert plain.text == "Tight snare, 120 bpm." and plain.cached
        assert CHUNKS_KEY not in plain.metadata
        assert cache.stats().cost_saved_usd == pytest.approx(0.002)


async def test_a_replay_gives_the_loop_back_to_other_readers(cache: ResponseCache) -> None:
    # Two callers replay the same long stored stream at once: the second caller's first chunk
    # must not wait until the first caller has drained its whole replay.
    scripts = Scripts()
    scripts.default["ollama"] = [f" w{i}" for i in range(40)]
    events: list[tuple[str, int]] = []

    async def reader(name: str, ai: AIManager) -> None:
        async with ai.stream(req()) as stream:
            async for chunk in stream:
                events.append((name, chunk.index))

    async with AIManager(settings(), cache=cache) as ai:
        scripts.install(ai)
        await read(ai, req())  # stored
        await asyncio.gather(reader("a", ai), reader("b", ai))
    assert scripts.opened["ollama"] == 1
    assert [i for n, i in events if n == "a"] == list(range(40))
    assert [i for n, i in events if n == "b"] == list(range(40))
    assert events.index(("b", 0)) < events.index(("a", 39))
    assert events.index(("a", 0)) < events.index(("b", 39))
    # and each reader gives the loop back right after its first chunk: every first chunk goes
    # out before any reader's second (concurrent replays' TTFT is not queued behind a drain)
    assert events[:2] == [("a", 0), ("b", 0)]


async def test_chunk_boundaries_travel_in_the_envelope_not_in_metadata() -> None:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    cache = ResponseCache(redis, config=CacheConfig(lease_s=None))
    scripts = Scripts()
    scripts.default["ollama"] = ["Tight", " snare", ",", " 120", " bpm."]
    async with AIManager(settings(), cache=cache) as ai:
        scripts.install(ai)
        first, _ = await read(ai, req())
        key = cache.key_for(req())
        stored, _, _, _, extra = decode(await redis.get(key), key.rsplit(":", 1)[1])
        assert CHUNKS_KEY not in stored.metadata  # the cached response's own metadata
        assert extra["lengths"] == [5, 6, 1, 4, 5] and len(extra["gaps_ms"]) == 5
        # replayed from Redis by another cache (no L1 of its own yet), then from its L1
        other = ResponseCache(redis, config=CacheConfig(lease_s=None, l1_max_entries=100))
        async with AIManager(settings(), cache=other) as ai2:
            scripts.install(ai2)
            from_redis, _ = await read(ai2, req())
            from_l1, _ = await read(ai2, req())
            assert from_redis == from_l1 == first and other.stats().l1_hits == 1
            assert scripts.opened["ollama"] == 1


async def test_an_entry_stored_with_boundaries_in_metadata_still_replays_its_chunks() -> None:
    """Entries written before the boundaries moved into the envelope (decision 0142)."""
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    cache = ResponseCache(redis, config=CacheConfig(lease_s=None))
    old = ChatResponse(
        text="Deep kick, short tail.",
        provider="ollama",
        model="m",
        metadata={CHUNKS_KEY: {"lengths": [5, 6, 11], "gaps_ms": [1.0, 2.0, 3.0]}},
    )
    assert await cache.set(req(), old)
    async with AIManager(settings(), cache=cache) as ai:
        Scripts().install(ai)
        chunks, resp = await read(ai, req())
        assert chunks == ["Deep ", "kick, ", "short tail."] and resp.cached
        assert CHUNKS_KEY not in resp.metadata
        plain = await ai.complete(req())
        assert plain.cached and CHUNKS_KEY not in plain.metadata


async def test_a_stored_plain_answer_is_streamed_word_by_word(cache: ResponseCache) -> None:
    stored = ChatResponse(text="Warm pad,  slow attack.\n", provider="ollama", model="m")
    stored.cost_usd = 0.01
    await cache.set(req(), stored)
    async with AIManager(settings(), cache=cache) as ai:
        chunks, resp = await read(ai, req())
    assert chunks == split_text(stored.text) == ["Warm", " pad,", "  slow", " attack.", "\n"]
    assert resp.cached and cache.stats().cost_saved_usd == pytest.approx(0.01)


async def test_paced_replay_uses_the_recorded_gaps(cache: ResponseCache) -> None:
    scripts = Scripts()
    scripts.default["ollama"] = ["a", 0.05, "b", 0.05, "c"]
    async with AIManager(settings(), cache=cache) as ai:
        scripts.install(ai)
        await read(ai, req())
        t0 = time.perf_counter()
        instant, _ = await read(ai, req())
        t_instant = time.perf_counter() - t0
        t0 = time.perf_counter()
        paced, _ = await read(ai, req(), replay="paced")
        t_paced = time.perf_counter() - t0
    assert instant == paced == ["a", "b", "c"]
    assert t_paced > t_instant  # a ratio of the two, not a wall-clock bound


async def test_single_flight_in_one_process(cache: ResponseCache) -> None:
    scripts = Scripts()
    scripts.default["ollama"] = ["one ", 0.01, "two ", 0.01, "three"]
    async with AIManager(settings(), cache=cache) as ai:
        scripts.install(ai)

        async def late(delay: float) -> list[str]:
            await asyncio.sleep(delay)
            return (await read(ai, req()))[0]

        results = await asyncio.wait_for(
            asyncio.gather(*(late(0.0) for _ in range(2000)), late(0.012)), 60
        )
    assert scripts.opened["ollama"] == 1
    assert all(r == ["one ", "two ", "three"] for r in results)


async def test_a_follower_leaving_affects_no_one_and_the_leader_leaving_cuts_no_follower(
    cache: ResponseCache,
) -> None:
    scripts = Scripts()
    scripts.default["ollama"] = ["a", 0.02, "b", 0.02, "c"]
    async with AIManager(settings(), cache=cache) as ai:
        scripts.install(ai)
        joined = asyncio.Event()

        async def leave_after_first() -> str:
            async with ai.stream(req()) as stream:
                await joined.wait()  # the others share this upstream before it leaves
                async for _ in stream:
                    break
            return stream.role

        async def follow() -> tuple[list[str], ChatResponse]:
            async with ai.stream(req()) as stream:
                joined.set()
                return [c.text async for c in stream], stream.response

        async def cancelled() -> None:
            task = asyncio.create_task(read(ai, req()))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        leader = asyncio.create_task(leave_after_first())
        await asyncio.sleep(0)
        full = asyncio.create_task(follow())
        role, _ = await asyncio.wait_for(asyncio.gather(leader, cancelled()), 30)
        chunks, resp = await asyncio.wait_for(full, 30)
        assert role == "leader" and chunks == ["a", "b", "c"]
        assert scripts.opened["ollama"] == 1
        assert resp.cached and resp.metadata["coalesced"]  # a follower's copy
        assert await cache.get(req()) is not None  # stored though its leader left


async def test_the_last_reader_leaving_closes_the_upstream(cache: ResponseCache) -> None:
    scripts = Scripts()
    scripts.default["ollama"] = ["a", 5.0, "b"]
    async with AIManager(settings(), cache=cache) as ai:
        scripts.install(ai)
        async with ai.stream(req()) as stream:
            async for _ in stream:
                break
        # closed before aclose returned, nothing stored, nothing left in flight
        assert scripts.streams[0].closed
        assert not ai._feeds and not ai._stream_tasks
        assert await cache.get(req()) is None


async def test_the_callers_cancellation_propagates_and_frees_the_upstream() -> None:
    scripts = Scripts()
    scripts.default["ollama"] = ["a", 5.0, "b"]
    async with AIManager(settings()) as ai:
        scripts.install(ai)
        got = asyncio.Event()

        async def caller() -> None:
            async with ai.stream(req()) as stream:
                async for _ in stream:
                    got.set()

        task = asyncio.create_task(caller())
        await asyncio.wait_for(got.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert scripts.streams[0].closed and not ai._stream_tasks
        assert ai.router.health("ollama").consecutive_failures == 0


async def test_closing_the_manager_ends_open_streams() -> None:
    scripts = Scripts()
    scripts.default["ollama"] = ["a", 5.0, "b"]
    ai = AIManager(settings())
    scripts.install(ai)
    async with ai.stream(req()) as stream:
        await stream.__anext__()
        await ai.aclose()
        with pytest.raises(ClientStateError, match="closed"):
            await asyncio.wait_for(stream.__anext__(), 30)
    assert scripts.streams[0].closed


async def test_the_cache_rules_apply_to_streams_unchanged() -> None:
    scripts = Scripts()
    scripts.default["ollama"] = ["x" * 60] * 10  # 600 characters in 10 chunks
    redis = fakeredis.FakeAsyncRedis()
    small = ResponseCache(redis, config=CacheConfig(lease_s=None, max_value_bytes=400))
    async with AIManager(settings(), cache=small) as ai:
        scripts.install(ai)
        await read(ai, req())
        await read(ai, req())
        assert scripts.opened["ollama"] == 2  # over the size limit: never stored
        assert small.stats().skipped_writes == 2
    l1 = ResponseCache(redis, config=CacheConfig(lease_s=None, l1_max_entries=10))
    async with AIManager(settings(), cache=l1) as ai:
        scripts.install(ai)
        first, _ = await read(ai, req())
        again, _ = await read(ai, req())  # from the L1: its template keeps the boundaries
        third, _ = await read(ai, req())
        assert first == again == third and l1.stats().l1_hits == 2
        other = ResponseCache(redis, config=CacheConfig(lease_s=None, namespace="tenant-b"))
        assert await other.get(req()) is None  # namespaces never share entries
        await l1.clear()
        await read(ai, req())
    assert scripts.opened["ollama"] == 4  # cleared: streamed upstream again


async def test_thousands_of_callers_cancelled_at_random(cache: ResponseCache) -> None:
    import random

    scripts = Scripts()
    scripts.default["ollama"] = ["w"] + [step for i in range(20) for step in (0.002, f" {i}")]
    rng = random.Random(7)
    async with AIManager(settings(), cache=cache) as ai:
        scripts.install(ai)
        tasks = [asyncio.create_task(read(ai, req())) for _ in range(1000)]
        await asyncio.sleep(0.005)
        doomed = rng.sample(tasks, 400)
        for i, task in enumerate(doomed):
            if i % 40 == 0:
                await asyncio.sleep(0.002)  # cancellations spread over the stream
            task.cancel()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 60)
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        finished = [r for r in results if isinstance(r, tuple)]
        assert cancelled + len(finished) == 1000 and len(finished) >= 600
        expected = "".join(s for s in scripts.default["ollama"] if isinstance(s, str))
        assert all("".join(chunks) == expected for chunks, _ in finished)
        assert scripts.opened["ollama"] == 1 and all(s.closed for s in scripts.streams)
        assert not ai._feeds and not ai._stream_tasks


async def test_everyone_leaving_closes_the_shared_upstream(cache: ResponseCache) -> None:
    scripts = Scripts()
    scripts.default["ollama"] = ["a", 10.0, "b"]
    async with AIManager(settings(), cache=cache) as ai:
        scripts.install(ai)
        tasks = [asyncio.create_task(read(ai, req())) for _ in range(200)]
        await asyncio.wait_for(scripts.first_open.wait(), 30)
        await asyncio.sleep(0.01)
        for task in tasks:
            task.cancel()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
        assert all(isinstance(r, asyncio.CancelledError) for r in results)
        assert scripts.streams[0].closed and not ai._stream_tasks and not ai._feeds
        assert ai.router.health("ollama").consecutive_failures == 0


# -- the real adapters over respx (the world model's wire formats, httpx's transport) --


def respx_settings(mock_providers: Any) -> Settings:
    s = mock_providers.settings
    for name in ("openai", "anthropic", "gemini"):
        s = s.with_provider(name, api_key=Secret(f"sk-test-{name}-000000"))
    return s


@pytest.mark.parametrize("name", ["ollama", "openai", "anthropic", "gemini"])
async def test_real_adapters_over_respx_stream_store_and_replay(
    name: str, mock_providers: Any, cache: ResponseCache
) -> None:
    async with AIManager(respx_settings(mock_providers), cache=cache) as ai:
        request = ChatRequest(messages=[{"role": "user", "content": "describe"}], provider=name)
        chunks, resp = await read(ai, request)
        assert len(chunks) > 1 and "".join(chunks) == resp.text and resp.provider == name
        again, hit = await read(ai, request)
        assert again == chunks and hit.cached
    assert mock_providers.calls[name] == 1


async def test_real_adapters_over_respx_faults(mock_providers: Any, cache: ResponseCache) -> None:
    async with AIManager(respx_settings(mock_providers), cache=cache) as ai:
        mock_providers.configure(stream_faults=["429@1"])  # every stream: 429 after 1 chunk
        with pytest.raises(StreamInterrupted) as info:
            await read(ai, req("respx mid-stream"))
        assert isinstance(info.value.__cause__, RateLimitError)
        mock_providers.configure(stream_faults=["error@0"])  # every stream: error before text
        with pytest.raises(AllProvidersFailedError) as failed:
            await read(ai, ChatRequest(messages=[{"role": "user", "content": "all fail"}]))
        assert len(failed.value.attempts) == 4
        assert await cache.get(req("respx mid-stream")) is None
