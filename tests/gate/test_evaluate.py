"""The regression gate end to end through ``main(argv)``, over synthetic results folders.

No timing here: every sample is synthetic and seeded; ``--baseline-ref`` runs with an injected
runner that records which ``samplemind_core`` each side really imported.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps  # type: ignore[import-untyped]

from bench import _abrun, _envfp, _stats, gate

ENV: dict[str, Any] = {
    "cpu": "AMD EPYC 7B13",
    "cores": 2,
    "python": "3.11.7",
    "platform": "Linux",
    "packages": {"httpx": "0.28.1", "orjson": "3.10.0", "samplemind-core": "0.1.0"},
}


def samples(median: float, n: int = 200, *, noise: float = 0.03, seed: int = 0) -> list[float]:
    """Seeded log-normal samples around ``median`` (seconds per call)."""
    rng = np.random.default_rng(seed)
    return [float(x) for x in median * np.exp(noise * rng.standard_normal(n))]


def bench(
    name: str,
    data: Sequence[float],
    *,
    group: str = "fingerprint/canonical",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    arr = np.asarray(data, dtype=float)
    return {
        "name": name,
        "fullname": f"bench/test_x.py::{name}",
        "group": group,
        "params": {},
        "param": None,
        "stats": {
            "min": float(arr.min()),
            "max": float(arr.max()),
            "mean": float(arr.mean()),
            "median": float(np.median(arr)),
            "rounds": len(data),
            "iterations": 1,
            "data": list(data),
        },
        "extra_info": dict(extra or {}),
    }


def write_results(
    root: Path,
    benches: Sequence[dict[str, Any]],
    *,
    env: Mapping[str, Any] = ENV,
    version: Any = 1,
    suite: str = "fingerprint",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{suite}.json").write_text(
        json.dumps(
            {"machine_info": {}, "commit_info": {}, "version": "5.2.3", "benchmarks": list(benches)}
        )
    )
    manifest = {
        "format": "samplemind-bench-results",
        "version": version,
        "created": "2025-01-01T00:00:00+00:00",
        "mode": "mocked",
        "quick": True,
        "suites": [suite],
        "files": [f"{suite}.json"],
        "environment": dict(env),
        "commit": {"id": None, "dirty": None},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def pair(
    tmp_path: Path,
    base: Sequence[dict[str, Any]],
    cand: Sequence[dict[str, Any]],
    *,
    cand_env: Mapping[str, Any] = ENV,
) -> tuple[str, str]:
    b = write_results(tmp_path / "base", base)
    c = write_results(tmp_path / "cand", cand, env=cand_env)
    return str(b), str(c)


# --------------------------------------------------------------------------- exit codes


def test_clear_regression_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b, c = pair(
        tmp_path,
        [bench("fp_1k", samples(2e-6, seed=1))],
        [bench("fp_1k", samples(2.6e-6, seed=2))],
    )
    assert gate.main([b, c]) == gate.EXIT_REGRESSION
    out = capsys.readouterr().out
    assert "REGRESSION" in out and "regressed" in out and "fp_1k" in out


def test_identical_results_pass(tmp_path: Path) -> None:
    data = samples(2e-6, seed=3)
    b, c = pair(tmp_path, [bench("fp_1k", data)], [bench("fp_1k", data)])
    assert gate.main([b, c]) == gate.EXIT_PASS


def test_same_distribution_different_draws_pass(tmp_path: Path) -> None:
    b, c = pair(
        tmp_path,
        [bench(f"b{i}", samples(1e-6 * (i + 1), seed=i)) for i in range(10)],
        [bench(f"b{i}", samples(1e-6 * (i + 1), seed=100 + i)) for i in range(10)],
    )
    assert gate.main([b, c, "-q"]) == gate.EXIT_PASS


def test_improvement_passes_and_is_reported(tmp_path: Path) -> None:
    b, c = pair(
        tmp_path,
        [bench("fp_1k", samples(2e-6, seed=1))],
        [bench("fp_1k", samples(1.2e-6, seed=2))],
    )
    out = tmp_path / "v.json"
    assert gate.main([b, c, "--json", str(out)]) == gate.EXIT_PASS
    (v,) = json.loads(out.read_text())["verdicts"]
    assert v["status"] == "improved" and v["ratio"] < 0.7


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing-dir", "no such results folder or file"),
        ("missing-suite-file", "file not found"),
        ("empty", "file is empty"),
        ("corrupt", "not valid JSON"),
        ("unknown-version", "unknown format version 2"),
        ("not-benchmark-json", "no 'benchmarks' list"),
        ("not-a-manifest", "not a samplemind-bench-results manifest"),
    ],
)
def test_bad_input_exits_2_and_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, needle: str
) -> None:
    good = str(write_results(tmp_path / "good", [bench("a", samples(1e-6))]))
    bad = tmp_path / "bad"
    if case != "missing-dir":
        write_results(
            bad, [bench("a", samples(1e-6))], version=2 if case == "unknown-version" else 1
        )
    culprit = {
        "missing-dir": bad,
        "missing-suite-file": bad / "fingerprint.json",
        "empty": bad / "fingerprint.json",
        "corrupt": bad / "fingerprint.json",
        "unknown-version": bad / "manifest.json",
        "not-benchmark-json": bad / "fingerprint.json",
        "not-a-manifest": bad / "manifest.json",
    }[case]
    if case == "missing-suite-file":
        culprit.unlink()
    elif case == "empty":
        culprit.write_text("  \n")
    elif case == "corrupt":
        culprit.write_text('{"benchmarks": [')
    elif case == "not-benchmark-json":
        culprit.write_text('{"results": []}')
    elif case == "not-a-manifest":
        culprit.write_text('{"format": "something-else", "version": 1}')
    assert gate.main([good, str(bad)]) == gate.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert str(culprit) in err and needle in err
    # Bad input wins wherever it is: on the baseline side too.
    assert gate.main([str(bad), good]) == gate.EXIT_BAD_INPUT


def test_bad_usage_and_bad_rules_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = str(write_results(tmp_path / "good", [bench("a", samples(1e-6))]))
    assert gate.main([good]) == gate.EXIT_BAD_INPUT
    assert gate.main(["--no-such-flag"]) == gate.EXIT_BAD_INPUT
    rules = tmp_path / "rules.toml"
    rules.write_text("[[rule]]\nmetric = 'time'\nallowed = 'lots'\n")
    assert gate.main([good, good, "--rules", str(rules)]) == gate.EXIT_BAD_INPUT
    assert str(rules) in capsys.readouterr().err
    rules.write_text("[[rule]\n")
    assert gate.main([good, good, "--rules", str(rules)]) == gate.EXIT_BAD_INPUT


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {"cpu": "Intel Xeon Platinum"},
            "cpu: baseline AMD EPYC 7B13, candidate Intel Xeon Platinum",
        ),
        ({"python": "3.12.1"}, "python: baseline 3.11.7, candidate 3.12.1"),
        ({"cores": 4}, "cores: baseline 2, candidate 4"),
        ({"packages": {"httpx": "0.27.0", "orjson": "3.10.0"}}, "package httpx: baseline 0.28.1"),
    ],
)
def test_different_environment_is_not_comparable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], needle: str
) -> None:
    data = samples(1e-6)
    b, c = pair(tmp_path, [bench("a", data)], [bench("a", data)], cand_env={**ENV, **change})
    md = tmp_path / "s.md"
    assert gate.main([b, c, "--markdown", str(md)]) == gate.EXIT_NOT_COMPARABLE
    assert needle in capsys.readouterr().out
    assert "NOT COMPARABLE" in md.read_text() and needle in md.read_text()
    assert gate.main([b, c, "--ignore-env"]) == gate.EXIT_PASS


def test_own_version_change_is_comparable(tmp_path: Path) -> None:
    data = samples(1e-6)
    env = {**ENV, "packages": {**ENV["packages"], "samplemind-core": "0.2.0"}}
    b, c = pair(tmp_path, [bench("a", data)], [bench("a", data)], cand_env=env)
    assert gate.main([b, c]) == gate.EXIT_PASS


def test_nothing_in_common_is_not_comparable(tmp_path: Path) -> None:
    b, c = pair(tmp_path, [bench("a", samples(1e-6))], [bench("b", samples(1e-6))])
    assert gate.main([b, c]) == gate.EXIT_NOT_COMPARABLE


# --------------------------------------------------------------------------- verdicts


def _sets(
    base: Sequence[dict[str, Any]], cand: Sequence[dict[str, Any]], tmp_path: Path
) -> tuple[gate.ResultSet, gate.ResultSet]:
    b, c = pair(tmp_path, base, cand)
    return gate.load_results(Path(b)), gate.load_results(Path(c))


def test_added_removed_and_insufficient(tmp_path: Path) -> None:
    base, cand = _sets(
        [bench("kept", samples(1e-6)), bench("gone", samples(1e-6)), bench("few", [1e-6] * 3)],
        [
            bench("kept", samples(1e-6, seed=5)),
            bench("new", samples(1e-6)),
            bench("few", [1e-6] * 3),
        ],
        tmp_path,
    )
    status = {v.name: v.status for v in gate.evaluate(base, cand, gate.load_config())}
    assert status == {
        "kept": "unchanged",
        "gone": "removed",
        "few": "insufficient data",
        "new": "added",
    }


def test_within_allowed_change_is_unchanged_even_if_significant(tmp_path: Path) -> None:
    # fingerprint/* allows 5 %: a clearly significant +3 % is not a regression, +8 % is.
    cfg = gate.load_config()
    for factor, expected in ((1.03, "unchanged"), (1.08, "regressed")):
        base, cand = _sets(
            [bench("a", samples(1e-6, n=400, noise=0.01, seed=1))],
            [bench("a", samples(factor * 1e-6, n=400, noise=0.01, seed=2))],
            tmp_path / str(factor),
        )
        (v,) = gate.evaluate(base, cand, cfg)
        assert v.status == expected, v
        assert v.p_adjusted is not None and v.p_adjusted < cfg.alpha
        assert v.ci_low is not None and v.ci_low > 1.0


def test_large_but_noisy_change_is_not_a_regression(tmp_path: Path) -> None:
    base, cand = _sets(
        [bench("a", samples(1e-6, n=8, noise=0.5, seed=2))],
        [bench("a", samples(1.3e-6, n=8, noise=0.5, seed=12))],
        tmp_path,
    )
    (v,) = gate.evaluate(base, cand, gate.load_config())
    assert v.ratio is not None and v.ratio > 1.5  # far beyond the 5 % allowed ...
    assert v.status == "unchanged" and "not significant" in v.reason  # ... but not significant


def test_rule_matching_first_rule_per_metric_and_direction(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        """
[gate]
seed = 1
[[rule]]
group = "cache/*"
metric = "time"
allowed = "50%"
[[rule]]
name = "*_strict"
metric = "time"
allowed = "1%"
[[rule]]
metric = "time"
allowed = "10%"
[[rule]]
metric = "hit_rate"
allowed = "1%"
test = "exact"
[[rule]]
metric = "req_per_s"
allowed = "10%"
[[rule]]
group = "router/*"
metric = "time"
skip = true
"""
    )
    cfg = gate.load_config(rules)
    rec = gate.BenchRecord("k", "get_strict", "cache/get")
    assert cfg.rules_for(rec)["time"].allowed == 0.50  # first match wins
    assert cfg.rules_for(gate.BenchRecord("k", "x_strict", "fingerprint/x"))["time"].allowed == 0.01
    assert cfg.rules_for(rec)["hit_rate"].direction == "higher"  # default direction by metric
    assert cfg.rules_for(rec)["req_per_s"].direction == "higher"
    assert cfg.rules_for(rec)["time"].direction == "lower"
    assert gate.default_direction("p99_ms") == "lower"
    # A skip rule after a catch-all time rule does not win; the earlier match does.
    assert "time" in cfg.rules_for(gate.BenchRecord("k", "r", "router/route"))

    base, cand = _sets(
        [
            bench("get_strict", samples(1e-4, seed=1), group="cache/get", extra={"hit_rate": 0.80}),
            bench("x_strict", samples(1e-6, seed=1), group="fingerprint/x"),
        ],
        [
            bench(
                "get_strict", samples(1.3e-4, seed=2), group="cache/get", extra={"hit_rate": 0.70}
            ),
            bench("x_strict", samples(1.03e-6, n=200, noise=0.003, seed=2), group="fingerprint/x"),
        ],
        tmp_path,
    )
    got = {(v.name, v.metric): v for v in gate.evaluate(base, cand, cfg)}
    assert got[("get_strict", "time")].status == "unchanged"  # +30 % < 50 % allowed
    assert got[("get_strict", "hit_rate")].status == "regressed"  # higher is better, exact
    assert got[("get_strict", "hit_rate")].ratio == pytest.approx(0.70 / 0.80)
    # req_per_s is absent on both sides: no verdict at all for it.
    assert ("get_strict", "req_per_s") not in got
    assert got[("x_strict", "time")].status == "regressed"  # +3 % > 1 % allowed

    base2, cand2 = _sets(
        [bench("g", samples(1e-4), group="cache/get", extra={"hit_rate": 0.5})],
        [bench("g", samples(1e-4), group="cache/get", extra={"hit_rate": 0.9})],
        tmp_path / "up",
    )
    got2 = {v.metric: v.status for v in gate.evaluate(base2, cand2, cfg)}
    assert got2["hit_rate"] == "improved"


def test_single_value_metric_pools_across_runs(tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text("[[rule]]\nmetric = 'req_per_s'\nallowed = '10%'\n")
    cfg = gate.load_config(rules)
    rng = np.random.default_rng(0)
    b_sets = []
    c_sets = []
    for i in range(8):
        b = write_results(
            tmp_path / f"b{i}",
            [bench("c", samples(1e-3, seed=i), extra={"req_per_s": 1000 + rng.normal(0, 5)})],
        )
        c = write_results(
            tmp_path / f"c{i}",
            [bench("c", samples(1e-3, seed=50 + i), extra={"req_per_s": 700 + rng.normal(0, 5)})],
        )
        b_sets.append(gate.load_results(b))
        c_sets.append(gate.load_results(c))
    one = {v.metric: v for v in gate.evaluate(b_sets[0], c_sets[0], cfg)}
    assert one["req_per_s"].status == "insufficient data"
    pooled_b, _ = gate.pool(b_sets)
    pooled_c, _ = gate.pool(c_sets)
    many = {v.metric: v for v in gate.evaluate(pooled_b, pooled_c, cfg)}
    assert many["req_per_s"].status == "regressed" and many["req_per_s"].n_baseline == 8
    assert many["time"].n_baseline == 8 * 200
    # the CLI pools repeated --baseline/--candidate the same way
    argv = ["--rules", str(rules)]
    for i in range(8):
        argv += ["--baseline", str(tmp_path / f"b{i}"), "--candidate", str(tmp_path / f"c{i}")]
    assert gate.main(argv) == gate.EXIT_REGRESSION


# --------------------------------------------------------------------------- statistics


def test_holm_and_bh_by_hand_and_against_scipy() -> None:
    p = [0.01, 0.02, 0.03, 0.04, 0.05]
    assert _stats.holm(p) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert _stats.benjamini_hochberg(p) == pytest.approx([0.05] * 5)
    rng = np.random.default_rng(7)
    ps = list(rng.uniform(0, 0.2, 25))
    assert _stats.benjamini_hochberg(ps) == pytest.approx(list(sps.false_discovery_control(ps)))
    assert _stats.holm([0.5]) == [0.5] and _stats.holm([]) == []


def test_correction_for_many_comparisons_changes_the_verdict(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    base_one = list(1e-6 * (1.0 + 0.05 * rng.standard_normal(60)))
    cand_one = list(1.025e-6 * (1.0 + 0.05 * np.random.default_rng(2).standard_normal(60)))
    others = [bench(f"o{i}", samples(1e-6, seed=i)) for i in range(30)]
    base, cand = _sets(
        [bench("edge", base_one), *others], [bench("edge", cand_one), *others], tmp_path
    )
    rules = tmp_path / "zero.toml"
    rules.write_text("[[rule]]\nmetric = 'time'\nallowed = '0%'\n[gate]\nalpha = 0.01\n")
    cfg = gate.load_config(rules)

    def edge(correction: str) -> gate.Verdict:
        c = gate.GateConfig(
            **{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, "correction": correction}
        )
        return next(v for v in gate.evaluate(base, cand, c) if v.name == "edge")

    uncorrected = edge("none")
    assert uncorrected.p_value is not None and uncorrected.p_value < 0.001
    assert uncorrected.status == "regressed"
    for correction in ("holm", "bh"):
        v = edge(correction)
        assert v.p_adjusted is not None and v.p_adjusted > 0.01
        assert v.status == "unchanged"


def test_bootstrap_ci_is_deterministic_with_a_seed() -> None:
    a, b = samples(1.0, n=100, seed=1), samples(1.1, n=100, seed=2)
    ci1 = _stats.bootstrap_ratio_ci(a, b, seed=42)
    ci2 = _stats.bootstrap_ratio_ci(a, b, seed=42)
    ci3 = _stats.bootstrap_ratio_ci(a, b, seed=43)
    assert ci1 == ci2 and ci1 != ci3
    assert ci1[0] < _stats.ratio_of_medians(a, b) < ci1[1]
    assert ci1[0] > 1.05 and ci1[1] < 1.15
    # per-benchmark seeds do not depend on the comparison order
    assert _stats.stable_seed(1, "x") == _stats.stable_seed(1, "x") != _stats.stable_seed(1, "y")


def test_gate_verdicts_are_reproducible(tmp_path: Path) -> None:
    b, c = pair(
        tmp_path,
        [bench(f"b{i}", samples(1e-6, seed=i)) for i in range(5)],
        [bench(f"b{i}", samples(1.04e-6, seed=10 + i)) for i in range(5)],
    )
    outs = []
    for k in range(2):
        out = tmp_path / f"v{k}.json"
        gate.main([b, c, "--json", str(out), "-q"])
        outs.append(json.loads(out.read_text())["verdicts"])
    assert outs[0] == outs[1]


def test_mann_whitney_constant_samples() -> None:
    assert _stats.mann_whitney_p([1.0] * 10, [1.0] * 10) == 1.0
    assert _stats.mann_whitney_p([1.0] * 10, [2.0] * 10) < 0.001


# --------------------------------------------------------------------------- outputs


def test_json_markdown_and_step_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b, c = pair(
        tmp_path,
        [bench("slow", samples(1e-6, seed=1)), bench("same", samples(1e-6, seed=3))],
        [bench("slow", samples(1.5e-6, seed=2)), bench("same", samples(1e-6, seed=4))],
    )
    js, md, summary = tmp_path / "o/v.json", tmp_path / "o/s.md", tmp_path / "step.md"
    summary.write_text("earlier step\n")
    code = gate.run(
        [b, c, "--json", str(js), "--markdown", str(md)], {"GITHUB_STEP_SUMMARY": str(summary)}
    )
    assert code == gate.EXIT_REGRESSION
    doc = json.loads(js.read_text())
    assert doc["outcome"] == "REGRESSION" and doc["exit_code"] == 1
    assert doc["counts"] == {"regressed": 1, "unchanged": 1}
    first = doc["verdicts"][0]
    assert first["name"] == "slow" and first["status"] == "regressed"
    assert first["ci_low"] < first["ratio"] < first["ci_high"] and first["change"] == pytest.approx(
        first["ratio"] - 1
    )
    text = md.read_text()
    assert text.startswith("## Performance gate: ❌ REGRESSION")
    assert "| regressed | slow | time |" in text
    assert summary.read_text() == "earlier step\n" + text + "\n"
    table = capsys.readouterr().out
    assert "regressed  slow" in table and "µs" in table
    # Without GITHUB_STEP_SUMMARY nothing is appended anywhere.
    assert gate.run([b, c], {}) == gate.EXIT_REGRESSION
    assert summary.read_text() == "earlier step\n" + text + "\n"


def test_single_pytest_benchmark_json_files(tmp_path: Path) -> None:
    def pbjson(path: Path, data: list[float], cpu: str) -> Path:
        path.write_text(
            json.dumps(
                {
                    "machine_info": {
                        "python_version": "3.11.7",
                        "cpu": {"brand_raw": cpu, "count": 2},
                    },
                    "benchmarks": [bench("a", data)],
                }
            )
        )
        return path

    b = pbjson(tmp_path / "b.json", samples(1e-6, seed=1), "EPYC")
    c = pbjson(tmp_path / "c.json", samples(2e-6, seed=2), "EPYC")
    assert gate.main([str(b), str(c)]) == gate.EXIT_REGRESSION
    x = pbjson(tmp_path / "x.json", samples(1e-6, seed=2), "Xeon")
    assert gate.main([str(b), str(x)]) == gate.EXIT_NOT_COMPARABLE
    assert _envfp.from_machine_info({"cpu": {"brand_raw": "Xeon", "count": 2}})["cores"] == 2


# --------------------------------------------------------------------------- --baseline-ref


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "samplemind_core").mkdir(parents=True)
    _git(repo.parent, "init", "-q", str(repo))
    _git(repo, "config", "user.email", "t@example.invalid")
    _git(repo, "config", "user.name", "t")
    (repo / "samplemind_core" / "__init__.py").write_text("SPEED = 1.0\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "baseline")
    (repo / "samplemind_core" / "__init__.py").write_text("SPEED = 1.5\n")  # uncommitted candidate
    return repo


class RecordingRunner:
    """Runs a real child interpreter with the side's environment to see which package it imports."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.calls: list[tuple[_abrun.Slot, float]] = []

    def __call__(self, slot: _abrun.Slot, out: Path, side: _abrun.SideEnv) -> None:
        proc = subprocess.run(
            [sys.executable, "-c", "import samplemind_core as s; print(s.SPEED, s.__file__)"],
            env=dict(side.env),
            cwd=side.cwd,
            capture_output=True,
            text=True,
            check=True,
        )
        speed_s, where = proc.stdout.split()
        speed = float(speed_s)
        assert (slot.side == "baseline") == ("samplemind-gate-" in where), where
        self.calls.append((slot, speed))
        seed = slot.round * 2 + (slot.side == "baseline")
        # a real run's process works in the side's checkout: a relative ``out`` would land there
        write_results(
            side.cwd / out, [bench("op", samples(1e-6 * speed, n=50, seed=seed))], suite=slot.suite
        )


