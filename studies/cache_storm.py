"""Leases, cancellation and faults of the cache under a 2,000-caller storm (issue 23 items 1, 7).

``python -m studies.cache_storm [--scenario cancel|pause|node-down|full|all] [--callers 2000]
[--keys 200] [--latency-scale 0.1] [--repeats 1]``

Starts a private ``redis-server`` and the provider emulator (real processes), builds
``AIManager`` from ``Settings(redis_url=...)`` (default cache settings, fresh namespace), and:

* ``cancel``: ``--callers`` cold calls of ``complete()`` over ``--keys`` distinct requests,
  each under ``asyncio.wait_for`` with a limit spread evenly over 1-400 ms. Reports what
  every caller got (response, timeout, other), the provider calls made (against the distinct
  requests), the largest overshoot of a limit (the time a
  caller returned after its limit, whatever it returned), the lease keys left (``SCAN`` for
  ``*:lease``) at once when the last caller returned and after ``cache.aclose()``, and their
  largest ``PTTL``. ``--warm``: one call of another request first (a cold manager's first
  call, ~1 s on the team machine, outlasts every limit: cold, nobody is answered).
* ``pause``: half the ``--keys`` requests are stored first; then a ``--callers`` burst over
  all of them with ``CLIENT PAUSE 2000 ALL`` sent once it has started; lease keys left when
  it ends; then the first full wave of the same requests after the pause ended: its wall
  time, its slowest call, and its hits against the entries stored in Redis before it.

* ``node-down``: a private 3-master cluster (``cluster-require-full-coverage no``), every
  request stored, one master killed, then three waves: requests of the healthy masters'
  keys served from the cache against their number (the truth), lease keys left.
* ``full``: half the keys stored, then ``maxmemory 1`` (``noeviction``: every write is
  refused); a burst over every key (the other half's writes refused), then a
  wave: stored keys served from the cache against the entries stored, lease keys left.

Prints one JSON line per scenario and repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import redis.asyncio

from fixtures.redis import LocalRedisCluster, RedisServer
from fixtures.servers import EmulatorServer, start_emulator
from samplemind_core import AIManager, ChatRequest, ChatResponse, Settings

__all__ = ["lease_keys", "main"]


def _served_and_paid(wave: list[Any], keys: int) -> tuple[set[int], set[int]]:
    """Keys some caller got from the cache (a hit, or a copy of one), and keys paid for."""
    served, paid = set(), set()
    for i, r in enumerate(wave):
        if isinstance(r, ChatResponse):
            if not r.cached:
                paid.add(i % keys)
            elif not r.metadata.get("coalesced"):
                served.add(i % keys)
    return served, paid


def _provider_calls(emulator: EmulatorServer) -> int:
    return sum(emulator.stats()["calls"].values())


async def lease_keys(client: redis.asyncio.Redis) -> tuple[int, int]:
    """(number of ``*:lease`` keys, their largest PTTL in ms; -1 when none)."""
    n, worst = 0, -1
    async for key in client.scan_iter(match="*:lease", count=1000):
        n += 1
        worst = max(worst, int(await client.pttl(key)))
    return n, worst


class LagMonitor:
    """The event loop's largest lag: how late a 5 ms ticker woke, at worst."""

    def __init__(self) -> None:
        self.max_ms = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            self.max_ms = max(self.max_ms, (time.perf_counter() - t - 0.005) * 1000.0)

    def __enter__(self) -> LagMonitor:
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def _entries(client: redis.asyncio.Redis) -> int:
    """Stored entries (keys that are neither leases nor generation hashes)."""
    n = 0
    async for key in client.scan_iter(count=1000):
        n += not key.endswith((b":lease", b":gen"))
    return n


def _manager(server: RedisServer | None, emulator: EmulatorServer) -> AIManager:
    settings = emulator.settings(Settings(redis_url=server.url if server else None))
    cache = replace(settings.cache, namespace=f"storm{uuid.uuid4().hex[:8]}")
    return AIManager(replace(settings, cache=cache))


