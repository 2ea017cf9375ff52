"""A smoke run (benchmarks disabled) paces its worlds at most at a tenth of real time; a timed
run keeps every benchmark's own pacing and schedule (decisions 0940, 0941)."""

from __future__ import annotations

import dataclasses

import pytest

from bench.harness.options import SMOKE_LATENCY_SCALE, BenchOptions
from bench.suites import load_engine
from bench.suites.test_load import STREAM_SCALE, _sizes, _stream_sizes

SMOKE = BenchOptions(quick=False, live=False, disabled=True)
QUICK = BenchOptions(quick=True, live=False, disabled=False)
FULL = BenchOptions(quick=False, live=True, disabled=False)


@pytest.mark.parametrize("opts", [QUICK, FULL], ids=["quick", "full"])
@pytest.mark.parametrize("scale", [0.0, 0.05, 0.1, 1.0, 2.0])
def test_a_timed_run_keeps_the_benchmarks_own_scale(opts: BenchOptions, scale: float) -> None:
    assert opts.latency_scale(scale) == scale


def test_a_smoke_run_paces_no_world_slower_than_a_tenth_of_real_time() -> None:
    assert SMOKE_LATENCY_SCALE == 0.1
    assert SMOKE.latency_scale(1.0) == SMOKE_LATENCY_SCALE  # the paced cells, the streams
    assert SMOKE.latency_scale(0.1) == 0.1  # the bursts
    assert SMOKE.latency_scale(0.05) == 0.05  # the stress cell keeps its own
    assert "worlds at <= 0.1x real time" in SMOKE.header(None)[0]
    assert "run=timed" in QUICK.header(None)[0]


def test_the_load_suites_timed_schedules_are_unchanged() -> None:
    """The quick and full runs' sizes as they were before the smoke cuts (a timed run's report
    must not change): the streams at real-world pacing, the fault schedules' whole tail."""
    assert dataclasses.astuple(_stream_sizes(QUICK)) == (
        10.0, 2.0, 2, 0, 20.0, 0.5, 0.5, STREAM_SCALE, load_engine.TAIL_S,
    )  # fmt: skip
    assert dataclasses.astuple(_stream_sizes(FULL)) == (
        10.0, 4.0, 5, 2, 20.0, 0.5, 1.0, STREAM_SCALE, load_engine.TAIL_S,
    )  # fmt: skip
    assert STREAM_SCALE == 1.0 and load_engine.TAIL_S == 1.5
    smoke = _stream_sizes(SMOKE)
    assert (smoke.latency_scale, smoke.tail_s) == (0.1, 0.375)
    # the cache faults' schedule keeps its recovery tail in every run (decision 0941)
    assert _sizes(SMOKE).time_scale == 0.25 and _sizes(QUICK).time_scale == 0.5
