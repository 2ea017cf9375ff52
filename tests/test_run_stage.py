"""``run --instructions`` composed above both features (decision 0600): ``bench/cli.py`` checks the
counting tools, then hands :func:`bench.harness.run.run` the counting stage, which runs after
each suite's wall-time run and before the suite's file is compressed and the manifest rewritten.

In-process, with the suite processes replaced by a tiny script (a real child process each) and
the counting stage by a recorder: the valgrind end-to-end runs are in ``test_instructions.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import cli
from bench.harness import run as run_mod
from bench.instructions import runner as instructions
from bench.results import SuiteRun, read_manifest
from tests._helpers import run_args

WRITE_SUITE = """
import json, sys
json.dump({"benchmarks": [], "machine_info": {}, "commit_info": {}}, open(sys.argv[1], "w"))
"""


@pytest.fixture
def fake_suites(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "suite.py"
    script.write_text(WRITE_SUITE)

    def command(suite: str, out: Path, _args: argparse.Namespace) -> list[str]:
        return [sys.executable, str(script), str(out / f"{suite}.json")]

    monkeypatch.setattr(run_mod, "_pytest_command", command)


def test_run_refuses_instructions_without_a_stage(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="counting stage"):
        run_mod.run(run_args(tmp_path / "r", ["hashing", "router"], instructions=True))
    assert not (tmp_path / "r").exists()


@pytest.mark.usefixtures("fake_suites")
def test_the_stage_runs_after_each_suite_and_its_record_is_kept(tmp_path: Path) -> None:
    seen: list[tuple[str, str, bool, bool]] = []

    def stage(suite_run: SuiteRun, out: Path, index: str) -> SuiteRun:
        plain, packed = out / f"{suite_run.suite}.json", out / f"{suite_run.suite}.json.gz"
        seen.append((suite_run.suite, index, plain.exists(), packed.exists()))
        failed = suite_run.suite == "router"  # a failed count fails its suite
        return dataclasses.replace(suite_run, exit_code=5 if failed else suite_run.exit_code)

    out = tmp_path / "r"
    assert (
        run_mod.run(run_args(out, ["hashing", "router"], instructions=True), after_suite=stage) == 1
    )
    # before compression: the stage reads the plain file the suite wrote
    assert seen == [("hashing", "1/2", True, False), ("router", "2/2", True, False)]
    runs = {r["suite"]: r for r in read_manifest(out)["runs"]}
    assert (runs["hashing"]["exit_code"], runs["router"]["exit_code"]) == (0, 5)
    assert (out / "router.json.gz").exists()


def test_cli_exits_2_when_the_tools_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(instructions, "preflight", lambda: "samplemind-bench run --instructions: X")
    out = tmp_path / "r"
    assert cli.main(["run", "--instructions", "--quick", "--out", str(out)]) == 2
    assert capsys.readouterr().err == "samplemind-bench run --instructions: X\n"
    assert not out.exists()  # checked before the folder is made, as before


@pytest.mark.usefixtures("fake_suites")
def test_cli_hands_run_the_counting_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = object()
    calls: list[tuple[str, Any, str, bool]] = []

    def count_into(
        suite_run: SuiteRun, out: Path, got: Any, args: argparse.Namespace, index: str
    ) -> SuiteRun:
        calls.append((suite_run.suite, got, index, bool(args.quick)))
        return suite_run

    monkeypatch.setattr(instructions, "preflight", lambda: tools)
    monkeypatch.setattr(instructions, "count_into", count_into)
    out = tmp_path / "r"
    argv = ["run", "--instructions", "--quick", "-q", "--suite", "hashing", "router"]
    assert cli.main([*argv, "--out", str(out)]) == 0
    assert calls == [("hashing", tools, "1/2", True), ("router", tools, "2/2", True)]
    calls.clear()
    assert cli.main([*argv[:1], *argv[2:], "--out", str(tmp_path / "plain")]) == 0
    assert calls == []  # no --instructions: no stage
