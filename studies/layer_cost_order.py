"""What the start order of the layer-cost test's ``together`` schedule does to its figures.

Issue 20 section 2, the layer's cost per chunk (``bench/suites/test_stream.py::
test_stream_layer_cost``). Until 2026-12-07 ``together`` started the raw wave's 100 reads
before the layer's 100 (``asyncio.gather(raw_wave(), layer_wave())``: every raw task was
created, so started, first); now pair ``i``'s two reads start next to each other, which side
first alternating by ``i``. This study runs both orders side by side in one process, one
emulator (keyed latency: a pair's two reads get the same TTFT and token gaps) and one
redis-server, the orders alternating per round (``together`` first in even rounds; after
``--warmup`` rounds that open the connections and are not recorded), each
round with fresh requests (every layer read a cache miss), through the layer's default
settings with a real redis-server cache, as the suite does::

    nice python studies/layer_cost_order.py --rounds 6 --scale 1.0 --transport aiohttp
    nice python studies/layer_cost_order.py --rounds 6 --scale 0.05 --transport httpx

Prints one JSON object: per schedule the issue's figures (ratio of TTFT p50s, difference of
ITL p99s) and the paired ones (:func:`bench.harness.streams.paired_cost`) over all its rounds,
and the raw side's own TTFT p50 against the model's (how much the raw read itself queued),
and the per-gap differences split by gap index (``added_itl_by_gap_index``: whether the
layer's late or early gaps are the first ones, after a late first token, or any).
``--aa`` makes the second read of each pair another raw read: the figures' floor (what two
identical reads of the same draws differ by under the same schedule and load)::

    nice python studies/layer_cost_order.py --rounds 4 --scale 1.0 --schedules together,alternating --aa

``--no-cache``: the layer without a cache (how much of its cost is the cache's miss path).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable
from typing import Any

import aiohttp
import numpy as np
from redis.asyncio import Redis

from bench.harness.streams import paired_cost, summarize
from bench.suites.stream_engine import (
    SCHEDULES,
    StreamRead,
    paired_rounds,
    raw_openai_stream,
    stream_request,
)
from fixtures.redis import RedisServer
from fixtures.servers import start_emulator
from samplemind_core import CacheConfig, ChatRequest, HttpConfig, Settings
from samplemind_core.cache import ResponseCache
from samplemind_core.manager import AIManager


def _by_gap(raw: list[StreamRead], layer: list[StreamRead]) -> dict[str, dict[str, float]]:
    """Per gap index (0 = first to second token, ..., "5+"): p1/p99 of the pairs' per-gap
    differences (ms) and the share more than 5 ms off (pairs with as many gaps each)."""
    diffs: dict[str, list[float]] = {}
    for a, b in zip(raw, layer, strict=True):
        ga, gb = a.timeline.itl_s, b.timeline.itl_s
        if len(ga) != len(gb):
            continue
        for k, (x, y) in enumerate(zip(ga, gb, strict=True)):
            diffs.setdefault(str(k) if k < 5 else "5+", []).append((y - x) * 1e3)
    return {
        k: {
            "p1_ms": float(np.percentile(v, 1)),
            "p99_ms": float(np.percentile(v, 99)),
            "share_over_5ms": float(np.mean(np.abs(v) > 5.0)),
        }
        for k, v in diffs.items()
    }


def _figures(raw: list[StreamRead], layer: list[StreamRead]) -> dict[str, Any]:
    rs = summarize([x.timeline for x in raw])
    ls = summarize([x.timeline for x in layer])
    return {
        "streams": len(raw),
        "ttft_ratio_p50": ls.ttft_ms["p50"] / rs.ttft_ms["p50"],
        "added_itl_p99_ms": ls.itl_ms["p99"] - rs.itl_ms["p99"],
        "raw_ttft_p50_ms": rs.ttft_ms["p50"],
        "layer_ttft_p50_ms": ls.ttft_ms["p50"],
        **paired_cost([x.timeline for x in raw], [x.timeline for x in layer]).as_dict(),
        "added_itl_by_gap_index": _by_gap(raw, layer),
    }


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    schedules = [s for s in args.schedules.split(",") if s]
    for s in schedules:
        if s not in SCHEDULES:
            raise SystemExit(f"unknown schedule {s!r}; expected some of {', '.join(SCHEDULES)}")
    emulator = start_emulator(latency_scale=args.scale, keyed_latency=True)
    server = RedisServer().start()
    client = Redis.from_url(server.url)
    cache = ResponseCache(client, config=CacheConfig(namespace="order-" + uuid.uuid4().hex[:8]))
    layer_cache = None if args.no_cache else cache
    reads: dict[str, tuple[list[StreamRead], list[StreamRead]]] = {s: ([], []) for s in schedules}
    try:
        settings = emulator.settings(Settings(http=HttpConfig(transport=args.transport)))
        async with (
            AIManager(settings, cache=layer_cache) as ai,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
        ):
            provider = ai.provider("openai")

            def raw_again(request: ChatRequest) -> Awaitable[StreamRead]:
                return raw_openai_stream(session, provider, request)

            second = raw_again if args.aa else None
            for r in range(-args.warmup, args.rounds):  # r < 0: warm-up, not recorded
                order = schedules if r % 2 == 0 else schedules[::-1]
                for schedule in order:
                    tag = uuid.uuid4().hex[:8]
                    batch = [stream_request("openai", f"{tag}-{i}") for i in range(args.streams)]

                    def requests(_: int, batch: list[ChatRequest] = batch) -> list[ChatRequest]:
                        return batch

                    raw, layer = await paired_rounds(
                        ai, session, provider, requests, rounds=1, schedule=schedule, second=second
                    )
                    if r >= 0:
                        reads[schedule][0].extend(raw)
                        reads[schedule][1].extend(layer)
    finally:
        await cache.aclose()
        await client.aclose()
        server.stop()
        emulator.stop()
    return {
        "scale": args.scale,
        "transport": args.transport,
        "rounds": args.rounds,
        "aa": args.aa,
        "cache": not args.no_cache,
        "model_ttft_p50_ms": 450.0 * args.scale,
        "schedules": {s: _figures(*reads[s]) for s in schedules},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--warmup", type=int, default=1, help="rounds run first, not recorded")
    p.add_argument("--streams", type=int, default=100, help="pairs per round")
    p.add_argument("--scale", type=float, default=1.0, help="the emulator's latency_scale")
    p.add_argument("--transport", choices=("aiohttp", "httpx"), default="aiohttp")
    p.add_argument("--schedules", default="together,together_waves")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="the layer without a cache (default: a ResponseCache on the redis-server)",
    )
    p.add_argument(
        "--aa",
        action="store_true",
        help="A/A: the second read of each pair is another raw read (the layer is not used): "
        "the figures' floor under the same schedule and load",
    )
    args = p.parse_args(argv)
    if args.rounds < 1 or args.streams < 1 or args.warmup < 0:
        p.error("--rounds and --streams must be >= 1, --warmup >= 0")
    print(json.dumps(asyncio.run(_run(args)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
