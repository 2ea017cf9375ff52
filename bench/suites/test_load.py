"""Load suite: ``AIManager`` under bursts, rising Poisson rates and a fault schedule.

The other suites replay the pipeline one request at a time; this one drives the
same layer the way a busy service does, with **default settings** (a fresh
namespace is the only change in mocked mode; live mode builds the manager from
``Settings`` with ``redis_url``, exactly as ``AIManager.from_env()`` does), on
the committed workload :data:`WORKLOAD` (cycled for bursts larger than it).

Worlds: mocked = fakeredis + the respx-mocked providers (faults through the
world model and a fakeredis that can be "killed" and paused); live = a private
``redis-server`` (SIGKILL + restart on the same port, ``CLIENT PAUSE 200``) and
a private emulator server (faults through its configure endpoint). The world's
delays run at :data:`LATENCY_SCALE`.

Benchmarks (group ``load/<what>-<mode>``; figures in ``extra_info``, see
bench/suites/load_engine.py for their meaning):

* ``test_load_burst[<mode>-<N>]``: a cold wave of N concurrent calls, then the
  same N again (warm). ``burst_hit_rate`` is the warm wave's hit rate and
  ``burst_truth`` its sequential truth (1.0: every request was stored by the
  cold wave); ``cold_hit_rate`` / ``cold_truth`` the same for the cold wave
  (single-flight makes in-flight duplicates hits). ``stats.data`` = the warm
  wave's per-call latencies.
* ``test_load_knee[<mode>]``: open-loop Poisson arrivals on a warm cache at
  doubling, then bisected rates; ``knee_per_s`` is the highest rate whose p99
  stayed under ``knee_bound_ms`` (:data:`KNEE_BOUND_MS`) with every call
  answered and the offered rate served; ``curve_*`` lists hold every point
  (the capacity curve). ``stats.data`` = the knee point's latencies.
* ``test_load_hits_vs_raw[<mode>]``: the same concurrency (:data:`RAW_CONCURRENCY`)
  of ``AIManager`` cache hits and of raw ``redis.asyncio`` GETs on the same
  client kind, rounds interleaved; ``hit_vs_raw_throughput`` = hits/s over GETs/s.
* ``test_load_faults[<mode>]``: Poisson load through a cold cache while
  :data:`FAULTS` fire; ``caller_errors`` (every fault), ``cache_fault_caller_errors``,
  ``resume_hits_s`` (restart → first hit served by Redis), per-fault records
  under ``faults`` and the 100 ms timeline under ``timeline_*``.
* ``test_load_stream_knee[<mode>]``: the open-loop stream mode. Poisson arrivals of fresh
  OpenAI streams (cold cache, real-world pacing :data:`STREAM_SCALE`: TTFT median 0.45 s,
  56 tokens/s, :data:`~bench.suites.stream_engine.STREAM_MAX_TOKENS` tokens) at doubling,
  then bisected rates, each stream read to its end and timed from its scheduled arrival. ``curve_goodput_rps``:
  requests/s of the arrival window meeting every SLO (``--stream-slo``, default
  ``ttft:1000 tpot:50``); ``stream_knee_per_s``: the highest offered rate with >= 95 %
  good, no other error and the generator on time (``generator_limit_per_s``: the first
  rate at which the median arrival was launched over 100 ms late, the one loop's own limit).
  ``stats.data`` = the knee point's TTFTs; ``extra_info["stream"]`` its stream figures.
* ``test_load_stream_faults[<mode>]``: the same streams at one rate while
  :data:`STREAM_FAULTS` fire (a cut after two text chunks, a 429 after the first):
  ``stream_interrupted`` counted (text had gone out: the only error a caller may see),
  ``other_errors`` held at 0 by the gate, per-fault windows under ``faults``.
* ``test_load_processes[live]``: the cold :data:`PROC_BURST`-burst split over 1 and
  over 4 processes (``Settings.from_env()`` each: default settings), and over 4 with
  the cache's cross-process lease turned off; provider calls paid as the emulator
  counted them (``provider_calls_<variant>``).

Quick runs use :data:`QUICK_BURSTS`, a short knee search and the fault schedule at
half time; smoke runs (``--benchmark-disable``) use small sizes and compressed
times (the fault schedules' offsets at a quarter, the streams' world at a tenth of
real time and their fault schedule's tail at a quarter: decision 0941) and check
invariants instead of recording figures (every call answered, cold bursts equal to
their truth, every miss paid once, and in mocked mode a 100 % warm hit rate up to a
burst of 400, over the cache's connection slots).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

import fakeredis
import pytest

from bench.harness.fixture import AsyncBenchmark
from bench.harness.options import BenchOptions
from bench.harness.run import timed_run_env
from bench.harness.streams import SLO, summarize
from bench.suites import load_engine, stream_engine
from fixtures.workloads import DATA_DIR, WorkloadItem, load
from samplemind_core import CacheConfig, Secret, Settings
from samplemind_core.cache import ResponseCache
from samplemind_core.manager import AIManager

__all__: list[str] = []

WORKLOAD: Final = "samplemind_1000_r70"
LATENCY_SCALE: Final = 0.01
FULL_BURSTS: Final = (1, 10, 100, 1000, 5000)
QUICK_BURSTS: Final = (1, 100, 1000)
SMOKE_BURSTS: Final = (1, 20, 400)
"""400 is over the cache's default 50 connection slots (and redis-py's 100): the regime of issue 10."""
KNEE_BOUND_MS: Final = 100.0
"""The knee's latency bound: p99 of a cache hit under open-loop load."""
RAW_CONCURRENCY: Final = 100
PROC_BURST: Final = 2000
PROC_VARIANTS: Final = (
    ("1proc", 1, "default"),
    ("4proc", 4, "default"),
    ("4proc_no_lease", 4, "off"),
)
"""(label, processes, ``CacheConfig.lease_s``: default settings, or the lease turned off)."""
SMOKE_PROC_VARIANTS: Final = (("1proc", 1, "default"), ("2proc", 2, "default"))
STORM_FAULT_RATE: Final = 0.3
SPIKE_FACTOR: Final = 10.0


