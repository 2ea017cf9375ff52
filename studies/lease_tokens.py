"""Leases left behind by lost ``SET NX`` replies, leases deleted by a non-holder, and the
price of compare-and-delete (decision 0440).

``python -m studies.lease_tokens [--rounds 20] [--releases 2000]``

Starts a private ``redis-server`` (a real process) and measures, on whatever code is
imported (run it from a worktree of the old code and of the new, ``PYTHONPATH`` set):

* ``stream``: ``--rounds`` rounds of 200 identical ``AIManager.stream()`` readers, each
  cancelled at a random time up to 150 ms, the provider silent for 30 s; the client's
  ``SET NX`` replies come back 50-250 ms after Redis ran them (a loaded host). Stream
  lease keys (``*:slease``) left once the readers returned and ``aclose()`` finished.
* ``complete``: the same with 300 identical ``get_or_call`` per round (``*:lease``).
* ``retaken``: ``--rounds`` keys whose lease expired under its holder A and was taken by
  B; A then releases: B's leases deleted by A.
* ``cost``: ``--releases`` take-and-release pairs of one lease, the release by
  ``UNLINK`` and by the compare-and-delete script alternately, in one run: the median
  time of each and their ratio (skipped when the code has no ``_io_cad``).

Prints one JSON line per scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import statistics
import time
import uuid
from typing import Any, cast

from redis.asyncio import Redis

from fixtures.redis import RedisServer
from samplemind_core import CacheConfig
from samplemind_core.cache import ResponseCache
from samplemind_core.manager import AIManager
from tests.test_lease_tokens import SlowReplies, _cancel_all_at_random, _leases_left, req
from tests.test_stream_layer import Scripts, read, settings


async def _stream(server: RedisServer, rounds: int) -> dict[str, Any]:
    client, control = server.client(), server.client()
    ns = "lt" + uuid.uuid4().hex[:6]
    rng = random.Random(1)
    config = CacheConfig(namespace=ns, lease_s=10.0, op_timeout_s=0.5)
    ai = AIManager(
        settings(), cache=ResponseCache(cast(Redis, SlowReplies(client, rng)), config=config)
    )
    scripts = Scripts()
    scripts.install(ai)
    scripts.default["ollama"] = [30.0, "never"]
    for i in range(rounds):
        await _cancel_all_at_random(functools.partial(read, ai, req(f"s{i}")), 200, rng, 0.15)
    await ai.aclose()
    assert ai.cache is not None
    claims = ai.cache.stats().leases
    left = len(await _leases_left(control, ns))
    await client.aclose()
    await control.aclose()
    return {"scenario": "stream", "rounds": rounds, "claims": claims, "leases_left": left}


async def _complete(server: RedisServer, rounds: int) -> dict[str, Any]:
    client, control = server.client(), server.client()
    ns = "lt" + uuid.uuid4().hex[:6]
    rng = random.Random(2)
    cache = ResponseCache(
        cast(Redis, SlowReplies(client, rng)),
        config=CacheConfig(namespace=ns, lease_s=10.0, op_timeout_s=0.5),
    )

    async def slow() -> Any:
        await asyncio.sleep(30)

    for i in range(rounds):
        await _cancel_all_at_random(
            functools.partial(cache.get_or_call, req(f"c{i}"), slow), 300, rng, 0.15
        )
    await cache.aclose()
    left = len(await _leases_left(control, ns))
    out = {"scenario": "complete", "rounds": rounds, "claims": cache.stats().leases}
    await client.aclose()
    await control.aclose()
    return {**out, "leases_left": left}


async def _retaken(server: RedisServer, rounds: int) -> dict[str, Any]:
    clients = [server.client() for _ in range(3)]
    config = CacheConfig(namespace="lt" + uuid.uuid4().hex[:6], lease_s=10.0, op_timeout_s=0.5)
    a, b = (ResponseCache(c, config=config) for c in clients[:2])
    deleted = 0
    for i in range(rounds):
        key = a.key_for(req(f"r{i}"))
        assert await a._take_lease(key)
        await clients[2].delete(key + ":lease")  # expired under A
        assert await b._take_lease(key)
        await a._release_lease(key)
        deleted += not await clients[2].exists(key + ":lease")
        await b._release_lease(key)
    for c in clients:
        await c.aclose()
    return {"scenario": "retaken", "rounds": rounds, "successor_leases_deleted": deleted}


async def _cost(server: RedisServer, releases: int) -> dict[str, Any] | None:
    client = server.client()
    cache = ResponseCache(client, config=CacheConfig(namespace="lt" + uuid.uuid4().hex[:6]))
    if not hasattr(cache, "_io_cad"):
        await client.aclose()
        return None
    key = "lt:cost:lease"
    times: dict[str, list[float]] = {"unlink": [], "cad": []}
    for i in range(releases):
        token = b"t%d" % i
        await client.set(key, token)
        way = "unlink" if i % 2 else "cad"
        t0 = time.perf_counter()
        if way == "unlink":
            await cache._io_unlink(key)
        else:
            await cache._io_cad(key, token)
        times[way].append(time.perf_counter() - t0)
    await client.aclose()
    med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    return {
        "scenario": "cost",
        "releases": releases,
        "median_us": {k: round(v, 1) for k, v in med.items()},
        "cad_over_unlink": round(med["cad"] / med["unlink"], 3),
    }


async def _main(rounds: int, releases: int) -> None:
    server = RedisServer().start()
    try:
        for job in (_stream(server, rounds), _complete(server, rounds), _retaken(server, rounds)):
            print(json.dumps(await job), flush=True)
        cost = await _cost(server, releases)
        if cost is not None:
            print(json.dumps(cost), flush=True)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--releases", type=int, default=2000)
    args = parser.parse_args(argv)
    asyncio.run(_main(args.rounds, args.releases))


if __name__ == "__main__":
    main()
