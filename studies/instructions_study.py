"""Studies of the instruction tier: A/A determinism and detection of injected work.

::

    python -m studies.instructions_study aa --suite fingerprint router --runs 10 --out DIR
    python -m studies.instructions_study inject --suite router --runs 10 \\
        --levels 0.005 0.01 0.02 --spreads DIR/aa.json --out DIR2

``aa`` counts each suite in ``--runs`` fresh processes (``-j`` at a time: counts
do not depend on load) and writes ``DIR/aa.json``: per benchmark, every count,
the median and the spread ``(max - min) / median``, with its provenance (machine,
date, command, processes per benchmark, valgrind, commit); a Markdown table goes to
stdout. The gate's committed spreads file, ``bench/instructions/aa_spreads.json``,
is such a file: regenerate it with ``aa --suite hashing fingerprint router cache
pipeline --runs 10 --quick --out DIR`` and copy ``DIR/aa.json`` over it. ``inject`` counts ``--runs`` fresh processes, each counting every benchmark once per
level (``--instructions-inject=0,0.005,...``: the plugin adds, to each counted body,
pure-Python work sized to LEVEL x that benchmark's median count in the A/A study;
level 0 is the same wrapper with no work), and decides each pair (level 0 of
process i, level L of process i + 1: always two fresh processes) with
:func:`bench.stats.decide` and the A/A spreads: the detection
rate per level, and at level 0 the false alarms.

``gate`` is the same question through the path a user takes: throw-away git worktrees of
``--ref`` (:func:`bench.ab_runner.worktree`), ``samplemind-bench run --quick --instructions``
in them (a wall-time process, then a counting process, per suite) and ``samplemind-bench gate
BASELINE CANDIDATE`` on the results folders, whose ``metric = "instructions"`` verdicts are scored:

* **A/A**: ``--aa-runs`` full runs of the clean tree (every counted benchmark of ``--suite``);
  run ``i`` is gated against run ``i + 1``: every instruction "regressed" is a false alarm. The
  time of each run and the load average around it are recorded too.
* **injected work**: per :data:`TARGETS` entry, the target function of the code under test gets
  a fixed amount of extra work per call (``n`` iterations of an empty ``for`` loop over
  ``range(n)``, ``n`` <= 256 so no int is allocated) in a worktree of its own. ``n`` is calibrated
  from two counted runs (``n = 0`` and ``n = CALIBRATION_ITERATIONS``) against a clean run,
  so that the change is at least ``LEVEL x`` the benchmark's count (rounded up to whole
  turns); then ``--trials`` trials per level, each a fresh clean run (``-k`` the targets)
  gated against a fresh patched run. Reported per level: nominal, the measured change,
  flagged / total.

::

    python -m studies.instructions_study gate --aa-runs 5 --trials 10 --out DIR
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.instructions._select import counted_suites
from bench.instructions.runner import REPO, preflight, read_counts, run_counting
from bench.results import commit_info, environment
from bench.stats import DEFAULT_TOLERANCE, aa_spread, decide, load_spreads
from studies._inject import MAX_ITERATIONS, inject_work

__all__ = ["TARGETS", "Target", "inject_work", "main"]


def _count_runs(
    suites: Sequence[str],
    runs: int,
    jobs: int,
    work: Path,
    *,
    quick: bool,
    pytest_args: Sequence[str],
    tag: str,
) -> dict[str, list[float]]:
    """Count every suite ``runs`` times in fresh processes → ``{fullname: [per-call counts]}``.

    Each list is in run order (``_inject`` pairs runs by their index).
    """
    tools = preflight()
    if isinstance(tools, str):
        raise SystemExit(tools)
    tasks = [(suite, i) for i in range(runs) for suite in suites]

    def one(task: tuple[str, int]) -> dict[str, dict[str, Any]]:
        suite, i = task
        directory = work / f"{tag}-{suite}-{i}"
        directory.mkdir(parents=True, exist_ok=True)
        log = directory / "pytest.txt"
        with log.open("w") as fh:
            code = run_counting(
                tools, suite, directory, fh, quick=quick, live=False, pytest_args=pytest_args
            )
        if code != 0:
            raise SystemExit(f"{suite} run {i} failed (exit {code}); see {log}")
        print(f"  {tag} {suite} run {i + 1}/{runs} done", file=sys.stderr, flush=True)
        return read_counts(directory)

    out: dict[str, list[float]] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for counts in pool.map(one, tasks):
            for name, row in counts.items():
                out.setdefault(name, []).append(float(row["instructions"]))
    return out


def provenance(command: str, runs: int, *, quick: bool) -> dict[str, Any]:
    """Where and how an A/A spreads file was measured (stored in it as ``provenance``)."""
    tools = preflight()
    env = environment()
    return {
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "processes_per_benchmark": runs,
        "quick": quick,
        "machine": {k: env[k] for k in ("cpu", "cores", "python", "platform")},
        "valgrind": tools if isinstance(tools, str) else tools.valgrind_version,
        "allocator": tools if isinstance(tools, str) else tools.allocator,
        "commit": commit_info(REPO),
    }


def _aa(args: argparse.Namespace) -> int:
    start = time.monotonic()
    # each run's counts.json stays in OUT/work (small: the dumps are deleted once read)
    counts = _count_runs(
        args.suites,
        args.runs,
        args.jobs,
        args.out / "work",
        quick=args.quick,
        pytest_args=args.pytest_args,
        tag="aa",
    )
    rows: dict[str, dict[str, Any]] = {
        name: {
            "counts": values,
            "median": statistics.median(values),
            "spread": aa_spread(values),
        }
        for name, values in sorted(counts.items())
    }
    args.out.mkdir(parents=True, exist_ok=True)
    data = {
        "format": "samplemind-bench-instructions-aa",
        "version": 1,
        "runs": args.runs,
        "quick": args.quick,
        "elapsed_s": round(time.monotonic() - start, 1),
        "provenance": provenance(args.command_line, args.runs, quick=args.quick),
        "benchmarks": rows,
    }
    (args.out / "aa.json").write_text(json.dumps(data, indent=1) + "\n")
    print("| benchmark | median instructions/call | spread (max-min)/median |")
    print("|---|---:|---:|")
    for name, row in rows.items():
        print(f"| {name.split('::', 1)[-1]} | {row['median']:,.1f} | {row['spread']:.4%} |")
    spreads = sorted(r["spread"] for r in rows.values())
    print(
        f"\n{len(rows)} benchmarks x {args.runs} processes; spread median "
        f"{statistics.median(spreads):.4%}, max {spreads[-1]:.4%}; "
        f"{sum(s <= 0.001 for s in spreads)} at or below 0.1 %, "
        f"{sum(s > 0.005 for s in spreads)} above 0.5 %; {data['elapsed_s']} s"
    )
    return 0


def _inject(args: argparse.Namespace) -> int:
    aa = json.loads(args.spreads.read_text())["benchmarks"]
    spreads = load_spreads(args.spreads)
    args.out.mkdir(parents=True, exist_ok=True)
    base_file = args.out / "inject-base.json"
    base_file.write_text(json.dumps({k: v["median"] for k, v in aa.items()}))
    levels = [0.0, *args.levels]
    if args.rescore is not None:  # score the counts of an earlier inject study again
        counts = json.loads(args.rescore.read_text())["counts"]
    else:
        counts = _count_runs(
            args.suites,
            args.runs,
            args.jobs,
            args.out / "work",
            quick=args.quick,
            pytest_args=[
                *args.pytest_args,
                "--instructions-inject=" + ",".join(str(x) for x in levels),
                f"--instructions-inject-base={base_file}",
            ],
            tag="inject",
        )
    report: dict[str, Any] = {"levels": levels, "runs": args.runs, "tolerance": args.tolerance}
    for level in levels:
        flagged = total = 0
        changes: list[float] = []
        for name in spreads:
            base_runs = counts.get(f"{name}@0.0")
            runs = counts.get(f"{name}@{level}")
            if not base_runs or not runs:
                continue
            for i in range(len(runs)):
                # baseline from process i, candidate from another process (i + 1)
                v = decide(
                    [base_runs[i]],
                    [runs[(i + 1) % len(runs)]],
                    spread=spreads[name],
                    tolerance=args.tolerance,
                )
                changes.append(v.change)
                total += 1
                flagged += v.verdict == "regression"
        row: dict[str, Any] = {"comparisons": total, "flagged": flagged}
        if changes:
            row.update(
                change_median=statistics.median(changes),
                change_min=min(changes),
                change_max=max(changes),
            )
            print(
                f"+{level:.1%} injected: {flagged}/{total} comparisons flagged at tolerance "
                f"{args.tolerance:.1%}; measured change median {row['change_median']:+.3%}, "
                f"min {row['change_min']:+.3%}, max {row['change_max']:+.3%}",
                flush=True,
            )
        report[str(level)] = row
    report["counts"] = counts
    (args.out / "inject.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


# -- the real gate path ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """A benchmark whose code under test gets injected work: ``function`` in ``module``."""

    benchmark: str  # fullname, as in the results files
    suite: str
    select: str  # pytest -k expression choosing it (and little else)
    module: str  # path of the module inside the checkout
    function: str  # qualified name of the function that gets the work (once per call)


TARGETS: Final[tuple[Target, ...]] = (
    Target(
        "bench/suites/test_fingerprint.py::test_fingerprint[8KB-blake3]",
        "fingerprint",
        "8KB-blake3",
        "samplemind_core/fingerprint.py",
        "fingerprint",
    ),
    Target(
        "bench/suites/test_cache.py::test_cache_op[1KB-fakeredis-hit-msgpack-l1_off]",
        "cache",
        "test_cache_op and fakeredis-hit-msgpack-l1_off",
        "samplemind_core/cache/_entries.py",
        "_Entries.get",  # ResponseCache.get (defined in the cache package's read path)
    ),
)
"""What the detection study injects into (one target per patched function, so the work is
sized against that benchmark's count alone)."""

CALIBRATION_ITERATIONS: Final = 200


def _tree_env(tree: Path) -> dict[str, str]:
    """The environment of a command in ``tree``: its checkout first on ``PYTHONPATH``."""
    rest = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), *rest]))


