"""Router suite: decision latency per task × priority, and fallback under injected failures.

* ``test_route``: ``Router.route(task, priority)`` for every task × priority
  (group ``router/route``; issue 3's target: median ≤ 10 µs), with every
  provider healthy and, on the ``one_open`` variant, with the chain's first
  provider behind an open breaker (the slow path that reorders the chain).
* ``test_fallback``: the real fallback loop of :class:`AIManager` (no cache,
  one HTTP attempt per provider so every failure falls through to the router's
  next choice) over the in-process world model with fault rates 0, 10 and
  50 % → ``success_rate`` and ``added_latency_ms`` (mean latency minus the
  mean of the same requests in a fault-free world, both measured in the test; over the successful requests,
  and as ``added_latency_all_ms`` over all of them, failures included).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.harness.aggregate import clean
from bench.harness.fixture import AsyncBenchmark, describe
from bench.suites.conftest import bench_options
from samplemind_core import (
    PROVIDERS,
    AllProvidersFailedError,
    ChatRequest,
    RetryConfig,
    Secret,
    Settings,
)
from samplemind_core.manager import AIManager
from samplemind_core.router import BreakerConfig, ModelCatalog, Priority, Router, Task

__all__: list[str] = []

TASKS = [t.value for t in Task]
PRIORITIES = [p.value for p in Priority]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.name == "test_fallback":
        opts = bench_options(metafunc.config)
        targets = [pytest.param("emulator", id="emulator", marks=pytest.mark.live)]
        if not (opts.live and not opts.disabled):  # a timed live run measures the emulator
            targets.insert(0, pytest.param("mock", id="mock"))
        metafunc.parametrize("target", targets)
        metafunc.parametrize(
            "fault_rate", FAULT_RATES, ids=[f"fail{int(r * 100)}" for r in FAULT_RATES]
        )
    if metafunc.definition.name == "test_route":
        small = bench_options(metafunc.config).small_grid
        cases = [(t, p, "healthy") for t in TASKS for p in PRIORITIES]
        cases += [
            (t, p, "one_open")
            for t in TASKS
            for p in PRIORITIES
            if not small or (t, p) == ("chat", "speed")
        ]
        metafunc.parametrize(
            ("task", "priority", "health"),
            cases,
            ids=[f"{t}-{p}-{h}" for t, p, h in cases],
        )


def _router(task: str, priority: str, health: str) -> Router:
    router = Router(breaker=BreakerConfig(failure_threshold=1, cooldown_s=3600.0))
    if health == "one_open":
        first = router.route(task, priority)[0]
        router.record_failure(first, "injected")
    return router


def test_route(benchmark: BenchmarkFixture, task: str, priority: str, health: str) -> None:
    router = _router(task, priority, health)
    describe(
        benchmark,
        "router",
        "route",
        f"{task}/{priority}/{health}",
        unit_per_call="decision",
    )
    chain = benchmark(router.route, task, priority)
    assert sorted(chain) == sorted(PROVIDERS)
    if health == "one_open":
        assert chain[-1] == router.chain(task, priority)[0]
    else:
        assert tuple(chain) == router.chain(task, priority)


# -- fallback under injected failures ------------------------------------------------------

FAULT_RATES = (0.0, 0.1, 0.5)
FALLBACK_SCALE = 0.002
"""World latency scale of the fallback benchmark: Ollama's 0.84 s median becomes 1.7 ms."""
FALLBACK_FAULTS = ("429", "500", "503", "disconnect", "malformed")
"""Injected faults: every kind but ``timeout`` (a stall costs the read timeout, not the router)."""
BASELINE_REQUESTS = 40
WARMUP_REQUESTS = 5


def _fallback_request(i: int) -> ChatRequest:
    return ChatRequest(
        messages=[{"role": "user", "content": f"Suggest a name for sample pack #{i}."}],
        max_tokens=32,
    )


def _fallback_settings(base: Settings) -> Settings:
    # one HTTP attempt per provider: a failure falls through to the router's next choice
    http = dataclasses.replace(base.http, retry=RetryConfig(attempts=1), read_timeout_s=5.0)
    return dataclasses.replace(base, http=http, redis_url=None)


class _World:
    """Switch the fault rate of the mocked world (respx) or of a private emulator (live)."""

    def __init__(self, request: pytest.FixtureRequest, live: bool) -> None:
        self.live = live
        if live:
            self.server = request.getfixturevalue("emulator_factory")(
                latency_scale=FALLBACK_SCALE, seed=0
            )
            self.settings = self.server.settings(Settings())
        else:
            self.mock = request.getfixturevalue("mock_providers")
            self.settings = _with_keys(self.mock.settings)

    def set_fault_rate(self, rate: float) -> None:
        changes: dict[str, Any] = {
            "latency_scale": FALLBACK_SCALE,
            "fault_rate": rate,
            "faults": list(FALLBACK_FAULTS),
            "seed": 0,
        }
        if self.live:
            self.server.configure(**changes)
        else:
            self.mock.configure(**changes)


