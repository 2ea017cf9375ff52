"""Stream single-flight: upstream calls and time to first chunk, leader against followers.

Starts the emulator and a redis-server, then runs three cases and prints one JSON object:

- ``in_process``: ``--n-total`` (2,000) identical ``AIManager.stream`` calls at once in
  this process (a ``ResponseCache`` on the redis-server);
- ``processes_relay``: ``--procs`` (4) real processes x ``--n-per-proc`` (500) identical
  streams started at the same wall-clock moment (``fixtures/stream_worker.py``), with the
  cross-process relay (``CacheConfig.lease_s`` set);
- ``processes_no_relay``: the same with ``lease_s=None`` (each process on its own).

For each: the emulator's count of upstream calls (each process's warm-up stream excluded), whether every chunk list is identical,
and the time to first chunk (from the common start) of the leader and the median of
the followers (``follower_minus_leader_ms``); ``max_late_ms`` > 0 says a process was not
ready at the common start (its figures are then not comparable)::

    nice python studies/stream_single_flight.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fixtures.redis import RedisServer  # noqa: E402
from fixtures.servers import start_emulator  # noqa: E402
from fixtures.stream_worker import run, run_workers, worker_command  # noqa: E402


def processes(
    emulator: Any, server: Any, procs: int, n: int, relay: bool, namespace: str
) -> dict[str, Any]:
    before = emulator.stats()["calls"].get("openai", 0)
    start_at = time.time() + 10.0  # start-up and warm-up of every process, under load
    cmd = worker_command(
        server.url, emulator.url, n=n, namespace=namespace, start_at=start_at, relay=relay
    )
    outs = run_workers(cmd, procs)
    # Each process's warm-up stream (a request of its own) is one upstream call: not counted.
    return summarise(outs, emulator.stats()["calls"].get("openai", 0) - before - procs)


def summarise(outs: list[dict[str, Any]], calls: int) -> dict[str, Any]:
    leaders = [t for o in outs for t in o["ttft_ms"].get("leader", [])]
    followers = [
        t for o in outs for role, ts in o["ttft_ms"].items() if role != "leader" for t in ts
    ]
    roles: dict[str, int] = {}
    for o in outs:
        for role, k in o["roles"].items():
            roles[role] = roles.get(role, 0) + k
    leader = statistics.median(leaders) if leaders else float("nan")
    follower = statistics.median(followers)
    return {
        "upstream_calls": calls,
        "roles": roles,
        "identical_in_each_process": all(o["identical"] for o in outs),
        "identical_across_processes": all(o["chunks"] == outs[0]["chunks"] for o in outs),
        "chunks": len(outs[0]["chunks"]),
        "max_late_ms": max(o.get("late_ms", 0.0) for o in outs),
        "leader_ttft_ms": round(leader, 2),
        "follower_median_ttft_ms": round(follower, 2),
        "follower_minus_leader_ms": round(follower - leader, 2),
        "follower_p90_minus_leader_ms": round(
            sorted(followers)[int(0.9 * (len(followers) - 1))] - leader, 2
        ),
    }


def in_process(emulator: Any, server: Any, n: int, namespace: str) -> dict[str, Any]:
    before = emulator.stats()["calls"].get("openai", 0)
    args = argparse.Namespace(
        redis=server.url,
        emulator=emulator.url,
        provider="openai",
        content="describe this kick",
        namespace=namespace,
        n=n,
        start_at=time.time() + 0.5,
        no_relay=False,
    )
    out = asyncio.run(run(args))
    return summarise([out], emulator.stats()["calls"].get("openai", 0) - before - 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-total", type=int, default=2000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--n-per-proc", type=int, default=500)
    parser.add_argument("--latency-scale", type=float, default=0.01)
    args = parser.parse_args()
    emulator = start_emulator(latency_scale=args.latency_scale)
    server = RedisServer().start()
    try:
        tag = str(int(time.time()))
        result = {
            "in_process": in_process(emulator, server, args.n_total, "a" + tag),
            "processes_relay": processes(
                emulator, server, args.procs, args.n_per_proc, True, "b" + tag
            ),
            "processes_no_relay": processes(
                emulator, server, args.procs, args.n_per_proc, False, "c" + tag
            ),
            "load_average": os.getloadavg(),
        }
    finally:
        emulator.stop()
        server.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
