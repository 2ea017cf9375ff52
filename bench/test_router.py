"""Router suite: decision latency per task × priority, and fallback under injected failures.

* ``test_route``: ``Router.route(task, priority)`` for every task × priority
  (group ``router/route``; issue 3's target: median ≤ 10 µs), with every
  provider healthy and, on the ``one_open`` variant, with the chain's first
  provider behind an open breaker (the slow path that reorders the chain).
* ``test_fallback``: the real fallback loop of :class:`AIManager` (no cache,
  one HTTP attempt per provider so every failure falls through to the router's
  next choice) over the in-process world model with fault rates 0, 10 and
  50 % → ``success_rate`` and ``added_latency_ms`` (mean latency minus the
  mean of the same requests in a fault-free world, both measured in the test).
"""

from __future__ import annotations

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench._fixture import describe
from bench.conftest import bench_options
from samplemind_core import PROVIDERS
from samplemind_core.router import BreakerConfig, Priority, Router, Task

__all__: list[str] = []

TASKS = [t.value for t in Task]
PRIORITIES = [p.value for p in Priority]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
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
