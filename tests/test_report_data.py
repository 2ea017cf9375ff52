"""Results folders → tidy frames: validation errors name the file; added/removed benchmarks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

RESULTS = Path(__file__).parent / "data" / "results"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(RESULTS / "run_a", dst)
    return dst


def _manifest(d: Path) -> dict[str, object]:
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d: Path, m: dict[str, object]) -> None:
    (d / "manifest.json").write_text(json.dumps(m))


def test_tidy_has_one_row_per_benchmark_and_metric() -> None:
    from reports.data import load_run, tidy

    run = load_run(RESULTS / "run_a")
    df = tidy([run])
    assert not df.duplicated(["run", "suite", "fullname", "metric"]).any()
    b = next(b for b in run.benchmarks if b.suite == "hashing")
    rows = df[df.fullname == b.fullname].set_index("metric")
    assert rows.loc["time_median", "value"] == pytest.approx(float(np.median(b.data)))
    assert rows.loc["time_p99", "value"] == pytest.approx(float(np.percentile(b.data, 99)))
    assert rows.loc["gbps", "unit"] == "GB/s" and rows.loc["time_p95", "unit"] == "s"
    assert "requests" not in set(df.metric)  # lists are not metrics; they go to requests_frame
    assert set(df.commit_id) == {"a" * 40} and set(df.cores) == {2}
    assert set(df.suite) == {"hashing", "fingerprint", "cache", "client", "router", "pipeline"}


def test_requests_frame_reads_per_request_records() -> None:
    from reports.data import load_run, requests_frame

    req = requests_frame([load_run(RESULTS / "run_a")])
    assert set(req["stack"]) == {"before", "after"}
    assert len(req) == 80 and not req[req["stack"] == "before"].cached.any()


def test_added_and_removed_benchmarks_are_detected() -> None:
    from reports.data import compare_runs, load_runs

    comp = compare_runs(load_runs([RESULTS / "run_a", RESULTS / "run_b"]))
    added = comp[comp.status == "added"].key.tolist()
    removed = comp[comp.status == "removed"].key.tolist()
    assert added == ["client::bench/test_client.py::test_client[raw-aiohttp-100]"]
    assert removed == ["hashing::bench/test_hashing.py::test_hash[blake2b-64]"]
    common = comp[comp.status == "common"]
    assert common.median_ratio.notna().all() and len(common) > 40


def test_same_folder_twice_gets_unique_labels() -> None:
    from reports.data import load_runs

    runs = load_runs([RESULTS / "run_a", RESULTS / "run_a"])
    assert [r.label for r in runs] == ["run_a", "run_a#2"]


def test_missing_manifest_names_the_file(run_dir: Path) -> None:
    from reports.data import ReportInputError, load_run

    (run_dir / "manifest.json").unlink()
    with pytest.raises(ReportInputError, match=r"manifest\.json: missing") as exc:
        load_run(run_dir)
    assert exc.value.path == run_dir / "manifest.json"


def test_corrupt_suite_json_names_the_file(run_dir: Path) -> None:
    from reports.data import ReportInputError, load_run

    (run_dir / "cache.json").write_text('{"benchmarks": [')
    with pytest.raises(ReportInputError) as exc:
        load_run(run_dir)
    assert exc.value.path == run_dir / "cache.json"
    assert str(exc.value).startswith(str(run_dir / "cache.json")) and "not valid JSON" in str(
        exc.value
    )


def test_corrupt_manifest_names_the_file(run_dir: Path) -> None:
    from reports.data import ReportInputError, load_run

    (run_dir / "manifest.json").write_text("not json")
    with pytest.raises(ReportInputError, match=r"manifest\.json: not valid JSON"):
        load_run(run_dir)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "pytest-benchmark"}, "unknown format 'pytest-benchmark'"),
        ({"version": 3}, "unsupported results version 3"),
        ({"version": None}, "unsupported results version None"),
        ({"files": "hashing.json"}, '"files" must be a list'),
        ({"files": ["../escape.json"]}, "outside the results folder"),
    ],
)
def test_unknown_format_or_version_is_refused(
    run_dir: Path, change: dict[str, object], message: str
) -> None:
    from reports.data import ReportInputError, load_run

    _write_manifest(run_dir, {**_manifest(run_dir), **change})
    with pytest.raises(ReportInputError, match=message) as exc:
        load_run(run_dir)
    assert exc.value.path == run_dir / "manifest.json"


def test_listed_file_missing_names_it(run_dir: Path) -> None:
    from reports.data import ReportInputError, load_run

    (run_dir / "router.json").unlink()
    with pytest.raises(ReportInputError, match="file not found") as exc:
        load_run(run_dir)
    assert exc.value.path == run_dir / "router.json"


def test_foreign_json_and_missing_samples_are_refused(run_dir: Path) -> None:
    from reports.data import ReportInputError, load_run

    (run_dir / "router.json").write_text('{"hello": 1}')
    with pytest.raises(ReportInputError, match="not a pytest-benchmark JSON file") as exc:
        load_run(run_dir)
    assert exc.value.path == run_dir / "router.json"
    doc = json.loads((RESULTS / "run_a" / "router.json").read_text())
    del doc["benchmarks"][0]["stats"]["data"]
    (run_dir / "router.json").write_text(json.dumps(doc))
    with pytest.raises(ReportInputError, match=r"no raw samples \(stats\.data\)"):
        load_run(run_dir)


def test_cli_reports_input_errors_with_exit_2(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reports.build import main as report_main

    (run_dir / "hashing.json").write_text("{")
    assert report_main([str(run_dir), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert str(run_dir / "hashing.json") in err and "not valid JSON" in err
    assert not (tmp_path / "out" / "index.html").exists()


def test_blake3_ratio_is_the_headline_computation() -> None:
    """The report's BLAKE3 vs SHA-256 ratios are :func:`bench.figures.speedup` of the benchmarks
    the reader gives, the computation the headline uses (one computation: decision 0601)."""
    from bench import figures
    from bench.results import read_folder
    from reports.analysis import fmt_ratio, hash_speedup
    from reports.claims import claim_blake3
    from reports.data import load_run

    folder = RESULTS / "run_a"
    sp = hash_speedup(load_run(folder), "blake3 1 thread")
    by = {
        (b.extra_info["variant"], b.extra_info["subject"]): b
        for b in read_folder(folder).benchmarks
        if b.suite == "hashing"
    }
    sizes = [64.0, 1024.0, 16384.0, 1048576.0]
    expected = [
        figures.speedup(by["sha256", f"{s:.0f}B"], by["blake3", f"{s:.0f}B"]) for s in sizes
    ]
    assert list(sp["size"]) == sizes
    assert list(sp["ratio"]) == expected  # the same floats, not merely close
    at_1k = expected[1]
    assert f"{fmt_ratio(at_1k)} at 1 KiB" in claim_blake3(load_run(folder)).measured