@dataclass(frozen=True)
class _Sizes:
    bursts: tuple[int, ...]
    knee_start: float
    knee_seconds: float
    knee_doublings: int
    knee_bisections: int
    fault_rate: float
    time_scale: float
    raw_rounds: int
    proc_burst: int
    requests: int
    """Workload requests the knee, hits-vs-raw and fault tests cycle through."""
    concurrency: int


def _sizes(opts: BenchOptions) -> _Sizes:
    if opts.disabled:
        # The fault schedule's offsets at a quarter; its recovery tail stays load_engine.TAIL_S
        # in every run: the cache comes back on real-time back-offs (up to 0.5 s by default)
        # that no time scale shortens (decision 0941).
        return _Sizes(SMOKE_BURSTS, 100.0, 0.2, 1, 0, 200.0, 0.25, 2, 40, 60, 20)
    if opts.quick:
        return _Sizes(
            QUICK_BURSTS, 250.0, 0.4, 4, 1, 300.0, 0.5, 3, PROC_BURST, 1000, RAW_CONCURRENCY
        )
    return _Sizes(FULL_BURSTS, 250.0, 2.0, 6, 3, 400.0, 1.0, 20, PROC_BURST, 1000, RAW_CONCURRENCY)


FAULTS: Final = (
    load_engine.Fault("provider_429_storm", "provider", at_s=0.5, hold_s=0.5),
    load_engine.Fault("provider_latency_spike", "provider", at_s=1.5, hold_s=0.5),
    load_engine.Fault("redis_sigkill_restart", "cache", at_s=2.5, hold_s=0.3, loses_data=True),
    load_engine.Fault("redis_client_pause_200ms", "cache", at_s=4.0, hold_s=0.2),
)
FAULT_SECONDS: Final = 5.5
"""Length of the full-scale schedule; quick and smoke runs compress the offsets (not the pause)."""


def _scaled_faults(scale: float) -> tuple[tuple[load_engine.Fault, ...], float]:
    faults = tuple(
        replace(
            f,
            at_s=f.at_s * scale,
            hold_s=f.hold_s if "pause" in f.name else max(0.1, f.hold_s * scale),
        )
        for f in FAULTS
    )
    return faults, FAULT_SECONDS * scale


def _with_keys(settings: Settings) -> Settings:
    for name in ("openai", "anthropic", "gemini"):
        if settings.provider(name).api_key is None:
            settings = settings.with_provider(name, api_key=Secret(f"sk-load-{name}"))
    return settings


class _FaultyFakeRedis(fakeredis.FakeAsyncRedis):
    """fakeredis that can be paused (commands wait, like ``CLIENT PAUSE``)."""

    paused_until = 0.0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        wait = self.paused_until - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]


@dataclass
class _World:
    target: load_engine.LoadTarget
    manager: AIManager
    raw_get: Callable[[str], Awaitable[Any]]
    live: dict[str, Any]
    configure: Callable[..., Awaitable[None]]
    """Change the providers' world: ``latency_scale``, ``stream_faults``, ``stream_fault_rate``,
    ``seed`` (the mock's or the emulator's ``configure``)."""


