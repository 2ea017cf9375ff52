"""The stream part of the report (reports/streams.py) on a synthetic results folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reports.charts import Chart, Omitted
from reports.claims import DOES_NOT_HOLD, HOLDS, NOT_MEASURED
from reports.data import load_run
from reports.streams import stream_charts, stream_claims

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
            **({"replay_vs_complete_hit": 1.1, "chunk_fidelity": 1.0} if state == "replay" else {}),
        },
    }


def _folder(root: Path, benches: list[dict[str, Any]]) -> Path:
    root.mkdir()
    (root / "stream.json").write_text(json.dumps({"benchmarks": benches}))
    manifest = {
        "format": "samplemind-bench-results",
        "version": 1,
        "created": "2026-12-06T00:00:00+00:00",
        "mode": "mocked",
        "quick": True,
        "suites": ["stream"],
        "files": ["stream.json"],
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


def _goodput() -> dict[str, Any]:
    return {
        "name": "test_stream_goodput[mocked-httpx-none]",
        "fullname": "bench/suites/test_stream.py::test_stream_goodput[mocked-httpx-none]",
        "group": "stream/goodput-mocked-httpx",
        "params": {"world": "mocked", "transport": "httpx", "faults": "none"},
        "param": "mocked-httpx-none",
        "stats": {"data": [0.5, 0.6]},
        "extra_info": {
            "knee_per_s": 20.0,
            "slo_ttft_ms": 1000.0,
            "slo_tpot_ms": 50.0,
            "stream_interrupted": 0,
            "other_errors": 0,
            "curve_offered_per_s": [10.0, 20.0, 40.0],
            "curve_goodput_rps": [10.0, 19.5, 22.0],
        },
    }


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_charts_are_drawn_with_captions_from_the_figures(run_dir: Path) -> None:
    charts = stream_charts(load_run(run_dir))
    assert [type(c) for c in charts] == [Chart, Chart, Chart, Chart]
    cdf, itl, timeline, goodput = charts
    assert isinstance(goodput, Chart) and "knee 20 req/s" in goodput.caption
    assert isinstance(cdf, Chart) and isinstance(itl, Chart) and isinstance(timeline, Chart)
    # openai: p50 475 ms upstream, 2.5 ms replayed -> 190x
    assert "openai 475" in cdf.caption and "190" in cdf.caption
    assert "1.1" in cdf.caption  # replay vs a non-streamed hit
    assert "p99" in itl.caption
    assert "upstream 6 chunks" in timeline.caption and "replay 6 chunks" in timeline.caption


def test_claims_are_measured_as_ttft(run_dir: Path) -> None:
    cached, local = stream_claims(load_run(run_dir))
    # replay TTFT p99 over both providers' 8 replays: about 56 ms (the 60 ms outlier)
    assert cached.verdict == DOES_NOT_HOLD and "p99" in cached.measured
    assert local.verdict == NOT_MEASURED and "world-model input" in local.measured


def test_cached_claim_holds_when_every_replay_is_fast(tmp_path: Path) -> None:
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
    run = load_run(_folder(tmp_path / "empty", []))
    assert all(isinstance(c, Omitted) for c in stream_charts(run))
    assert [c.verdict for c in stream_claims(run)] == [NOT_MEASURED, NOT_MEASURED]
