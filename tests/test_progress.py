"""Progress on stderr for long steps, quiet under -q (issue 21 item 3)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import pytest

from bench.gate import cli as gate_cli
from bench.gate.evaluate import evaluate
from bench.gate.inputs import load_results
from bench.gate.rules import load_config
from bench.harness import run as run_module
from bench.progress import Progress

DATA = Path(__file__).parent / "data" / "results"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_silent_for_short_steps_then_says_how_far_and_what_is_left() -> None:
    clock, out = Clock(), io.StringIO()
    p = Progress("gate: comparing benchmarks", 10, stream=out, clock=clock)
    p.update(0)
    clock.now += 1.9
    p.update(3)
    assert out.getvalue() == ""  # under 2 s: nothing
    clock.now += 0.1
    p.update(4)  # 2 s, 4 of 10 done: 3 s left at this pace
    clock.now += 1.0
    p.update(5)  # rate-limited
    clock.now += 4.0
    p.update(8)
    p.done()
    assert out.getvalue().splitlines() == [
        "gate: comparing benchmarks: 4/10 (2 s, about 3 s left)",
        "gate: comparing benchmarks: 8/10 (7 s, about 2 s left)",
        "gate: comparing benchmarks: 10/10 done in 7 s",
    ]
    out = io.StringIO()
    quiet = Progress("x", 3, stream=out, clock=clock, enabled=False)
    clock.now += 60
    quiet.update(1)
    quiet.done()
    assert out.getvalue() == ""
    short = Progress("y", 3, stream=out, clock=clock)
    short.update(3)
    short.done()
    assert out.getvalue() == ""  # no closing line for a step that said nothing


def test_evaluate_reports_every_benchmark() -> None:
    base, cand = load_results(DATA / "run_a"), load_results(DATA / "run_b")
    config = load_config(None)
    calls: list[tuple[int, int]] = []
    evaluate(
        base, cand, config, select="no-such-benchmark", progress=lambda d, t: calls.append((d, t))
    )
    n = len(set(base.benches) | set(cand.benches))
    assert calls == [(i, n) for i in range(n)]


@pytest.mark.parametrize("quiet", [False, True])
def test_gate_progress_on_stderr_and_quiet_under_q(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], quiet: bool
) -> None:
    class Eager(Progress):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "after_s": 0.0, "every_s": 0.0})

    monkeypatch.setattr(gate_cli, "Progress", Eager)
    argv = [str(DATA / "run_a"), str(DATA / "run_b"), "--select", "*blake3*"]
    gate_cli.main([*argv, "-q"] if quiet else argv)
    captured = capsys.readouterr()
    assert "gate: comparing benchmarks" not in captured.out
    assert ("gate: comparing benchmarks" in captured.err) is not quiet
    if not quiet:
        assert "done in" in captured.err


def test_run_progress_lines_are_quiet_under_q(capsys: pytest.CaptureFixture[str]) -> None:
    run_module._progress(argparse.Namespace(quiet=False), "[1/2] hashing: started; then cache")
    run_module._progress(argparse.Namespace(quiet=True), "[1/2] hashing: started; then cache")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "[1/2] hashing: started; then cache\n"