def _target(
    mode: str,
    manager: AIManager,
    reset: Callable[[], Awaitable[None]],
    provider_calls: Callable[[], int],
    faults: dict[str, Any],
) -> load_engine.LoadTarget:
    cache = manager.cache
    assert cache is not None

    async def complete(item: WorkloadItem) -> Any:
        return await manager.complete(item.request, task=item.task, priority=item.priority)

    def counters() -> dict[str, float]:
        return {k: float(v) for k, v in cache.stats().as_dict().items()}

    return load_engine.LoadTarget(mode, complete, reset, provider_calls, counters, faults)


@pytest.fixture(
    params=[
        pytest.param("mocked", id="mocked"),
        pytest.param("live", id="live", marks=[pytest.mark.live, pytest.mark.redis]),
    ]
)
async def load_world(
    request: pytest.FixtureRequest, bench_opts: BenchOptions
) -> AsyncIterator[_World]:
    if request.param == "mocked" and bench_opts.live and not bench_opts.disabled:
        pytest.skip("a timed live run loads redis-server and the emulator")
    if request.param == "live":
        async for world in _live_world(request):
            yield world
        return
    mock = request.getfixturevalue("mock_providers")
    mock.configure(latency_scale=LATENCY_SCALE, seed=0)
    server = fakeredis.FakeServer()
    client = _FaultyFakeRedis(server=server)
    cache = ResponseCache(client, config=CacheConfig(namespace=f"load{uuid.uuid4().hex[:8]}"))

    async def reset() -> None:
        await client.flushall()

    async def kill() -> None:
        server.connected = False

    async def restart() -> None:
        with server.lock:  # a restarted server without persistence is empty
            for db in server.dbs.values():
                db.clear()
        server.connected = True

    async def pause() -> None:
        client.paused_until = time.perf_counter() + 0.2

    async def nothing() -> None:
        return None

    async def storm() -> None:
        mock.configure(fault_rate=STORM_FAULT_RATE, faults=["429"])

    async def calm() -> None:
        mock.configure(fault_rate=0.0)

    async def spike() -> None:
        mock.configure(latency_scale=LATENCY_SCALE * SPIKE_FACTOR)

    async def unspike() -> None:
        mock.configure(latency_scale=LATENCY_SCALE)

    async def configure_mock(**changes: Any) -> None:
        mock.configure(**changes)

    faults = {
        "redis_sigkill_restart": (kill, restart),
        "redis_client_pause_200ms": (pause, nothing),
        "provider_429_storm": (storm, calm),
        "provider_latency_spike": (spike, unspike),
    }
    async with AIManager(_with_keys(mock.settings), cache=cache) as manager:
        target = _target("mocked", manager, reset, lambda: sum(mock.calls.values()), faults)
        raw = fakeredis.FakeAsyncRedis(server=server)
        try:
            yield _World(target, manager, raw.get, {}, configure_mock)
        finally:
            await raw.aclose()
    await cache.aclose()
    await client.aclose()


async def _live_world(request: pytest.FixtureRequest) -> AsyncIterator[_World]:
    redis = request.getfixturevalue("redis_server_factory")()
    emulator = request.getfixturevalue("emulator_factory")(latency_scale=LATENCY_SCALE, seed=0)
    settings = replace(emulator.settings(Settings()), redis_url=redis.url)
    admin = redis.sync_client()

    async def reset() -> None:
        await asyncio.to_thread(admin.flushall)

    async def kill() -> None:
        await asyncio.to_thread(redis.kill)

    async def restart() -> None:
        await asyncio.to_thread(redis.restart)

    async def pause() -> None:
        await asyncio.to_thread(admin.execute_command, "CLIENT", "PAUSE", 200)

    async def nothing() -> None:
        return None

    def configure(**changes: Any) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await asyncio.to_thread(emulator.configure, **changes)

        return run

    def calls() -> int:
        return int(sum(emulator.stats()["calls"].values()))

    faults = {
        "redis_sigkill_restart": (kill, restart),
        "redis_client_pause_200ms": (pause, nothing),
        "provider_429_storm": (
            configure(fault_rate=STORM_FAULT_RATE, faults=["429"]),
            configure(fault_rate=0.0),
        ),
        "provider_latency_spike": (
            configure(latency_scale=LATENCY_SCALE * SPIKE_FACTOR),
            configure(latency_scale=LATENCY_SCALE),
        ),
    }
    raw = redis.client()
    try:
        async with AIManager(settings) as manager:  # default settings: it builds its own client
            target = _target("live", manager, reset, calls, faults)
            yield _World(
                target,
                manager,
                raw.get,
                {"redis": redis, "emulator": emulator, "settings": settings},
                lambda **changes: asyncio.to_thread(emulator.configure, **changes),
            )
    finally:
        await raw.aclose()
        admin.close()


