"""Measure: time awaits inside one running event loop, calibrated like pytest-benchmark.

pytest-benchmark cannot time coroutines (its issue #66). This module is the
timing core of the ``abenchmark`` fixture: it runs *inside* an already running
event loop, so event-loop start-up is never part of a sample, and it mirrors
pytest-benchmark's own algorithm (``BenchmarkFixture._calibrate_timer`` and
``_raw``):

1. **calibrate**: time 1, 10, 100, ... sequential awaits until a round lasts at
   least ``max(min_time, timer_precision * calibration_precision)``; estimate
   the iterations per round from there (pytest-benchmark's coarse estimate);
   when a single call fills a round, :data:`COLD_CALLS` more calls are made
   and the fastest sets the round estimate (a cold first call, e.g. one that
   opens a connection, would otherwise cut the rounds to ``min_rounds``);
2. **warm up** (``warmup``): untimed rounds, up to ``warmup_iterations`` calls;
3. **rounds**: ``max(min_rounds, ceil(max_time / round_duration))`` timed
   rounds, stopped early (never below ``min_rounds``) when they overrun
   ``max_time`` by :data:`OVERRUN_FACTOR` (a safeguard pytest-benchmark lacks:
   I/O-bound calls drift more than CPU-bound ones).

Two shapes of a round:

* **serial** (``concurrency=1``): ``iterations`` awaits one after another; with
  ``iterations == 1`` every sample is one call (raw per-call samples);
* **batch** (``concurrency=N``): one round is N concurrent calls
  (``asyncio.gather``); the round's duration divided by N is the inverse
  throughput (seconds per request), and every call's own latency is kept for
  percentiles.

A ``setup`` callable (run before every call, outside the timed region, like
``benchmark.pedantic(setup=...)``) forces one call per round.

The clock is injected (``clock``), so the logic is unit-tested without wall
clock assertions.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from bench.calls import setup_args

__all__ = [
    "COLD_CALLS",
    "OVERRUN_FACTOR",
    "AsyncTarget",
    "MeasureConfig",
    "Measurement",
    "measure",
    "run_once",
]

COLD_CALLS: Final = 2
"""Extra calibration calls when one call fills a round (the round estimate is their minimum)."""

OVERRUN_FACTOR: Final = 3.0
"""Rounds stop (once ``min_rounds`` ran) when they took this many times ``max_time``."""

AsyncTarget = Callable[..., Awaitable[Any]]
Setup = Callable[[], Any]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class MeasureConfig:
    """pytest-benchmark's knobs (same names and meaning as its ``--benchmark-*`` options)."""

    min_time: float = 0.000005
    max_time: float = 1.0
    min_rounds: int = 5
    calibration_precision: int = 10
    timer_precision: float = 1e-7
    warmup: bool = False
    warmup_iterations: int = 100_000
    disable_gc: bool = False

    def __post_init__(self) -> None:
        if self.min_rounds < 1:
            raise ValueError(f"min_rounds must be >= 1, got {self.min_rounds}")
        if self.max_time <= 0 or self.min_time < 0:
            raise ValueError("max_time must be > 0 and min_time >= 0")


