"""The load suite's harness: knee search, fault analysis, gate rules and report, on synthetic data.

No timing here: points and results folders are synthetic; the gate runs through the real
console script in a subprocess (and ``gate.main`` in-process), the report and the headline
through ``samplemind-bench``'s ``main()`` in-process (the installed script's own subprocess is
``tests/test_bench_bad_input.py::test_console_script_smoke``'s).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from bench import cli, gate
from bench.suite_list import SUITES
from bench.suites import load_engine
from fixtures.workloads import generate
from tests._helpers import run_main, unrendered_charts

SCRIPT = str(Path(sys.executable).with_name("samplemind-bench"))
REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "data" / "results"


def _point(rate: float, p99_s: float, *, errors: int = 0, served: float = 1.0) -> load_engine.Point:
    calls = [
        load_engine.CallRecord(start_s=0.0, end_s=p99_s, error="X" if i < errors else None)
        for i in range(100)
    ]
    return load_engine.Point(
        calls=calls,
        wall_s=100 / (rate * served),
        provider_calls=0,
        cpu_s=0.0,
        counters={},
        lag={},
        rss_mb=0.0,
        offered_per_s=rate,
    )


async def test_knee_doubles_then_bisects_to_the_highest_acceptable_rate() -> None:
    tried: list[float] = []

    async def measure(rate: float) -> load_engine.Point:  # p99 crosses 100 ms at 700/s
        tried.append(rate)
        return _point(rate, 0.05 if rate <= 700 else 0.5)

    knee = await load_engine.find_knee(
        measure, start_per_s=100, bound_ms=100, max_doublings=6, bisections=3
    )
    assert tried[:4] == [100, 200, 400, 800]  # doubling until the first failure
    assert tried[4:] == [600, 700, 750]  # then bisection between 400 and 800
    assert knee.knee_per_s == 700
    assert [r for r, _ in knee.points] == sorted(tried)
    assert knee.knee_point is not None and knee.knee_point.offered_per_s == 700


async def test_knee_counts_errors_and_unserved_load_as_failures() -> None:
    async def with_errors(rate: float) -> load_engine.Point:
        return _point(rate, 0.01, errors=1 if rate >= 400 else 0)

    knee = await load_engine.find_knee(
        with_errors, start_per_s=100, bound_ms=100, max_doublings=4, bisections=0
    )
    assert knee.knee_per_s == 200

    async def saturated(rate: float) -> load_engine.Point:  # fast answers, but only half served
        return _point(rate, 0.01, served=0.5 if rate >= 200 else 1.0)

    knee = await load_engine.find_knee(
        saturated, start_per_s=100, bound_ms=100, max_doublings=4, bisections=0
    )
    assert knee.knee_per_s == 100

    async def never(rate: float) -> load_engine.Point:
        return _point(rate, 1.0)

    assert (
        await load_engine.find_knee(
            never, start_per_s=100, bound_ms=100, max_doublings=3, bisections=2
        )
    ).knee_per_s == 0


def test_truth_hits_follow_the_workload_manifest() -> None:
    items = generate(200, repeat=0.6, seed=11)
    truth = load_engine.truth_hits(items)
    assert sum(truth) == 120 and truth[0] is False
    cycled = load_engine.cycle(items, 500)
    assert len(cycled) == 500 and cycled[200] is items[0]
    assert all(load_engine.truth_hits(cycled)[200:])  # the second lap repeats only


def test_fault_analysis_counts_errors_extra_calls_and_recovery() -> None:
    kill = load_engine.Fault("redis_sigkill_restart", "cache", at_s=1.0, hold_s=0.3)
    storm = load_engine.Fault("provider_429_storm", "provider", at_s=0.2, hold_s=0.3)
    calls: list[load_engine.CallRecord] = []
    for i in range(200):  # 100 calls/s for 2 s; every call a truth hit after 0.1 s
        t = i * 0.01
        rec = load_engine.CallRecord(start_s=t, end_s=t + 0.001, truth_hit=t >= 0.1)
        rec.hit = rec.store_hit = rec.truth_hit and not (1.0 <= t < 1.6)  # misses until 1.6 s
        rec.paid = 0 if rec.hit else 1
        if 0.2 <= t < 0.5 and i % 10 == 0:
            rec.paid += 2  # retries of the storm
        if 0.3 <= t < 0.32:
            rec.error = "AllProvidersFailedError"
        calls.append(rec)
    outcomes, bins = load_engine.analyse_faults(calls, [(kill, 1.0, 1.3), (storm, 0.2, 0.5)], 2.0)
    assert [o.name for o in outcomes] == ["provider_429_storm", "redis_sigkill_restart"]
    s, k = outcomes
    assert (s.caller_errors, s.error_types) == (2, {"AllProvidersFailedError": 2})
    assert s.extra_provider_calls == 3 * 2  # three storm retries x 2, no other paid repeats
    assert s.window_end_s == 1.0
    assert k.caller_errors == 0
    assert k.extra_provider_calls == 60  # 1.0-1.6 s: truth hits that paid
    assert k.resume_hits_s == pytest.approx(0.3, abs=0.011)
    assert k.recover_s == pytest.approx(0.3, abs=1e-6)  # first good bin starts at 1.6 s
    assert len(bins) == 20 and sum(b["calls"] for b in bins) == 200


def test_recovery_after_a_data_loss_is_judged_against_the_emptied_store() -> None:
    """Keys asked before a restart without persistence cannot hit after it: the reference
    counts only requests asked since the restart ended, so refilling the store is recovery."""
    kill = load_engine.Fault(
        "redis_sigkill_restart", "cache", at_s=0.5, hold_s=0.2, loses_data=True
    )
    calls: list[load_engine.CallRecord] = []
    for i in range(100):  # 100 calls/s for 1 s over 5 keys in turn
        t = i * 0.01
        rec = load_engine.CallRecord(start_s=t, end_s=t + 0.001, truth_hit=i >= 5, key=f"k{i % 5}")
        # hits before the kill; dead 0.5-0.7 s; then each key misses once and hits again
        rec.hit = rec.store_hit = (i >= 5 and t < 0.5) or i >= 75
        rec.paid = 0 if rec.hit else 1
        calls.append(rec)
    assert load_engine.reference_hits(calls, [0.7])[70:80] == [False] * 5 + [True] * 5
    (k,), bins = load_engine.analyse_faults(calls, [(kill, 0.5, 0.7)], 1.0)
    assert k.extra_provider_calls == 25  # 20 during the outage + 5 refills after the restart
    assert k.resume_hits_s == pytest.approx(0.05, abs=0.011)
    assert k.recover_s == pytest.approx(0.0, abs=1e-6)  # 0.7-0.8 s: 5 refills + 5 hits = truth
    assert [b["truth"] for b in bins][7:] == [5, 10, 10]


def test_load_is_a_suite_of_the_cli() -> None:
    assert "load" in SUITES
    out = subprocess.run(
        [SCRIPT, "run", "--help"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "load" in out


# --------------------------------------------------------------------------- gate

ENV = {"cpu": "synthetic", "cores": 2, "python": "3.11.9", "platform": "Linux", "packages": {}}


def _bench(
    name: str, group: str, extra: Mapping[str, Any], data: Sequence[float]
) -> dict[str, Any]:
    return {
        "name": name,
        "fullname": f"bench/test_load.py::{name}",
        "group": group,
        "params": {},
        "param": None,
        "stats": {"data": list(data), "median": sorted(data)[len(data) // 2], "rounds": len(data)},
        "extra_info": dict(extra),
    }


def _load_results(
    root: Path, *, hit_rate: float = 1.0, errors: int = 0, cache_errors: int = 0, p50: float = 1e-3
) -> Path:
    burst = {
        "suite": "load",
        "subject": "burst-5000-mocked",
        "mode": "mocked",
        "burst_size": 5000,
        "burst_hit_rate": hit_rate,
        "burst_truth": 1.0,
        "cold_hit_rate": 0.94,
        "cold_truth": 0.94,
        "caller_errors": 0,
        "p99_ms": 120.0,
        "req_per_s": 9000.0,
    }
    faults = {
        "suite": "load",
        "subject": "faults-mocked",
        "mode": "mocked",
        "caller_errors": errors,
        "cache_fault_caller_errors": cache_errors,
        "resume_hits_s": 0.05,
        "faults": [
            {
                "name": "redis_sigkill_restart",
                "kind": "cache",
                "start_s": 1.0,
                "end_s": 1.3,
                "caller_errors": cache_errors,
                "extra_provider_calls": 12,
                "recover_s": 0.2,
            }
        ],
        "timeline_t_s": [0.0, 0.1, 0.2],
        "timeline_hit_rate": [0.5, None, 0.9],
        "timeline_truth": [0.6, None, 0.9],
        "timeline_errors": [0, 0, cache_errors],
    }
    knee = {
        "suite": "load",
        "subject": "knee-mocked",
        "mode": "mocked",
        "knee_per_s": 1000.0,
        "knee_bound_ms": 100.0,
        "p99_ms": 40.0,
        "curve_offered_per_s": [250.0, 500.0, 1000.0, 2000.0],
        "curve_achieved_per_s": [250.0, 498.0, 990.0, 1400.0],
        "curve_p50_ms": [1.0, 1.2, 2.0, 300.0],
        "curve_p99_ms": [3.0, 5.0, 40.0, 900.0],
    }
    lat = [p50 * (1 + i / 100) for i in range(50)]
    benches = [
        _bench("test_load_burst[mocked-5000]", "load/burst-mocked", burst, lat),
        _bench("test_load_faults[mocked]", "load/faults-mocked", faults, lat),
        _bench("test_load_knee[mocked]", "load/knee-mocked", knee, lat),
    ]
    root.mkdir(parents=True)
    (root / "load.json").write_text(json.dumps({"benchmarks": benches}))
    manifest = {
        "format": "samplemind-bench-results",
        "version": 1,
        "created": "2026-12-01T00:00:00+00:00",
        "mode": "mocked",
        "quick": True,
        "suites": ["load"],
        "files": ["load.json"],
        "environment": ENV,
        "commit": {"id": None, "dirty": None},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _gate(
    base: Path, cand: Path, tmp_path: Path, *, subprocess_: bool = True
) -> tuple[int, dict[str, Any]]:
    report = tmp_path / f"{cand.name}.json"
    argv = [str(base), str(cand), "--json", str(report), "-q"]
    if subprocess_:
        code = subprocess.run(
            [SCRIPT, "gate", *argv], capture_output=True, text=True, timeout=120, cwd=REPO
        ).returncode
    else:
        code = gate.main(argv)
    verdicts = {
        (v["name"], v["metric"]): v["status"] for v in json.loads(report.read_text())["verdicts"]
    }
    return code, verdicts


@pytest.mark.parametrize(
    ("change", "metric", "bench", "console"),
    [
        ({"hit_rate": 0.985}, "burst_hit_rate", "test_load_burst[mocked-5000]", True),
        ({"errors": 1}, "caller_errors", "test_load_faults[mocked]", True),
        ({"hit_rate": 0.0}, "burst_hit_rate", "test_load_burst[mocked-5000]", False),
        (
            {"errors": 3, "cache_errors": 3},
            "cache_fault_caller_errors",
            "test_load_faults[mocked]",
            False,
        ),
    ],
    ids=[
        "burst-hit-rate-minus-1.5-points",
        "one-caller-error",
        "burst-hit-rate-0",
        "cache-fault-errors",
    ],
)
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_gate_fails_when_the_bug_comes_back(
    tmp_path: Path, change: dict[str, Any], metric: str, bench: str, console: bool
) -> None:
    """Through the console script (two cases) and ``gate.main`` (the same rules, in-process)."""
    base = _load_results(tmp_path / "base")
    cand = _load_results(tmp_path / "cand", **change)
    code, verdicts = _gate(base, cand, tmp_path, subprocess_=console)
    assert code == 1
    assert verdicts[(bench, metric)] == "regressed"


def test_gate_passes_equal_figures_and_ignores_load_latency_noise(tmp_path: Path) -> None:
    base = _load_results(tmp_path / "base")
    cand = _load_results(tmp_path / "cand", hit_rate=0.995, p50=3e-3)  # within 1 point; 3x slower
    code, verdicts = _gate(base, cand, tmp_path)
    assert code == 0, verdicts
    assert verdicts[("test_load_burst[mocked-5000]", "burst_hit_rate")] == "unchanged"
    assert ("test_load_burst[mocked-5000]", "time") not in verdicts  # load latencies: skipped


# --------------------------------------------------------------------------- report


def _report(tmp_path: Path, *folders: Path) -> str:
    """``samplemind-bench report FOLDERS --out TMP/report`` in-process → summary.md."""
    out = tmp_path / "report"
    proc = run_main(cli.main, ["report", *map(str, folders), "--out", str(out)], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return (out / "summary.md").read_text()


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_report_charts_a_load_run(tmp_path: Path) -> None:
    summary = _report(tmp_path, _load_results(tmp_path / "load"))
    assert "Capacity curve" in summary and "knee 1,000 req/s" in summary
    assert "Warm-burst hit rate vs truth: mocked 5,000 100.0 % (100.0 %)" in summary
    assert "Hit rate over time through the fault schedule" in summary
    assert (
        "redis_sigkill_restart: 0 caller errors, +12 provider calls, recovered in 0.2 s" in summary
    )
    assert (tmp_path / "report" / "charts" / "load_capacity.png").is_file()
    assert (tmp_path / "report" / "charts" / "load_faults.svg").is_file()


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_report_builds_from_an_older_run_without_the_load_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unrendered_charts(monkeypatch)  # the chart list is read, not the images (decision 0980)
    summary = _report(tmp_path, RESULTS / "run_b")
    assert "no load suite in this run" in summary
    assert not (tmp_path / "report" / "charts" / "load_capacity.png").exists()


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_headline_prints_the_load_figures(tmp_path: Path) -> None:
    folder = _load_results(tmp_path / "load")
    proc = run_main(cli.main, ["headline", str(folder)], cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "load mocked warm-burst hit rate by burst size: 5000: 100.0% (truth 100%" in out
    assert "load mocked faults: caller errors 0 (cache faults 0)" in out
    assert "load mocked knee: 1000 req/s" in out


async def test_interleaved_rounds_alternate_which_side_runs_first() -> None:
    ran: list[str] = []

    def side(name: str, rate: float) -> Any:
        async def one_round() -> float:
            ran.append(name)
            return rate

        return one_round

    rates = await load_engine.interleaved({"a": side("a", 1.0), "b": side("b", 2.0)}, 3)
    assert ran == ["a", "b", "b", "a", "a", "b"]
    assert rates == {"a": [1.0] * 3, "b": [2.0] * 3}
    rate, values = await load_engine.gather_rate(5, lambda i: _echo(i))
    assert values == [0, 1, 2, 3, 4] and rate > 0


async def _echo(i: int) -> int:
    return i


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_hits_vs_raw_script_measures_every_side_and_refuses_bad_input() -> None:
    run = [sys.executable, "-m", "studies.hits_vs_raw"]
    args = ["--rounds", "2", "--repeats", "1", "--concurrency", "20"]
    out = subprocess.run(run + args, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    figures = json.loads(line)
    assert figures["mode"] == "mocked" and figures["rounds"] == 2
    assert figures["hit_fraction"] == figures["cache_hit_fraction"] == 1.0
    assert figures["raw_found_fraction"] == 1.0
    assert figures["manager_vs_raw"] > 0 and figures["cache_vs_raw"] > 0
    bad = subprocess.run(
        [*run, "--rounds", "0"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "--rounds" in bad.stderr
    bad = subprocess.run(
        [*run, "--cache-config", '{"nope": 1}'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--cache-config" in bad.stderr