def _console(name: str) -> str:
    """The console script ``name`` of this interpreter's environment (as a user runs it)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: pip install -e '.[dev]' in this environment")
    return str(path)


def _bench_run(tree: Path, suites: Sequence[str], out: Path, select: str | None) -> dict[str, Any]:
    """``samplemind-bench run --quick --instructions`` in ``tree`` → time, load and exit code."""
    cmd = [_console("samplemind-bench"), "run", "--quick", "--instructions", "--suite", *suites]
    cmd += ["--out", str(out)]
    if select:
        cmd += ["--pytest-arg=-k", f"--pytest-arg={select}"]
    record = out.parent / f"{out.name}.run.json"
    if record.exists():  # done by an earlier invocation with the same --work
        done: dict[str, Any] = json.loads(record.read_text())
        return done
    shutil.rmtree(out, ignore_errors=True)
    load_before = os.getloadavg()
    start = time.monotonic()
    log = out.parent / f"{out.name}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        code = subprocess.run(
            cmd, cwd=tree, env=_tree_env(tree), stdout=fh, stderr=subprocess.STDOUT, check=False
        ).returncode
    elapsed = time.monotonic() - start
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {code}; see {log}")
    result = {
        "out": str(out),
        "command": cmd,
        "seconds": round(elapsed, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    record.write_text(json.dumps(result, indent=1) + "\n")
    return result


def _gate_verdicts(
    tree: Path, baseline: Path, candidate: Path, out: Path, extra: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """``samplemind-bench gate BASELINE CANDIDATE --json`` in ``tree`` → its instruction verdicts."""
    cmd = [_console("samplemind-bench"), "gate", str(baseline), str(candidate)]
    cmd += ["--metric", "instructions", "--instructions", "--json", str(out), "-q", *extra]
    proc = subprocess.run(
        cmd, cwd=tree, env=_tree_env(tree), capture_output=True, text=True, check=False
    )
    if proc.returncode not in (0, 1):
        raise SystemExit(f"gate exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    doc = json.loads(out.read_text(encoding="utf-8"))
    return [v for v in doc["verdicts"] if v["metric"] == "instructions"]


def _instructions(results: Path, name: str) -> float:
    """Instructions per call of benchmark ``name`` in the results folder ``results``."""
    from bench.results import benchmark_key, read_folder

    for bench in read_folder(results).benchmarks:  # the one reader (plain or .json.gz files)
        if bench.fullname == benchmark_key(name):
            return float(bench.extra_info["instructions"])
    raise SystemExit(f"{results}: no count of {name}")


def _map(fn: Callable[[Any], Any], items: Sequence[Any], jobs: int) -> list[Any]:
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(fn, items))


def _gate_study(args: argparse.Namespace) -> int:
    from bench.ab_runner import worktree
    from studies.gate_study import wilson, write_figures

    start = time.monotonic()
    work = args.work or Path(tempfile.mkdtemp(prefix="samplemind-instr-gate-"))
    work.mkdir(parents=True, exist_ok=True)
    targets = [t for t in TARGETS if not args.targets or t.suite in args.targets]
    report: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}}
    lines: list[str] = []

    def progress(msg: str) -> None:
        print(f"gate study [{time.monotonic() - start:.0f} s] {msg}", file=sys.stderr, flush=True)

    try:
        with ExitStack() as stack:
            clean = stack.enter_context(worktree(REPO, args.ref))
            # -- A/A: full runs of the clean tree, run i gated against run i + 1
            aa_runs: list[dict[str, Any]] = []
            if args.aa_runs:

                def aa_one(i: int) -> dict[str, Any]:
                    run = _bench_run(clean, args.suites, work / f"aa-{i}", None)
                    progress(f"A/A run {i + 1}/{args.aa_runs}: {run['seconds']} s")
                    return run

                aa_runs = _map(aa_one, range(args.aa_runs), args.jobs)
            if args.runs_only:
                aa_runs = []  # gate nothing yet
            aa_verdicts: list[dict[str, Any]] = []
            n = len(aa_runs)
            pairs = (
                [(i, j) for i in range(n) for j in range(i + 1, n)]
                if args.all_pairs
                else [(i, i + 1) for i in range(n - 1)]
            )
            for i, j in pairs:
                aa_verdicts += _gate_verdicts(
                    clean,
                    work / f"aa-{i}",
                    work / f"aa-{j}",
                    work / f"gate-aa-{i}-{j}{args.tag}.json",
                    args.gate_args,
                )
            alarms = [v for v in aa_verdicts if v["status"] == "regressed"]
            report["aa"] = {
                "runs": aa_runs,
                "pairs": pairs,
                "comparisons": len(aa_verdicts),
                "false_alarms": len(alarms),
                "false_alarm_wilson95": wilson(len(alarms), len(aa_verdicts)),
                "alarms": alarms,
                "statuses": {
                    s: sum(v["status"] == s for v in aa_verdicts)
                    for s in sorted({v["status"] for v in aa_verdicts})
                },
            }
            if aa_runs:
                lo, hi = report["aa"]["false_alarm_wilson95"]
                lines.append(
                    f"A/A: {len(alarms)} false alarms in {len(aa_verdicts)} instruction "
                    f"comparisons ({len(aa_runs)} runs; Wilson 95 % [{lo:.2%}, {hi:.2%}]); "
                    f"statuses {report['aa']['statuses']}; run times "
                    f"{[r['seconds'] for r in aa_runs]} s at load "
                    f"{[r['load_before'][0] for r in aa_runs]}"
                )
            if targets and args.trials:
                report["inject"] = _detection(args, targets, clean, work, stack, progress)
                for t in targets:
                    for row in report["inject"][t.benchmark]["levels"]:
                        lines.append(
                            f"{t.benchmark.split('::')[-1]} +{row['nominal']:.1%}: measured "
                            f"{row['change_median']:+.3%} (min {row['change_min']:+.3%}, max "
                            f"{row['change_max']:+.3%}); flagged {row['flagged']}/{row['trials']}"
                        )
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report["minutes"] = round((time.monotonic() - start) / 60, 1)
    write_figures(args.out, report, "\n".join(lines))
    return 0


def _trial(i: int, level: float | None = None) -> str:
    """The results folder of trial ``i`` (clean, or at ``level``): every name has the same length.

    Counting processes run in a stage of their own (:func:`bench.instructions.runner.counting_stage`),
    so the folder's path no longer reaches a count; equal lengths keep the study's other
    processes (the wall-time runs, the gate) alike too.
    """
    return f"t{i:03d}-" + ("clean" if level is None else f"{level:.3f}"[1:])


def _detection(
    args: argparse.Namespace,
    targets: Sequence[Target],
    clean: Path,
    work: Path,
    stack: ExitStack,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    from bench.ab_runner import worktree
    from bench.results import benchmark_key

    suites = list(dict.fromkeys(t.suite for t in targets))
    select = " or ".join(f"({t.select})" for t in targets)

    def patched(sizes: dict[Target, int]) -> Path:
        tree = stack.enter_context(worktree(REPO, args.ref))
        for t, n in sizes.items():
            inject_work(tree, t.module, t.function, n)
        return tree

    def run(task: tuple[Path, str]) -> Path:
        tree, tag = task
        _bench_run(tree, suites, work / tag, select)
        progress(f"{tag} done")
        return work / tag

    # calibration: the clean count, the loop's set-up alone (n = 0), CALIBRATION_ITERATIONS
    cal0 = patched({t: 0 for t in targets})
    cal1 = patched({t: CALIBRATION_ITERATIONS for t in targets})
    base_dir, zero_dir, full_dir = _map(
        run, [(clean, "cal-c"), (cal0, "cal-0"), (cal1, "cal-1")], args.jobs
    )
    sizes: dict[float, dict[Target, int]] = {level: {} for level in args.levels}
    out: dict[str, Any] = {}
    for t in targets:
        base = _instructions(base_dir, t.benchmark)
        call = _instructions(zero_dir, t.benchmark) - base
        per_turn = (_instructions(full_dir, t.benchmark) - base - call) / CALIBRATION_ITERATIONS
        out[t.benchmark] = {
            "function": f"{t.module}:{t.function}",
            "base": base,
            "call": call,
            "per_iteration": per_turn,
            "levels": [],
        }
        for level in args.levels:
            # at least the nominal change (a turn is ~0.02 % of the target's count)
            n = math.ceil((level * base - call) / per_turn)
            if not 0 <= n <= MAX_ITERATIONS:
                raise SystemExit(
                    f"{t.benchmark}: +{level:.1%} ({level * base:.0f} instructions) cannot be "
                    f"injected: the set-up alone adds {call:.0f}, {per_turn:.1f} per iteration"
                )
            sizes[level][t] = n
        progress(
            f"calibrated {t.benchmark}: base {base:.0f}, set-up {call:.0f}, {per_turn:.1f}/turn"
        )
    trees = {level: patched(sizes[level]) for level in args.levels}
    # trial i of every level back to back, so a stopped study has whole trials
    tasks = [
        task
        for i in range(args.trials)
        for task in [(clean, _trial(i)), *[(trees[x], _trial(i, x)) for x in args.levels]]
    ]
    _map(run, tasks, args.jobs)
    if args.runs_only:
        return out

    def judge(task: tuple[float, int]) -> list[dict[str, Any]]:
        level, i = task
        return _gate_verdicts(
            clean,
            work / _trial(i),
            work / _trial(i, level),
            work / f"gate-{level}-{i}{args.tag}.json",
            args.gate_args,
        )

    tasks2 = [(level, i) for level in args.levels for i in range(args.trials)]
    judged = dict(zip(tasks2, _map(judge, tasks2, args.jobs), strict=True))
    for level in args.levels:
        rows: dict[str, list[dict[str, Any]]] = {t.benchmark: [] for t in targets}
        for i in range(args.trials):
            verdicts = judged[(level, i)]
            for t in targets:
                base = _instructions(work / _trial(i), t.benchmark)
                cand = _instructions(work / _trial(i, level), t.benchmark)
                mine = [v for v in verdicts if v["key"] == benchmark_key(t.benchmark)]
                rows[t.benchmark].append(
                    {
                        "change": cand / base - 1.0,
                        "status": mine[0]["status"] if mine else "missing",
                    }
                )
        for t in targets:
            changes = [r["change"] for r in rows[t.benchmark]]
            out[t.benchmark]["levels"].append(
                {
                    "nominal": level,
                    "iterations": sizes[level][t],
                    "trials": len(rows[t.benchmark]),
                    "flagged": sum(r["status"] == "regressed" for r in rows[t.benchmark]),
                    "change_median": statistics.median(changes),
                    "change_min": min(changes),
                    "change_max": max(changes),
                    "trial_rows": rows[t.benchmark],
                }
            )
    # the clean trial runs are fresh A/A processes too: their target counts' spread
    for t in targets:
        counts = [_instructions(work / _trial(i), t.benchmark) for i in range(args.trials)]
        out[t.benchmark]["clean_spread"] = aa_spread(counts)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m studies.instructions_study", description=__doc__
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("aa", "inject"):
        p = sub.add_parser(name)
        p.add_argument("--suite", dest="suites", nargs="+", choices=counted_suites(), required=True)
        p.add_argument("--runs", type=int, default=10)
        p.add_argument("-j", "--jobs", type=int, default=2)
        p.add_argument("--quick", action="store_true")
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--pytest-arg", dest="pytest_args", action="append", default=[])
        if name == "inject":
            p.add_argument("--levels", type=float, nargs="+", default=[0.005, 0.01, 0.02])
            p.add_argument("--spreads", type=Path, required=True, help="aa.json of an A/A study")
            p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
            p.add_argument(
                "--rescore",
                type=Path,
                help="inject.json of an earlier run: decide its counts again",
            )
    g = sub.add_parser("gate", help="A/A false alarms and detection through the real gate path")
    g.add_argument(
        "--suite",
        dest="suites",
        nargs="+",
        choices=counted_suites(),
        default=list(counted_suites()),
        help="A/A: suites of the full runs",
    )
    g.add_argument("--aa-runs", type=int, default=5, help="A/A: full clean runs (0: none)")
    g.add_argument(
        "--target",
        dest="targets",
        nargs="+",
        choices=[t.suite for t in TARGETS],
        help="detection: suites whose TARGETS to inject into (default: all)",
    )
    g.add_argument("--trials", type=int, default=10, help="detection: trials per level (0: none)")
    g.add_argument("--levels", type=float, nargs="+", default=[0.005, 0.01, 0.02])
    g.add_argument("--ref", default="HEAD", help="the commit every worktree starts from")
    g.add_argument("-j", "--jobs", type=int, default=2, help="runs at a time")
    g.add_argument(
        "--work",
        type=Path,
        help="keep the runs here; runs already done there are not run again (default: a "
        "temporary directory, removed)",
    )
    g.add_argument("--runs-only", action="store_true", help="run (into --work), gate nothing")
    g.add_argument(
        "--gate-arg",
        dest="gate_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument of every samplemind-bench gate (e.g. --gate-arg=--rules=FILE)",
    )
    g.add_argument("--tag", default="", help="suffix of the gate JSON files kept in --work")
    g.add_argument(
        "--all-pairs",
        action="store_true",
        help="A/A: gate every pair of runs (default: run i against run i + 1)",
    )
    g.add_argument("--out", type=Path, required=True, help="figures (JSON)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.command_line = "python -m studies.instructions_study " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if args.command == "gate":
        if args.aa_runs == 1 or args.aa_runs < 0 or args.trials < 0:
            raise SystemExit("--aa-runs must be 0 or >= 2 and --trials >= 0")
        return _gate_study(args)
    if args.runs < 2:
        raise SystemExit("--runs must be >= 2")
    return _aa(args) if args.command == "aa" else _inject(args)


if __name__ == "__main__":
    raise SystemExit(main())
