"""Where the stream path spends its time per chunk: a cProfile of many upstream and replayed chunks.

Starts the emulator (``latency_scale`` 0) and a redis-server, streams ``--streams``
distinct requests through ``AIManager.stream`` (upstream: OpenAI SSE over the aiohttp
transport, a ``ResponseCache`` on the redis-server with the relay on), then replays
each of them from the cache, each phase under cProfile. Prints, per phase, the chunks,
the wall and CPU time per chunk, and the profile's own time (``tottime``) per chunk
grouped by area (relay on, and off: ``StreamConfig(relay=False)``): ``layer`` (``samplemind_core/_streaming.py``, ``manager.py``,
``cache/``), ``wire`` (``providers/``, ``http.py``), ``aiohttp``/``httpx``, ``redis``,
``asyncio``, ``kernel`` (socket calls and ``epoll``), ``other``; then the top
functions of each phase::

    nice python studies/stream_profile.py --streams 200
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

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
    StreamConfig,
)

AREAS = (
    ("layer", ("samplemind_core/_streaming", "samplemind_core/manager", "samplemind_core/cache")),
    ("wire", ("samplemind_core/providers", "samplemind_core/http")),
    ("aiohttp/httpx", ("aiohttp", "httpx", "httpcore", "multidict", "yarl")),
    ("redis", ("redis/",)),
    ("asyncio", ("asyncio",)),
)


def area(filename: str, name: str) -> str:
    if filename == "~" and ("socket" in name or "poll" in name or "select" in name):
        return "kernel"
    for label, needles in AREAS:
        if any(n in filename for n in needles):
            return label
    return "other"


def grouped(profile: cProfile.Profile, chunks: int) -> dict[str, float]:
    stats = pstats.Stats(profile)
    out: dict[str, float] = defaultdict(float)
    for (filename, _, name), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        out[area(filename, name)] += tottime
    return {k: round(v / chunks * 1e6, 2) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}


async def phase(
    ai: AIManager, requests: list[ChatRequest]
) -> tuple[cProfile.Profile, dict[str, Any]]:
    profile = cProfile.Profile()
    chunks = 0
    w0, c0 = time.perf_counter(), time.process_time()
    profile.enable()
    for request in requests:
        async with ai.stream(request) as stream:
            async for _ in stream:
                chunks += 1
    profile.disable()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return profile, {
        "chunks": chunks,
        "wall_us_per_chunk": round(wall / chunks * 1e6, 2),
        "cpu_us_per_chunk": round(cpu / chunks * 1e6, 2),
        "tottime_us_per_chunk_by_area": grouped(profile, chunks),
    }


async def run(args: argparse.Namespace) -> None:
    emulator = start_emulator(latency_scale=0.0)
    server = RedisServer().start()
    from redis.asyncio import Redis

    client = Redis.from_url(server.url)
    try:
        settings = emulator.settings(Settings(http=HttpConfig(transport="aiohttp")))
        cache = ResponseCache(client, config=CacheConfig(namespace="profile"))
        plain = AIManager(
            replace(settings, stream=StreamConfig(relay=False)),
            cache=ResponseCache(client, config=CacheConfig(namespace="profile-no-relay")),
        )
        async with AIManager(settings, cache=cache) as ai, plain:
            warm = [
                ChatRequest(messages=[{"role": "user", "content": f"warm {i}"}], provider="openai")
                for i in range(10)
            ]
            await phase(ai, warm)
            requests = [
                ChatRequest(
                    messages=[{"role": "user", "content": f"describe {i}"}], provider="openai"
                )
                for i in range(args.streams)
            ]
            await phase(plain, warm)
            for label, manager in (
                ("upstream (relay on)", ai),
                ("upstream (relay off)", plain),
                ("replay", ai),
            ):
                profile, summary = await phase(manager, requests)
                print(label, summary)
                pstats.Stats(profile).sort_stats("tottime").print_stats(args.top)
    finally:
        await client.aclose()
        emulator.stop()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--top", type=int, default=12)
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
