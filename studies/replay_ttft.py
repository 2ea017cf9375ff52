"""A cached replay's time to first chunk against a non-streamed cache hit, side by side.

Stores ``--requests`` distinct answers the way a completed stream stores them (the
envelope's chunk boundaries: ``--chunks`` chunks each, ``ResponseCache._set_with_extra``),
then, in one event loop, alternates rounds of

- ``replay``: N concurrent ``AIManager.stream()`` reads of stored answers, each timed from
  the call to its first chunk (then drained), and
- ``hit``: N concurrent ``AIManager.complete()`` of the same requests, each timed to its
  return,

the order of the two swapped every round, for each concurrency N of ``--concurrency``.
Prints per N the medians and p90s and the ratio replay ÷ hit of the medians (the stream
suite's ``replay_vs_complete_hit``), then the CPU time (``time.process_time``) of one
replay to its first chunk, of one whole replay, and of one hit, from ``--cpu-loops``
sequential calls each, interleaved in blocks of 100. ``--backend``: ``fakeredis`` (the
mocked world's store) or ``redis`` (a redis-server started on a free port: the live
world's). Runs against whatever ``samplemind_core`` is imported (``PYTHONPATH``), so two
worktrees can be compared in alternating runs::

    PYTHONPATH=$PWD nice python studies/replay_ttft.py --backend redis --rounds 40
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[1]))  # PYTHONPATH first: the code compared

import fakeredis
from redis.asyncio import Redis

from fixtures.redis import RedisServer
from samplemind_core import AIManager, CacheConfig, ChatRequest, ChatResponse, ResponseCache
from samplemind_core._models import Usage


def request(i: int) -> ChatRequest:
    return ChatRequest(
        messages=[
            {"role": "system", "content": "You describe music samples for producers."},
            {"role": "user", "content": f"Describe 'stream_{i}.wav' in two sentences."},
        ],
        provider="ollama",
        max_tokens=64,
        temperature=0.0,
    )


def chunks_of(i: int, n: int) -> list[str]:
    return [("A" if k == 0 else " word") + str(i % 7) for k in range(n)]


async def store(cache: ResponseCache, reqs: list[ChatRequest], n_chunks: int) -> None:
    for i, req in enumerate(reqs):
        chunks = chunks_of(i, n_chunks)
        text = "".join(chunks)
        resp = ChatResponse(
            text=text,
            provider="ollama",
            model="llama3.2",
            finish_reason="stop",
            usage=Usage(20, n_chunks),
            latency_ms=300.0,
        )
        extra = {"lengths": [len(c) for c in chunks], "gaps_ms": [12.5] * n_chunks}
        assert await cache._set_with_extra(req, resp, extra)


DRAIN = True
"""Read each replay to its end (as the stream suite does); ``--first-only``: leave after
the first chunk (what a replay's own draining adds to the others' TTFT)."""


LIVENESS: tuple[str, ...] = ()
"""Which side runs under ``asyncio.timeout`` (``--liveness``): the stream suite's
``timed_stream`` bounds every stream so; its non-streamed hits have no such bound."""


async def replay_ttft(ai: AIManager, req: ChatRequest) -> float:
    async with asyncio.timeout(120 if "replay" in LIVENESS else None):
        start = time.perf_counter()
        first = None
        async with ai.stream(req) as stream:
            async for _ in stream:
                if first is None:
                    first = time.perf_counter() - start
                    if not DRAIN:
                        break
    assert first is not None and (not DRAIN or stream.response.cached)
    return first


async def hit_latency(ai: AIManager, req: ChatRequest) -> float:
    async with asyncio.timeout(120 if "hit" in LIVENESS else None):
        start = time.perf_counter()
        resp = await ai.complete(req)
    assert resp.cached
    return time.perf_counter() - start


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def side_by_side(
    ai: AIManager, reqs: list[ChatRequest], n: int, rounds: int
) -> dict[str, Any]:
    replays: list[float] = []
    hits: list[float] = []
    ratios: list[float] = []  # per round: median replay / median hit
    for r in range(rounds):
        batch = [reqs[(r * n + i) % len(reqs)] for i in range(n)]
        order = ("replay", "hit") if r % 2 == 0 else ("hit", "replay")
        got: dict[str, list[float]] = {}
        for what in order:
            fn = replay_ttft if what == "replay" else hit_latency
            got[what] = list(await asyncio.gather(*(fn(ai, q) for q in batch)))
        replays += got["replay"]
        hits += got["hit"]
        ratios.append(statistics.median(got["replay"]) / statistics.median(got["hit"]))
    return {
        "concurrency": n,
        "samples": len(replays),
        "replay_ttft_ms": {"p50": statistics.median(replays) * 1e3, "p90": pct(replays, 0.9) * 1e3},
        "hit_ms": {"p50": statistics.median(hits) * 1e3, "p90": pct(hits, 0.9) * 1e3},
        "replay_vs_hit_p50": statistics.median(replays) / statistics.median(hits),
        "replay_vs_hit_p90": pct(replays, 0.9) / pct(hits, 0.9),
        "round_ratio_median": statistics.median(ratios),
    }


async def cpu(ai: AIManager, reqs: list[ChatRequest], loops: int) -> dict[str, float]:
    """CPU time per call, from blocks of 200 sequential calls of each kind, interleaved:
    ``first`` (open a replay, take its first chunk, leave), ``whole`` (read it to its end),
    ``hit`` (``complete()``). The minimum over blocks (the least disturbed by the machine)
    and the median."""
    clock = time.process_time

    async def first(req: ChatRequest) -> None:
        async with ai.stream(req) as stream:
            await stream.__anext__()

    async def whole(req: ChatRequest) -> None:
        async with ai.stream(req) as stream:
            async for _ in stream:
                pass

    async def hit(req: ChatRequest) -> None:
        await ai.complete(req)

    kinds = {"first": first, "whole": whole, "hit": hit}
    blocks: dict[str, list[float]] = {k: [] for k in kinds}
    size = 200
    for b in range(max(1, loops // size)):
        for name, fn in kinds.items():
            t0 = clock()
            for i in range(size):
                await fn(reqs[(b * size + i) % len(reqs)])
            blocks[name].append((clock() - t0) / size * 1e6)
    low = {k: min(v) for k, v in blocks.items()}
    mid = {k: statistics.median(v) for k, v in blocks.items()}
    return {
        "blocks": len(blocks["hit"]),
        "replay_first_chunk_us_min": low["first"],
        "replay_whole_us_min": low["whole"],
        "hit_us_min": low["hit"],
        "first_chunk_vs_hit_min": low["first"] / low["hit"],
        "whole_vs_hit_min": low["whole"] / low["hit"],
        "first_chunk_vs_hit_median": mid["first"] / mid["hit"],
        "whole_vs_hit_median": mid["whole"] / mid["hit"],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = None
    if args.backend == "redis":
        server = RedisServer().start()
        client: Any = Redis.from_url(server.url)
    else:
        client = fakeredis.FakeAsyncRedis()
    try:
        cache = ResponseCache(client, config=CacheConfig(namespace="replay-ttft"))
        reqs = [request(i) for i in range(args.requests)]
        await store(cache, reqs, args.chunks)
        async with AIManager(cache=cache) as ai:
            await side_by_side(ai, reqs, 10, 2)  # warm-up
            gc.collect()
            out: dict[str, Any] = {"backend": args.backend, "chunks": args.chunks}
            out["waves"] = [await side_by_side(ai, reqs, n, args.rounds) for n in args.concurrency]
            out["cpu"] = await cpu(ai, reqs, args.cpu_loops)
            st = cache.stats()
            out["stats"] = {"hits": st.hits, "misses": st.misses, "coalesced": st.coalesced}
            return out
    finally:
        await client.aclose()
        if server is not None:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=("fakeredis", "redis"), default="fakeredis")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--chunks", type=int, default=44)
    parser.add_argument("--cpu-loops", type=int, default=3000)
    parser.add_argument("--first-only", action="store_true")
    parser.add_argument(
        "--liveness",
        choices=("none", "replay", "both"),
        default="none",
        help="run replays (as the stream suite does), or both sides, under asyncio.timeout",
    )
    args = parser.parse_args()
    global DRAIN, LIVENESS
    DRAIN = not args.first_only
    LIVENESS = {"none": (), "replay": ("replay",), "both": ("replay", "hit")}[args.liveness]
    print(json.dumps(asyncio.run(run(args)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