def _items(n: int) -> list[WorkloadItem]:
    return load_engine.cycle(load(DATA_DIR / f"{WORKLOAD}.jsonl"), n)


def _distinct(items: list[WorkloadItem]) -> list[WorkloadItem]:
    truth = load_engine.truth_hits(items)
    return [it for it, seen in zip(items, truth, strict=True) if not seen]


def _base_info(what: str, mode: str, **figures: Any) -> dict[str, Any]:
    return {
        "suite": "load",
        "subject": f"{what}-{mode}",
        "mode": mode,
        "workload": WORKLOAD,
        "latency_scale": LATENCY_SCALE,
        **figures,
    }


def _record(
    abenchmark: AsyncBenchmark, what: str, mode: str, data: list[float], info: dict[str, Any]
) -> None:
    """Record one result of the test ``what`` in world ``mode`` (group ``load/<what>-<mode>``)."""
    abenchmark.record(
        data, label=mode, params={"world": mode}, extra_info=info, group=f"load/{what}-{mode}"
    )


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_load_burst(
    load_world: _World, abenchmark: AsyncBenchmark, bench_opts: BenchOptions
) -> None:
    sizes = _sizes(bench_opts)
    target = load_world.target
    mode = target.mode
    for n in sizes.bursts:
        items = _items(n)
        await target.reset()
        cold = await load_engine.burst(target, items, warm=False)
        warm = await load_engine.burst(target, items, warm=True)
        info = _base_info(
            f"burst-{n}",
            mode,
            variant="default-settings",
            burst_size=n,
            burst_hit_rate=warm.hit_rate,
            burst_truth=warm.truth,
            burst_hit_gap=warm.truth - warm.hit_rate,
            cold_hit_rate=cold.hit_rate,
            cold_truth=cold.truth,
            distinct_requests=len(_distinct(items)),
            **warm.figures(),
            **cold.figures("cold_"),
        )
        info["caller_errors"] = warm.errors + cold.errors
        if not abenchmark.enabled:
            # smoke: invariants that hold on a loaded machine too (a lookup over the default
            # 50 ms timeout is an honest miss); a timed run records the figures, the gate judges
            assert info["caller_errors"] == 0
            assert cold.hit_rate == pytest.approx(cold.truth)  # single-flight: in-flight repeats
            assert cold.provider_calls == len(_distinct(items))
            assert warm.provider_calls == sum(not c.hit for c in warm.calls)  # a miss pays once
            if mode == "mocked":  # in-process store: no lookup can be slow, so no miss is honest
                assert warm.hit_rate == 1.0, warm.figures()
        abenchmark.record(
            warm.latencies_s,
            label=f"{mode}-{n}",
            params={"world": mode, "burst": n},
            extra_info=info,
            group=f"load/burst-{mode}",
        )


async def test_load_knee(
    load_world: _World, abenchmark: AsyncBenchmark, bench_opts: BenchOptions
) -> None:
    sizes = _sizes(bench_opts)
    target = load_world.target
    items = _items(sizes.requests)
    await target.reset()
    await load_engine.burst(target, _distinct(items), warm=False)  # warm: every call below is a hit
    truth = [True] * len(items)

    async def measure(rate: float) -> load_engine.Point:
        return await load_engine.open_loop(
            target, items, rate=rate, duration_s=sizes.knee_seconds, seed=int(rate), truth=truth
        )

    knee = await load_engine.find_knee(
        measure,
        start_per_s=sizes.knee_start,
        bound_ms=KNEE_BOUND_MS,
        max_doublings=sizes.knee_doublings,
        bisections=sizes.knee_bisections,
    )
    points = knee.points
    at_knee = knee.knee_point or points[0][1]
    info = _base_info(
        "knee",
        target.mode,
        variant="open-loop-poisson-warm",
        knee_per_s=knee.knee_per_s,
        knee_bound_ms=KNEE_BOUND_MS,
        knee_found=any(not load_engine.acceptable(p, KNEE_BOUND_MS) for _, p in points),
        curve_offered_per_s=[r for r, _ in points],
        curve_achieved_per_s=[p.achieved_per_s for _, p in points],
        curve_p50_ms=[p.figures()["p50_ms"] for _, p in points],
        curve_p99_ms=[p.p99_ms for _, p in points],
        curve_hit_rate=[p.hit_rate for _, p in points],
        curve_errors=[p.errors for _, p in points],
        curve_loop_lag_p99_ms=[p.lag["loop_lag_p99_ms"] for _, p in points],
        **at_knee.figures(),
    )
    if not abenchmark.enabled:
        assert points and all(p.errors == 0 for _, p in points)
        assert all(p.provider_calls == sum(not c.hit for c in p.calls) for _, p in points)
    _record(abenchmark, "knee", target.mode, at_knee.latencies_s, info)


