"""The gate end to end through ``main(argv)``: exit codes over synthetic results folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import gate
from tests.gate.helpers import ENV, bench, pair, samples, write_results


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
        ("unknown-version", "unknown format version 3"),
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
            bad, [bench("a", samples(1e-6))], version=3 if case == "unknown-version" else 1
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
