"""One process of the cross-process stream single-flight cases (a test helper and a study).

Run as ``python -m tests._stream_worker --redis URL --emulator URL --n 500 --start-at T``:
builds an :class:`AIManager` on a real redis-server and the emulator, waits until the
wall-clock time ``T`` (so that several processes start together), opens ``n``
identical streams at once and prints one JSON line: the roles of the streams
(``leader``, ``follower``, ``relay``, ``cache``), whether every chunk list is
identical, the chunk list, and each stream's time to first chunk measured from ``T``.
``--no-relay`` turns the cross-process path off (``CacheConfig.lease_s=None``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence

import orjson

from samplemind_core import AIManager, CacheConfig, ChatRequest, Secret, Settings


async def run(args: argparse.Namespace) -> dict[str, object]:
    settings = Settings(
        redis_url=args.redis,
        cache=CacheConfig(lease_s=None if args.no_relay else 10.0, namespace=args.namespace),
    )
    for name in ("ollama", "openai", "anthropic", "gemini"):
        base = f"{args.emulator}/v1" if name == "openai" else args.emulator
        key = None if name == "ollama" else Secret("sk-emulator-0000000000")
        settings = settings.with_provider(name, base_url=base, api_key=key)
    request = ChatRequest(
        messages=[{"role": "user", "content": args.content}], provider=args.provider
    )
    async with AIManager(settings) as ai:
        # Warm-up (imports, connections to Redis and to the emulator): one other stream.
        warm = ChatRequest(
            messages=[{"role": "user", "content": f"warm-up {os.getpid()}"}],
            provider=args.provider,
        )
        async with ai.stream(warm) as stream:
            async for _ in stream:
                pass
        delay = args.start_at - time.time()
        late_ms = max(0.0, -delay) * 1000.0  # ready only after the common start
        if delay > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter() - max(0.0, time.time() - args.start_at)

        async def one() -> tuple[list[str], str, float]:
            async with ai.stream(request) as stream:
                chunks: list[str] = []
                ttft = 0.0
                async for chunk in stream:
                    if not chunks:
                        ttft = (time.perf_counter() - t0) * 1000.0
                    chunks.append(chunk.text)
                return chunks, stream.role, ttft

        results = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(args.n))), 120)
    first = results[0][0]
    return {
        "late_ms": round(late_ms, 1),
        "roles": dict(Counter(role for _, role, _ in results)),
        "identical": all(chunks == first for chunks, _, _ in results),
        "chunks": first,
        "ttft_ms": {role: [t for _, r, t in results if r == role] for _, role, _ in results},
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--emulator", required=True)
    parser.add_argument("--provider", default="openai")
    parser.add_argument("--content", default="describe this kick")
    parser.add_argument("--namespace", default="streams")
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--start-at", type=float, default=0.0)
    parser.add_argument("--no-relay", action="store_true")
    args = parser.parse_args(argv)
    out = asyncio.run(run(args))
    sys.stdout.write(orjson.dumps(out).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
