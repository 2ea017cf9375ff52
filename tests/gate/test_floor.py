"""Separate runs judged against the between-run floor, and "not comparable" (issue 21 item 1).

Through the console script's ``main([...])`` on synthetic results folders whose manifests
record (or do not record) the run conditions; one real ``samplemind-bench gate`` subprocess.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import gate
from bench.gate import floor as floors
from tests.gate.helpers import bench, samples, write_results

QUIET = {
    "version": 1,
    "wall_s": 10.0,
    "load_before": 1.0,
    "load_after": 1.2,
    "cpu_s": 9.0,
    "cpu_per_wall": 0.9,
    "machine_busy": 1.1,
    "others_busy": 0.2,
    "steal": 0.001,
    "cpu_mhz": 2793.4,
    "cpu_mhz_source": "/proc/cpuinfo",
}
BUSY = {**QUIET, "load_before": 6.0, "load_after": 7.0, "cpu_per_wall": 0.4, "others_busy": 1.6}

KEY = "bench/test_x.py::{}"


def _folder(
    root: Path,
    benches: list[dict[str, Any]],
    conditions: dict[str, Any] | None,
) -> Path:
    """A results folder of suite ``fingerprint``; ``conditions`` None: an old manifest."""
    write_results(root, benches)
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    entry: dict[str, Any] = {
        "suite": "fingerprint",
        "file": "fingerprint.json",
        "exit_code": 0,
        "elapsed_s": 10.0,
        "status": "completed",
    }
    if conditions is not None:
        entry["conditions"] = conditions
    manifest["runs"] = [entry]
    manifest["complete"] = True
    path.write_text(json.dumps(manifest))
    return root


def _floor_file(tmp_path: Path, floors_by_name: dict[str, float], **limits: float) -> Path:
    doc = {
        "format": floors.FLOOR_FORMAT,
        "version": 1,
        "safety": 1.5,
        "pairs": 10,
        "limits": limits
        or {"cpu_per_wall": math.log(1.3), "others_busy": 0.3, "load": 0.4, "steal": 0.02},
        "suites": {"fingerprint": max(floors_by_name.values(), default=0.5)},
        "floors": {KEY.format(n): v for n, v in floors_by_name.items()},
    }
    path = tmp_path / "floor.json"
    path.write_text(json.dumps(doc))
    return path


def _two(
    tmp_path: Path,
    base: list[dict[str, Any]],
    cand: list[dict[str, Any]],
    cond_b: dict[str, Any] | None = QUIET,
    cond_c: dict[str, Any] | None = QUIET,
) -> tuple[str, str]:
    return (
        str(_folder(tmp_path / "base", base, cond_b)),
        str(_folder(tmp_path / "cand", cand, cond_c)),
    )


def _verdicts(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    doc = json.loads(path.read_text())
    return {(v["name"], v["metric"]): v for v in doc["verdicts"]}


def test_a_change_within_the_floor_cannot_be_told_and_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # +30 %: significant within the runs, but this benchmark moves +-60 % between A/A runs;
    # +1 % on the other: within its allowed 5 %, unchanged
    b, c = _two(
        tmp_path,
        [bench("noisy", samples(2e-6, seed=1)), bench("calm", samples(1e-6, seed=3))],
        [bench("noisy", samples(2.6e-6, seed=2)), bench("calm", samples(1.01e-6, seed=4))],
    )
    floor = _floor_file(tmp_path, {"noisy": 0.6, "calm": 0.6})
    js = tmp_path / "v.json"
    code = gate.main([b, c, "--floor", str(floor), "--json", str(js)])
    assert code == gate.EXIT_NOT_COMPARABLE
    v = _verdicts(js)[("noisy", "time")]
    assert v["status"] == "not comparable" and v["floor"] == pytest.approx(0.6)
    assert v["reason"].startswith("cannot tell: fastest sample +")
    assert "within the between-run floor +-60%" in v["reason"]
    assert v["between_change"] == pytest.approx(0.3, abs=0.1)
    calm = _verdicts(js)[("calm", "time")]
    assert calm["status"] == "unchanged" and "within allowed 5%" in calm["reason"]
    out = capsys.readouterr().out
    assert out.startswith("gate: NOT COMPARABLE")
    assert "one run a side cannot tell them from load" in out
    assert "--baseline-ref" in out and "--instructions" in out
    assert "separate runs: a wall-time change must exceed the between-run floor" in out


def test_a_change_beyond_the_floor_regresses(tmp_path: Path) -> None:
    b, c = _two(
        tmp_path,
        [bench("steady", samples(2e-6, seed=1)), bench("other", samples(1e-6, seed=3))],
        [bench("steady", samples(2.6e-6, seed=2)), bench("other", samples(1e-6, seed=4))],
    )
    floor = _floor_file(tmp_path, {"steady": 0.1, "other": 0.1})
    js = tmp_path / "v.json"
    assert gate.main([b, c, "--floor", str(floor), "--json", str(js)]) == gate.EXIT_REGRESSION
    v = _verdicts(js)[("steady", "time")]
    assert v["status"] == "regressed" and "beyond the between-run floor +-10%" in v["reason"]
    assert _verdicts(js)[("other", "time")]["status"] == "unchanged"


def test_an_unknown_benchmark_gets_its_suites_largest_floor(tmp_path: Path) -> None:
    b, c = _two(
        tmp_path,
        [bench("new", samples(2e-6, seed=1))],
        [bench("new", samples(2.6e-6, seed=2))],
    )
    floor = _floor_file(tmp_path, {"old1": 0.1, "old2": 0.5})
    js = tmp_path / "v.json"
    assert gate.main([b, c, "--floor", str(floor), "--json", str(js), "-q"]) == 3
    v = _verdicts(js)[("new", "time")]
    assert v["floor"] == pytest.approx(0.5) and "largest of suite fingerprint" in v["reason"]


def test_different_load_is_not_comparable_never_regressed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the candidate ran on a busy machine: 2x slower everywhere, all of it load
    b, c = _two(
        tmp_path,
        [bench(f"b{i}", samples(1e-6 * (i + 1), seed=i)) for i in range(3)],
        [bench(f"b{i}", samples(2e-6 * (i + 1), seed=10 + i)) for i in range(3)],
        QUIET,
        BUSY,
    )
    floor = _floor_file(tmp_path, {f"b{i}": 0.1 for i in range(3)})
    js = tmp_path / "v.json"
    code = gate.main([b, c, "--floor", str(floor), "--json", str(js)])
    assert code == gate.EXIT_NOT_COMPARABLE
    out = capsys.readouterr().out
    assert out.startswith("gate: NOT COMPARABLE")
    assert "CPU/wall 0.9 vs 0.4" in out and "load average 1.10 vs 6.50" in out
    assert "--baseline-ref" in out and "--instructions" in out
    verdicts = _verdicts(js)
    assert {v["status"] for v in verdicts.values()} == {"not comparable"}
    doc = json.loads(js.read_text())
    assert doc["comparable"] is True and doc["wall_time_comparable"] is False


def test_exact_figures_are_judged_whatever_the_load(tmp_path: Path) -> None:
    b, c = _two(
        tmp_path,
        [bench("cached", samples(1e-6, seed=1), extra={"hit_rate": 1.0})],
        [bench("cached", samples(2e-6, seed=2), extra={"hit_rate": 0.5})],
        QUIET,
        BUSY,
    )
    floor = _floor_file(tmp_path, {"cached": 0.1})
    js = tmp_path / "v.json"
    assert gate.main([b, c, "--floor", str(floor), "--json", str(js), "-q"]) == 1
    verdicts = _verdicts(js)
    assert verdicts[("cached", "hit_rate")]["status"] == "regressed"
    assert verdicts[("cached", "time")]["status"] == "not comparable"


def test_environment_not_recorded_is_said_and_judged_against_the_floor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    b, c = _two(
        tmp_path,
        [bench("fp", samples(2e-6, seed=1))],
        [bench("fp", samples(2.04e-6, seed=2))],
        None,
        QUIET,
    )
    floor = _floor_file(tmp_path, {"fp": 0.2})
    assert gate.main([b, c, "--floor", str(floor)]) == gate.EXIT_PASS
    out = capsys.readouterr().out
    assert "environment not recorded for suite(s) fingerprint" in out
    assert "whether the load was comparable is not checked" in out


def test_several_runs_per_side_measure_their_own_floor(tmp_path: Path) -> None:
    """Three runs a side: their own between-run spread is the floor, not the stored one."""
    argv: list[str] = []
    for i in range(3):
        # each run drifts a little (+-3 %); the candidate is 30 % slower throughout
        drift = 1.0 + 0.03 * (i - 1)
        argv += [
            "--baseline",
            str(_folder(tmp_path / f"b{i}", [bench("op", samples(1e-6 * drift, seed=i))], QUIET)),
            "--candidate",
            str(
                _folder(
                    tmp_path / f"c{i}",
                    [bench("op", samples(1.3e-6 * drift, seed=9 + i))],
                    QUIET,
                )
            ),
        ]
    # the stored floor (+-80 %) would hide it; the runs' own spread (about 1.5 x 6 %) does not
    floor = _floor_file(tmp_path, {"op": 0.8})
    js = tmp_path / "v.json"
    assert gate.main([*argv, "--floor", str(floor), "--json", str(js), "-q"]) == 1
    v = _verdicts(js)[("op", "time")]
    assert (
        v["status"] == "regressed"
        and "largest change between runs of a side (3+3 runs)" in (v["reason"])
    )
    assert v["floor"] < 0.2


def test_wall_clock_rule_is_judged_like_wall_time(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        "[[rule]]\nmetric = 'success_rate'\ndirection = 'higher'\nallowed = '1%'\n"
        "test = 'exact'\nwall_clock = true\n"
    )
    b, c = _two(
        tmp_path,
        [bench("fb", samples(1e-6, seed=1), extra={"success_rate": 0.91})],
        [bench("fb", samples(1e-6, seed=2), extra={"success_rate": 0.86})],
        QUIET,
        BUSY,
    )
    floor = _floor_file(tmp_path, {"fb": 0.1})
    js = tmp_path / "v.json"
    argv = [b, c, "--floor", str(floor), "--rules", str(rules), "--json", str(js), "-q"]
    assert gate.main(argv) == gate.EXIT_NOT_COMPARABLE
    assert _verdicts(js)[("fb", "success_rate")]["status"] == "not comparable"
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rule]]\nmetric = 'success_rate'\nwall_clock = 'yes'\n")
    assert gate.main([b, c, "--rules", str(bad), "-q"]) == gate.EXIT_BAD_INPUT


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "floor file not found"),
        ("{", "not a readable JSON floor file"),
        ('{"format": "x"}', "not a between-run floor file"),
        ('{"format": "samplemind-between-run-spreads", "version": 9}', "unsupported floor"),
        (
            '{"format": "samplemind-between-run-spreads", "version": 1, "limits": {"ram": 1},'
            ' "suites": {}, "floors": {}}',
            "unknown conditions ['ram']",
        ),
        (
            '{"format": "samplemind-between-run-spreads", "version": 1, "limits": {},'
            ' "suites": {}, "floors": {"k": "wide"}}',
            "not a number",
        ),
    ],
)
def test_bad_floor_file_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, needle: str
) -> None:
    b, c = _two(tmp_path, [bench("fp", samples(1e-6, seed=1))], [bench("fp", samples(1e-6))])
    path = tmp_path / "f.json"
    if content is not None:
        path.write_text(content)
    assert gate.main([b, c, "--floor", str(path)]) == gate.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert needle in err and str(path) in err


def test_calibrate_takes_the_largest_a_a_change_and_condition_gap() -> None:
    def rec(values: list[float]) -> gate.BenchRecord:
        return gate.BenchRecord(KEY.format("op"), "op", "fingerprint/x", values, {}, [values])

    a, b, c = rec([1.0]), rec([1.1]), rec([0.95])
    pairs = [
        ({a.key: a}, {b.key: b}, {"fingerprint": QUIET}, {"fingerprint": BUSY}),
        ({b.key: b}, {c.key: c}, {"fingerprint": BUSY}, {"fingerprint": BUSY}),
    ]
    doc = floors.calibrate(pairs, metrics_of={a.key: ["time"]}, safety=2.0)
    worst = max(abs(math.log(1.1)), abs(math.log(0.95 / 1.1)))
    assert doc["floors"][a.key] == pytest.approx(math.expm1(2.0 * worst), abs=1e-4)
    assert doc["suites"]["fingerprint"] == doc["floors"][a.key]
    assert doc["limits"]["cpu_per_wall"] == pytest.approx(abs(math.log(0.4 / 0.9)), abs=1e-4)
    assert doc["pairs"] == 2


def test_the_shipped_floor_file_loads() -> None:
    floor = floors.load_floor(Path(floors.__file__).with_name("between_run_spreads.json"))
    assert floor.pairs >= 10 and floor.floors and set(floor.limits) <= set(floors.CONDITION_LIMITS)


def test_console_script_says_not_comparable_with_exit_3(tmp_path: Path) -> None:
    """One real ``samplemind-bench gate`` process: exit 3 and the words a user reads."""
    b, c = _two(
        tmp_path,
        [bench("fp", samples(1e-6, seed=1))],
        [bench("fp", samples(2e-6, seed=2))],
        QUIET,
        BUSY,
    )
    floor = _floor_file(tmp_path, {"fp": 0.1})
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("samplemind-bench")),
            "gate",
            b,
            c,
            "--floor",
            str(floor),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "NOT COMPARABLE" in proc.stdout and "not comparable" in proc.stdout
    assert "regressed" not in proc.stdout.split("\n", 1)[0]


def test_public_names_of_the_floor() -> None:
    for name in ("BetweenRuns", "Floor", "load_floor", "EXIT_NOT_COMPARABLE"):
        assert name in gate.__all__ and getattr(gate, name) is not None
    assert all(hasattr(floors, n) for n in floors.__all__)
