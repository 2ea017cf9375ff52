"""AIManager.stream against the real emulator server and a real redis-server.

Every provider over both transports (aiohttp; httpx on HTTP/1.1 and on h2c), the
cached replay of what was streamed, and the mid-stream faults of the emulator's
``x-emulator-fault: stream-SPEC`` header (cut, stall, error, 429, malformed),
before and after the first text chunk.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from fixtures.servers import with_fault_header
from samplemind_core import (
    CacheConfig,
    ChatRequest,
    HttpConfig,
    ResponseCache,
    RetryConfig,
    Settings,
    StreamInterrupted,
)
from samplemind_core.http import HttpClient, build_transport
from samplemind_core.manager import AIManager
from samplemind_core.providers import PROVIDER_CLASSES

pytestmark = [pytest.mark.live, pytest.mark.redis]

NAMES = sorted(PROVIDER_CLASSES)
CONFIGS = {
    "aiohttp": HttpConfig(transport="aiohttp"),
    "httpx-h1": HttpConfig(transport="httpx"),
    "httpx-h2c": HttpConfig(transport="httpx", http2=True),
}


@pytest.fixture
async def cache(redis_server: Any) -> AsyncIterator[ResponseCache]:
    client = Redis.from_url(redis_server.url)
    try:
        yield ResponseCache(client, config=CacheConfig(namespace="se-" + uuid.uuid4().hex[:8]))
    finally:
        await client.aclose()


def manager(emulator: Any, cache: ResponseCache | None, transport: str = "aiohttp") -> AIManager:
    config = CONFIGS[transport]
    http = None
    if transport == "httpx-h2c":  # prior knowledge: h2c without an Upgrade round
        http = HttpClient(config, transport=build_transport(config, http1=False))
    settings = emulator.settings(Settings(http=config))
    ai = AIManager(settings, cache=cache, http=http)
    if http is not None:
        ai._owned.append(http)
    return ai


def fault(ai: AIManager, name: str, spec: str) -> None:
    """Make ``name``'s streaming requests carry the emulator's fault header ``spec``."""
    ai._providers[name] = with_fault_header(ai.provider(name), spec)


def req(name: str, text: str = "describe kick_01.wav") -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], provider=name)


async def read(ai: AIManager, request: ChatRequest, **kw: Any) -> tuple[list[str], Any]:
    async with asyncio.timeout(30):
        async with ai.stream(request, **kw) as stream:
            chunks = [c.text async for c in stream]
            return chunks, stream.response


@pytest.mark.parametrize("transport", sorted(CONFIGS))
@pytest.mark.parametrize("name", NAMES)
async def test_every_provider_and_transport_streams_and_replays(
    name: str, transport: str, emulator_server: Any, cache: ResponseCache
) -> None:
    request = req(name, f"describe pad_{transport}.wav")
    async with manager(emulator_server, cache, transport) as ai:
        chunks, resp = await read(ai, request)
        assert len(chunks) > 1 and "".join(chunks) == resp.text
        assert resp.provider == name and not resp.cached and resp.usage.output_tokens > 0
        assert resp.metadata["ttft_ms"] <= resp.latency_ms
        again, hit = await read(ai, request)
        assert again == chunks  # chunk-faithful replay
        assert hit.cached and hit.usage == resp.usage
        plain = await ai.complete(request)
        assert plain.cached and plain.text == resp.text
        assert cache.stats().cost_saved_usd == pytest.approx(2 * resp.cost_usd)


@pytest.mark.parametrize("spec", ["stream-cut:2", "stream-error@2", "stream-429@1"])
@pytest.mark.parametrize("name", NAMES)
async def test_a_fault_after_text_interrupts_and_stores_nothing(
    name: str, spec: str, emulator_server: Any, cache: ResponseCache
) -> None:
    request = req(name, f"describe hat_{spec}.wav")
    async with manager(emulator_server, cache) as ai:
        fault(ai, name, spec)
        cpu0 = time.process_time()
        with pytest.raises(StreamInterrupted) as info:
            await read(ai, request)
        cpu_s = time.process_time() - cpu0
        err = info.value
        assert err.provider == name and err.partial_text and err.chunks >= 1
        assert ai.router.health(name).consecutive_failures == 1
        assert await cache.get(request) is None and cache.stats().sets == 0
    assert cpu_s < 1.0  # a failed stream never spins (process CPU time, generous bound)


@pytest.mark.parametrize("spec", ["stream-429@0", "stream-error@0", "stream-malformed@0", "429"])
async def test_a_fault_before_text_falls_back(
    spec: str, emulator_server: Any, cache: ResponseCache
) -> None:
    async with manager(emulator_server, cache) as ai:
        fault(ai, "ollama", spec)
        chunks, resp = await read(
            ai, ChatRequest(messages=[{"role": "user", "content": f"fallback {spec}"}])
        )
        route = resp.metadata["route"]
        assert route[0]["provider"] == "ollama" and route[0]["outcome"] == "error"
        assert resp.provider != "ollama" and "".join(chunks) == resp.text
        assert ai.router.health("ollama").consecutive_failures == 1


async def test_a_stall_longer_than_the_idle_timeout_interrupts(
    emulator_server: Any, cache: ResponseCache
) -> None:
    async with manager(emulator_server, cache) as ai:
        fault(ai, "ollama", "stream-stall:30@1")
        t0 = time.perf_counter()
        with pytest.raises(StreamInterrupted, match="idle_timeout_s"):
            await read(ai, req("ollama", "stall"), idle_timeout_s=0.3)
        assert time.perf_counter() - t0 < 10  # ended by the idle timeout, not the 30 s stall


async def test_restart_continues_on_the_next_provider_after_a_cut(
    emulator_server: Any, cache: ResponseCache
) -> None:
    request = ChatRequest(messages=[{"role": "user", "content": "restart after a cut"}])
    async with manager(emulator_server, cache) as ai:
        fault(ai, "ollama", "stream-cut:2")
        async with ai.stream(request, on_interrupt="restart") as stream:
            got = [c async for c in stream]
            resp = stream.response
        flagged = [c.index for c in got if c.restarted]
        assert flagged == [2] and resp.provider != "ollama"
        assert resp.text == "".join(c.text for c in got[2:])
        assert resp.metadata["interruptions"][0]["provider"] == "ollama"
        replay, _ = await read(ai, request)
        assert replay == [c.text for c in got[2:]]


async def test_leaving_early_frees_the_connection(emulator_server: Any) -> None:
    config = HttpConfig(transport="aiohttp", max_connections=1, retry=RetryConfig(attempts=1))
    settings = emulator_server.settings(Settings(http=config))
    async with AIManager(settings) as ai:
        for i in range(5):  # one connection in the pool: a leaked one would block the next
            async with asyncio.timeout(30):
                async with ai.stream(req("ollama", f"early exit {i}")) as stream:
                    async for _ in stream:
                        break
        chunks, _ = await read(ai, req("ollama", "after the early exits"))
        assert chunks
