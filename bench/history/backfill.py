"""Measure past commits into results folders: ``python -m bench.history.backfill``.

::

    nice python -m bench.history.backfill --last 30 --rounds 2 --out results/backfill
    samplemind-bench history add results/backfill/r* --db history.sqlite

Each commit (the ``--last`` N first-parent commits up to ``--ref``) is checked out in a
temporary git worktree and measured by *its own* harness (``samplemind-bench run --quick``, as
the gate's baseline side runs: :func:`bench.ab_runner.bench_cli_command`), in a fresh
process, into ``OUT/rRR-NNN-<sha>-<timer>`` (``NNN``: the commit's place, oldest first).

Why rounds in shuffled order: on a shared machine, load phases (other jobs starting and stopping)
last minutes. Measured one commit after the other, a phase covers consecutive commits and looks
like a step in the code. ``--order shuffled`` (the default) visits the commits in a fresh random
order each round, so a phase lands on scattered commits, and ``--rounds R`` measures each commit
R times in R different phases; the store keeps every run and a commit's level is their median.
``--timer cpu`` times with ``time.process_time`` (the time spent descheduled does not count);
``--timer wall --timer cpu`` runs both, in random order, for each commit and round.

Without ``--suite``, each commit runs every suite its harness has. A suite the commit cannot
run is recorded, not fatal: ``missing`` (the commit's harness has no such suite: an older
layout) or ``failed`` (its run exited non-zero; the log is kept). ``OUT/backfill.json`` lists
every run with the status of each suite, and is rewritten after each run, so an interrupted
backfill resumes where it stopped (folders with a manifest are not measured again).

Exit status: 0 when at least one suite ran; 1 when none did; 2 for bad arguments or an unknown
``--ref``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import ab_runner
from bench.suite_list import SUITES

__all__ = ["Job", "main", "plan", "suites_of"]

TIMER_ARGS: dict[str, list[str]] = {
    "wall": [],
    "cpu": ["--benchmark-timer=time.process_time"],
}
REPORT = "backfill.json"


@dataclass(frozen=True, slots=True)
class Job:
    """One measurement: a commit (its place ``index``, oldest first) in one round with one timer."""

    round: int
    index: int
    commit: str
    timer: str

    @property
    def name(self) -> str:
        return f"r{self.round:02d}-{self.index:03d}-{self.commit[:12]}-{self.timer}"


@dataclass(slots=True)
class Outcome:
    """What one job did: the status of each suite (``ok``, ``failed``, ``missing``)."""

    job: str
    round: int
    index: int
    commit: str
    timer: str
    suites: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    folder: str | None = None
    error: str | None = None


def plan(
    commits: Sequence[str], *, rounds: int, order: str, timers: Sequence[str], seed: int
) -> list[Job]:
    """Every (round, commit, timer) job in run order.

    ``commits`` oldest first. ``sequential``: oldest first in each round; ``shuffled``: a fresh
    random order of the commits each round. The timers of one commit run back to back, in
    random order (``shuffled``) or as given (``sequential``).
    """
    rng = random.Random(seed)
    jobs: list[Job] = []
    for r in range(rounds):
        places = list(range(len(commits)))
        if order == "shuffled":
            rng.shuffle(places)
        for n in places:
            these = list(timers)
            if order == "shuffled":
                rng.shuffle(these)
            jobs.extend(Job(r, n, commits[n], t) for t in these)
    return jobs


def suites_of(tree: Path) -> list[str]:
    """The suites a checkout's harness has (``bench/suites/test_S.py``, or ``bench/test_S.py``
    in the older flat layout), in :data:`SUITES` order, then any others by name."""
    found: set[str] = set()
    for folder in (tree / "bench" / "suites", tree / "bench"):
        found.update(p.stem.removeprefix("test_") for p in folder.glob("test_*.py"))
    return [s for s in SUITES if s in found] + sorted(found - set(SUITES))


def _measure(
    job: Job,
    repo: Path,
    out: Path,
    wanted: Sequence[str] | None,
    pytest_args: Sequence[str],
    instructions: bool = False,
) -> Outcome:
    outcome = Outcome(job.name, job.round, job.index, job.commit, job.timer)
    folder = out / job.name
    log_path = out / "logs" / f"{job.name}.txt"
    shutil.rmtree(folder, ignore_errors=True)  # what an interrupted run left
    start = time.monotonic()
    try:
        with ab_runner.worktree(repo, job.commit) as tree:
            has = suites_of(tree)
            expected = list(wanted) if wanted else list(dict.fromkeys([*SUITES, *has]))
            runnable = [s for s in expected if s in has]
            outcome.suites = {s: "missing" for s in expected if s not in has}
            if not runnable:
                outcome.error = "no suite to run in this commit's harness"
                return outcome
            side = ab_runner.side_environments(repo, tree, os.environ)["baseline"]
            # explicit --suite only when asked: without it the commit's own `run --quick`
            # chooses its suites, as it does for a user
            # (a harness without --instructions exits 2: its suites count as failed)
            cmd = ab_runner.bench_cli_command(
                folder,
                runnable if wanted else [],
                [*TIMER_ARGS[job.timer], *pytest_args],
                instructions=instructions,
            )
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("w") as log:
                proc = subprocess.run(
                    cmd,
                    cwd=side.cwd,
                    env=dict(side.env),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
    except ab_runner.ABRunError as exc:
        outcome.error = str(exc).splitlines()[0]
        outcome.suites.update({s: "failed" for s in (wanted or SUITES) if s not in outcome.suites})
        return outcome
    finally:
        outcome.elapsed_s = round(time.monotonic() - start, 1)
    manifest = folder / "manifest.json"
    runs: dict[str, int] = {}
    if manifest.is_file():
        try:
            doc = json.loads(manifest.read_text())
            runs = {r["suite"]: int(r["exit_code"]) for r in doc.get("runs", [])}
            if doc.get("files"):
                outcome.folder = str(folder)
        except (ValueError, KeyError, TypeError):
            runs = {}
    for s in runnable:
        outcome.suites[s] = "ok" if runs.get(s) == 0 else "failed"
    if proc.returncode != 0:
        outcome.error = f"run exited {proc.returncode} (log: {log_path})"
    return outcome


def _load(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return {o["job"]: o for o in json.loads(path.read_text())["runs"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _save(path: Path, outcomes: dict[str, dict[str, Any]], commits: Sequence[str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps({"commits": list(commits), "runs": list(outcomes.values())}, indent=1) + "\n"
    )
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.history.backfill",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--last", type=int, default=30, metavar="N", help="commits (default 30)")
    p.add_argument("--ref", default="HEAD", help="newest commit (default HEAD)")
    p.add_argument(
        "--suite", nargs="+", action="extend", metavar="S", help="default: all the commit has"
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--repo", type=Path, default=Path.cwd())
    p.add_argument("--rounds", type=int, default=1, metavar="R", help="runs per commit (default 1)")
    p.add_argument("--order", choices=("shuffled", "sequential"), default="shuffled")
    p.add_argument(
        "--timer", action="append", choices=sorted(TIMER_ARGS), help="wall (default) and/or cpu"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="J",
        help="runs at once (default 1); more only where the CPUs are shared anyway",
    )
    p.add_argument(
        "--instructions",
        action="store_true",
        help="run --instructions too (instruction counts; needs valgrind and that harness option)",
    )
    p.add_argument("--pytest-arg", action="append", default=[], metavar="ARG")
    args = p.parse_args(argv)
    if min(args.last, args.rounds, args.jobs) < 1:
        p.error("--last, --rounds and --jobs must be at least 1")
    repo = args.repo.resolve()
    listing = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--first-parent", "-n", str(args.last), args.ref],
        capture_output=True,
        text=True,
        check=False,
    )
    if listing.returncode != 0:
        print(f"backfill: error: {listing.stderr.strip()}", file=sys.stderr)
        return 2
    commits = listing.stdout.split()[::-1]
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = out / REPORT
    done = _load(report)
    jobs = plan(
        commits, rounds=args.rounds, order=args.order, timers=args.timer or ["wall"], seed=args.seed
    )
    todo = [j for j in jobs if not (j.name in done and (out / j.name / "manifest.json").exists())]
    if len(todo) < len(jobs):
        print(f"backfill: {len(jobs) - len(todo)} of {len(jobs)} run(s) already there", flush=True)
    lock = threading.Lock()

    def one(i: int, job: Job) -> None:
        outcome = _measure(job, repo, out, args.suite, args.pytest_arg, args.instructions)
        states = " ".join(f"{s}={v}" for s, v in outcome.suites.items())
        extra = f" ({outcome.error})" if outcome.error else ""
        with lock:
            done[job.name] = asdict(outcome)
            _save(report, done, commits)
            print(
                f"[{i}/{len(todo)}] round {job.round} #{job.index} {job.commit[:12]} {job.timer}: "
                f"{outcome.elapsed_s:.0f} s: {states}{extra}",
                flush=True,
            )

    with ThreadPoolExecutor(args.jobs) as pool:
        for fut in [pool.submit(one, i, job) for i, job in enumerate(todo, 1)]:
            fut.result()
    every = [v for o in done.values() for v in o["suites"].values()]
    print(
        f"backfill: {len(done)} run(s) in {out}: {every.count('ok')} suite runs ok, "
        f"{every.count('failed')} failed, {every.count('missing')} missing "
        f"(see {report})"
    )
    return 0 if "ok" in every else 1


if __name__ == "__main__":
    raise SystemExit(main())