async def test_load_hits_vs_raw(
    load_world: _World, abenchmark: AsyncBenchmark, bench_opts: BenchOptions
) -> None:
    sizes = _sizes(bench_opts)
    target = load_world.target
    cache = load_world.manager.cache
    assert cache is not None
    items = _distinct(_items(sizes.requests))
    await target.reset()
    await load_engine.burst(target, items, warm=False)
    conc = sizes.concurrency
    picks = [items[i % len(items)] for i in range(conc)]
    keys = [cache.key_for(it.request) for it in picks]
    hit_lat: list[float] = []
    hits = raw_found = 0

    async def hit_round() -> float:
        nonlocal hits
        point = await load_engine.burst(target, picks, warm=True)
        hits += sum(c.hit for c in point.calls)
        hit_lat.extend(point.latencies_s)
        # the burst's own wall time: the meter's reads around it (provider-call count,
        # cache counters, RSS) are harness work, not the hit path
        return conc / point.wall_s

    async def raw_round() -> float:
        nonlocal raw_found
        rate, values = await load_engine.gather_rate(conc, lambda i: load_world.raw_get(keys[i]))
        raw_found += sum(v is not None for v in values)
        return rate

    rates = await load_engine.interleaved({"hit": hit_round, "raw": raw_round}, sizes.raw_rounds)
    calls = conc * sizes.raw_rounds
    if not abenchmark.enabled:
        assert hits <= calls
    hit_rps, raw_rps = statistics.median(rates["hit"]), statistics.median(rates["raw"])
    info = _base_info(
        "hits-vs-raw",
        target.mode,
        variant=f"concurrency-{conc}",
        concurrency=conc,
        rounds=sizes.raw_rounds,
        hit_req_per_s=hit_rps,
        raw_get_req_per_s=raw_rps,
        hit_vs_raw_throughput=hit_rps / raw_rps,
        hit_fraction=hits / calls,
        raw_found_fraction=raw_found / calls,
    )
    _record(abenchmark, "hits-vs-raw", target.mode, hit_lat, info)


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_load_faults(
    load_world: _World, abenchmark: AsyncBenchmark, bench_opts: BenchOptions
) -> None:
    sizes = _sizes(bench_opts)
    target = load_world.target
    faults, seconds = _scaled_faults(sizes.time_scale)
    items = _items(int(sizes.fault_rate * seconds * 2) + 10)
    await target.reset()
    point, outcomes, bins = await load_engine.fault_schedule(
        target, items, faults, rate=sizes.fault_rate, duration_s=seconds, seed=1
    )
    cache_errors = sum(o.caller_errors for o in outcomes if o.kind == "cache")
    provider_errors = sum(o.caller_errors for o in outcomes if o.kind == "provider")
    kill = next(o for o in outcomes if o.name == "redis_sigkill_restart")
    info = _base_info(
        "faults",
        target.mode,
        variant="kill-pause-429-spike",
        **point.figures(),
        cache_fault_caller_errors=cache_errors,
        provider_fault_caller_errors=provider_errors,
        resume_hits_s=kill.resume_hits_s if kill.resume_hits_s is not None else seconds,
        resumed_hits=kill.resume_hits_s is not None,
        extra_provider_calls=sum(o.extra_provider_calls for o in outcomes),
        faults=[o.as_dict() for o in outcomes],
        timeline_t_s=[b["t"] for b in bins],
        timeline_calls=[b["calls"] for b in bins],
        timeline_hit_rate=[b["hits"] / b["calls"] if b["calls"] else None for b in bins],
        timeline_truth=[b["truth"] / b["calls"] if b["calls"] else None for b in bins],
        timeline_truth_note="sequential truth; the store is empty after the restart",
        timeline_errors=[b["errors"] for b in bins],
    )
    info["caller_errors"] = point.errors  # every call of the schedule, all faults
    if not abenchmark.enabled:
        assert len(outcomes) == len(FAULTS)
        assert cache_errors == 0, [o.as_dict() for o in outcomes]
    _record(abenchmark, "faults", target.mode, point.latencies_s, info)


# --------------------------------------------------------------------------- streams

STREAM_SCALE: Final = 1.0
"""Real-world pacing: the world model's published TTFTs and token rates (fixtures/world.py);
the streams' pacing in timed runs (a smoke run's is ``BenchOptions.latency_scale`` of it)."""
STREAM_FAULTS: Final = (
    load_engine.Fault("stream_cut_after_2_chunks", "provider", at_s=1.0, hold_s=1.0),
    load_engine.Fault("stream_429_after_1_chunk", "provider", at_s=2.5, hold_s=1.0),
)
"""Mid-stream faults of the stream schedule (the emulator's ``--stream-fault`` specs below)."""
STREAM_FAULT_SPECS: Final = {
    "stream_cut_after_2_chunks": "cut:2",
    "stream_429_after_1_chunk": "429@1",
}
STREAM_FAULT_SECONDS: Final = 4.0


