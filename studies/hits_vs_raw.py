"""Cache hits vs raw ``redis.asyncio`` GETs at the same concurrency, side by side in one run.

``python -m studies.hits_vs_raw [--live] [--rounds 20] [--repeats 3] [--concurrency 100]``

Stores the distinct requests of the load suite's workload, then runs
``--rounds`` interleaved rounds (the order alternates every round) of:

* ``manager``: ``gather`` of ``--concurrency`` ``AIManager.complete()`` calls, every one a hit
  (the manager is built from ``Settings(redis_url=...)``: default settings; no provider is
  configured, so a lookup that misses fails its call and lowers ``hit_fraction``);
* ``cache``: the same number of ``ResponseCache.get()`` calls on that manager's cache;
* ``raw``: the same number of ``GET``\\ s of the same keys on a second client with its default
  pool (``redis.asyncio.Redis.from_url(url)``; live) or a second ``FakeAsyncRedis`` on the
  same server (mocked).

Prints one JSON line per repeat: the medians of each side's calls/s and the ratios
``manager_vs_raw`` and ``cache_vs_raw``. ``--live`` starts a private ``redis-server``
(``fixtures.redis.RedisServer``) and stops it at the end. ``--profile FILE`` writes a
cProfile of the manager side's rounds of the last repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import statistics
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import fakeredis

from bench.suites import load_engine
from fixtures.workloads import DATA_DIR, WorkloadItem, load
from samplemind_core import CacheConfig, ChatResponse, SampleMindError, Settings
from samplemind_core.cache import ResponseCache
from samplemind_core.manager import AIManager

__all__ = ["measure"]

WORKLOAD = "samplemind_1000_r70"


def _distinct(items: Sequence[WorkloadItem]) -> list[WorkloadItem]:
    truth = load_engine.truth_hits(items)
    return [it for it, seen in zip(items, truth, strict=True) if not seen]


async def measure(
    manager: AIManager,
    raw_get: Callable[[str], Awaitable[Any]],
    *,
    concurrency: int,
    rounds: int,
    profile: cProfile.Profile | None = None,
) -> dict[str, Any]:
    """Interleaved rounds of the three sides; the medians of their calls/s and the ratios."""
    cache = manager.cache
    assert cache is not None
    items = _distinct(load(DATA_DIR / f"{WORKLOAD}.jsonl"))[:concurrency]
    picks = [items[i % len(items)] for i in range(concurrency)]
    for it in items:
        await cache.set(it.request, ChatResponse(text="x" * 200, provider="openai", model="m"))
    keys = [cache.key_for(it.request) for it in picks]

    async def hit(i: int) -> Any:
        it = picks[i]
        try:
            reply = await manager.complete(it.request, task=it.task, priority=it.priority)
        except SampleMindError:  # a lookup that missed (e.g. timed out) reached no provider
            return None
        return reply if reply.cached else None

    calls: dict[str, Callable[[int], Awaitable[Any]]] = {
        "manager": hit,
        "cache": lambda i: cache.get(picks[i].request),
        "raw": lambda i: raw_get(keys[i]),
    }
    found: dict[str, int] = dict.fromkeys(calls, 0)

    def side(name: str) -> Callable[[], Awaitable[float]]:
        async def one_round() -> float:
            if profile is not None and name == "manager":
                profile.enable()
            rate, values = await load_engine.gather_rate(concurrency, calls[name])
            if profile is not None and name == "manager":
                profile.disable()
            found[name] += sum(v is not None for v in values)
            return rate

        return one_round

    sides = {name: side(name) for name in calls}
    for one_round in sides.values():  # warm-up: connections opened, code paths hot
        await one_round()
    found.update(dict.fromkeys(calls, 0))  # count the measured rounds only
    rates = await load_engine.interleaved(sides, rounds)
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {
        "concurrency": concurrency,
        "rounds": rounds,
        "manager_per_s": round(med["manager"]),
        "cache_per_s": round(med["cache"]),
        "raw_per_s": round(med["raw"]),
        "manager_vs_raw": round(med["manager"] / med["raw"], 3),
        "cache_vs_raw": round(med["cache"] / med["raw"], 3),
        "hit_fraction": found["manager"] / (concurrency * rounds),
        "cache_hit_fraction": found["cache"] / (concurrency * rounds),
        "raw_found_fraction": found["raw"] / (concurrency * rounds),
        "stats": {k: v for k, v in cache.stats().as_dict().items() if v},
    }


async def _run(args: argparse.Namespace) -> None:
    server = None
    if args.live:
        from fixtures.redis import RedisServer

        server = RedisServer().start()
    try:
        for rep in range(args.repeats):
            prof = cProfile.Profile() if args.profile and rep == args.repeats - 1 else None
            if server is not None:
                import redis.asyncio

                cfg = CacheConfig(**json.loads(args.cache_config or "{}"))
                settings = Settings(redis_url=server.url, cache=cfg)
                raw = redis.asyncio.Redis.from_url(server.url)
                manager = AIManager(settings)
            else:
                fake = fakeredis.FakeServer()
                raw = fakeredis.FakeAsyncRedis(server=fake)
                cfg = CacheConfig(**json.loads(args.cache_config or "{}"))
                cache = ResponseCache(fakeredis.FakeAsyncRedis(server=fake), config=cfg)
                manager = AIManager(Settings(), cache=cache)
            try:
                out = await measure(
                    manager,
                    raw.get,
                    concurrency=args.concurrency,
                    rounds=args.rounds,
                    profile=prof,
                )
            finally:
                await manager.aclose()
                await raw.aclose()
            out["mode"] = "live" if args.live else "mocked"
            out["repeat"] = rep
            print(json.dumps(out), flush=True)
            if prof is not None:
                prof.dump_stats(args.profile)
    finally:
        if server is not None:
            server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m studies.hits_vs_raw", description=__doc__)
    parser.add_argument("--live", action="store_true", help="a private redis-server")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--cache-config", help="JSON of CacheConfig fields to change")
    parser.add_argument("--profile", help="write a cProfile of the manager side here")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.repeats < 1 or args.concurrency < 1:
        parser.error("--rounds, --repeats and --concurrency must be >= 1")
    try:
        CacheConfig(**json.loads(args.cache_config or "{}"))
    except (ValueError, TypeError, SampleMindError) as exc:
        parser.error(f"--cache-config: {exc}")
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
