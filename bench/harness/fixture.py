"""The ``abenchmark`` fixture: bench/harness/measure.py timings stored in pytest-benchmark's own stats.

pytest-benchmark owns the session (options, ``--benchmark-json``, tables,
``--benchmark-compare``); this adapter borrows its :class:`BenchmarkFixture`
for the settings and the stats entry, so an async benchmark appears in the
JSON exactly like a sync one: raw per-call samples in ``stats.data``, domain
figures in ``extra_info``.

It touches pytest-benchmark internals that have been stable since 3.x
(``_make_stats``, ``_min_time``, ``_max_time``, ``_min_rounds``, ``_warmup``,
``_calibration_precision``, ``_timer``, ``_disable_gc``, ``_get_precision``,
``_mode``); :func:`check_pytest_benchmark` fails loudly if they move.

Use in an ``async def`` test (pytest-asyncio runs it in its one loop per test,
created before the test, so loop start-up is never timed)::

    async def test_get(abenchmark):
        abenchmark.describe("cache", "hit/1KB", "msgpack")
        await abenchmark(cache.get, setup=lambda: (request,))
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pytest_benchmark.fixture import BenchmarkFixture

from bench.harness.aggregate import clean, latency_figures, rate_figures
from bench.harness.measure import AsyncTarget, MeasureConfig, Measurement, measure, run_once

__all__ = ["AsyncBenchmark", "check_pytest_benchmark", "describe", "median_s"]

_REQUIRED = (
    "_make_stats",
    "_get_precision",
    "_min_time",
    "_max_time",
    "_min_rounds",
    "_warmup",
    "_calibration_precision",
    "_timer",
    "_disable_gc",
)


def check_pytest_benchmark(bf: BenchmarkFixture) -> None:
    """Fail with a clear message when the installed pytest-benchmark lacks what we use."""
    missing = [name for name in _REQUIRED if not hasattr(bf, name)]
    if missing:
        raise RuntimeError(
            f"this pytest-benchmark lacks {missing}; bench/harness/fixture.py supports 4.x-5.x"
        )


def describe(
    bf: BenchmarkFixture,
    suite: str,
    subject: str,
    variant: str,
    **figures: Any,
) -> None:
    """Set ``group`` = ``"<suite>/<subject>"`` and the contract's ``extra_info`` keys.

    Call before timing (pytest-benchmark copies ``group`` when it creates the
    stats entry); ``extra_info`` may be updated afterwards.
    """
    bf.group = f"{suite}/{subject}"
    bf.extra_info.update(clean({"suite": suite, "subject": subject, "variant": variant, **figures}))


def median_s(bf: BenchmarkFixture) -> float | None:
    """The median seconds per call of a finished benchmark (``None`` when disabled)."""
    meta = bf.stats
    if meta is None or not meta.stats.data:
        return None
    return float(meta.stats.median)


class AsyncBenchmark:
    """Times coroutines; one use per test, like pytest-benchmark's ``benchmark``."""

    def __init__(
        self,
        bf: BenchmarkFixture,
        *,
        disabled: bool,
        clock: Callable[[], float] | None = None,
    ) -> None:
        check_pytest_benchmark(bf)
        self._bf: Any = bf  # untyped upstream; private members used, see check_pytest_benchmark
        self.disabled = disabled or bool(bf.disabled)
        self._clock = clock or bf._timer
        self.measurement: Measurement | None = None
        self.counter: Callable[..., Awaitable[Any]] | None = None
        """Set by bench/instructions/plugin.py: count the body instead of timing it."""

    @property
    def enabled(self) -> bool:
        return not self.disabled

    @property
    def extra_info(self) -> dict[str, Any]:
        info: dict[str, Any] = self._bf.extra_info
        return info

    @property
    def group(self) -> str | None:
        group: str | None = self._bf.group
        return group

    def describe(self, suite: str, subject: str, variant: str, **figures: Any) -> None:
        """See :func:`describe`."""
        describe(self._bf, suite, subject, variant, **figures)

    def config(self) -> MeasureConfig:
        """pytest-benchmark's effective settings for this test."""
        bf = self._bf
        return MeasureConfig(
            min_time=float(bf._min_time),
            max_time=float(bf._max_time),
            min_rounds=int(bf._min_rounds),
            calibration_precision=int(bf._calibration_precision),
            timer_precision=float(bf._get_precision(bf._timer)),
            warmup=bool(bf._warmup),
            warmup_iterations=int(bf._warmup) if bf._warmup else 0,
            disable_gc=bool(bf._disable_gc),
        )

    def _claim(self, mode: str) -> None:
        if self._bf._mode:
            self._bf.has_error = True
            raise RuntimeError(f"the benchmark fixture was already used ({self._bf._mode})")
        self._bf._mode = mode

    async def __call__(
        self,
        fn: AsyncTarget,
        *,
        setup: Callable[[], Any] | None = None,
        concurrency: int = 1,
    ) -> Any:
        """Time ``await fn(*setup())``; ``concurrency=N``: one round = N concurrent calls.

        Disabled (``--benchmark-disable``, xdist): run once, untimed, and return
        the result. Enabled: calibrate, time, store samples, and add
        ``concurrency``, ``req_per_s`` and ``p50_ms``/``p95_ms``/``p99_ms`` (when
        per-call latencies exist) to ``extra_info``.
        """
        self._claim("abenchmark(...)")
        try:
            if self.counter is not None:
                return await self.counter(fn, setup=setup, concurrency=concurrency)
            if self.disabled:
                return await run_once(fn, setup=setup, concurrency=concurrency)
            m = await measure(
                fn, self.config(), clock=self._clock, setup=setup, concurrency=concurrency
            )
            self._store(m)
            return m.result
        except BaseException:
            self._bf.has_error = True
            raise

    def _store(self, m: Measurement) -> None:
        self.measurement = m
        stats = self._bf._make_stats(m.iterations)
        for duration in m.rounds:
            stats.update(duration)  # pytest-benchmark divides by iterations
        info = self.extra_info
        info["concurrency"] = m.concurrency
        info.update(rate_figures(m.per_call))
        info.update(latency_figures(m.latencies))

    def record(
        self,
        samples_s: list[float],
        *,
        label: str,
        params: dict[str, Any],
        extra_info: dict[str, Any],
        group: str | None = None,
    ) -> None:
        """Store an already measured series (one sample per call) as its own benchmark entry.

        For benchmarks that time several contenders inside one interleaved run
        (the pipeline A/B replay): each contender becomes one entry named
        ``<test>[<label>]`` with its own ``params`` and ``extra_info``.
        Nothing is stored when disabled or when ``samples_s`` is empty.
        """
        if not self._bf._mode:
            self._bf._mode = "abenchmark.record(...)"
        if self.disabled or not samples_s:
            return
        bf = self._bf
        saved = (bf.name, bf.fullname, bf.param, bf.params, bf.extra_info, bf.group)
        base = bf.name.split("[", 1)[0]
        bf.name = f"{base}[{label}]"
        bf.fullname = f"{bf.fullname.split('[', 1)[0]}[{label}]"
        bf.param, bf.params = label, dict(params)
        bf.extra_info = dict(extra_info)
        if group is not None:
            bf.group = group
        try:
            stats = bf._make_stats(1)
            for s in samples_s:
                stats.update(s)
        finally:
            bf.name, bf.fullname, bf.param, bf.params, bf.extra_info, bf.group = saved