@dataclass(frozen=True)
class _StreamSizes:
    start_per_s: float
    seconds: float
    doublings: int
    bisections: int
    fault_load_per_s: float
    fault_rate: float
    """Share of the streams started during a fault that the fault hits."""
    time_scale: float
    latency_scale: float = STREAM_SCALE
    """The world's pacing (:data:`STREAM_SCALE`, real-world, in timed runs)."""
    tail_s: float = load_engine.TAIL_S
    """How long the fault schedule's arrivals go on after the last fault."""


def _stream_sizes(opts: BenchOptions) -> _StreamSizes:
    if opts.disabled:
        # Every stream of a fault window faulted: the smoke run sees both kinds. The world at a
        # tenth of real time (BenchOptions.latency_scale), the schedule's tail at the smoke's
        # time scale and the knee's one point half as long at twice the rate (5 arrivals with
        # its seed, 3 before) (decision 0941).
        time_scale = 0.25
        return _StreamSizes(
            10.0,
            0.5,
            0,
            0,
            20.0,
            1.0,
            time_scale,
            latency_scale=opts.latency_scale(STREAM_SCALE),
            tail_s=load_engine.TAIL_S * time_scale,
        )
    if opts.quick:
        return _StreamSizes(10.0, 2.0, 2, 0, 20.0, 0.5, 0.5)
    return _StreamSizes(10.0, 4.0, 5, 2, 20.0, 0.5, 1.0)


def _stream_requests(tag: str, n: int) -> list[WorkloadItem]:
    """``n`` distinct OpenAI stream requests (each one a cache miss: an upstream stream)."""
    return stream_engine.stream_items(
        [stream_engine.stream_request("openai", f"{tag}_{i}", sample="load") for i in range(n)]
    )


async def _stream_target(
    world: _World, sizes: _StreamSizes, fault_rate: float = 0.0
) -> tuple[load_engine.LoadTarget, stream_engine.StreamRecorder]:
    """The world at ``sizes.latency_scale`` (real-world pacing in a timed run) without faults,
    and its target with every call a stream (timed by the recorder) and the mid-stream faults
    of :data:`STREAM_FAULT_SPECS` hitting ``fault_rate`` of the streams while on."""
    scale = sizes.latency_scale
    await world.configure(latency_scale=scale, seed=0, stream_faults=[], stream_fault_rate=0.0)
    recorder = stream_engine.StreamRecorder(world.manager)

    def inject(spec: str | None) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            await world.configure(
                stream_faults=[spec] if spec else [],
                stream_fault_rate=fault_rate if spec else 0.0,
                latency_scale=scale,
            )

        return run

    faults = {name: (inject(spec), inject(None)) for name, spec in STREAM_FAULT_SPECS.items()}
    # One stream first (a request of its own, not measured): the manager's first connection
    # and the like are paid before the clock of the first offered rate starts.
    warm = _stream_requests("warm-up-" + uuid.uuid4().hex[:8], 1)[0].request
    await stream_engine.timed_stream(world.manager, replace(warm, max_tokens=2))
    return replace(world.target, complete_at=recorder.complete_at, faults=faults), recorder


def _slo_info(slo: SLO, opts: BenchOptions, sizes: _StreamSizes) -> dict[str, Any]:
    return {
        "slo": opts.stream_slo,
        "slo_ttft_ms": slo.ttft_ms,
        "slo_tpot_ms": slo.tpot_ms,
        "slo_e2e_ms": slo.e2e_ms,
        "good_share_bound": stream_engine.GOOD_SHARE,
        "latency_scale": sizes.latency_scale,
        "max_tokens": stream_engine.STREAM_MAX_TOKENS,
    }


