"""The instructions gate through the console script's ``main()`` (``samplemind-bench gate``,
in-process: :func:`tests._helpers.run_main`; ``--baseline-ref`` runs its real processes).

The ``valgrind`` tests count real benchmarks (``samplemind-bench run --instructions``, two
fresh processes of a few router benchmarks: the session's shared pair, ``tests/conftest.py``)
and gate them with the default rules and the committed A/A spreads; without valgrind they
skip with the apt hint, unless ``CI`` is set. The others use synthetic results folders.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bench import ab_runner, cli
from bench.results import read_suite_document
from tests._helpers import run_main
from tests.gate.helpers import bench, samples, write_results

if TYPE_CHECKING:
    from tests.conftest import CountedPair

REPO = Path(__file__).resolve().parents[2]


def gate_cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``samplemind-bench gate ARGS`` in-process (the ``--baseline-ref`` runner's own
    processes are bounded by its timeouts)."""
    return run_main(cli.main, ["gate", *args], cwd=cwd, env=cli.timed_run_env())


def edit_counts(folder: Path, suite: str, change: Any) -> None:
    """Apply ``change(benchmark dict)`` to every benchmark of ``folder/<suite>.json[.gz]``."""
    path = next(p for p in (folder / f"{suite}.json.gz", folder / f"{suite}.json") if p.exists())
    data = read_suite_document(path)
    for b in data["benchmarks"]:
        change(b)
    text = json.dumps(data).encode()
    path.write_bytes(gzip.compress(text) if path.name.endswith(".gz") else text)


# -- real counts --------------------------------------------------------------------------------