@dataclass(slots=True)
class Measurement:
    """What one benchmark measured.

    ``rounds`` holds one duration per timed round (seconds, whole round);
    ``iterations`` is the number of calls per round, so ``rounds[i] /
    iterations`` is seconds per call, which is what pytest-benchmark stores.
    ``latencies`` holds per-call latencies when calls were timed one by one
    (batch mode, or serial mode with one call per round).
    """

    iterations: int
    concurrency: int
    rounds: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    calibration_rounds: int = 0
    warmup_rounds: int = 0
    result: Any = None

    @property
    def per_call(self) -> list[float]:
        """Seconds per call, one value per round (pytest-benchmark's ``stats.data``)."""
        return [d / self.iterations for d in self.rounds]

    @property
    def calls(self) -> int:
        """Timed calls in total."""
        return len(self.rounds) * self.iterations


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class _Runner:
    """Runs one round of a given shape and returns its duration."""

    def __init__(
        self, fn: AsyncTarget, setup: Setup | None, concurrency: int, clock: Clock
    ) -> None:
        self.fn = fn
        self.setup = setup
        self.concurrency = concurrency
        self.clock = clock
        self.result: Any = None

    async def serial(self, loops: int, latencies: list[float] | None) -> float:
        fn, clock = self.fn, self.clock
        if self.setup is not None:  # one call per round, setup untimed
            args, kwargs = setup_args(await _maybe_await(self.setup()))
            start = clock()
            self.result = await fn(*args, **kwargs)
            duration = clock() - start
            if latencies is not None:
                latencies.append(duration)
            return duration
        start = clock()
        for _ in range(loops):
            self.result = await fn()
        duration = clock() - start
        if latencies is not None and loops == 1:
            latencies.append(duration)
        return duration

    async def batch(self, latencies: list[float] | None) -> float:
        fn, clock = self.fn, self.clock
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        for _ in range(self.concurrency):
            if self.setup is not None:
                calls.append(setup_args(await _maybe_await(self.setup())))
            else:
                calls.append(((), {}))

        async def one(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            t0 = clock()
            result = await fn(*args, **kwargs)
            if latencies is not None:
                latencies.append(clock() - t0)
            return result

        start = clock()
        results = await asyncio.gather(*(one(a, k) for a, k in calls))
        duration = clock() - start
        self.result = results[-1]
        return duration


async def run_once(fn: AsyncTarget, *, setup: Setup | None = None, concurrency: int = 1) -> Any:
    """The smoke-test path (benchmarks disabled, xdist): the body once, nothing timed.

    With ``concurrency > 1`` the batch shape runs once (N concurrent calls), so
    concurrency bugs still surface in smoke runs.
    """
    runner = _Runner(fn, setup, concurrency, clock=lambda: 0.0)
    if concurrency > 1:
        await runner.batch(None)
    else:
        await runner.serial(1, None)
    return runner.result


async def _calibrate(runner: _Runner, cfg: MeasureConfig, clock: Clock) -> tuple[float, int, int]:
    """pytest-benchmark's ``_calibrate_timer`` for serial rounds → (duration, loops, rounds run)."""
    min_time = max(cfg.min_time, cfg.timer_precision * cfg.calibration_precision)
    min_time_estimate = min_time * 5 / cfg.calibration_precision
    loops = 1
    runs = 0
    while True:
        duration = await runner.serial(loops, None)
        runs += 1
        if cfg.warmup:
            start = clock()
            done = 0
            while clock() - start < cfg.max_time and done < cfg.warmup_iterations:
                duration = min(duration, await runner.serial(loops, None))
                runs += 1
                done += loops
        if duration >= min_time or runner.setup is not None:
            if loops == 1:
                # One call per round: the first call may be cold (connections,
                # caches); estimate from the fastest of a few calls instead.
                for _ in range(COLD_CALLS):
                    duration = min(duration, await runner.serial(1, None))
                    runs += 1
            break
        if duration >= min_time_estimate:
            loops = math.ceil(min_time * loops / duration)
            if loops == 1:
                break
        else:
            loops *= 10
    return duration, loops, runs


async def measure(
    fn: AsyncTarget,
    cfg: MeasureConfig,
    *,
    clock: Clock,
    setup: Setup | None = None,
    concurrency: int = 1,
) -> Measurement:
    """Calibrate, warm up and time ``fn`` (``await fn(*setup())``) in the running loop."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    runner = _Runner(fn, setup, concurrency, clock)
    gc_was_enabled = gc.isenabled()
    if cfg.disable_gc:
        gc.disable()
    try:
        if concurrency == 1:
            duration, iterations, calibration_runs = await _calibrate(runner, cfg, clock)
            m = Measurement(iterations=iterations, concurrency=1)
            m.calibration_rounds = calibration_runs

            async def timed_round(latencies: list[float]) -> float:
                return await runner.serial(iterations, latencies)
        else:
            # A batch round is long (N requests): one calibration batch, like
            # pytest-benchmark's early exit when a single call beats min_time.
            duration = await runner.batch(None)
            m = Measurement(iterations=concurrency, concurrency=concurrency)
            m.calibration_rounds = 1

            async def timed_round(latencies: list[float]) -> float:
                return await runner.batch(latencies)

        duration = max(duration, cfg.timer_precision, 1e-12)
        rounds = max(cfg.min_rounds, math.ceil(cfg.max_time / duration))
        if cfg.warmup:
            warmup_rounds = min(rounds, max(1, cfg.warmup_iterations // m.iterations))
            for _ in range(warmup_rounds):
                await timed_round([])
            m.warmup_rounds = warmup_rounds
        deadline = cfg.max_time * OVERRUN_FACTOR
        started = clock()
        for i in range(rounds):
            m.rounds.append(await timed_round(m.latencies))
            if i + 1 >= cfg.min_rounds and clock() - started > deadline:
                break
        m.result = runner.result
        return m
    finally:
        if cfg.disable_gc and gc_was_enabled:
            gc.enable()
