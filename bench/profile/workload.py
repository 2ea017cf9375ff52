"""The workload that ``samplemind-bench profile`` runs under memray and py-spy.

``python -m bench.profile.workload --requests N --checkpoints-out FILE`` replays
``N`` SampleMind-like requests through the real :class:`~samplemind_core.AIManager`
over fakeredis and the in-process mocked providers
(:func:`fixtures.mock.world_transport`, ``latency_scale=0``: no sleeping, so the
profile shows our code, not simulated network waits).

The request stream is deterministic (seeded): a pool of distinct prompts with
Zipf-like popularity (about 70 % repeats), tasks and priorities mixed. The cache
is cleared every ``--clear-every`` requests so the miss path (router, adapters,
HTTP client) keeps running all along and the stored values stay bounded: memory
that still grows over the replay is the layer's, not the cache's contents.

At every checkpoint the script records the resident set size, the peak RSS so
far and CPython's allocated block count to ``--checkpoints-out`` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
from pathlib import Path
from typing import Any, Final

__all__ = ["main", "make_requests"]

TASKS: Final = ("genre", "factual", "creative", "summarize", "chat", "tools", "audio")
PRIORITIES: Final = ("speed", "quality", "cost")
_PAGE: Final = 4096


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # not Linux: fall back to the peak
        return _peak_rss_bytes()


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)


def make_requests(n: int, *, seed: int = 1, distinct: int = 400) -> list[tuple[Any, str, str]]:
    """``n`` (ChatRequest, task, priority) triples, deterministic for a seed."""
    from samplemind_core import ChatRequest

    rng = random.Random(seed)
    weights = [1.0 / (k + 1) for k in range(distinct)]  # Zipf(1) popularity
    pool = []
    for k in range(distinct):
        task = TASKS[k % len(TASKS)]
        text = (
            f"Sample {k}: tag genre, mood and BPM of loop_{k:04d}.wav "
            f"(spectral centroid {1000 + 37 * k} Hz, onset rate {1 + k % 9}/s)"
        )
        pool.append(
            (ChatRequest(messages=[{"role": "user", "content": text}], max_tokens=120), task)
        )
    out = []
    for _ in range(n):
        req, task = rng.choices(pool, weights)[0]
        out.append((req, task, PRIORITIES[rng.randrange(3)]))
    return out


async def replay(n: int, checkpoint_every: int, clear_every: int) -> list[dict[str, int]]:
    import fakeredis

    from fixtures.mock import world_transport
    from fixtures.world import WorldModel
    from samplemind_core import AIManager, HttpClient, ResponseCache, Secret, Settings

    settings = Settings()
    for name in ("openai", "anthropic", "gemini"):
        settings = settings.with_provider(name, api_key=Secret(f"profile-{name}-key"))
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    http = HttpClient(
        settings.http, transport=world_transport(WorldModel(seed=1, latency_scale=0.0))
    )
    cache = ResponseCache(redis, config=settings.cache)
    work = make_requests(n)
    async with AIManager(settings, cache=cache, http=http) as ai:
        checkpoints = await _drive(ai, cache, work, checkpoint_every, clear_every)
    await http.aclose()
    await redis.aclose()
    return checkpoints


async def _drive(
    ai: Any, cache: Any, work: list[tuple[Any, str, str]], checkpoint_every: int, clear_every: int
) -> list[dict[str, int]]:
    """The replay loop: the region the CPU profile reports on (``py-spy`` region ``_drive``)."""
    n = len(work)
    checkpoints: list[dict[str, int]] = []
    for i, (req, task, prio) in enumerate(work, start=1):
        await ai.complete(req, task=task, priority=prio)
        if clear_every and i % clear_every == 0:
            await cache.clear()
        if i % checkpoint_every == 0 or i == n:
            checkpoints.append(
                {
                    "requests": i,
                    "rss_bytes": _rss_bytes(),
                    "peak_rss_bytes": _peak_rss_bytes(),
                    "allocated_blocks": sys.getallocatedblocks(),
                }
            )
    return checkpoints


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile.workload")
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--clear-every", type=int, default=2000)
    p.add_argument("--checkpoints-out", type=Path, default=None)
    args = p.parse_args(argv)
    cps = asyncio.run(replay(args.requests, max(1, args.checkpoint_every), args.clear_every))
    if args.checkpoints_out is not None:
        args.checkpoints_out.write_text(json.dumps(cps, indent=1) + "\n", encoding="utf-8")
    print(f"replayed {args.requests} requests", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
