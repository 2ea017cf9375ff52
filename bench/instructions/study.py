"""Studies of the instruction tier: A/A determinism and detection of injected work.

::

    python -m bench.instructions.study aa --suite fingerprint router --runs 10 --out DIR
    python -m bench.instructions.study inject --suite router --runs 10 \\
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
:func:`bench.instructions.significance.decide` and the A/A spreads: the detection
rate per level, and at level 0 the false alarms.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness.results import commit_info, environment
from bench.instructions._select import counted_suites
from bench.instructions.runner import REPO, counting_command, counting_env, preflight, read_counts
from bench.instructions.significance import DEFAULT_TOLERANCE, aa_spread, decide, load_spreads

__all__ = ["main"]


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
        cmd = counting_command(
            tools, suite, directory, quick=quick, live=False, pytest_args=pytest_args
        )
        log = directory / "pytest.txt"
        with log.open("w") as fh:
            code = subprocess.run(
                cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=counting_env(), check=False
            ).returncode
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
    rows = {
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions.study", description=__doc__)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.command_line = "python -m bench.instructions.study " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    if args.runs < 2:
        raise SystemExit("--runs must be >= 2")
    return _aa(args) if args.command == "aa" else _inject(args)


if __name__ == "__main__":
    raise SystemExit(main())