def _requests(tag: str, keys: int) -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "user", "content": f"{tag} {i}"}]) for i in range(keys)]


async def cancel_storm(
    server: RedisServer,
    emulator: EmulatorServer,
    callers: int,
    keys: int,
    *,
    cache: bool,
    warm: bool = False,
) -> dict[str, Any]:
    reqs = _requests(f"cancel-{uuid.uuid4().hex[:6]}", keys)
    limits = [0.001 + 0.399 * i / max(1, callers - 1) for i in range(callers)]
    outcome: dict[str, int] = {"response": 0, "timeout": 0, "other": 0}
    overshoot_ms: list[float] = []
    by_limit: dict[str, float] = {}  # the largest overshoot per 100 ms band of limits
    late_responses = 0

    async def one(i: int, ai: AIManager) -> None:
        nonlocal late_responses
        t0 = time.perf_counter()
        try:
            await asyncio.wait_for(ai.complete(reqs[i % keys]), limits[i])
            kind = "response"
        except TimeoutError:
            kind = "timeout"
        except Exception:
            kind = "other"
        took = time.perf_counter() - t0
        outcome[kind] += 1
        over = max(0.0, took - limits[i]) * 1000.0
        overshoot_ms.append(over)
        band = f"{int(limits[i] * 10) * 100}-{int(limits[i] * 10) * 100 + 100}ms"
        by_limit[band] = round(max(by_limit.get(band, 0.0), over), 1)
        if kind == "response" and took > limits[i] + 0.05:
            late_responses += 1

    control = server.client()
    try:
        async with _manager(server if cache else None, emulator) as ai:
            if warm:  # connections, generations: one call of another request first
                await ai.complete(_requests(f"warm-{uuid.uuid4().hex[:6]}", 1)[0])
            calls_before = _provider_calls(emulator)
            order = list(range(callers))
            with LagMonitor() as lag:
                await asyncio.gather(*(one(i, ai) for i in order[::2] + order[1::2]))
            left_now, pttl_now = await lease_keys(control)
            if ai.cache is not None:
                await ai.cache.aclose()
            left_after, pttl_after = await lease_keys(control)
        overshoot_ms.sort()
        return {
            "scenario": "cancel" if cache else "cancel-no-cache",
            "warm": warm,
            "loop_lag_max_ms": round(lag.max_ms, 1),
            "callers": callers,
            "outcome": outcome,
            "late_responses": late_responses,
            "provider_calls": _provider_calls(emulator) - calls_before,
            "distinct_requests": min(keys, callers),
            "overshoot_max_ms": round(overshoot_ms[-1], 1),
            "overshoot_p99_ms": round(overshoot_ms[int(0.99 * (len(overshoot_ms) - 1))], 1),
            "overshoot_max_ms_by_limit": dict(sorted(by_limit.items())),
            "lease_keys_when_returned": left_now,
            "lease_pttl_max_ms": pttl_now,
            "lease_keys_after_aclose": left_after,
            "lease_pttl_after_aclose_ms": pttl_after,
        }
    finally:
        await control.aclose()