def _stream_record(
    abenchmark: AsyncBenchmark,
    what: str,
    mode: str,
    reads: list[stream_engine.StreamRead],
    duration_s: float,
    slo: SLO,
    info: dict[str, Any],
) -> None:
    """Record one stream entry: ``stats.data`` the TTFTs, ``extra_info["stream"]`` the figures."""
    stats = summarize([r.timeline for r in reads], duration_s=duration_s, slo=slo)
    info = {
        **info,
        "stream": stats.as_dict(),
        **{
            k: v
            for k, v in {
                "ttft_p50_ms": stats.ttft_ms.get("p50"),
                "ttft_p99_ms": stats.ttft_ms.get("p99"),
                "tpot_p99_ms": stats.tpot_ms.get("p99"),
                "itl_p99_ms": stats.itl_ms.get("p99"),
            }.items()
            if v is not None
        },
    }
    ttfts = [r.timeline.ttft_s for r in reads if r.timeline.ttft_s is not None]
    _record(abenchmark, what, mode, ttfts, info)


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_load_stream_knee(
    load_world: _World, abenchmark: AsyncBenchmark, bench_opts: BenchOptions
) -> None:
    """Offered rate against goodput under the SLOs, the knee, and the generator's own limit."""
    sizes, slo = _stream_sizes(bench_opts), SLO.parse(bench_opts.stream_slo)
    mode = load_world.target.mode
    target, recorder = await _stream_target(load_world, sizes)
    tag = uuid.uuid4().hex[:8]

    async def measure(rate: float) -> stream_engine.GoodputPoint:
        items = _stream_requests(f"{tag}-{rate:g}", int(rate * sizes.seconds * 2) + 20)
        return await stream_engine.goodput_point(
            target, recorder, items, rate=rate, seconds=sizes.seconds, slo=slo, seed=int(rate)
        )

    knee = await load_engine.find_knee(
        measure,
        start_per_s=sizes.start_per_s,
        bound_ms=slo.ttft_ms or 0.0,
        max_doublings=sizes.doublings,
        bisections=sizes.bisections,
        accept=lambda p: p.acceptable,
    )
    points = [p for _, p in knee.points]
    at_knee = knee.knee_point or points[0]
    limited = [p.offered_per_s for p in points if p.generator_limited]
    curve = [p.figures() for p in points]
    info = _base_info(
        "stream_knee",
        mode,
        variant="open-loop-poisson-streams-cold",
        **_slo_info(slo, bench_opts, sizes),
        stream_knee_per_s=knee.knee_per_s,
        knee_found=any(not p.acceptable and not p.generator_limited for p in points),
        generator_limit_per_s=min(limited) if limited else None,
        generator_lag_bound_ms=stream_engine.GENERATOR_LAG_MS,
        stream_interrupted=sum(p.stream_interrupted for p in points),
        other_errors=sum(p.other_errors for p in points),
        error_types=_merged(p.error_types for p in points),
        **{f"curve_{k}": [c[k] for c in curve] for k in curve[0]},
        knee_point=at_knee.figures(),
    )
    if not abenchmark.enabled:
        assert info["other_errors"] == 0, info["error_types"]
        assert info["stream_interrupted"] == 0, "no fault was injected: no stream may be cut"
        assert all(p.requests == len(p.reads) for p in points)  # every stream read to its end
    _stream_record(abenchmark, "stream_knee", mode, at_knee.reads, at_knee.window_s, slo, info)


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
async def test_load_stream_faults(
    load_world: _World, abenchmark: AsyncBenchmark, bench_opts: BenchOptions
) -> None:
    """Streams under a cut and a 429 mid-stream: only ``StreamInterrupted``, counted."""
    sizes, slo = _stream_sizes(bench_opts), SLO.parse(bench_opts.stream_slo)
    mode = load_world.target.mode
    target, recorder = await _stream_target(load_world, sizes, sizes.fault_rate)
    faults = tuple(
        replace(f, at_s=f.at_s * sizes.time_scale, hold_s=max(0.25, f.hold_s * sizes.time_scale))
        for f in STREAM_FAULTS
    )
    seconds = STREAM_FAULT_SECONDS * sizes.time_scale
    rate = sizes.fault_load_per_s
    stretch = seconds * load_engine.MAX_STRETCH + sizes.tail_s
    items = _stream_requests(uuid.uuid4().hex[:8], int(rate * stretch * 2) + 20)
    point, outcomes, bins = await load_engine.fault_schedule(
        target, items, faults, rate=rate, duration_s=seconds, seed=2, tail_s=sizes.tail_s
    )
    reads = recorder.take()
    window = max(seconds, max((c.start_s for c in point.calls), default=seconds))
    errors = _merged([{c.error: 1} for c in point.calls if c.error is not None])
    interrupted = errors.get("StreamInterrupted", 0)
    stats = summarize([r.timeline for r in reads], duration_s=window, slo=slo)
    info = _base_info(
        "stream_faults",
        mode,
        variant="cut-and-429-mid-stream",
        **_slo_info(slo, bench_opts, sizes),
        offered_per_s=rate,
        requests=len(point.calls),
        goodput_rps=stats.goodput_rps,
        good_share=(stats.good or 0) / len(point.calls) if point.calls else 0.0,
        stream_interrupted=interrupted,
        other_errors=point.errors - interrupted,
        error_types=errors,
        stream_fault_rate=sizes.fault_rate,
        faults=[_stream_fault(o) for o in outcomes],
        timeline_t_s=[b["t"] for b in bins],
        timeline_calls=[b["calls"] for b in bins],
        timeline_errors=[b["errors"] for b in bins],
        loop_lag_p99_ms=point.lag.get("loop_lag_p99_ms", 0.0),
    )
    if not abenchmark.enabled:
        assert info["other_errors"] == 0, (
            f"a fault mid-stream must reach callers only as StreamInterrupted: {errors}"
        )
        assert interrupted > 0, "the schedule's faults cut no stream"
        assert len(reads) + interrupted == len(point.calls)
    _stream_record(abenchmark, "stream_faults", mode, reads, window, slo, info)


