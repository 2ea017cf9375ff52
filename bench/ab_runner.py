"""Baseline-vs-candidate runs in one job: a git worktree of the baseline, interleaved A/B rounds.

On a shared machine the difference between two jobs dwarfs the difference between two commits,
so ``samplemind-bench gate --baseline-ref REF`` runs both sides *in the same job*, several rounds,
and pools each side's raw samples. Two schedules:

``pairs`` (the default where CPU affinity exists, i.e. Linux)
    Each round's A and B processes run *at the same time, pinned to the same CPU*; one pair per
    CPU runs at once. Two processes sharing a CPU see the same machine phases (other tenants,
    host scheduling), so that noise cancels in their ratio; processes run one after the other
    do not share it. (Measured figures: ``docs/decisions/0001-gate-pairs-rounds-on-one-cpu.md``.)
``alternate``
    A then B (order seeded, random per pair), one process at a time, unpinned: for machines
    without ``os.sched_setaffinity`` or suites that must not share a CPU.

Nothing is installed: both sides run with the current interpreter. The baseline side runs in the
worktree (working directory and first ``PYTHONPATH`` entry), so its ``samplemind_core`` and its
harness are imported instead of the editable install; the candidate side runs in the repository.
Each side is thus measured by the harness of its own commit, like asv does; running the
candidate's harness over the baseline's package is not robust, because pytest puts the rootdir
(the candidate's checkout) first on ``sys.path`` whatever ``PYTHONPATH`` says.

>>> [(s.round, s.suite) for s in schedule(["hashing"], rounds=2, seed=1)]
[(0, 'hashing'), (0, 'hashing'), (1, 'hashing'), (1, 'hashing')]
"""

from __future__ import annotations

import os
import queue
import random
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from bench import vcs

__all__ = [
    "SCHEDULES",
    "ABRunError",
    "Runner",
    "Side",
    "SideEnv",
    "Slot",
    "bench_cli_command",
    "bench_cli_runner",
    "default_schedule",
    "make_bench_cli_runner",
    "run_interleaved",
    "schedule",
    "side_environments",
    "worktree",
]

Side = Literal["baseline", "candidate"]
Schedule = Literal["pairs", "alternate"]
SCHEDULES: tuple[Schedule, ...] = ("pairs", "alternate")
PACKAGE = "samplemind_core"


class ABRunError(Exception):
    """The baseline could not be checked out or a benchmark run failed."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One benchmark run in the schedule: which round, which suite, which side."""

    round: int
    suite: str
    side: Side


@dataclass(frozen=True, slots=True)
class SideEnv:
    """Where and with which environment variables one side's benchmark processes run.

    ``cpus``: pin the process to these CPUs (``os.sched_setaffinity``); None leaves it free.
    """

    cwd: Path
    env: Mapping[str, str]
    cpus: frozenset[int] | None = None


Runner = Callable[[Slot, Path, SideEnv], None]
"""Runs ``slot.suite`` for ``slot.side`` into the given results folder, in the side's checkout."""


def schedule(suites: Sequence[str], *, rounds: int, seed: int) -> list[Slot]:
    """Interleaved A/B plan: per round, suites in random order, each as an A/B pair in random order."""
    rng = random.Random(seed)
    slots: list[Slot] = []
    for r in range(rounds):
        order = list(suites)
        rng.shuffle(order)
        for suite in order:
            sides: list[Side] = ["baseline", "candidate"]
            rng.shuffle(sides)
            slots.extend(Slot(r, suite, side) for side in sides)
    return slots


def _git(repo: Path, *args: str) -> str:
    return vcs.git(repo, *args, error=ABRunError)


@contextmanager
def worktree(repo: Path, ref: str) -> Iterator[Path]:
    """A detached git worktree of ``ref`` (:func:`bench.vcs.worktree`; ``ABRunError`` when git
    fails), removed afterwards, also on SIGTERM."""
    with vcs.worktree(repo, ref, error=ABRunError) as path:
        yield path


def side_environments(
    repo: Path, baseline_tree: Path, base_env: Mapping[str, str]
) -> dict[Side, SideEnv]:
    """Both sides' checkouts and environments (each checkout first on ``PYTHONPATH``).

    Both sides run with the same ``PYTHONHASHSEED`` (0 unless the caller set one): with random
    seeds, fresh processes of the same code differ in speed (dict and set layouts change with
    the seed), noise that the rounds would otherwise have to average away.
    """
    if not (baseline_tree / PACKAGE / "__init__.py").is_file():
        raise ABRunError(f"the baseline checkout has no {PACKAGE}/__init__.py: {baseline_tree}")
    rest = [base_env["PYTHONPATH"]] if base_env.get("PYTHONPATH") else []
    trees: dict[Side, Path] = {"baseline": baseline_tree, "candidate": repo}
    return {
        side: SideEnv(
            tree,
            dict(
                base_env,
                PYTHONPATH=os.pathsep.join([str(tree), *rest]),
                PYTHONHASHSEED=base_env.get("PYTHONHASHSEED", "0"),
            ),
        )
        for side, tree in trees.items()
    }


_BOOT = "import sys; from bench.cli import main; sys.exit(main(sys.argv[1:]))"


