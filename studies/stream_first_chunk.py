"""The layer's added latency to the first chunk, against a raw aiohttp read of the same stream.

Starts the emulator (``latency_scale`` 0 by default: the first chunk leaves at once,
so what is measured is the client side) and, optionally, a redis-server, then
times, interleaved in one event loop, ``--rounds`` rounds of:

- ``raw``: ``aiohttp.ClientSession.post`` of the OpenAI streaming request (the
  same URL, headers and body the adapter builds), reading the body until the
  first ``data:`` event with a non-empty ``delta.content`` (json-decoded);
- ``adapter``: the wire side alone: ``Provider.open_stream`` on the manager's
  ``HttpClient`` (httpx over the aiohttp transport), time to its first text delta;
- ``layer``: ``AIManager.stream`` (no cache), time to its first ``StreamChunk``;
- ``layer+redis`` (``--redis``): the same with a ``ResponseCache`` on a real
  redis-server (a miss each time: a lookup, the relay's stream lease, then the
  upstream), and ``replay``: a cached stream's first chunk.

Each round runs each variant once, in an order that rotates, with a fresh prompt
per round (no cache hit for the miss variants); ``--concurrency N`` runs each variant
as N concurrent calls (distinct prompts) per round. Prints the medians and the p90s,
the differences to ``raw`` and the ratios, as one JSON object::

    nice python studies/stream_first_chunk.py --rounds 300 --redis
    nice python studies/stream_first_chunk.py --rounds 30 --redis --concurrency 100
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures.redis import RedisServer
from fixtures.servers import start_emulator
from samplemind_core import (
    AIManager,
    CacheConfig,
    ChatRequest,
    HttpConfig,
    ResponseCache,
    Settings,
)


async def raw_first_chunk(session: Any, url: str, headers: dict[str, str], body: Any) -> float:
    t0 = time.perf_counter()
    async with session.post(url, data=orjson.dumps(body), headers=headers) as resp:
        buffer = b""
        async for data in resp.content.iter_any():
            buffer += data
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if not line.startswith(b"data:") or line[5:].strip() == b"[DONE]":
                        continue
                    choices = orjson.loads(line[5:]).get("choices") or []
                    if choices and choices[0].get("delta", {}).get("content"):
                        return (time.perf_counter() - t0) * 1000.0
    raise RuntimeError("no text in the stream")


async def adapter_first_chunk(ai: AIManager, request: ChatRequest) -> float:
    t0 = time.perf_counter()
    stream = await ai.provider("openai").open_stream(ai.http, request, "gpt-4o-mini")
    async with stream:
        async for _ in stream:
            return (time.perf_counter() - t0) * 1000.0
    raise RuntimeError("no chunk")


ROLES: Counter[str] = Counter()


def _first_chunk_of(
    ai: AIManager, variant: str, request: Callable[[int], ChatRequest]
) -> Callable[[int], Awaitable[float]]:
    """``j -> layer_first_chunk(ai, request(j), variant)``: one wave's maker."""

    def make(j: int) -> Awaitable[float]:
        return layer_first_chunk(ai, request(j), variant)

    return make


async def layer_first_chunk(ai: AIManager, request: ChatRequest, variant: str = "") -> float:
    t0 = time.perf_counter()
    async with ai.stream(request) as stream:
        async for _ in stream:
            ms = (time.perf_counter() - t0) * 1000.0
            ROLES[f"{variant}:{stream.role}"] += 1
            return ms
    raise RuntimeError("no chunk")


async def _wave(make: Callable[[int], Awaitable[float]], n: int) -> list[float]:
    """``n`` calls of ``make`` at once: their times to the first chunk."""
    return list(await asyncio.gather(*(make(j) for j in range(n))))


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    emulator = start_emulator(latency_scale=args.latency_scale)
    server = RedisServer().start() if args.redis else None
    try:
        settings = emulator.settings(Settings(http=HttpConfig(transport="aiohttp")))
        plain = AIManager(settings)
        cached_ai: AIManager | None = None
        redis_client: Any = None
        if server is not None:
            from redis.asyncio import Redis

            redis_client = Redis.from_url(server.url)
            cache = ResponseCache(redis_client, config=CacheConfig(namespace="study"))
            cached_ai = AIManager(settings, cache=cache)
        adapter = plain.provider("openai")
        session = aiohttp.ClientSession()
        samples: dict[str, list[float]] = {"raw": [], "adapter": [], "layer": []}
        if cached_ai is not None:
            samples["layer+redis"] = []
            samples["replay"] = []
            stored = ChatRequest(
                messages=[{"role": "user", "content": "stored"}], provider="openai"
            )
            async with cached_ai.stream(stored) as whole:  # stored only once read to the end
                async for _ in whole:
                    pass
        try:
            for i in range(args.warmup + args.rounds):

                def request(tag: str, n: int = i, j: int = 0) -> ChatRequest:
                    return ChatRequest(
                        messages=[{"role": "user", "content": f"describe {tag} {n} {j}"}],
                        provider="openai",
                    )

                def raw_call(j: int) -> Awaitable[float]:
                    _, url, headers, body = adapter.build_stream_request(
                        request("raw", j=j), "gpt-4o-mini"
                    )
                    return raw_first_chunk(session, url, headers, body)

                makers: list[tuple[str, Callable[[int], Awaitable[float]]]] = [
                    ("raw", raw_call),
                    ("adapter", lambda j: adapter_first_chunk(plain, request("adapter", j=j))),
                    ("layer", lambda j: layer_first_chunk(plain, request("layer", j=j), "layer")),
                ]
                if cached_ai is not None:
                    ai_c = cached_ai
                    makers.append(
                        (
                            "layer+redis",
                            _first_chunk_of(ai_c, "layer+redis", lambda j: request("m", j=j)),
                        )
                    )
                    makers.append(("replay", _first_chunk_of(ai_c, "replay", lambda _j: stored)))
                variants: list[tuple[str, Callable[[], Awaitable[list[float]]]]] = [
                    (name, partial(_wave, make, args.concurrency)) for name, make in makers
                ]
                shift = i % len(variants)
                for name, fn in variants[shift:] + variants[:shift]:
                    got = await fn()
                    if i >= args.warmup:
                        samples[name].extend(got)
        finally:
            await session.close()
            await plain.aclose()
            if cached_ai is not None:
                await cached_ai.aclose()
                await redis_client.aclose()
        out: dict[str, Any] = {k: summary(v) for k, v in samples.items()}
        raw = out["raw"]["median_ms"]
        for name in samples:
            out[name]["minus_raw_ms"] = round(out[name]["median_ms"] - raw, 3)
            out[name]["ratio_to_raw"] = round(out[name]["median_ms"] / raw, 3)
        out["rounds"] = args.rounds
        out["concurrency"] = args.concurrency
        out["roles"] = dict(ROLES)
        return out
    finally:
        emulator.stop()
        if server is not None:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--latency-scale", type=float, default=0.0)
    parser.add_argument("--redis", action="store_true")
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    print(orjson.dumps(asyncio.run(run(args)), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
