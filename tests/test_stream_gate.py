"""The gate's stream rules (bench/gate/default.toml, ``stream/*`` and ``load/stream_*``) on
synthetic results.

A candidate that brings back a one-chunk replay (chunk fidelity 0) or a duplicate upstream
call in a single-flight burst, or whose open-loop streams show a caller any error but
``StreamInterrupted``, exits 1 through ``samplemind-bench gate`` (``bench.cli.main``
in-process, and once through the installed console script); equal figures and TTFT noise
within the rules pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from tests.gate.helpers import zero_floor

ENV = {"cpu": "synthetic", "cores": 2, "python": "3.11.9", "platform": "Linux", "packages": {}}


def _bench(name: str, group: str, extra: dict[str, Any], data: list[float]) -> dict[str, Any]:
    return {
        "name": name,
        "fullname": f"bench/suites/test_{group.split('/')[0]}.py::{name}",
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
    interrupted: int = 4,
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
    ]
    load = [
        _bench(  # open-loop streams under mid-stream faults (the load suite's stream mode)
            "test_load_stream_faults[mocked]",
            "load/stream_faults-mocked",
            {
                "stream_interrupted": interrupted,
                "other_errors": other_errors,
                "ttft_p99_ms": 900.0,
                "goodput_rps": 14.0,
            },
            [0.5 + i / 1e3 for i in range(30)],
        ),
    ]
    root.mkdir(parents=True)
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
        ({"other_errors": 1}, "test_load_stream_faults[mocked]", "other_errors"),
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


def test_the_console_script_exits_1_on_a_one_chunk_replay_and_a_duplicate_call(
    tmp_path: Path,
) -> None:
    """The installed ``samplemind-bench`` (one real process): both bugs named, exit 1."""
    base = _results(tmp_path / "base")
    cand = _results(tmp_path / "cand", fidelity=0.0, burst_calls=2)
    script = Path(sys.executable).with_name("samplemind-bench")
    root = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [str(script), "gate", str(base), str(cand), "--json", str(tmp_path / "v.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    verdicts = {
        (v["name"], v["metric"]): v["status"]
        for v in json.loads((tmp_path / "v.json").read_text())["verdicts"]
    }
    assert verdicts[("test_stream_cache[mocked-httpx-openai-c10-replay]", "chunk_fidelity")] == (
        "regressed"
    )
    assert verdicts[("test_stream_single_flight[mocked-httpx-1000]", "upstream_calls")] == (
        "regressed"
    )
    assert "chunk_fidelity" in done.stdout and "upstream_calls" in done.stdout


def test_gate_passes_equal_stream_figures(tmp_path: Path) -> None:
    base = _results(tmp_path / "base")
    cand = _results(tmp_path / "cand", ttft_ms=3.1, interrupted=9)
    code, verdicts = _gate(base, cand, tmp_path)
    assert code == 0, verdicts
    replay = "test_stream_cache[mocked-httpx-openai-c10-replay]"
    assert verdicts[(replay, "chunk_fidelity")] == "unchanged"
    assert verdicts[("test_stream_single_flight[mocked-httpx-1000]", "upstream_calls")] == (
        "unchanged"
    )
    assert verdicts[(replay, "time")] == "unchanged"  # TTFT samples: 3.0 -> 3.1 ms, within 20 %
    assert verdicts[(replay, "ttft_p99_ms")] == "unchanged"
    # open-loop streams: StreamInterrupted is counted (4 -> 9), not judged; other errors 0 -> 0
    faults = "test_load_stream_faults[mocked]"
    assert verdicts[(faults, "other_errors")] == "unchanged"
    assert (faults, "stream_interrupted") not in verdicts and (faults, "time") not in verdicts
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
