"""``python -m bench.history.backfill``: rounds in shuffled order, timers, suites an older
harness does not have or cannot run, resuming.

The commits are a throw-away repository whose ``bench/cli.py`` is a small stand-in harness (it
writes a real results folder from ``tests/data/results/run_a`` for each suite it has, and a
failed run for a suite whose file says ``FAIL``), so the backfill's own work (worktrees, the
command, the bookkeeping) is what is tested, in seconds; the real harness over real commits is
what ``docs/measurements/2026-12-01-history.md`` (section 6) reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench.history.backfill import Job, plan, suites_of
from tests.test_history import RUN_A, cli, counts, git

FAKE_CLI = """
import json, os, shutil, subprocess, sys
from datetime import datetime, timezone
from pathlib import Path

def main(argv):
    here = Path(__file__).resolve().parents[1]
    files = sorted((here / "bench" / "suites").glob("test_*.py")) or sorted(
        (here / "bench").glob("test_*.py"))
    have = {p.stem[5:]: p for p in files}
    out = Path(argv[argv.index("--out") + 1])
    suites = sorted(have)
    if "--suite" in argv:
        rest = argv[argv.index("--suite") + 1:]
        suites = [a for a in rest[: next((i for i, a in enumerate(rest) if a.startswith("--")),
                                            len(rest))]]
        if any(s not in have for s in suites):
            print("run: error: unknown suite", file=sys.stderr)
            return 2
    out.mkdir(parents=True)
    (out / "argv.json").write_text(json.dumps(argv))
    template = Path(os.environ["FAKE_TEMPLATE"])
    manifest = json.loads((template / "manifest.json").read_text())
    runs, names = [], []
    for s in suites:
        ok = not have[s].read_text().startswith("FAIL")
        if ok:
            doc = json.loads((template / "fingerprint.json").read_text())
            for b in doc["benchmarks"]:  # each suite its own benchmarks, as in a real run
                b["fullname"] = b["fullname"].replace("test_fingerprint.py", f"test_{s}.py")
            (out / f"{s}.json").write_text(json.dumps(doc))
            names.append(f"{s}.json")
        runs.append({"suite": s, "file": f"{s}.json" if ok else None,
                     "exit_code": 0 if ok else 1, "elapsed_s": 0.1})
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                         text=True, check=True).stdout.strip()
    manifest.update(suites=suites, files=names, runs=runs, commit={"id": sha, "dirty": False},
                    created=datetime.now(timezone.utc).isoformat())
    (out / "manifest.json").write_text(json.dumps(manifest))
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1
"""


def fake_repo(path: Path) -> list[str]:
    """Three commits: the flat layout with suite a; bench/suites/ with a and b; b failing."""
    path.mkdir()
    git(path, "init", "-q")
    (path / "samplemind_core").mkdir()
    (path / "samplemind_core" / "__init__.py").write_text("")
    (path / "bench").mkdir()
    (path / "bench" / "__init__.py").write_text("")
    (path / "bench" / "cli.py").write_text(FAKE_CLI)
    (path / "bench" / "test_a.py").write_text("")

    def commit(msg: str) -> None:
        git(path, "add", "-A")
        git(path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", msg)

    commit("flat layout, suite a")
    (path / "bench" / "suites").mkdir()
    git(path, "mv", "bench/test_a.py", "bench/suites/test_a.py")
    (path / "bench" / "suites" / "test_b.py").write_text("")
    commit("bench/suites/, suites a and b")
    (path / "bench" / "suites" / "test_b.py").write_text("FAIL\n")
    commit("suite b broken")
    return git(path, "rev-list", "--reverse", "HEAD").split()


def backfill(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"FAKE_TEMPLATE": str(RUN_A), "PATH": "/usr/bin:/bin", "HOME": str(repo.parent)}
    return subprocess.run(
        [sys.executable, "-m", "bench.history.backfill", "--repo", str(repo), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        timeout=600,
        check=False,
    )


def test_plan_shuffles_each_round_and_covers_every_commit_and_timer() -> None:
    commits = [f"{i:040x}" for i in range(12)]
    jobs = plan(commits, rounds=3, order="shuffled", timers=["wall", "cpu"], seed=5)
    assert len(jobs) == 72
    assert Counter((j.index, j.timer) for j in jobs) == {
        (i, t): 3 for i in range(12) for t in ("wall", "cpu")
    }
    orders = [[j.index for j in jobs if j.round == r and j.timer == "wall"] for r in range(3)]
    assert all(sorted(o) == list(range(12)) for o in orders)
    assert len({tuple(o) for o in orders}) == 3  # a fresh order each round
    assert orders[0] != list(range(12))
    # a commit's timers run back to back
    assert all(jobs[i].index == jobs[i + 1].index for i in range(0, 72, 2))
    seq = plan(commits, rounds=2, order="sequential", timers=["wall"], seed=5)
    assert [j.index for j in seq] == list(range(12)) * 2
    assert Job(1, 7, "ab" * 20, "cpu").name == "r01-007-abababababab-cpu"


def test_suites_of_both_layouts(tmp_path: Path) -> None:
    (tmp_path / "bench" / "suites").mkdir(parents=True)
    for name in ("bench/test_zeta.py", "bench/suites/test_router.py", "bench/suites/test_cache.py"):
        (tmp_path / name).write_text("")
    assert suites_of(tmp_path) == ["cache", "router", "zeta"]


@pytest.mark.slow  # several seconds: outside the fast tier
def test_backfill_records_missing_and_failed_suites_and_resumes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commits = fake_repo(repo)
    out = tmp_path / "out"
    args = ["--last", "3", "--suite", "a", "b", "--rounds", "2", "--timer", "wall"]
    args += ["--timer", "cpu", "--instructions", "--jobs", "2", "--out", str(out)]
    proc = backfill(repo, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "backfill.json").read_text())
    assert report["commits"] == commits
    runs = report["runs"]
    assert len(runs) == 12
    expected = [{"a": "ok", "b": "missing"}, {"a": "ok", "b": "ok"}, {"a": "ok", "b": "failed"}]
    for run in runs:
        assert run["suites"] == expected[run["index"]], run
        assert run["commit"] == commits[run["index"]]
        argv = json.loads((out / run["job"] / "argv.json").read_text())
        assert argv[:3] == ["run", "--quick", "--instructions"]
        # an older harness gets only the suites it has; the timer goes to pytest
        assert argv[argv.index("--suite") + 1 : argv.index("--out")] == (
            ["a"] if run["index"] == 0 else ["a", "b"]
        )
        assert ("--pytest-arg=--benchmark-timer=time.process_time" in argv) == (
            run["timer"] == "cpu"
        )
    assert "12 run(s)" in proc.stdout and "16 suite runs ok" in proc.stdout
    assert "4 failed, 4 missing" in proc.stdout
    assert len(git(repo, "worktree", "list").splitlines()) == 1  # the worktrees are gone

    # every folder goes into the store as it is (the failed suite is simply absent)
    db = tmp_path / "h.sqlite"
    folders = sorted(str(p) for p in out.glob("r*"))
    added = cli("history", "add", *folders, "--db", str(db))
    assert added.returncode == 0, added.stderr
    assert counts(str(db))["runs"] == 12
    # the crashed suite is named, never silently dropped
    assert added.stdout.count("not stored, the suite did not complete: b (crashed)") == 4

    again = backfill(repo, *args)  # resumes: nothing measured twice
    assert again.returncode == 0, again.stderr
    assert "12 of 12 run(s) already there" in again.stdout
    assert len(json.loads((out / "backfill.json").read_text())["runs"]) == 12


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_without_suites_each_commit_runs_what_its_harness_has(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    fake_repo(repo)
    out = tmp_path / "out"
    proc = backfill(repo, "--last", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = {r["index"]: r for r in json.loads((out / "backfill.json").read_text())["runs"]}
    # the current harness's suites that these commits lack are "missing"; a and b as they are
    assert runs[0]["suites"]["hashing"] == "missing"
    assert runs[0]["suites"]["a"] == "ok" and runs[0]["suites"]["b"] == "ok"
    assert runs[1]["suites"]["a"] == "ok" and runs[1]["suites"]["b"] == "failed"
    argv = json.loads((out / runs[1]["job"] / "argv.json").read_text())
    assert "--suite" not in argv  # the commit's own `run --quick` picks its suites


def test_an_unknown_ref_exits_2(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    fake_repo(repo)
    proc = backfill(repo, "--ref", "no-such-ref", "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "backfill: error:" in proc.stderr