@pytest.fixture
def counted_runs(counted_pair: CountedPair) -> tuple[Path, Path]:
    """Two fresh ``run --instructions`` processes of the same code (an A/A pair), shared by
    the session (``tests/conftest.py``); a test that changes one changes a copy."""
    return counted_pair.a, counted_pair.b


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.valgrind
@pytest.mark.slow
def test_aa_of_two_fresh_processes_passes(counted_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = counted_runs
    out = tmp_path / "v.json"
    proc = gate_cli(
        str(a), str(b), "--instructions", "--metric", "instructions", "--json", str(out)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdicts = json.loads(out.read_text())["verdicts"]
    assert len(verdicts) == 2 and {v["status"] for v in verdicts} == {"unchanged"}
    assert all(v["metric"] == "instructions" and v["noise"] is not None for v in verdicts)
    assert "aa_spreads.json" in proc.stdout  # decided from the committed spreads


@pytest.mark.valgrind
@pytest.mark.slow
def test_two_percent_more_instructions_in_one_benchmark_fails_and_is_named(
    counted_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = counted_runs
    worse = _copy(b, tmp_path / "worse")
    target = "test_route[chat-speed-one_open]"

    def inject(bench: dict[str, Any]) -> None:
        if bench["name"] == target:
            bench["extra_info"]["instructions"] *= 1.02

    edit_counts(worse, "router", inject)
    proc = gate_cli(str(a), str(worse), "--instructions", "--metric", "instructions")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    first, *rows = proc.stdout.splitlines()
    assert first.startswith("gate: REGRESSION  1 regressed, 1 unchanged")
    (row,) = [r for r in rows if r.startswith("regressed")]
    assert target in row
    found = re.search(r"\+(\d+\.\d+)% reaches allowed 1\.0% and is beyond margin", row)
    assert found and 1.5 < float(found.group(1)) < 2.5, row  # +2 % on top of the A/A difference


@pytest.mark.valgrind
@pytest.mark.slow
def test_wall_time_stays_the_looser_guard(counted_runs: tuple[Path, Path]) -> None:
    """Without --metric both tiers are judged: instructions at 1 %, wall time at 5 %."""
    a, b = counted_runs
    proc = gate_cli(str(a), str(b), "--ignore-env")
    # wall time may be noisy here: a change, or "not comparable" (exit 3) beyond the floor
    assert proc.returncode in (0, 1, 3), proc.stdout + proc.stderr
    rows = table_rows(proc.stdout)
    assert any(r[2] == "instructions" and "allowed 1.0%" in r[-1] for r in rows)
    assert [r[2] for r in rows].count("instructions") == 2
    # one wall-time row per benchmark (the header's NOT COMPARABLE note may name "time" too)
    assert [r[2] for r in rows].count("time") == 2
    if proc.returncode == 3:
        assert "NOT COMPARABLE" in proc.stdout.splitlines()[0]


def table_rows(stdout: str) -> list[list[str]]:
    """The verdict rows of the gate's table (status, benchmark, metric, ..., why): the lines
    between the header's dashes and ``settings:``, split at runs of two or more spaces."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"-+  -+  -+", line))
    end = lines.index("settings:")
    return [re.split(r"\s{2,}", line) for line in lines[start + 1 : end]]


@pytest.mark.valgrind
@pytest.mark.slow
def test_missing_spread_is_not_a_pass(counted_runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = counted_runs
    spreads = tmp_path / "partial.json"
    data = json.loads((REPO / "bench/instructions/aa_spreads.json").read_text())
    data["benchmarks"] = {k: v for k, v in data["benchmarks"].items() if "one_open" not in k}
    spreads.write_text(json.dumps(data))
    proc = gate_cli(str(a), str(b), "--metric", "instructions", "--spreads", str(spreads))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("gate: INSUFFICIENT DATA")
    (row,) = [r for r in proc.stdout.splitlines() if r.startswith("insufficient data")]
    assert (
        "chat-speed-one_open" in row and "no A/A spread for this benchmark in partial.json" in row
    )


@pytest.mark.valgrind
@pytest.mark.slow
def test_counts_on_one_side_only_get_a_clear_message(
    counted_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = counted_runs
    plain = _copy(b, tmp_path / "plain")

    def strip(bench: dict[str, Any]) -> None:
        bench["extra_info"] = {
            k: v for k, v in bench["extra_info"].items() if not k.startswith("instructions")
        }

    edit_counts(plain, "router", strip)
    proc = gate_cli(str(a), str(plain), "--metric", "instructions")
    assert proc.returncode == 2, proc.stdout + proc.stderr  # no count compared at all
    assert (
        "gate: 2 benchmark(s) have instruction counts in the baseline but not in the candidate"
        in proc.stderr
    )
    assert "samplemind-bench run --instructions" in proc.stderr
    assert proc.stdout.startswith("gate: NOTHING COMPARED  2 insufficient data")
    one = _copy(b, tmp_path / "one")  # one benchmark without its count
    edit_counts(one, "router", lambda b: strip(b) if "one_open" in b["name"] else None)
    proc = gate_cli(str(one), str(a), "--metric", "instructions")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.startswith("gate: INSUFFICIENT DATA  1 insufficient data, 1 unchanged")
    assert (
        "gate: 1 benchmark(s) have instruction counts in the candidate but not in the baseline "
        "(e.g. test_route[chat-speed-one_open])" in proc.stderr
    )
    proc = gate_cli(str(plain), str(plain), "--instructions", "--ignore-env")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--instructions: no instruction counts in the baseline and candidate" in proc.stderr


@pytest.mark.valgrind
@pytest.mark.slow
def test_baseline_ref_counts_both_sides(counted_pair: CountedPair) -> None:
    """``gate --baseline-ref REF --instructions``: the interleaved runner counts both sides.

    The session's shared run (``tests/conftest.py``: ``--rounds 1 --suite router --metric
    instructions -k chat-speed``; REF is HEAD on a clean tree), whose two results folders are
    also the A/A pair of the tests above."""
    gate = counted_pair.gate
    assert gate.returncode == 0, gate.stdout[-3000:] + gate.stderr[-3000:]
    report = json.loads(gate.report.read_text())
    verdicts = {v["name"]: v for v in report["verdicts"]}
    assert sorted(verdicts) == ["test_route[chat-speed-healthy]", "test_route[chat-speed-one_open]"]
    for v in verdicts.values():
        assert v["metric"] == "instructions" and v["status"] == "unchanged", v
        assert v["runs_baseline"] == v["runs_candidate"] == 1
    assert report["settings"]["instructions"] == "counted in the first 1 round(s), both sides"
    assert report["settings"]["baseline_ref"] == counted_pair.ref


# -- synthetic results --------------------------------------------------------------------------


def _folder(root: Path, count: float | None) -> Path:
    extra = {} if count is None else {"instructions": count}
    return write_results(root, [bench("b", samples(1e-6, n=30), extra=extra)])


@pytest.mark.parametrize(
    ("content", "needle"),
    [("{oops", "not valid JSON"), ('{"format": "x"}', "not an instruction A/A study file")],
)
def test_corrupt_spreads_file_exits_2_naming_it(tmp_path: Path, content: str, needle: str) -> None:
    bad = tmp_path / "spreads.json"
    bad.write_text(content)
    a, b = _folder(tmp_path / "a", 1000.0), _folder(tmp_path / "b", 1000.0)
    proc = gate_cli(str(a), str(b), "--spreads", str(bad))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"gate: bad input: {bad}: {needle}" in proc.stderr
    rules = tmp_path / "rules.toml"
    rules.write_text(f'[[rule]]\nmetric = "instructions"\nspreads = "{bad.name}"\n')
    proc = gate_cli(str(a), str(b), "--rules", str(rules))
    assert proc.returncode == 2 and str(bad) in proc.stderr


def test_on_inconclusive_from_the_command_line(tmp_path: Path) -> None:
    """+1.5 % against a 1.9 % spread: inconclusive; fails by default, passes (shown) on request."""
    spreads = tmp_path / "aa.json"
    spreads.write_text(
        json.dumps(
            {
                "format": "samplemind-bench-instructions-aa",
                "benchmarks": {"bench/test_x.py::b": {"spread": 0.019}},
            }
        )
    )
    a, b = _folder(tmp_path / "a", 20_000.0), _folder(tmp_path / "b", 20_300.0)
    args = [str(a), str(b), "--metric", "instructions", "--spreads", str(spreads)]
    proc = gate_cli(*args)
    assert proc.returncode == 1 and proc.stdout.startswith("gate: INCONCLUSIVE  1 inconclusive")
    proc = gate_cli(*args, "--on-inconclusive", "pass")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("gate: PASS  1 inconclusive")
    assert "passes (on_inconclusive = pass)" in proc.stdout
    assert "on_inconclusive: pass (--on-inconclusive)" in proc.stdout


def test_instructions_flag_requires_counts(tmp_path: Path) -> None:
    a, b = _folder(tmp_path / "a", None), _folder(tmp_path / "b", None)
    proc = gate_cli(str(a), str(b), "--instructions")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--instructions: no instruction counts in the baseline and candidate" in proc.stderr
    assert gate_cli(str(a), str(b)).returncode == 0  # wall time alone still gates


def test_runner_counts_the_first_rounds_only(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **_kw: Any) -> subprocess.CompletedProcess[str]:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(ab_runner.subprocess, "run", fake_run)
    runner = ab_runner.make_bench_cli_runner(["-k", "x"], count_rounds=2)
    side = ab_runner.SideEnv(REPO, {})
    for r in range(3):
        runner(ab_runner.Slot(r, "router", "baseline"), Path("/tmp/out"), side)
    assert ["--instructions" in cmd for cmd in seen] == [True, True, False]
    assert seen[0][-2:] == ["--pytest-arg=-k", "--pytest-arg=x"]