def bench_cli_command(
    out: Path,
    suites: Sequence[str],
    pytest_args: Sequence[str] = (),
    cpus: frozenset[int] | None = None,
    *,
    instructions: bool = False,
) -> list[str]:
    """``samplemind-bench run --quick [--suite S...] [--instructions] --out DIR`` with this interpreter.

    Run it in a side's checkout (:class:`SideEnv` ``cwd`` and ``env``), so that the checkout's
    own harness runs. No ``suites``: every suite that harness has, as ``run --quick`` does.
    """
    # pinning happens in the child (its pytest child inherits it): no preexec_fn under threads
    pin = "" if cpus is None else f"import os; os.sched_setaffinity(0, {sorted(cpus)}); "
    cmd = [sys.executable, "-c", pin + _BOOT, "run", "--quick", *["--instructions"] * instructions]
    cmd += ["--suite", *suites] if suites else []
    return [*cmd, "--out", str(out), *(f"--pytest-arg={a}" for a in pytest_args)]


def bench_cli_runner(
    slot: Slot,
    out: Path,
    side: SideEnv,
    pytest_args: Sequence[str] = (),
    *,
    instructions: bool = False,
) -> None:
    """Default runner: ``samplemind-bench run --quick --suite S --out DIR`` with this interpreter
    (``--instructions`` too when ``instructions``)."""
    cmd = bench_cli_command(out, [slot.suite], pytest_args, side.cpus, instructions=instructions)
    proc = subprocess.run(
        cmd, cwd=side.cwd, env=dict(side.env), capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ABRunError(
            f"{slot.side} run of suite {slot.suite!r} (round {slot.round}) exited "
            f"{proc.returncode}:\n{tail}"
        )


def make_bench_cli_runner(
    pytest_args: Sequence[str] = (),
    suite_args: Mapping[str, Sequence[str]] | None = None,
    *,
    count_rounds: int = 0,
) -> Runner:
    """:func:`bench_cli_runner` with extra pytest arguments (e.g. ``-k 1KB`` to select benchmarks).

    ``suite_args``: further arguments for one suite's runs only (both sides), e.g. the gate's
    ``--benchmark-timer=time.process_time`` for a suite its rules time with the CPU clock.
    ``count_rounds``: rounds ``0 .. count_rounds - 1`` also count instructions (both sides).
    """
    per_suite = dict(suite_args or {})

    def runner(slot: Slot, out: Path, side: SideEnv) -> None:
        bench_cli_runner(
            slot,
            out,
            side,
            [*per_suite.get(slot.suite, ()), *pytest_args],
            instructions=slot.round < count_rounds,
        )

    return runner


def default_schedule() -> Schedule:
    """``pairs`` where CPU affinity can be set (Linux), else ``alternate``."""
    return "pairs" if hasattr(os, "sched_setaffinity") else "alternate"


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]


def run_interleaved(
    repo: Path,
    ref: str,
    suites: Sequence[str],
    *,
    rounds: int,
    seed: int,
    out_root: Path,
    runner: Runner = bench_cli_runner,
    base_env: Mapping[str, str] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
    schedule_kind: Schedule | None = None,
) -> dict[Side, list[Path]]:
    """Check out ``ref``, run the schedule, clean up; returns each side's results folders.

    The folders come in plan order on both sides, so the n-th baseline and the n-th candidate
    folder are the same round and suite (the paired test relies on it).
    """
    kind = schedule_kind or default_schedule()
    if kind not in SCHEDULES:
        raise ABRunError(f"unknown schedule {kind!r}: use one of {', '.join(SCHEDULES)}")
    if kind == "pairs" and not hasattr(os, "sched_setaffinity"):
        raise ABRunError("schedule 'pairs' needs os.sched_setaffinity (Linux); use 'alternate'")
    env = dict(os.environ if base_env is None else base_env)
    plan = schedule(suites, rounds=rounds, seed=seed)
    outs = [out_root / slot.side / f"r{slot.round:02d}-{slot.suite}" for slot in plan]
    with worktree(repo, ref) as tree:
        envs = side_environments(repo, tree, env)
        if kind == "alternate":
            for i, (slot, out) in enumerate(zip(plan, outs, strict=True), 1):
                log(f"[{i}/{len(plan)}] round {slot.round} {slot.suite}: {slot.side}")
                runner(slot, out, envs[slot.side])
        else:
            _run_pairs(plan, outs, envs, runner, log)
    dirs: dict[Side, list[Path]] = {"baseline": [], "candidate": []}
    for slot, out in zip(plan, outs, strict=True):
        dirs[slot.side].append(out)
    return dirs


def _run_pairs(
    plan: Sequence[Slot],
    outs: Sequence[Path],
    envs: Mapping[Side, SideEnv],
    runner: Runner,
    log: Callable[[str], None],
) -> None:
    """Both sides of each pair at once on one CPU; one pair per CPU at a time; first error wins."""
    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    cpus = _cpus()
    for cpu in cpus:
        free.put(cpu)
    pairs = [(i, i + 1) for i in range(0, len(plan), 2)]

    def run_pair(n: int, pair: tuple[int, int]) -> None:
        cpu = free.get()
        try:
            slot = plan[pair[0]]
            log(f"[{n}/{len(pairs)}] round {slot.round} {slot.suite}: both sides on CPU {cpu}")
            with ThreadPoolExecutor(2) as sides:
                done = [
                    sides.submit(
                        runner, plan[i], outs[i], replace(envs[plan[i].side], cpus=frozenset({cpu}))
                    )
                    for i in pair
                ]
                for fut in done:
                    fut.result()
        finally:
            free.put(cpu)

    with ThreadPoolExecutor(len(cpus)) as lanes:
        futures = [lanes.submit(run_pair, n, pair) for n, pair in enumerate(pairs, 1)]
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
