"""A stream start's wait on Redis before its request goes out, with the generations' copy
expired or fresh: this tree against another, side by side (issue 20 §2, decision 0920).

Each wave starts ``N`` streams at once (distinct prompts: a miss each) through
``AIManager.stream()`` with a ``ResponseCache`` on a real redis-server (default
``CacheConfig`` but a namespace of its own, the relay on). The provider's ``open_stream`` is
replaced by a probe that notes the moment it is called (the request would be built and sent
from there: the same code in both trees) and then waits until the wave's last start got
there; the streams then fail and are closed. Per wave: the delay from the wave's launch to
each start's ``open_stream`` (first, median, last), the process CPU up to the last one per
start, and the Redis packets sent (round trips: one per command or pipeline) up to it.

``--gens expired`` (before each wave the in-process copy of the generations is made older
than ``generation_ttl_s``, as after a second of quiet: each round of the goal cell) or
``fresh``; both by default. ``--base DIR`` as in ``studies/stream_ttft.py`` (a copy of
another tree's package renamed ``samplemind_base``): every variant runs in both trees, the
variants rotating per round::

    git archive main samplemind_core | tar -x -C /tmp/base && \\
        mv /tmp/base/samplemind_core /tmp/base/samplemind_base
    nice python studies/stream_start_gens.py --rounds 40 --concurrency 1,100 --base /tmp/base

Prints one JSON object: per variant (tree, gens, N) the medians over waves, and per (gens,
N) this tree's figures over the other's.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures.redis import RedisServer


class Sends:
    """Packets sent by every ``redis.asyncio`` connection of this process."""

    def __init__(self) -> None:
        from redis.asyncio.connection import AbstractConnection

        self.count = 0
        send = AbstractConnection.send_packed_command
        counter = self

        async def counted(conn: Any, *args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return await send(conn, *args, **kwargs)

        AbstractConnection.send_packed_command = counted  # type: ignore[method-assign,assignment]


class Tree:
    """One tree's package and a manager on the redis-server whose ``open_stream`` is probed."""

    def __init__(self, module: str, url: str) -> None:
        from redis.asyncio import Redis

        m = importlib.import_module(module)
        self.m = m
        self.client = Redis.from_url(url)
        settings = m.Settings().with_provider("openai", api_key=m.Secret("sk-test-000000000000"))
        config = m.CacheConfig(namespace="gens-" + uuid.uuid4().hex[:8])
        self.cache = m.ResponseCache(self.client, config=config)
        self.ai = m.AIManager(settings, cache=self.cache)
        self.opened: list[float] = []
        self.expect = 0
        self.all_open = asyncio.Event()
        self.release = asyncio.Event()
        tree = self

        async def probe(http: Any, request: Any, model: str | None = None) -> Any:
            tree.opened.append(time.perf_counter())
            if len(tree.opened) >= tree.expect:
                tree.all_open.set()
            await tree.release.wait()
            raise RuntimeError("probe: no upstream in this study")

        self.ai.provider("openai").open_stream = probe

    def request(self, text: str) -> Any:
        return self.m.ChatRequest(messages=[{"role": "user", "content": text}], provider="openai")

    async def start(self, text: str) -> None:
        try:
            async with self.ai.stream(self.request(text)) as stream:
                async for _ in stream:
                    pass
        except Exception:
            pass  # (the probe's failure, as every start of the wave)

    async def idle(self) -> None:
        for _ in range(2000):  # 20 s at most
            if not self.ai._stream_tasks and not getattr(self.cache, "_releases", None):
                return
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        await self.ai.aclose()
        await self.client.aclose()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = RedisServer().start()
    trees = {"": Tree("samplemind_core", server.url)}
    if args.base:
        sys.path.insert(0, args.base)
        trees["base"] = Tree("samplemind_base", server.url)
    sends = Sends()
    gens_modes = args.gens.split(",")
    sizes = [int(n) for n in args.concurrency.split(",")]
    variants = [(t, g, n) for n in sizes for g in gens_modes for t in trees]
    waves: dict[tuple[str, str, int], list[dict[str, float]]] = {v: [] for v in variants}
    try:
        for i in range(args.warmup + args.rounds):
            shift = i % len(variants)
            for tree_name, gens, n in variants[shift:] + variants[:shift]:
                tree = trees[tree_name]
                await tree.idle()
                await asyncio.sleep(args.settle)
                cache = tree.cache
                cache._gens_expiry = 0.0 if gens == "expired" else cache._clock() + 3600.0
                tree.opened.clear()
                tree.expect = n
                tree.all_open.clear()
                tree.release.clear()
                s0 = sends.count
                c0 = time.process_time()
                t0 = time.perf_counter()
                starts = [
                    asyncio.ensure_future(tree.start(f"wave {i} {j} {uuid.uuid4().hex}"))
                    for j in range(n)
                ]
                await asyncio.wait_for(tree.all_open.wait(), 30)
                cpu = time.process_time() - c0
                trips = sends.count - s0
                tree.release.set()
                await asyncio.gather(*starts)
                if i >= args.warmup:
                    delays = sorted((t - t0) * 1000.0 for t in tree.opened)
                    waves[(tree_name, gens, n)].append(
                        {
                            "first_ms": delays[0],
                            "median_ms": statistics.median(delays),
                            "last_ms": delays[-1],
                            "cpu_us_per_start": cpu / n * 1e6,
                            "redis_trips_before_last_open": trips,
                        }
                    )
                gc.collect()  # (between waves, not in them)
        out: dict[str, Any] = {"rounds": args.rounds, "variants": {}}
        for v, rows in waves.items():
            name = f"{v[0] or 'this'}:{v[1]}:{v[2]}"
            out["variants"][name] = {
                k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]
            }
        if "base" in trees:
            ratios: dict[str, Any] = {}
            for _, gens, n in variants:
                this, base = waves[("", gens, n)], waves[("base", gens, n)]
                ratios[f"{gens}:{n}"] = {
                    k: round(
                        statistics.median(r[k] for r in this)
                        / max(1e-9, statistics.median(r[k] for r in base)),
                        3,
                    )
                    for k in ("median_ms", "last_ms", "cpu_us_per_start")
                }
                # paired by round (the two trees' waves of one round run back to back)
                ratios[f"{gens}:{n}"]["last_ms_diff_median"] = round(
                    statistics.median(
                        a["last_ms"] - b["last_ms"] for a, b in zip(this, base, strict=True)
                    ),
                    3,
                )
            out["this_over_base"] = ratios
        return out
    finally:
        for tree in trees.values():
            await tree.close()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--concurrency", default="1,100")
    parser.add_argument("--gens", default="expired,fresh")
    parser.add_argument("--settle", type=float, default=0.05)
    parser.add_argument("--base", default="")
    args = parser.parse_args()
    print(orjson.dumps(asyncio.run(run(args)), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