async def pause_storm(
    server: RedisServer, emulator: EmulatorServer, callers: int, keys: int
) -> dict[str, Any]:
    reqs = _requests(f"pause-{uuid.uuid4().hex[:6]}", keys)
    control = server.client()
    try:
        async with _manager(server, emulator) as ai:
            cache = ai.cache
            assert cache is not None

            warm = await asyncio.gather(*(ai.complete(r) for r in reqs[: keys // 2]))
            assert all(isinstance(r, ChatResponse) for r in warm)

            async def pause() -> float:
                await asyncio.sleep(0)  # the burst has started
                await control.execute_command("CLIENT", "PAUSE", "2000", "ALL")  # type: ignore[no-untyped-call]
                return time.perf_counter() + 2.0

            async def burst() -> list[Any]:
                return await asyncio.gather(
                    *(ai.complete(reqs[i % keys]) for i in range(callers)),
                    return_exceptions=True,
                )

            t0 = time.perf_counter()
            first, pause_ends = await asyncio.gather(burst(), pause())
            burst_s = time.perf_counter() - t0
            await asyncio.sleep(max(0.0, pause_ends - time.perf_counter()))
            left, pttl = await lease_keys(control)  # (the control client was paused too)
            if cache._releases:  # releases the pause held back: retried in the background
                await asyncio.wait(list(cache._releases), timeout=5.0)
            left_released, _ = await lease_keys(control)
            stored = await _entries(control)
            cache.reset_stats()
            took: list[float] = []

            async def timed(r: ChatRequest) -> Any:
                s = time.perf_counter()
                try:
                    return await ai.complete(r)
                finally:
                    took.append(time.perf_counter() - s)

            w0 = time.perf_counter()
            wave = await asyncio.gather(
                *(timed(reqs[i % keys]) for i in range(callers)), return_exceptions=True
            )
            wave_s = time.perf_counter() - w0
            st = cache.stats()
            left_after_wave, _ = await lease_keys(control)
        return {
            "scenario": "pause",
            "callers": callers,
            "burst_s": round(burst_s, 2),
            "burst_exceptions": sum(isinstance(r, BaseException) for r in first),
            "lease_keys_when_pause_ended": left,
            "lease_pttl_max_ms": pttl,
            "lease_keys_after_background_releases": left_released,
            "wave_after_pause_s": round(wave_s, 3),
            "wave_slowest_call_s": round(max(took), 3),
            "wave_cached": sum(isinstance(r, ChatResponse) and r.cached for r in wave),
            "wave_exceptions": sum(isinstance(r, BaseException) for r in wave),
            "entries_stored_before_wave": stored,
            "wave_hits_misses": [st.hits, st.misses],
            "lease_keys_after_wave": left_after_wave,
        }
    finally:
        await control.aclose()


async def node_down(
    emulator: EmulatorServer, callers: int, keys: int, *, cache_on: bool = True
) -> dict[str, Any]:
    """A private 3-master cluster; half the keys stored; one master killed; then waves."""
    cluster = LocalRedisCluster().start()
    try:
        for node in cluster.nodes:  # the healthy masters keep serving their slots
            c = node.sync_client()
            c.config_set("cluster-require-full-coverage", "no")
            c.close()
        url = f"redis://127.0.0.1:{cluster.nodes[0].port}/0"
        settings = emulator.settings(Settings(redis_url=url, redis_cluster=True))
        ns = f"down{uuid.uuid4().hex[:8]}"
        ai = AIManager(replace(settings, cache=replace(settings.cache, namespace=ns)))
        reqs = _requests(f"down-{uuid.uuid4().hex[:6]}", keys)
        async with ai:
            cache = ai.cache
            assert cache is not None
            await asyncio.gather(*(ai.complete(r) for r in reqs))  # every key stored
            client = cache._redis
            dead = cluster.nodes[1]
            dead_name = f"127.0.0.1:{dead.port}"
            on_dead = {
                i
                for i, r in enumerate(reqs)
                if client.nodes_manager.get_node_from_slot(client.keyslot(cache.key_for(r))).name
                == dead_name
            }
            # the truth: entries actually stored (a store may time out under load)
            stored = {i for i, r in enumerate(reqs) if await client.exists(cache.key_for(r))}
            dead.kill()
            waves = []
            for _ in range(3):
                cache.reset_stats()
                before = _provider_calls(emulator)
                wave = await asyncio.gather(
                    *(ai.complete(reqs[i % keys]) for i in range(callers)),
                    return_exceptions=True,
                )
                served, paid = _served_and_paid(wave, keys)
                waves.append(
                    {
                        "healthy_keys_served_from_cache": len(served - on_dead),
                        "healthy_stored_keys_paid": len((paid & stored) - on_dead),
                        "healthy_keys_truth": len(stored - on_dead),
                        "provider_calls": _provider_calls(emulator) - before,
                        "exceptions": sum(isinstance(r, BaseException) for r in wave),
                    }
                )
            await cache.aclose()
            leases = 0
            for node in cluster.nodes:
                if node is not dead:
                    async with node.client() as node_client:
                        leases += (await lease_keys(node_client))[0]
        return {
            "scenario": "node-down",
            "callers": callers,
            "keys_on_dead_master": len(on_dead),
            "waves_after_kill": waves,
            "lease_keys_on_healthy_masters": leases,
        }
    finally:
        cluster.stop()


async def full_redis(emulator: EmulatorServer, callers: int, keys: int) -> dict[str, Any]:
    """Half the keys stored, then ``maxmemory 1`` (``noeviction``: Redis is full): a burst
    over every key (the new half's writes refused), then a wave."""
    server = RedisServer(extra_args=("--maxmemory-policy", "noeviction"))
    server.start()
    control = server.client()
    try:
        async with _manager(server, emulator) as ai:
            cache = ai.cache
            assert cache is not None
            reqs = _requests(f"full-{uuid.uuid4().hex[:6]}", keys)
            await asyncio.gather(*(ai.complete(r) for r in reqs[: keys // 2]))
            await control.config_set("maxmemory", "1")  # full: every write refused from now on
            cache.reset_stats()
            burst = await asyncio.gather(
                *(ai.complete(reqs[i % keys]) for i in range(callers)), return_exceptions=True
            )
            burst_stats = cache.stats()
            stored = {i for i, r in enumerate(reqs) if await control.exists(cache.key_for(r))}
            cache.reset_stats()
            before = _provider_calls(emulator)
            wave = await asyncio.gather(
                *(ai.complete(reqs[i % keys]) for i in range(callers)), return_exceptions=True
            )
            served, paid = _served_and_paid(wave, keys)
            await cache.aclose()
            leases = (await lease_keys(control))[0]
        return {
            "scenario": "full",
            "callers": callers,
            "burst_exceptions": sum(isinstance(r, BaseException) for r in burst),
            "burst_refused_writes": getattr(burst_stats, "refused_writes", None),
            "burst_backend_errors": burst_stats.backend_errors,
            "entries_stored": len(stored),
            "wave_stored_keys_served_from_cache": len(served & stored),
            "wave_stored_keys_paid": len(paid & stored),
            "wave_provider_calls": _provider_calls(emulator) - before,
            "wave_exceptions": sum(isinstance(r, BaseException) for r in wave),
            "lease_keys_left": leases,
        }
    finally:
        await control.aclose()
        server.stop()


async def _run(args: argparse.Namespace) -> None:
    server = RedisServer().start()
    emulator = start_emulator(latency_scale=args.latency_scale)
    try:
        for _ in range(args.repeats):
            if args.scenario in ("cancel", "all"):
                for cache in (True, False):  # side by side: the same storm without a cache
                    print(
                        json.dumps(
                            await cancel_storm(
                                server,
                                emulator,
                                args.callers,
                                args.keys,
                                cache=cache,
                                warm=args.warm,
                            )
                        )
                    )
            if args.scenario in ("pause", "all"):
                print(json.dumps(await pause_storm(server, emulator, args.callers, args.keys)))
            if args.scenario in ("node-down", "all"):
                print(json.dumps(await node_down(emulator, args.callers, args.keys)))
            if args.scenario in ("full", "all"):
                print(json.dumps(await full_redis(emulator, args.callers, args.keys)))
    finally:
        emulator.stop()
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studies.cache_storm", description=__doc__)
    p.add_argument(
        "--scenario", choices=["cancel", "pause", "node-down", "full", "all"], default="all"
    )
    p.add_argument("--callers", type=int, default=2000)
    p.add_argument("--keys", type=int, default=200)
    p.add_argument("--latency-scale", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--warm",
        action="store_true",
        help="cancel: one call of another request before the storm (the first call of a "
        "manager opens its connections, ~1 s here: longer than every limit)",
    )
    asyncio.run(_run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
