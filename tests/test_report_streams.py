"""The stream part of the report (reports/streams.py) on a synthetic results folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ENV = {"cpu": "synthetic", "cores": 2, "python": "3.11.9", "platform": "Linux", "packages": {}}


def _entry(provider: str, state: str, ttft_ms: list[float], itl_ms: list[float]) -> dict[str, Any]:
    label = f"mocked-httpx-{provider}-c4-{state}"
    timeline = list(np.cumsum([ttft_ms[0], *itl_ms[:5]]))
    return {
        "name": f"test_stream_cache[{label}]",
        "fullname": f"bench/suites/test_stream.py::test_stream_cache[{label}]",
        "group": f"stream/cache-mocked-httpx-{provider}-c4",
        "params": {
            "world": "mocked",
            "transport": "httpx",
            "provider": provider,
            "cache": "cold" if state == "upstream" else state,  # as bench/suites/test_stream.py
        },
        "param": label,
        "stats": {"data": [v / 1e3 for v in ttft_ms]},
        "extra_info": {
            "stream": {
                "ttft_ms": {"p50": float(np.median(ttft_ms))},
                "itl_ms": {"p50": float(np.median(itl_ms)), "p99": max(itl_ms)},
                "samples_ms": {"ttft": ttft_ms, "itl": itl_ms},
            },
            "timeline_ms": timeline,
            # top-level figures, as bench/suites/test_stream.py records them for gate and headline
            "ttft_p50_ms": float(np.median(ttft_ms)),
            "ttft_p99_ms": float(np.percentile(ttft_ms, 99)),
            "itl_p99_ms": float(np.percentile(itl_ms, 99)),
            **(
                {"replay_vs_complete_hit": 1.1, "chunk_fidelity": 1.0, "ttft_speedup": 150.0}
                if state == "replay"
                else {}
            ),
        },
    }


def _folder(root: Path, benches: list[dict[str, Any]]) -> Path:
    root.mkdir()
    load = [b for b in benches if b["group"].startswith("load/")]
    benches = [b for b in benches if not b["group"].startswith("load/")]
    (root / "stream.json").write_text(json.dumps({"benchmarks": benches}))
    (root / "load.json").write_text(json.dumps({"benchmarks": load}))
    manifest = {
        "format": "samplemind-bench-results",
        "version": 1,
        "created": "2026-12-06T00:00:00+00:00",
        "mode": "mocked",
        "quick": True,
        "suites": ["load", "stream"],
        "files": ["load.json", "stream.json"],
        "environment": ENV,
        "commit": {"id": None, "dirty": None},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return _folder(
        tmp_path / "run",
        [
            _entry("openai", "upstream", [400.0, 450.0, 500.0, 600.0], [10.0] * 8),
            _entry("openai", "replay", [1.0, 2.0, 3.0, 4.0], [0.01] * 8),
            _entry("ollama", "upstream", [30.0, 40.0, 45.0, 90.0], [4.0] * 8),
            _entry("ollama", "replay", [1.0, 1.5, 2.0, 60.0], [0.01] * 8),
            _goodput(),
        ],
    )


def _goodput(
    mode: str = "mocked", knee: float = 20.0, limit: float | None = None
) -> dict[str, Any]:
    """An entry of the load suite's open-loop streams (``test_load_stream_knee``)."""
    return {
        "name": f"test_load_stream_knee[{mode}]",
        "fullname": f"bench/suites/test_load.py::test_load_stream_knee[{mode}]",
        "group": f"load/stream_knee-{mode}",
        "params": {"world": mode},
        "param": mode,
        "stats": {"data": [0.5, 0.6]},
        "extra_info": {
            "suite": "load",
            "subject": f"stream_knee-{mode}",
            "mode": mode,
            "stream_knee_per_s": knee,
            "generator_limit_per_s": limit,
            "slo": "ttft:1000 tpot:50",
            "good_share_bound": 0.95,
            "stream_interrupted": 0,
            "other_errors": 0,
            "curve_offered_per_s": [10.0, 20.0, 40.0],
            "curve_goodput_rps": [10.0, 19.5, 22.0],
            "curve_good_share": [1.0, 0.97, 0.55],
        },
    }


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_charts_are_drawn_with_captions_from_the_figures(run_dir: Path) -> None:
    from reports.charts import Chart
    from reports.data import load_run
    from reports.streams import stream_charts

    charts = stream_charts(load_run(run_dir))
    assert [type(c) for c in charts] == [Chart, Chart, Chart, Chart]
    cdf, itl, timeline, goodput = charts
    assert isinstance(goodput, Chart) and "mocked: knee 20 streams/s" in goodput.caption
    assert "'ttft:1000 tpot:50'" in goodput.caption
    assert isinstance(cdf, Chart) and isinstance(itl, Chart) and isinstance(timeline, Chart)
    # openai: p50 475 ms upstream, 2.5 ms replayed -> 190x
    assert "openai 475" in cdf.caption and "190" in cdf.caption
    assert "1.1" in cdf.caption  # replay vs a non-streamed hit
    assert "p99" in itl.caption
    assert "upstream 6 chunks" in timeline.caption and "replay 6 chunks" in timeline.caption


