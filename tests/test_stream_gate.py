"""The gate's stream rules (bench/gate/default.toml, ``stream/*``) on synthetic results.

A candidate that brings back a one-chunk replay (chunk fidelity 0) or a duplicate upstream
call in a single-flight burst exits 1 through ``samplemind-bench gate`` (``bench.cli.main``,
in-process); equal figures and TTFT noise within the rules pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from tests.gate.helpers import zero_floor

ENV = {"cpu": "synthetic", "cores": 2, "python": "3.11.9", "platform": "Linux", "packages": {}}


def _bench(name: str, group: str, extra: dict[str, Any], data: list[float]) -> dict[str, Any]:
    return {
        "name": name,
        "fullname": f"bench/suites/test_stream.py::{name}",
        "group": group,
        "params": {},
        "param": None,
        "stats": {"data": data, "median": sorted(data)[len(data) // 2], "rounds": len(data)},
        "extra_info": extra,
    }


def _results(
    root: Path,
    *,
    fidelity: float = 1.0,
    burst_calls: int = 1,
    ttft_ms: float = 3.0,
    other_errors: int = 0,
) -> Path:
    stream = {"ttft_ms": {"p50": ttft_ms}, "itl_ms": {"p99": 0.05}}
    replay = {
        "stream": stream,
        "ttft_p50_ms": ttft_ms,
        "ttft_p99_ms": ttft_ms * 2,
        "itl_p99_ms": 0.05,
        "chunk_fidelity": fidelity,
        "upstream_calls": 10,
        "distinct_requests": 10,
        "ttft_speedup": 150.0,
    }
    burst = {
        "stream": stream,
        "ttft_p50_ms": 150.0,
        "ttft_p99_ms": 160.0,
        "itl_p99_ms": 3.0,
        "chunk_fidelity": 1.0,
        "upstream_calls": burst_calls,
        "distinct_requests": 1,
    }
    ttfts = [ttft_ms / 1e3 * (1 + i / 100) for i in range(30)]
    benches = [
        _bench(
            "test_stream_cache[mocked-httpx-openai-c10-replay]",
            "stream/cache-mocked-httpx-openai-c10",
            replay,
            ttfts,
        ),
        _bench(
            "test_stream_single_flight[mocked-httpx-1000]",
            "stream/single_flight-mocked-httpx",
            burst,
            [0.15 + i / 1e4 for i in range(30)],
        ),
        _bench(  # a burst of one stream: one TTFT, judged by its exact figures only
            "test_stream_single_flight[mocked-httpx-1]",
            "stream/single_flight-mocked-httpx",
            {**burst, "upstream_calls": 1},
            [0.104],
        ),
        _bench(
            "test_stream_goodput[mocked-httpx-cut_429]",
            "stream/goodput-mocked-httpx",
            {"stream_interrupted": 4, "other_errors": other_errors, "knee_per_s": 0.0},
            [0.5 + i / 1e3 for i in range(30)],
        ),
    ]
    root.mkdir(parents=True)
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


def _gate(base: Path, cand: Path, tmp_path: Path) -> tuple[int, dict[tuple[str, str], str]]:
    report = tmp_path / f"{cand.name}.json"
    # synthetic runs with no between-run noise: judged on their figures alone (a zero floor)
    floor = zero_floor(tmp_path)
    code = main(["gate", str(base), str(cand), "--json", str(report), "-q", "--floor", str(floor)])
    doc = json.loads(report.read_text())
    return code, {(v["name"], v["metric"]): v["status"] for v in doc["verdicts"]}


@pytest.mark.parametrize(
    ("change", "bench", "metric"),
    [
        (
            {"fidelity": 0.0},
            "test_stream_cache[mocked-httpx-openai-c10-replay]",
            "chunk_fidelity",
        ),
        ({"burst_calls": 2}, "test_stream_single_flight[mocked-httpx-1000]", "upstream_calls"),
        ({"other_errors": 1}, "test_stream_goodput[mocked-httpx-cut_429]", "other_errors"),
    ],
    ids=["one-chunk-replay", "duplicate-upstream-call", "non-interrupt-error-mid-stream"],
)
def test_gate_fails_when_a_stream_bug_comes_back(
    tmp_path: Path, change: dict[str, Any], bench: str, metric: str
) -> None:
    base = _results(tmp_path / "base")
    cand = _results(tmp_path / "cand", **change)
    code, verdicts = _gate(base, cand, tmp_path)
    assert code == 1
    assert verdicts[(bench, metric)] == "regressed"


def test_gate_passes_equal_stream_figures(tmp_path: Path) -> None:
    base = _results(tmp_path / "base")
    cand = _results(tmp_path / "cand", ttft_ms=3.1)
    code, verdicts = _gate(base, cand, tmp_path)
    assert code == 0, verdicts
    replay = "test_stream_cache[mocked-httpx-openai-c10-replay]"
    assert verdicts[(replay, "chunk_fidelity")] == "unchanged"
    assert verdicts[("test_stream_single_flight[mocked-httpx-1000]", "upstream_calls")] == (
        "unchanged"
    )
    assert verdicts[(replay, "time")] == "unchanged"  # TTFT samples: 3.0 -> 3.1 ms, within 20 %
    assert verdicts[(replay, "ttft_p99_ms")] == "unchanged"
    # a single-flight burst's time is not a sample set (one TTFT for a burst of 1): not judged
    burst1 = "test_stream_single_flight[mocked-httpx-1]"
    assert (burst1, "time") not in verdicts and verdicts[(burst1, "upstream_calls")] == "unchanged"


def test_gate_fails_when_the_ttft_tail_more_than_doubles(tmp_path: Path) -> None:
    base = _results(tmp_path / "base")
    cand = _results(tmp_path / "cand", ttft_ms=7.0)
    code, verdicts = _gate(base, cand, tmp_path)
    replay = "test_stream_cache[mocked-httpx-openai-c10-replay]"
    assert code == 1
    assert verdicts[(replay, "time")] == "regressed"
    assert verdicts[(replay, "ttft_p99_ms")] == "regressed"
