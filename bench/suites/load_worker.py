"""One worker process of the load suite's multi-process burst (``python -m bench.suites.load_worker``).

``python -m bench.suites.load_worker WORKLOAD N PART PARTS [LEASE_S]``: builds an
``AIManager`` from ``Settings.from_env()`` (``REDIS_URL`` and the provider variables name
the services, default settings otherwise; ``LEASE_S`` overrides the cache's cross-process
single-flight lease, ``CacheConfig.lease_s``: seconds, or ``off``), prints ``ready``, waits for a line on stdin, then fires its share of the
cold ``N``-burst at once (calls ``PART``, ``PART + PARTS``, ... of the workload cycled
to ``N``) and prints one JSON line: ``{"calls", "errors", "hits", "wall_s", "leases", "lease_waits"}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import replace

from bench.suites.load_engine import cycle
from fixtures.workloads import DATA_DIR, load
from samplemind_core import Settings
from samplemind_core.manager import AIManager


async def _main(workload: str, n: int, part: int, parts: int, lease: str) -> dict[str, float]:
    items = cycle(load(DATA_DIR / f"{workload}.jsonl"), n)[part::parts]
    settings = Settings.from_env()
    if lease != "default":
        lease_s = None if lease == "off" else float(lease)
        settings = replace(settings, cache=replace(settings.cache, lease_s=lease_s))
    async with AIManager(settings) as manager:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(manager.complete(it.request, task=it.task, priority=it.priority) for it in items),
            return_exceptions=True,
        )
        wall = time.perf_counter() - t0
        stats = manager.cache.stats().as_dict() if manager.cache is not None else {}
    errors = sum(1 for r in results if isinstance(r, BaseException))
    hits = sum(1 for r in results if not isinstance(r, BaseException) and r.cached)
    return {
        "calls": len(items),
        "errors": errors,
        "hits": hits,
        "wall_s": wall,
        "leases": float(stats.get("leases", 0)),
        "lease_waits": float(stats.get("lease_waits", 0)),
    }


def main(argv: list[str]) -> int:
    if len(argv) not in (4, 5):
        print(
            "usage: python -m bench.suites.load_worker WORKLOAD N PART PARTS [LEASE_S]",
            file=sys.stderr,
        )
        return 2
    workload, n, part, parts = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    lease = argv[4] if len(argv) == 5 else "default"
    print(json.dumps(asyncio.run(_main(workload, n, part, parts, lease))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