def test_baseline_ref_interleaves_imports_the_ref_and_cleans_up(
    tiny_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private_tmp = tmp_path / "tmp"  # other tests' gate runs must not show up in the glob below
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    monkeypatch.chdir(tmp_path)  # --out is relative: the gate must not resolve it in a checkout
    runner = RecordingRunner(tiny_repo)
    js = tmp_path / "v.json"
    argv = ["--baseline-ref", "HEAD", "--repo", str(tiny_repo), "--suite", "fingerprint"]
    argv += ["--rounds", "4", "--seed", "3", "--json", str(js), "--out", "runs"]
    assert gate.main(argv, runner=runner) == gate.EXIT_REGRESSION
    # each side imported its own samplemind_core: the committed 1.0 and the working tree's 1.5
    assert {(s.side, speed) for s, speed in runner.calls} == {("baseline", 1.0), ("candidate", 1.5)}
    # interleaved: every round has one A and one B
    rounds = [sorted(s.side for s, _ in runner.calls if s.round == r) for r in range(4)]
    assert rounds == [["baseline", "candidate"]] * 4
    v = json.loads(js.read_text())["verdicts"][0]
    assert v["n_baseline"] == 4 * 50 and v["ratio"] == pytest.approx(1.5, rel=0.05)
    # the worktree and its temp directory are gone
    assert _git(tiny_repo, "worktree", "list").count("\n") == 1
    assert not list(private_tmp.glob("samplemind-gate-*/baseline"))
    assert len(list((tmp_path / "runs").glob("*/r*-fingerprint"))) == 8


def test_baseline_ref_cleans_up_when_a_run_fails(
    tiny_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(slot: _abrun.Slot, out: Path, side: _abrun.SideEnv) -> None:
        raise _abrun.ABRunError(f"{slot.side} run of suite {slot.suite!r} exited 1")

    code = gate.main(
        ["--baseline-ref", "HEAD", "--repo", str(tiny_repo), "--suite", "x"], runner=failing
    )
    assert code == gate.EXIT_BAD_INPUT
    assert "baseline run failed" in capsys.readouterr().err
    assert _git(tiny_repo, "worktree", "list").count("\n") == 1


def test_baseline_ref_unknown_ref_is_bad_input(
    tiny_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = gate.main(
        ["--baseline-ref", "no-such-ref", "--repo", str(tiny_repo)],
        runner=RecordingRunner(tiny_repo),
    )
    assert code == gate.EXIT_BAD_INPUT
    assert "no-such-ref" in capsys.readouterr().err


needs_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only"
)


@needs_affinity
def test_pairs_schedule_runs_both_sides_at_once_on_one_cpu(tiny_repo: Path, tmp_path: Path) -> None:
    """Each round's A and B run together, pinned to the same CPU; one pair per CPU at a time."""
    cpus = sorted(os.sched_getaffinity(0))
    lock = threading.Lock()
    barriers: dict[tuple[int, str], threading.Barrier] = {}
    seen: list[tuple[_abrun.Slot, frozenset[int] | None]] = []
    running: dict[int, int] = {}
    peak = 0

    def runner(slot: _abrun.Slot, out: Path, side: _abrun.SideEnv) -> None:
        nonlocal peak
        assert side.cpus is not None and len(side.cpus) == 1
        (cpu,) = side.cpus
        with lock:
            seen.append((slot, side.cpus))
            running[cpu] = running.get(cpu, 0) + 1
            peak = max(peak, sum(running.values()))
            assert running[cpu] <= 2, "more than one pair on a CPU"
            barrier = barriers.setdefault((slot.round, slot.suite), threading.Barrier(2))
        barrier.wait(timeout=60)  # raises BrokenBarrierError unless the other side runs too
        write_results(out, [bench("op", samples(1e-6, n=20, seed=slot.round))], suite=slot.suite)
        with lock:
            running[cpu] -= 1

    dirs = _abrun.run_interleaved(
        tiny_repo, "HEAD", ["a", "b"], rounds=3, seed=1, out_root=tmp_path / "runs",
        runner=runner, schedule_kind="pairs",
    )  # fmt: skip
    assert len(seen) == 12 and peak <= 2 * len(cpus)
    for (r, suite), _ in barriers.items():
        pair = [c for s, c in seen if (s.round, s.suite) == (r, suite)]
        assert len(pair) == 2 and pair[0] == pair[1]  # same CPU
    # folders in plan order on both sides: the n-th of each is the same round and suite
    assert [p.name for p in dirs["baseline"]] == [p.name for p in dirs["candidate"]]
    assert len(dirs["baseline"]) == 6


def test_alternate_schedule_runs_one_process_at_a_time_unpinned(
    tiny_repo: Path, tmp_path: Path
) -> None:
    order: list[tuple[int, str]] = []

    def runner(slot: _abrun.Slot, out: Path, side: _abrun.SideEnv) -> None:
        assert side.cpus is None
        order.append((slot.round, slot.side))
        write_results(out, [bench("op", samples(1e-6, n=20))], suite=slot.suite)

    _abrun.run_interleaved(
        tiny_repo, "HEAD", ["a"], rounds=3, seed=2, out_root=tmp_path / "runs",
        runner=runner, schedule_kind="alternate",
    )  # fmt: skip
    assert [r for r, _ in order] == [0, 0, 1, 1, 2, 2]
    assert all({order[i][1], order[i + 1][1]} == {"baseline", "candidate"} for i in (0, 2, 4))


@needs_affinity
def test_pairs_schedule_stops_on_the_first_failure(tiny_repo: Path, tmp_path: Path) -> None:
    def runner(slot: _abrun.Slot, out: Path, side: _abrun.SideEnv) -> None:
        if slot.side == "candidate" and slot.round == 1:
            raise _abrun.ABRunError("candidate run of suite 'a' (round 1) exited 1")
        write_results(out, [bench("op", samples(1e-6, n=20))], suite=slot.suite)

    with pytest.raises(_abrun.ABRunError, match="round 1"):
        _abrun.run_interleaved(
            tiny_repo, "HEAD", ["a"], rounds=4, seed=2, out_root=tmp_path / "runs",
            runner=runner, schedule_kind="pairs",
        )  # fmt: skip
    assert _git(tiny_repo, "worktree", "list").count("\n") == 1  # cleaned up


@needs_affinity
def test_bench_cli_runner_pins_the_child_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu = min(os.sched_getaffinity(0))
    captured: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        captured.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(_abrun.subprocess, "run", fake_run)
    slot = _abrun.Slot(0, "fingerprint", "candidate")
    _abrun.bench_cli_runner(slot, tmp_path, _abrun.SideEnv(tmp_path, {}, frozenset({cpu})))
    _abrun.bench_cli_runner(slot, tmp_path, _abrun.SideEnv(tmp_path, {}))
    pinned, free = captured[0][2], captured[1][2]
    assert free == _abrun._BOOT and pinned.endswith(_abrun._BOOT)
    # the prefix really pins a child interpreter to that CPU
    probe = pinned.removesuffix(_abrun._BOOT) + "import os; print(sorted(os.sched_getaffinity(0)))"
    monkeypatch.undo()
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"[{cpu}]"


def test_unknown_schedule_is_bad_input(tiny_repo: Path) -> None:
    argv = ["--baseline-ref", "HEAD", "--repo", str(tiny_repo), "--schedule", "random"]
    assert gate.main(argv) == gate.EXIT_BAD_INPUT
    with pytest.raises(_abrun.ABRunError, match="unknown schedule"):
        _abrun.run_interleaved(
            tiny_repo, "HEAD", ["a"], rounds=1, seed=1, out_root=tiny_repo / "x",
            schedule_kind="random",  # type: ignore[arg-type]
        )  # fmt: skip


def test_schedule_is_seeded_interleaved_and_randomised() -> None:
    plan = _abrun.schedule(["hashing", "cache", "router"], rounds=20, seed=5)
    assert plan == _abrun.schedule(["hashing", "cache", "router"], rounds=20, seed=5)
    assert plan != _abrun.schedule(["hashing", "cache", "router"], rounds=20, seed=6)
    assert len(plan) == 2 * 3 * 20
    for i in range(0, len(plan), 2):  # each suite run as an adjacent A/B pair
        assert plan[i].suite == plan[i + 1].suite and {plan[i].side, plan[i + 1].side} == {
            "baseline",
            "candidate",
        }
    firsts = [plan[i].side for i in range(0, len(plan), 2)]
    assert 0 < firsts.count("baseline") < len(firsts)  # order really randomised


def test_side_environments_put_each_checkout_first(tmp_path: Path) -> None:
    tree, repo = tmp_path / "tree", tmp_path / "repo"
    (tree / "samplemind_core").mkdir(parents=True)
    (tree / "samplemind_core" / "__init__.py").write_text("")
    envs = _abrun.side_environments(repo, tree, {"PYTHONPATH": "/extra", "KEEP": "1"})
    assert envs["baseline"].cwd == tree and envs["candidate"].cwd == repo
    assert envs["baseline"].env["PYTHONPATH"].split(os.pathsep) == [str(tree), "/extra"]
    assert envs["candidate"].env["PYTHONPATH"].split(os.pathsep) == [str(repo), "/extra"]
    assert envs["baseline"].env["KEEP"] == "1"
    with pytest.raises(_abrun.ABRunError, match="no samplemind_core"):
        _abrun.side_environments(repo, tmp_path / "empty", {})


def test_run_aware_bootstrap_carries_run_to_run_noise() -> None:
    """Samples of one run share its conditions: resampling runs widens the CI honestly."""
    offsets = (0.90, 1.06, 0.97, 1.10, 1.00)  # each run (process) has its own speed

    def runs(seed: int) -> list[list[float]]:
        return [
            [off * x for x in samples(1e-6, n=40, noise=0.005, seed=seed + i)]
            for i, off in enumerate(offsets)
        ]

    ra, rb = runs(0), runs(100)
    fa, fb = [x for r in ra for x in r], [x for r in rb for x in r]
    iid = _stats.compare_samples(fa, fb, seed=1)
    hier = _stats.compare_samples(fa, fb, seed=1, baseline_runs=ra, candidate_runs=rb)
    assert iid.ratio == hier.ratio
    assert (hier.ci_high - hier.ci_low) > 2 * (iid.ci_high - iid.ci_low)
    assert hier.p_bootstrap > iid.p_bootstrap
    assert hier.p_value == max(hier.p_mann_whitney, hier.p_bootstrap)
    # deterministic with a seed, run-aware too
    again = _stats.compare_samples(fa, fb, seed=1, baseline_runs=ra, candidate_runs=rb)
    assert (again.ci_low, again.ci_high) == (hier.ci_low, hier.ci_high)


def test_pooled_folders_keep_their_runs(tmp_path: Path) -> None:
    sets = [
        gate.load_results(
            write_results(tmp_path / f"r{i}", [bench("a", samples(1e-6, n=10, seed=i))])
        )
        for i in range(3)
    ]
    pooled, diffs = gate.pool(sets)
    rec = pooled.benches["bench/test_x.py::a"]
    assert diffs == [] and len(rec.runs) == 3 and len(rec.samples) == 30
    assert rec.runs[1] == sets[1].benches["bench/test_x.py::a"].samples


def test_bootstrap_p_has_resolution_below_one_over_n_boot() -> None:
    a, b = samples(1.0, n=300, noise=0.01, seed=1), samples(1.05, n=300, noise=0.01, seed=2)
    p = _stats.bootstrap_p(_stats.bootstrap_ratios(a, b, n_boot=500, seed=0))
    assert 0.0 <= p < 1e-6  # far below 1/500: survives a Holm correction over many benchmarks
    same = _stats.bootstrap_p(_stats.bootstrap_ratios(a, a, n_boot=500, seed=0))
    assert same > 0.05


# --------------------------------------------------------------------------- paired rounds


def phased_rounds(
    rounds: int, factor: float, *, seed: int, phase_sd: float = 0.3, n: int = 40
) -> tuple[list[list[float]], list[list[float]]]:
    """Interleaved rounds whose machine speed drifts a lot between rounds (lognormal ``phase_sd``)
    but is shared by the A and B runs of a round; B is ``factor`` times slower."""
    rng = np.random.default_rng(seed)
    base: list[list[float]] = []
    cand: list[list[float]] = []
    for _ in range(rounds):
        phase = 1e-6 * float(np.exp(phase_sd * rng.standard_normal()))
        base.append([float(x) for x in phase * np.exp(0.03 * rng.standard_normal(n))])
        cand.append([float(x) for x in factor * phase * np.exp(0.03 * rng.standard_normal(n))])
    return base, cand


def test_yuen_without_trimming_is_the_one_sample_t_test() -> None:
    x = np.random.default_rng(5).normal(0.02, 0.05, 17)
    tm, se, df, p = _stats.yuen_one_sample(x, trim=0.0)
    ref = sps.ttest_1samp(x, 0.0)
    assert tm == pytest.approx(float(x.mean()))
    assert df == 16 and p == pytest.approx(float(ref.pvalue), rel=1e-9)
    assert tm / se == pytest.approx(float(ref.statistic), rel=1e-9)


def test_yuen_by_hand_and_robust_to_an_outlying_round() -> None:
    x = [0.08, 0.09, 0.10, 0.10, 0.10, 0.10, 0.11, 0.11, 0.12, 0.50]  # sorted; g = 2, h = 6
    tm, se, df, _ = _stats.yuen_one_sample(x, trim=0.2)
    w = [0.10, 0.10, 0.10, 0.10, 0.10, 0.10, 0.11, 0.11, 0.11, 0.11]  # winsorised
    assert tm == pytest.approx(sum(x[2:8]) / 6)
    assert df == 5
    assert se == pytest.approx(math.sqrt(9 * float(np.var(w, ddof=1)) / (6 * 5)))
    # the outlier moves the mean a lot, the trimmed mean not at all
    y = [*x[:-1], 5.0]
    assert _stats.yuen_one_sample(y, trim=0.2)[0] == pytest.approx(tm)
    assert _stats.yuen_one_sample([0.0] * 6)[3] == 1.0
    assert _stats.yuen_one_sample([0.25] * 6)[3] == 0.0


def test_round_log_ratios_by_hand() -> None:
    d = _stats.round_log_ratios([[1.0, 3.0, 2.0], [4.0]], [[2.2, 2.2], [2.0]])
    assert list(d) == pytest.approx([math.log(1.1), math.log(0.5)])
    with pytest.raises(ValueError):
        _stats.round_log_ratios([[1.0]], [[1.0], [1.0]])


def test_paired_test_cancels_round_phases_the_unpaired_one_cannot() -> None:
    base, cand = phased_rounds(12, 1.10, seed=7)
    paired = _stats.compare_paired(base, cand)
    assert paired.test == "paired" and paired.rounds == 12
    assert paired.ratio == pytest.approx(1.10, rel=0.02)
    assert paired.p_value < 1e-6 and paired.ci_low > 1.05
    flat_b = [x for r in base for x in r]
    flat_c = [x for r in cand for x in r]
    unpaired = _stats.compare_samples(
        flat_b, flat_c, seed=1, baseline_runs=base, candidate_runs=cand
    )
    assert unpaired.ci_low < 1.0  # the phases swamp a 10 % change when rounds are not paired
    assert _stats.compare_paired(base, cand) == paired  # deterministic


def test_paired_test_false_alarm_rate_is_at_most_alpha_under_heavy_tails() -> None:
    """A/A with t(3)-distributed per-round noise: rejections at 1 % stay near 1 % (seeded)."""
    rng = np.random.default_rng(11)
    rejections = 0
    trials = 2000
    for _ in range(trials):
        d = 0.1 * rng.standard_t(3, size=30)
        rejections += _stats.yuen_one_sample(d, trim=0.2)[3] < 0.01
    assert rejections / trials <= 0.015


def test_gate_paired_folders_detect_what_unpaired_misses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, cand = phased_rounds(12, 1.10, seed=3)
    argv: list[str] = []
    for i, (b, c) in enumerate(zip(base, cand, strict=True)):
        argv += ["--baseline", str(write_results(tmp_path / f"b{i}", [bench("op", b)]))]
        argv += ["--candidate", str(write_results(tmp_path / f"c{i}", [bench("op", c)]))]
    assert gate.main(argv) == gate.EXIT_PASS  # unpaired: not significant
    js = tmp_path / "v.json"
    assert gate.main([*argv, "--paired", "--json", str(js)]) == gate.EXIT_REGRESSION
    v = json.loads(js.read_text())["verdicts"][0]
    assert v["status"] == "regressed" and v["paired"] is True
    assert "paired, 12 rounds" in v["reason"] and v["ratio"] == pytest.approx(1.10, rel=0.02)
    assert "Yuen" in json.loads(js.read_text())["settings"]["test"]
    # A/A with the same phases: passes
    argv_aa: list[str] = []
    for i, b in enumerate(base):
        again = [x * 1.0 for x in reversed(b)]
        argv_aa += ["--baseline", str(write_results(tmp_path / f"ab{i}", [bench("op", b)]))]
        argv_aa += ["--candidate", str(write_results(tmp_path / f"ac{i}", [bench("op", again)]))]
    assert gate.main([*argv_aa, "--paired"]) == gate.EXIT_PASS
    capsys.readouterr()


def test_paired_falls_back_to_unpaired_when_rounds_do_not_pair() -> None:
    base, cand = phased_rounds(6, 1.5, seed=2, phase_sd=0.0)

    def rs(runs: list[list[float]]) -> gate.ResultSet:
        rec = gate.BenchRecord("k", "op", "g/x", [x for r in runs for x in r], {}, runs)
        return gate.ResultSet(["x"], {}, {"k": rec})

    cfg = gate.GateConfig(rules=(gate.Rule(allowed=0.05),))
    (v,) = gate.evaluate(rs(base), rs(cand[:5]), cfg, paired=True)
    assert v.status == "regressed" and not v.paired
    (v,) = gate.evaluate(rs(base), rs(cand), cfg, paired=True)
    assert v.status == "regressed" and v.paired


def test_rule_timer_parsing_and_suite_timer(tmp_path: Path) -> None:
    rules = tmp_path / "r.toml"
    rules.write_text(
        '[[rule]]\nname = "test_x*"\ngroup = "cache/*"\nmetric = "time"\ntimer = "cpu"\n'
        '[[rule]]\ngroup = "fingerprint/*"\nmetric = "time"\nallowed = "5%"\ntimer = "cpu"\n'
        '[[rule]]\nmetric = "time"\nallowed = "10%"\n'
    )
    cfg = gate.load_config(rules)
    assert cfg.suite_timer("fingerprint") == "cpu"
    assert (
        cfg.suite_timer("cache") == "wall"
    )  # a benchmark-specific rule cannot set a suite's clock
    assert cfg.suite_timer("router") == "wall"
    assert "timer=cpu" in cfg.rules[1].describe()
    for bad in ('metric = "hit_rate"\ntimer = "cpu"\n', 'metric = "time"\ntimer = "tsc"\n'):
        rules.write_text("[[rule]]\n" + bad)
        with pytest.raises(gate.GateInputError, match="timer"):
            gate.load_config(rules)


def test_baseline_ref_passes_the_cpu_timer_to_cpu_suites_only(
    tiny_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, list[str]]] = []

    def fake(slot: _abrun.Slot, out: Path, side: _abrun.SideEnv, args: Sequence[str] = ()) -> None:
        seen.append((slot.suite, list(args)))
        write_results(out, [bench(f"op_{slot.suite}", samples(1e-6, n=20))], suite=slot.suite)

    monkeypatch.setattr(_abrun, "bench_cli_runner", fake)
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\ngroup = "hashing/*"\nmetric = "time"\ntimer = "cpu"\n')
    js = tmp_path / "v.json"
    argv = ["--baseline-ref", "HEAD", "--repo", str(tiny_repo), "--rules", str(rules)]
    argv += ["--suite", "hashing", "--suite", "router", "--rounds", "3", "--json", str(js)]
    argv += ["--pytest-arg=-kop"]
    assert gate.main(argv) == gate.EXIT_PASS
    assert {(s, tuple(a)) for s, a in seen} == {
        ("hashing", ("--benchmark-timer=time.process_time", "-kop")),
        ("router", ("-kop",)),
    }
    doc = json.loads(js.read_text())
    assert doc["settings"]["timers"] == "hashing=cpu, router=wall"
    assert doc["settings"]["schedule"] == f"{_abrun.default_schedule()} (default)"
    assert all(v["paired"] for v in doc["verdicts"])


def test_different_timers_are_not_comparable(tmp_path: Path) -> None:
    def with_timer(timer: str, seed: int) -> dict[str, Any]:
        return {**bench("fp", samples(1e-6, seed=seed)), "options": {"timer": timer}}

    b, c = pair(tmp_path, [with_timer("perf_counter", 1)], [with_timer("time.process_time", 2)])
    assert gate.main([b, c]) == gate.EXIT_NOT_COMPARABLE
    b2, c2 = pair(
        tmp_path / "same", [with_timer("perf_counter", 1)], [with_timer("perf_counter", 2)]
    )
    assert gate.main([b2, c2]) == gate.EXIT_PASS


def test_sigterm_during_a_baseline_ref_run_removes_the_worktree(tiny_repo: Path) -> None:
    """A CI timeout's SIGTERM must not leave a worktree (and its temp dir) behind."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from bench._abrun import worktree\n"
        f"with worktree(Path({str(tiny_repo)!r}), 'HEAD') as tree:\n"
        "    print(tree, flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=Path.cwd()
    )
    assert proc.stdout is not None
    tree = Path(proc.stdout.readline().strip())  # the worktree exists: the child is inside
    assert (tree / "samplemind_core" / "__init__.py").is_file()
    proc.terminate()
    assert proc.wait(timeout=60) == 128 + 15
    assert not tree.exists() and not tree.parent.exists()
    assert _git(tiny_repo, "worktree", "list").count("\n") == 1