def test_claims_are_measured_as_ttft(run_dir: Path) -> None:
    from reports.claims import DOES_NOT_HOLD, NOT_MEASURED
    from reports.data import load_run
    from reports.streams import stream_claims

    cached, local = stream_claims(load_run(run_dir))
    # replay TTFT p99 over both providers' 8 replays: about 56 ms (the 60 ms outlier)
    assert cached.verdict == DOES_NOT_HOLD and "p99" in cached.measured
    assert local.verdict == NOT_MEASURED and "world-model input" in local.measured


def test_cached_claim_holds_when_every_replay_is_fast(tmp_path: Path) -> None:
    from reports.claims import HOLDS
    from reports.data import load_run
    from reports.streams import stream_claims

    run = load_run(
        _folder(
            tmp_path / "fast",
            [
                _entry("openai", "upstream", [400.0, 450.0], [10.0] * 4),
                _entry("openai", "replay", [1.0, 2.0], [0.01] * 4),
            ],
        )
    )
    assert stream_claims(run)[0].verdict == HOLDS


def test_a_run_without_streams_omits_the_charts(tmp_path: Path) -> None:
    from reports.charts import Omitted
    from reports.claims import NOT_MEASURED
    from reports.data import load_run
    from reports.streams import stream_charts, stream_claims

    run = load_run(_folder(tmp_path / "empty", []))
    assert all(isinstance(c, Omitted) for c in stream_charts(run))
    assert [c.verdict for c in stream_claims(run)] == [NOT_MEASURED, NOT_MEASURED]


@pytest.mark.parametrize(
    ("knee", "limit", "phrase"),
    [
        (40.0, None, "no knee up to 40 streams/s (the highest rate offered)"),
        (20.0, 40.0, "no knee up to 20 streams/s: at 40 streams/s the load generator's own limit"),
        (0.0, None, "no offered rate met the goodput criterion"),
    ],
    ids=["top-rate-is-no-knee", "generator-limit", "none-met"],
)
def test_the_goodput_chart_never_calls_the_top_rate_or_the_generator_limit_a_knee(
    tmp_path: Path, knee: float, limit: float | None, phrase: str
) -> None:
    from reports.charts import Chart
    from reports.data import load_run
    from reports.streams import stream_charts

    run = load_run(_folder(tmp_path / "g", [_goodput(knee=knee, limit=limit)]))
    goodput = stream_charts(run)[-1]
    assert isinstance(goodput, Chart) and phrase in goodput.caption, goodput.caption


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_the_built_report_and_the_headline_carry_the_stream_figures(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the commands users run (in-process ``main``): the report's four stream charts
    and two TTFT claims, and the headline's TTFT/ITL and open-loop stream lines."""
    from bench.cli import main as bench_main
    from reports.build import main as report_main

    assert report_main([str(run_dir), "--out", str(tmp_path / "out")]) == 0
    summary = (tmp_path / "out" / "summary.md").read_text()
    for title in (
        "Time to first token before / after the cache (CDF)",
        "Inter-token latency (every gap, pooled over requests)",
        "One request's chunk arrivals: upstream beside replay",
        "Stream goodput against offered rate (open loop, SLOs)",
    ):
        assert title in summary
        assert (tmp_path / "out" / "charts").is_dir()
    assert "Cached answers under 50 ms (as time to first token" in summary
    assert "Local answers under 50 ms (as time to first token)" in summary
    capsys.readouterr()
    assert bench_main(["headline", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "stream mocked-httpx-openai-c4-replay: TTFT p50 2.50 ms (p99 3.97 ms), 150.0x" in out
    assert "stream mocked-httpx-openai-c4-upstream: TTFT p50 475.00 ms" in out and "ITL p99" in out
    assert "load mocked streams: knee 20 streams/s" in out
