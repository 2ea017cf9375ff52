"""Labels that do not overstate (issue 21 item 2), on small synthetic results folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from reports.data import Run

ENV = {"cpu": "synthetic", "cores": 2, "python": "3.11.9", "platform": "Linux", "packages": {}}


def _cache_bench(op: str, backend: str, samples_ms: list[float]) -> dict[str, Any]:
    label = f"{op}-{backend}-1KB"
    return {
        "name": f"test_cache[{label}]",
        "fullname": f"bench/suites/test_cache.py::test_cache[{label}]",
        "group": f"cache/{op}",
        "params": {"op": op, "backend": backend, "size": "1KB"},
        "param": label,
        "stats": {"data": [v / 1e3 for v in samples_ms]},
        "extra_info": {"suite": "cache", "subject": op},
    }


def _folder(root: Path, files: dict[str, list[dict[str, Any]]], **manifest_extra: Any) -> Run:
    from reports.data import load_run

    root.mkdir(parents=True)
    for suite, benches in files.items():
        (root / f"{suite}.json").write_text(json.dumps({"benchmarks": benches}))
    manifest = {
        "format": "samplemind-bench-results",
        "version": 1,
        "created": "2026-12-06T00:00:00+00:00",
        "mode": "mocked",
        "quick": True,
        "suites": sorted(files),
        "files": [f"{s}.json" for s in sorted(files)],
        "environment": ENV,
        "commit": {"id": None, "dirty": None},
        **manifest_extra,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return load_run(root)


def _tail(p50: float, p99: float) -> list[float]:
    """200 samples whose median is ``p50`` and whose 99th percentile is about ``p99``."""
    return [p50] * 196 + [p99] * 4


def test_cache_hit_is_machine_limited_when_the_raw_floor_fails_the_bound(tmp_path: Path) -> None:
    from reports.claims import MACHINE_LIMITED, claim_cache_hit

    run = _folder(
        tmp_path / "r",
        {
            "cache": [
                _cache_bench("hit", "fakeredis", _tail(0.3, 4.24)),
                _cache_bench("raw-get", "fakeredis", _tail(0.2, 4.16)),
            ]
        },
    )
    c = claim_cache_hit(run)
    assert c.verdict == MACHINE_LIMITED
    assert "p99 4.24 ms" in c.measured and "raw GET floor" in c.measured
    assert "p99 4.16 ms" in c.measured and "machine-limited" in c.measured


def test_cache_hit_does_not_hold_when_the_floor_meets_the_bound(tmp_path: Path) -> None:
    from reports.claims import DOES_NOT_HOLD, claim_cache_hit

    run = _folder(
        tmp_path / "r",
        {
            "cache": [
                _cache_bench("hit", "fakeredis", _tail(0.3, 4.24)),
                _cache_bench("raw-get", "fakeredis", _tail(0.2, 0.9)),
            ]
        },
    )
    c = claim_cache_hit(run)
    assert c.verdict == DOES_NOT_HOLD
    assert "machine-limited" not in c.measured


def test_cache_hit_holds_under_the_bound_even_with_a_slow_floor(tmp_path: Path) -> None:
    from reports.claims import HOLDS, claim_cache_hit

    run = _folder(
        tmp_path / "r",
        {
            "cache": [
                _cache_bench("hit", "redis", _tail(0.3, 1.5)),
                _cache_bench("raw-get", "redis", _tail(0.2, 2.5)),
            ]
        },
    )
    assert claim_cache_hit(run).verdict == HOLDS


def test_cache_hit_without_a_floor_cannot_be_machine_limited(tmp_path: Path) -> None:
    from reports.claims import DOES_NOT_HOLD, claim_cache_hit

    run = _folder(tmp_path / "r", {"cache": [_cache_bench("hit", "redis", _tail(0.3, 4.0))]})
    assert claim_cache_hit(run).verdict == DOES_NOT_HOLD


def _pipeline_bench(world: str, **extra: Any) -> dict[str, Any]:
    label = f"w-after-{world}"
    return {
        "name": f"test_pipeline[{label}]",
        "fullname": f"bench/suites/test_pipeline.py::test_pipeline[{label}]",
        "group": "pipeline/w",
        "params": {"workload": "w", "stack": "after", "world": world},
        "param": label,
        "stats": {"data": [0.001, 0.002, 0.003]},
        "extra_info": {"stack": "after", "latency_scale": 0.01, **extra},
    }


def test_claims_and_captions_say_mocks_with_the_latency_scale(tmp_path: Path) -> None:
    from reports.charts import build_charts
    from reports.claims import evaluate_claims

    run = _folder(
        tmp_path / "r",
        {
            "cache": [_cache_bench("hit", "fakeredis", _tail(0.3, 0.5))],
            "pipeline": [_pipeline_bench("mocked")],
        },
    )
    by = {c.claim: c for c in evaluate_claims(run)}
    assert by["A cache hit takes under 2 ms"].measured.endswith(
        "[from: mocks (in-process fakeredis)]"
    )
    # the blake3 claim has no hashing benchmark here: nothing measured, no source appended
    assert "[from:" not in by["BLAKE3 is 10x faster than SHA-256"].measured
    captions = [r.caption for r in build_charts(run) if hasattr(r, "caption")]
    assert any(c.endswith("From: mocks (in-process fakeredis).") for c in captions)


def test_source_of_live_runs_names_the_emulator_scale_or_the_live_services(
    tmp_path: Path,
) -> None:
    from reports.provenance import benchmark_source, suites_label

    run = _folder(
        tmp_path / "r",
        {
            "pipeline": [_pipeline_bench("live")],
            "cache": [_cache_bench("hit", "redis", _tail(0.3, 0.5))],
        },
        mode="live",
    )
    assert suites_label(run, ["pipeline"]) == "the emulator, latency scale 0.01"
    assert suites_label(run, ["cache"]) == "live services (local redis-server)"
    run2 = _folder(
        tmp_path / "r2",
        {"pipeline": [_pipeline_bench("live", live_providers=["openai"])]},
        mode="live",
    )
    assert benchmark_source(run2, run2.suite("pipeline")[0]) == "live services (openai)"
    # a benchmark that records no world takes the manifest's mode
    client = {
        "name": "test_x",
        "fullname": "bench/suites/test_router.py::test_x",
        "group": "router/x",
        "params": {},
        "param": "",
        "stats": {"data": [0.001]},
        "extra_info": {},
    }
    run3 = _folder(tmp_path / "r3", {"router": [client]}, mode="live")
    assert suites_label(run3, ["router"]) == "the emulator"


def _knee_bench(knee: float, offered: list[float], p99: list[float]) -> dict[str, Any]:
    return {
        "name": "test_load_knee[mocked]",
        "fullname": "bench/suites/test_load.py::test_load_knee[mocked]",
        "group": "load/knee-mocked",
        "params": {"world": "mocked"},
        "param": "mocked",
        "stats": {"data": [0.001, 0.002]},
        "extra_info": {
            "suite": "load",
            "subject": "knee-mocked",
            "mode": "mocked",
            "knee_per_s": knee,
            "knee_bound_ms": 100.0,
            "p99_ms": p99[-1],
            "curve_offered_per_s": offered,
            "curve_achieved_per_s": offered,
            "curve_p50_ms": [1.0] * len(offered),
            "curve_p99_ms": p99,
        },
    }


def test_knee_phrase_names_a_knee_only_where_latency_broke() -> None:
    from reports.analysis import knee_phrase

    assert knee_phrase(1000.0, [500.0, 1000.0, 2000.0]) == ("knee 1,000 req/s", True)
    text, marked = knee_phrase(4000.0, [1000.0, 2000.0, 4000.0])
    assert text == "no knee up to 4,000 req/s (the highest rate offered)" and not marked
    assert not knee_phrase(0.0, [1000.0])[1] and "no offered rate" in knee_phrase(0.0, [1000.0])[0]
    assert not knee_phrase(float("nan"), [1000.0])[1]


def test_capacity_chart_says_no_knee_when_the_top_rate_still_met_the_bound(
    tmp_path: Path,
) -> None:
    from reports.charts import Chart, chart_load_capacity

    offered = [1000.0, 2000.0, 4000.0]
    run = _folder(tmp_path / "r", {"load": [_knee_bench(4000.0, offered, [5.0, 9.0, 20.0])]})
    chart = chart_load_capacity(run, None)
    assert isinstance(chart, Chart)
    assert "mocked no knee up to 4,000 req/s" in chart.caption
    assert "knee 4,000" not in chart.caption
    labels = [t.get_text() for t in chart.figure.axes[0].get_legend().get_texts()]
    assert not any("knee" in t for t in labels)  # no star drawn on the highest rate


def test_capacity_chart_marks_a_real_knee(tmp_path: Path) -> None:
    from reports.charts import Chart, chart_load_capacity

    offered = [1000.0, 2000.0, 4000.0]
    run = _folder(tmp_path / "r", {"load": [_knee_bench(2000.0, offered, [5.0, 40.0, 900.0])]})
    chart = chart_load_capacity(run, None)
    assert isinstance(chart, Chart) and "mocked knee 2,000 req/s" in chart.caption
    labels = [t.get_text() for t in chart.figure.axes[0].get_legend().get_texts()]
    assert "mocked: knee" in labels


def test_headline_says_no_knee_when_the_top_rate_still_met_the_bound() -> None:
    from bench.harness.headline import _load_lines
    from bench.results import check_benchmark

    def _load_lines_of(doc: dict[str, Any]) -> list[str]:  # as the results reader gives it
        return _load_lines([check_benchmark(doc, Path("load.json"))])

    no_knee = _knee_bench(4000.0, [1000.0, 2000.0, 4000.0], [5.0, 9.0, 20.0])
    (line,) = _load_lines_of(no_knee)
    assert line.startswith("load mocked knee: none up to 4000 req/s (the highest rate offered")
    knee = _knee_bench(2000.0, [1000.0, 2000.0, 4000.0], [5.0, 40.0, 900.0])
    assert _load_lines_of(knee) == [
        "load mocked knee: 2000 req/s offered with p99 <= 100 ms (p99 there 900.0 ms)"
    ]


def _client_bench(variant: str, concurrency: int, rps: float, p99_ms: float) -> dict[str, Any]:
    label = f"mock-{variant}-{concurrency}"
    return {
        "name": f"test_client[{label}]",
        "fullname": f"bench/suites/test_client.py::test_client[{label}]",
        "group": f"client/mock-c{concurrency}",
        "params": {"variant": variant, "concurrency": concurrency},
        "param": label,
        "stats": {"data": [concurrency / rps] * 5},
        "extra_info": {
            "suite": "client",
            "subject": f"mock-{variant}",
            "variant": variant,
            "concurrency": concurrency,
            "req_per_s": rps,
            "p99_ms": p99_ms,
        },
    }


def _mocked_client_run(tmp_path: Path, p99: tuple[float, float, float, float]) -> Run:
    return _folder(
        tmp_path / "client",
        {
            "client": [
                _client_bench("new_client", 1, 100.0, p99[0]),
                _client_bench("pooled", 1, 900.0, p99[1]),
                _client_bench("new_client", 50, 300.0, p99[2]),
                _client_bench("pooled", 50, 3000.0, p99[3]),
            ]
        },
    )


def test_http2_not_measured_names_the_command_that_measures_it(tmp_path: Path) -> None:
    from reports.charts import Chart, chart_client
    from reports.claims import HTTP2_COMMAND, NOT_MEASURED, claim_http2

    run = _mocked_client_run(tmp_path, (10.0, 2.0, 40.0, 8.0))
    claim = claim_http2(run)
    assert claim.verdict == NOT_MEASURED and f"`{HTTP2_COMMAND}`" in claim.measured
    assert HTTP2_COMMAND == "samplemind-bench run --live --suite client --out DIR"
    chart = chart_client(run, None)
    assert isinstance(chart, Chart)
    assert f"HTTP/2: not measured here (measure it with `{HTTP2_COMMAND}`)" in chart.caption


def test_the_http2_command_is_accepted_by_the_cli() -> None:
    """The command the report names parses (argparse only; nothing runs)."""
    from bench.cli import _parser

    args = _parser().parse_args(["run", "--live", "--suite", "client", "--out", "DIR"])
    assert args.live and args.suites == ["client"]


def _fault_bench(rate: float, added: float, lo: float | None, hi: float | None) -> dict[str, Any]:
    label = f"fallback-{int(rate * 100)}"
    info: dict[str, Any] = {
        "suite": "router",
        "subject": "fallback",
        "fault_rate": rate,
        "success_rate": 1.0 - rate / 10,
        "added_latency_ms": added,
    }
    if lo is not None and hi is not None:
        info |= {"added_latency_ci_low_ms": lo, "added_latency_ci_high_ms": hi}
    return {
        "name": f"test_fallback[{label}]",
        "fullname": f"bench/suites/test_router.py::test_fallback[{label}]",
        "group": "router/fallback",
        "params": {"fault_rate": rate},
        "param": label,
        "stats": {"data": [0.001] * 5},
        "extra_info": info,
    }


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_failure_chart_draws_a_negative_added_latency_as_within_noise(tmp_path: Path) -> None:
    from reports.charts import Chart, chart_router_faults

    run = _folder(
        tmp_path / "r",
        {
            "router": [
                _fault_bench(0.0, -0.08, -0.31, 0.15),
                _fault_bench(0.1, 2.5, 1.9, 3.1),
                _fault_bench(0.5, 0.2, -0.1, 0.5),  # the worst rate: interval spans 0
            ]
        },
    )
    chart = chart_router_faults(run, None)
    assert isinstance(chart, Chart)
    ax = chart.figure.axes[1]
    # the figures (markers "o" and the line through them; the interval's caps are "_")
    figures = [ln for ln in ax.get_lines() if ln.get_marker() != "_"]
    drawn = [float(y) for ln in figures for y in ln.get_ydata()]
    assert drawn and min(drawn) >= 0.0  # -0.08 ms is not plotted as a figure
    (through,) = [ln for ln in figures if ln.get_linestyle() == "-"]
    assert [float(y) for y in through.get_ydata()] == [0.0, 2.5, 0.0]
    caps = [float(y) for ln in ax.get_lines() if ln.get_marker() == "_" for y in ln.get_ydata()]
    assert min(caps) < 0  # the interval itself is shown as measured, below 0 where it goes
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["within noise (interval spans 0)"]
    assert "added latency within noise (95 % interval -0.10 to +0.50 ms)" in chart.caption
    assert "+0.2 ms" not in chart.caption


def test_failure_caption_gives_a_significant_added_latency_with_its_interval(
    tmp_path: Path,
) -> None:
    from reports.charts import Chart, chart_router_faults

    run = _folder(
        tmp_path / "r",
        {"router": [_fault_bench(0.0, 0.01, -0.2, 0.2), _fault_bench(0.5, 2.5, 1.9, 3.1)]},
    )
    chart = chart_router_faults(run, None)
    assert isinstance(chart, Chart)
    assert "+2.5 ms per request (95 % interval +1.90 to +3.10 ms)" in chart.caption
    # an older run without the interval: a negative mean is still not shown as a figure
    old = _folder(tmp_path / "old", {"router": [_fault_bench(0.5, -0.4, None, None)]})
    chart = chart_router_faults(old, None)
    assert isinstance(chart, Chart) and "added latency within noise." in chart.caption


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_client_p99_panel_is_linear_for_a_narrow_spread_with_plain_ticks(tmp_path: Path) -> None:
    from reports.charts import Chart, chart_client

    narrow = chart_client(_mocked_client_run(tmp_path / "n", (4.55, 4.7, 4.9, 4.6)), None)
    assert isinstance(narrow, Chart)
    p99 = narrow.figure.axes[1]
    assert p99.get_yscale() == "linear" and "log" not in p99.get_ylabel()
    wide = chart_client(_mocked_client_run(tmp_path / "w", (10.0, 2.0, 400.0, 8.0)), None)
    assert isinstance(wide, Chart)
    p99 = wide.figure.axes[1]
    assert p99.get_yscale() == "log"
    wide.figure.canvas.draw()
    for ax in wide.figure.axes:
        ticks = [t.get_text() for t in [*ax.get_yticklabels(), *ax.get_xticklabels()]]
        assert not any("10^" in t or "×10" in t or "mathdefault" in t for t in ticks), ticks