def _with_keys(settings: Settings) -> Settings:
    """Dummy API keys for the cloud providers (the mocked APIs, like the real ones, want one)."""
    for name in ("openai", "anthropic", "gemini"):
        settings = settings.with_provider(name, api_key=Secret(f"sk-bench-{name}"))
    return settings


class _Tally:
    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.provider_calls = 0
        self.ok_ms: list[float] = []

    async def run(self, manager: AIManager, req: ChatRequest) -> None:
        t0 = time.perf_counter()
        try:
            resp = await manager.complete(req, task="chat", priority="speed")
        except AllProvidersFailedError as exc:
            self.failed += 1
            self.provider_calls += sum(1 for a in exc.attempts if not a.error.startswith("skipped"))
            return
        self.ok_ms.append((time.perf_counter() - t0) * 1000.0)
        self.ok += 1
        route = resp.metadata.get("route", [])
        self.provider_calls += sum(1 for step in route if step.get("outcome") != "skipped")

    @property
    def success_rate(self) -> float:
        total = self.ok + self.failed
        return self.ok / total if total else 0.0


def mean_difference_ci(a: list[float], b: list[float]) -> tuple[float, float] | None:
    """95 % interval of ``mean(a) - mean(b)`` (Welch, normal approximation); None under 2 each."""
    if len(a) < 2 or len(b) < 2:
        return None
    diff = statistics.fmean(a) - statistics.fmean(b)
    half = 1.96 * math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return diff - half, diff + half


async def test_fallback(
    abenchmark: AsyncBenchmark,
    request: pytest.FixtureRequest,
    fault_rate: float,
    target: str,
) -> None:
    world = _World(request, live=target == "emulator")
    settings = _fallback_settings(world.settings)
    abenchmark.describe(
        "router",
        f"fallback-{target}",
        f"fail{int(fault_rate * 100)}",
        unit_per_call="request",
        fault_rate=fault_rate,
        latency_scale=FALLBACK_SCALE,
        faults=",".join(FALLBACK_FAULTS),
    )
    counter = iter(range(1 << 62))
    # The breaker's cooldown runs on the same scaled clock as the world (30 s → 60 ms),
    # so a benchmark run sees breakers open *and* close again, as a day of traffic would.
    breaker = BreakerConfig(cooldown_s=30.0 * FALLBACK_SCALE)
    router = Router(breaker=breaker, catalog=ModelCatalog.from_settings(settings))
    abenchmark.extra_info["breaker_cooldown_s"] = breaker.cooldown_s

    world.set_fault_rate(0.0)
    baseline, tally = _Tally(), _Tally()
    baseline_ms: list[float] = []
    async with AIManager(settings, router=router) as manager:
        for _ in range(WARMUP_REQUESTS):  # connections and first-call costs, untimed
            await baseline.run(manager, _fallback_request(next(counter)))
        # Baseline: the same kind of requests in a fault-free world, measured in this test.
        for _ in range(BASELINE_REQUESTS if abenchmark.enabled else 1):
            t0 = time.perf_counter()
            await baseline.run(manager, _fallback_request(next(counter)))
            baseline_ms.append((time.perf_counter() - t0) * 1000.0)
        assert baseline.success_rate == 1.0
        world.set_fault_rate(fault_rate)
        await abenchmark(tally.run, setup=lambda: (manager, _fallback_request(next(counter))))
    m = abenchmark.measurement
    if m is not None:
        base_ms = sum(baseline_ms) / len(baseline_ms)
        mean_ms = sum(m.per_call) / len(m.per_call) * 1000.0
        ok_ms = sum(tally.ok_ms) / len(tally.ok_ms) if tally.ok_ms else None
        figures = dict(
            success_rate=tally.success_rate,
            # what a caller whose request succeeded waited on top of a fault-free world
            added_latency_ms=None if ok_ms is None else ok_ms - base_ms,
            # every request, failures included (fail-fast breakers can make this negative)
            added_latency_all_ms=mean_ms - base_ms,
            baseline_ms=base_ms,
            provider_calls=tally.provider_calls,
            calls_per_request=tally.provider_calls / max(1, tally.ok + tally.failed),
        )
        ci = mean_difference_ci(tally.ok_ms, baseline_ms)
        if ci is not None:  # so a reader can tell an added latency from noise
            figures["added_latency_ci_low_ms"], figures["added_latency_ci_high_ms"] = ci
        abenchmark.extra_info.update(clean(figures))
    if fault_rate == 0.0:
        assert tally.failed == 0
    assert tally.ok + tally.failed >= 1