def _stream_fault(outcome: load_engine.FaultOutcome) -> dict[str, Any]:
    """A stream fault's record: its window's caller errors by type and its recovery (every
    stream is a miss, so the engine's extra-provider-calls figure means nothing here)."""
    out = outcome.as_dict()
    out.pop("extra_provider_calls", None)
    return {**out, "spec": STREAM_FAULT_SPECS[outcome.name]}


def _merged(counts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + int(v)
    return out


# --------------------------------------------------------------------------- processes


def _worker_env(settings: Settings) -> dict[str, str]:
    env = timed_run_env()
    assert settings.redis_url is not None
    env["REDIS_URL"] = settings.redis_url
    env["OLLAMA_HOST"] = settings.provider("ollama").base_url
    for name in ("openai", "anthropic", "gemini"):
        cfg = settings.provider(name)
        env[f"{name.upper()}_BASE_URL"] = cfg.base_url
        if cfg.api_key is not None:
            env[f"{name.upper()}_API_KEY"] = cfg.api_key.get_secret_value()
    return env


def _spawn_burst(settings: Settings, n: int, parts: int, lease: str) -> list[dict[str, Any]]:
    """Run the cold ``n``-burst split over ``parts`` worker processes started together."""
    env = _worker_env(settings)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.suites.load_worker",
                WORKLOAD,
                str(n),
                str(k),
                str(parts),
                lease,
            ],
            cwd=Path(__file__).resolve().parents[2],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(parts)
    ]
    try:
        for p in procs:  # every worker is ready (imports done, manager open) before any fires
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            assert line == "ready", f"worker did not start: {line!r}"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        out = []
        for p in procs:
            stdout, _ = p.communicate(timeout=300)
            assert p.returncode == 0, stdout
            out.append(json.loads(stdout.strip().splitlines()[-1]))
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.live
@pytest.mark.redis
@pytest.mark.slow
async def test_load_processes(
    request: pytest.FixtureRequest, abenchmark: AsyncBenchmark, bench_opts: BenchOptions
) -> None:
    sizes = _sizes(bench_opts)
    if bench_opts.quick and not bench_opts.disabled:
        pytest.skip("the multi-process burst runs in full live runs")
    redis = request.getfixturevalue("redis_server_factory")()
    emulator = request.getfixturevalue("emulator_factory")(latency_scale=LATENCY_SCALE, seed=0)
    settings = replace(emulator.settings(Settings()), redis_url=redis.url)
    admin = redis.sync_client()
    n = sizes.proc_burst
    distinct = len(_distinct(_items(n)))
    paid: dict[str, int] = {}
    errors: dict[str, int] = {}
    walls: list[float] = []
    leases: dict[str, int] = {}
    try:
        for label, parts, lease in SMOKE_PROC_VARIANTS if bench_opts.disabled else PROC_VARIANTS:
            admin.flushall()
            before = sum(emulator.stats()["calls"].values())
            results = await asyncio.to_thread(_spawn_burst, settings, n, parts, lease)
            paid[label] = sum(emulator.stats()["calls"].values()) - before
            errors[label] = sum(r["errors"] for r in results)
            walls.append(max(r["wall_s"] for r in results))
            leases[label] = int(sum(r["leases"] + r["lease_waits"] for r in results))
    finally:
        admin.close()
    if not abenchmark.enabled:
        assert paid["1proc"] == distinct and not any(errors.values())
    info = _base_info(
        f"processes-{n}",
        "live",
        variant="cold-burst",
        burst_size=n,
        distinct_requests=distinct,
        default_lease_s=CacheConfig().lease_s or 0.0,
        **{f"provider_calls_{label}": calls for label, calls in paid.items()},
        **{f"lease_events_{label}": n for label, n in leases.items()},
        caller_errors=sum(errors.values()),
    )
    _record(abenchmark, "processes", "live", walls, info)  # each variant's burst wall time
