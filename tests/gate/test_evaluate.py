"""Verdicts (:mod:`bench.gate.evaluate`): rules applied, corrections, paired and unpaired tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import gate
from tests.gate.helpers import bench, pair, phased_rounds, result_sets, samples, write_results


def test_added_removed_and_insufficient(tmp_path: Path) -> None:
    base, cand = result_sets(
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
        base, cand = result_sets(
            [bench("a", samples(1e-6, n=400, noise=0.01, seed=1))],
            [bench("a", samples(factor * 1e-6, n=400, noise=0.01, seed=2))],
            tmp_path / str(factor),
        )
        (v,) = gate.evaluate(base, cand, cfg)
        assert v.status == expected, v
        assert v.p_adjusted is not None and v.p_adjusted < cfg.alpha
        assert v.ci_low is not None and v.ci_low > 1.0


def test_large_but_noisy_change_is_not_a_regression(tmp_path: Path) -> None:
    base, cand = result_sets(
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

    base, cand = result_sets(
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

    base2, cand2 = result_sets(
        [bench("g", samples(1e-4), group="cache/get", extra={"hit_rate": 0.5})],
        [bench("g", samples(1e-4), group="cache/get", extra={"hit_rate": 0.9})],
        tmp_path / "up",
    )
    got2 = {v.metric: v.status for v in gate.evaluate(base2, cand2, cfg)}
    assert got2["hit_rate"] == "improved"


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
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


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_correction_for_many_comparisons_changes_the_verdict(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    base_one = list(1e-6 * (1.0 + 0.05 * rng.standard_normal(60)))
    cand_one = list(1.025e-6 * (1.0 + 0.05 * np.random.default_rng(2).standard_normal(60)))
    others = [bench(f"o{i}", samples(1e-6, seed=i)) for i in range(30)]
    base, cand = result_sets(
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


def test_gate_paired_folders_detect_what_unpaired_misses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, cand = phased_rounds(12, 1.10, seed=3)
    argv: list[str] = []
    for i, (b, c) in enumerate(zip(base, cand, strict=True)):
        argv += ["--baseline", str(write_results(tmp_path / f"b{i}", [bench("op", b)]))]
        argv += ["--candidate", str(write_results(tmp_path / f"c{i}", [bench("op", c)]))]
    # unpaired: the runs' own between-run spread (drift of +-30 % a round) hides +10 %: the
    # gate cannot tell, and says so (exit 3) rather than passing
    assert gate.main(argv) == gate.EXIT_NOT_COMPARABLE
    assert "cannot tell" in capsys.readouterr().out
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


def test_different_timers_are_not_comparable(tmp_path: Path) -> None:
    def with_timer(timer: str, seed: int) -> dict[str, Any]:
        return {**bench("fp", samples(1e-6, seed=seed)), "options": {"timer": timer}}

    b, c = pair(tmp_path, [with_timer("perf_counter", 1)], [with_timer("time.process_time", 2)])
    assert gate.main([b, c]) == gate.EXIT_NOT_COMPARABLE
    b2, c2 = pair(
        tmp_path / "same", [with_timer("perf_counter", 1)], [with_timer("perf_counter", 2)]
    )
    assert gate.main([b2, c2]) == gate.EXIT_PASS
