"""Deterministic tests of the async benchmark core (bench/harness/measure.py) with an injected clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench.harness.aggregate import gbps, latency_figures, percentile, rate_figures
from bench.harness.measure import COLD_CALLS, MeasureConfig, measure, run_once


class FakeClock:
    """A clock that only moves when a fake call says so."""

    def __init__(self) -> None:
        self.now = 100.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _target(clock: FakeClock, cost: float) -> Any:
    calls: list[int] = []

    async def fn() -> int:
        clock.advance(cost)
        calls.append(1)
        return len(calls)

    fn.calls = calls  # type: ignore[attr-defined]
    return fn


CFG = MeasureConfig(
    min_time=5e-6, max_time=1e-3, min_rounds=5, calibration_precision=10, timer_precision=1e-7
)


async def test_slow_call_gets_one_iteration_and_per_call_samples() -> None:
    clock = FakeClock()
    fn = _target(clock, 100e-6)  # 100 µs >> min_time: no batching
    m = await measure(fn, CFG, clock=clock)
    assert m.iterations == 1
    # rounds = max(min_rounds, ceil(max_time / duration)) = max(5, 10) = 10
    assert len(m.rounds) == 10
    assert m.per_call == pytest.approx([100e-6] * 10)
    assert m.latencies == pytest.approx([100e-6] * 10)
    assert m.calibration_rounds == 1 + COLD_CALLS
    # calibration calls + 10 timed calls
    assert len(fn.calls) == 1 + COLD_CALLS + 10


async def test_fast_call_is_calibrated_like_pytest_benchmark() -> None:
    clock = FakeClock()
    fn = _target(clock, 0.2e-6)  # 0.2 µs per call, min_time 5 µs
    m = await measure(fn, CFG, clock=clock)
    # loops 1 (0.2µs) → 10 (2µs ≥ estimate threshold 2.5µs? no) → 100 (20µs ≥ 5µs): stop
    assert m.iterations == 100
    assert m.per_call == pytest.approx([0.2e-6] * len(m.rounds))
    # rounds = ceil(1ms / 20µs) = 50
    assert len(m.rounds) == 50
    assert m.latencies == []  # round means are not per-call latencies


async def test_coarse_estimate_branch() -> None:
    clock = FakeClock()
    fn = _target(clock, 0.3e-6)  # 10 loops = 3 µs: ≥ 2.5 µs estimate threshold, < 5 µs
    m = await measure(fn, CFG, clock=clock)
    # estimate: ceil(5µs * 10 / 3µs) = 17 loops; pytest-benchmark measures again and stops
    assert m.iterations == 17


async def test_cold_first_call_does_not_set_the_round_count() -> None:
    clock = FakeClock()
    costs = iter([50e-3] + [100e-6] * 1000)  # a 50 ms connect, then 100 µs calls

    async def fn() -> None:
        clock.advance(next(costs))

    m = await measure(fn, CFG, clock=clock)
    assert len(m.rounds) == 10  # ceil(1 ms / 100 µs), not min_rounds
    assert m.per_call == pytest.approx([100e-6] * 10)


async def test_min_rounds_respected_for_very_slow_calls() -> None:
    clock = FakeClock()
    fn = _target(clock, 10e-3)  # 10 ms per call, max_time 1 ms
    m = await measure(fn, CFG, clock=clock)
    assert len(m.rounds) == CFG.min_rounds


async def test_overrun_stops_after_min_rounds() -> None:
    clock = FakeClock()
    costs = iter([1e-5] + [0.9e-3] * 1000)  # calibration says fast, then calls turn slow

    async def fn() -> None:
        clock.advance(next(costs))

    cfg = MeasureConfig(min_time=5e-6, max_time=1e-3, min_rounds=2, timer_precision=1e-7)
    m = await measure(fn, cfg, clock=clock)
    # planned ceil(1 ms / 10 µs) = 100 rounds; the 4th 0.9-ms round passes 3 × max_time
    assert len(m.rounds) == 4
    assert sum(m.rounds) == pytest.approx(3.6e-3)


async def test_setup_is_untimed_and_forces_one_call_per_round() -> None:
    clock = FakeClock()
    seen: list[int] = []
    counter = iter(range(1000))

    def setup() -> tuple[int]:
        clock.advance(1.0)  # expensive setup must not show up in samples
        return (next(counter),)

    async def fn(i: int) -> int:
        clock.advance(1e-6)
        seen.append(i)
        return i

    m = await measure(fn, CFG, clock=clock, setup=setup)
    assert m.iterations == 1
    assert m.per_call == pytest.approx([1e-6] * len(m.rounds))
    assert seen == sorted(set(seen))  # every call got fresh arguments
    assert m.result == seen[-1]


async def test_async_setup_with_kwargs() -> None:
    clock = FakeClock()

    async def setup() -> tuple[tuple[()], dict[str, int]]:
        return (), {"x": 3}

    async def fn(*, x: int) -> int:
        clock.advance(1e-4)
        return x * 2

    m = await measure(fn, CFG, clock=clock, setup=setup)
    assert m.result == 6


async def test_batch_mode_is_concurrent_and_divides_by_n() -> None:
    clock = FakeClock()
    in_flight = 0
    peak = 0

    async def fn() -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)  # yield: the others start before anyone finishes
        clock.advance(1e-4)
        in_flight -= 1

    m = await measure(fn, CFG, clock=clock, concurrency=10)
    assert peak == 10
    assert m.iterations == 10
    assert m.concurrency == 10
    # a round of 10 calls advanced the clock by 10 × 100 µs → 100 µs per call
    assert m.per_call == pytest.approx([1e-4] * len(m.rounds))
    assert len(m.latencies) == 10 * len(m.rounds)
    assert len(m.rounds) == 5  # 1 ms round ≥ max_time: min_rounds


async def test_warmup_rounds_are_not_recorded() -> None:
    clock = FakeClock()
    fn = _target(clock, 100e-6)
    cfg = MeasureConfig(
        min_time=5e-6, max_time=1e-3, min_rounds=5, warmup=True, warmup_iterations=3
    )
    m = await measure(fn, cfg, clock=clock)
    assert m.warmup_rounds == 3
    assert len(m.rounds) == 10
    assert all(d == pytest.approx(100e-6) for d in m.rounds)


async def test_run_once_runs_body_exactly_once() -> None:
    calls: list[int] = []

    async def fn(x: int = 0) -> int:
        calls.append(x)
        return 7

    assert await run_once(fn) == 7
    assert calls == [0]
    assert await run_once(fn, setup=lambda: (5,)) == 7
    assert calls == [0, 5]
    await run_once(fn, concurrency=4)
    assert len(calls) == 6


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        MeasureConfig(min_rounds=0)
    with pytest.raises(ValueError):
        MeasureConfig(max_time=0)


async def test_concurrency_validation() -> None:
    with pytest.raises(ValueError):
        await measure(_target(FakeClock(), 1e-3), CFG, clock=FakeClock(), concurrency=0)


def test_aggregate_figures() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert percentile(list(map(float, range(101))), 95) == pytest.approx(95.0)
    figs = latency_figures([0.001, 0.002, 0.003])
    assert figs["p50_ms"] == pytest.approx(2.0)
    assert figs["p99_ms"] == pytest.approx(2.98)
    assert rate_figures([0.01] * 10) == {"req_per_s": pytest.approx(100.0)}
    assert gbps(1 << 30, 0.5) == pytest.approx(2.147483648)
    assert latency_figures([]) == {}
    with pytest.raises(ValueError):
        percentile([], 50)
