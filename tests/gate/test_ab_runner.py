"""``--baseline-ref`` (:mod:`bench.ab_runner`): worktrees, schedules, pinning, clean-up.

The runner is injected: it records which ``samplemind_core`` each side really imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench import ab_runner, gate
from tests.gate.helpers import (
    RecordingRunner,
    bench,
    git,
    needs_affinity,
    samples,
    write_results,
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
    assert git(tiny_repo, "worktree", "list").count("\n") == 1
    assert not list(private_tmp.glob("samplemind-gate-*/baseline"))
    assert len(list((tmp_path / "runs").glob("*/r*-fingerprint"))) == 8


def test_baseline_ref_cleans_up_when_a_run_fails(
    tiny_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def failing(slot: ab_runner.Slot, out: Path, side: ab_runner.SideEnv) -> None:
        raise ab_runner.ABRunError(f"{slot.side} run of suite {slot.suite!r} exited 1")

    code = gate.main(
        ["--baseline-ref", "HEAD", "--repo", str(tiny_repo), "--suite", "x"], runner=failing
    )
    assert code == gate.EXIT_BAD_INPUT
    assert "baseline run failed" in capsys.readouterr().err
    assert git(tiny_repo, "worktree", "list").count("\n") == 1


def test_baseline_ref_unknown_ref_is_bad_input(
    tiny_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = gate.main(
        ["--baseline-ref", "no-such-ref", "--repo", str(tiny_repo)],
        runner=RecordingRunner(tiny_repo),
    )
    assert code == gate.EXIT_BAD_INPUT
    assert "no-such-ref" in capsys.readouterr().err


@needs_affinity
def test_pairs_schedule_runs_both_sides_at_once_on_one_cpu(tiny_repo: Path, tmp_path: Path) -> None:
    """Each round's A and B run together, pinned to the same CPU; one pair per CPU at a time."""
    cpus = sorted(os.sched_getaffinity(0))
    lock = threading.Lock()
    barriers: dict[tuple[int, str], threading.Barrier] = {}
    seen: list[tuple[ab_runner.Slot, frozenset[int] | None]] = []
    running: dict[int, int] = {}
    peak = 0

    def runner(slot: ab_runner.Slot, out: Path, side: ab_runner.SideEnv) -> None:
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

    dirs = ab_runner.run_interleaved(
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

    def runner(slot: ab_runner.Slot, out: Path, side: ab_runner.SideEnv) -> None:
        assert side.cpus is None
        order.append((slot.round, slot.side))
        write_results(out, [bench("op", samples(1e-6, n=20))], suite=slot.suite)

    ab_runner.run_interleaved(
        tiny_repo, "HEAD", ["a"], rounds=3, seed=2, out_root=tmp_path / "runs",
        runner=runner, schedule_kind="alternate",
    )  # fmt: skip
    assert [r for r, _ in order] == [0, 0, 1, 1, 2, 2]
    assert all({order[i][1], order[i + 1][1]} == {"baseline", "candidate"} for i in (0, 2, 4))


@needs_affinity
def test_pairs_schedule_stops_on_the_first_failure(tiny_repo: Path, tmp_path: Path) -> None:
    def runner(slot: ab_runner.Slot, out: Path, side: ab_runner.SideEnv) -> None:
        if slot.side == "candidate" and slot.round == 1:
            raise ab_runner.ABRunError("candidate run of suite 'a' (round 1) exited 1")
        write_results(out, [bench("op", samples(1e-6, n=20))], suite=slot.suite)

    with pytest.raises(ab_runner.ABRunError, match="round 1"):
        ab_runner.run_interleaved(
            tiny_repo, "HEAD", ["a"], rounds=4, seed=2, out_root=tmp_path / "runs",
            runner=runner, schedule_kind="pairs",
        )  # fmt: skip
    assert git(tiny_repo, "worktree", "list").count("\n") == 1  # cleaned up


@needs_affinity
def test_bench_cli_runner_pins_the_child_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu = min(os.sched_getaffinity(0))
    captured: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        captured.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(ab_runner.subprocess, "run", fake_run)
    slot = ab_runner.Slot(0, "fingerprint", "candidate")
    ab_runner.bench_cli_runner(slot, tmp_path, ab_runner.SideEnv(tmp_path, {}, frozenset({cpu})))
    ab_runner.bench_cli_runner(slot, tmp_path, ab_runner.SideEnv(tmp_path, {}))
    pinned, free = captured[0][2], captured[1][2]
    assert free == ab_runner._BOOT and pinned.endswith(ab_runner._BOOT)
    # the prefix really pins a child interpreter to that CPU
    probe = (
        pinned.removesuffix(ab_runner._BOOT) + "import os; print(sorted(os.sched_getaffinity(0)))"
    )
    monkeypatch.undo()
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"[{cpu}]"


def test_unknown_schedule_is_bad_input(tiny_repo: Path) -> None:
    argv = ["--baseline-ref", "HEAD", "--repo", str(tiny_repo), "--schedule", "random"]
    assert gate.main(argv) == gate.EXIT_BAD_INPUT
    with pytest.raises(ab_runner.ABRunError, match="unknown schedule"):
        ab_runner.run_interleaved(
            tiny_repo, "HEAD", ["a"], rounds=1, seed=1, out_root=tiny_repo / "x",
            schedule_kind="random",  # type: ignore[arg-type]
        )  # fmt: skip


def test_schedule_is_seeded_interleaved_and_randomised() -> None:
    plan = ab_runner.schedule(["hashing", "cache", "router"], rounds=20, seed=5)
    assert plan == ab_runner.schedule(["hashing", "cache", "router"], rounds=20, seed=5)
    assert plan != ab_runner.schedule(["hashing", "cache", "router"], rounds=20, seed=6)
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
    envs = ab_runner.side_environments(repo, tree, {"PYTHONPATH": "/extra", "KEEP": "1"})
    assert envs["baseline"].cwd == tree and envs["candidate"].cwd == repo
    assert envs["baseline"].env["PYTHONPATH"].split(os.pathsep) == [str(tree), "/extra"]
    assert envs["candidate"].env["PYTHONPATH"].split(os.pathsep) == [str(repo), "/extra"]
    assert envs["baseline"].env["KEEP"] == "1"
    with pytest.raises(ab_runner.ABRunError, match="no samplemind_core"):
        ab_runner.side_environments(repo, tmp_path / "empty", {})


def test_baseline_ref_passes_the_cpu_timer_to_cpu_suites_only(
    tiny_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, list[str]]] = []

    def fake(
        slot: ab_runner.Slot,
        out: Path,
        side: ab_runner.SideEnv,
        args: Sequence[str] = (),
        *,
        instructions: bool = False,
    ) -> None:
        assert not instructions  # counted only with --instructions
        seen.append((slot.suite, list(args)))
        write_results(out, [bench(f"op_{slot.suite}", samples(1e-6, n=20))], suite=slot.suite)

    monkeypatch.setattr(ab_runner, "bench_cli_runner", fake)
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
    assert doc["settings"]["schedule"] == f"{ab_runner.default_schedule()} (default)"
    assert all(v["paired"] for v in doc["verdicts"])


def test_sigterm_during_a_baseline_ref_run_removes_the_worktree(tiny_repo: Path) -> None:
    """A CI timeout's SIGTERM must not leave a worktree (and its temp dir) behind."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from bench.ab_runner import worktree\n"
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
    assert git(tiny_repo, "worktree", "list").count("\n") == 1
