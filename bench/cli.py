"""``samplemind-bench``: run the benchmark suites into a results folder; dispatch report/profile/gate.

::

    samplemind-bench run --quick --out results/ci            # CI: mocked, small grids (< 2 min)
    samplemind-bench run --out results/full                  # full mocked run (< 10 min)
    samplemind-bench run --live --out results/live           # + real redis-server, cluster, emulator
    samplemind-bench run --suite cache client --out /tmp/r   # some suites only
    samplemind-bench headline results/full                  # the headline ratios of one run
    samplemind-bench report ... | profile ... | gate ...     # the other engineers' tools

``run`` starts one pytest process per suite (``bench/test_<suite>.py``) with
``-p no:xdist --benchmark-enable --benchmark-json DIR/<suite>.json`` (raw
samples included), so suites are isolated from each other and a crash in one
does not lose the others. pytest's output goes to ``DIR/logs/<suite>.txt``
(``-v`` streams it instead); a line per suite reports progress and elapsed time.
Exit status: 0 when every suite passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from bench._options import SUITES, add_cli_options
from bench._persist import SuiteRun, write_manifest
from bench.instructions import runner as instructions

__all__ = ["main"]

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO: Final = BENCH_DIR.parent
HEARTBEAT_S: Final = 30.0

_DELEGATES: Final = {
    "report": ("reports.build", "build the HTML/Markdown report from a results folder"),
    "profile": ("bench.profile", "profile a workload with memray / py-spy"),
    "gate": ("bench.gate", "compare a candidate results folder against a baseline"),
    "headline": ("bench._headline", "print the headline ratios of a results folder"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samplemind-bench",
        description="SampleMind benchmark harness: run suites, build reports, gate regressions.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run benchmark suites and write a results folder",
        description="Run the benchmark suites (one pytest process each) and write DIR/manifest.json "
        "plus DIR/<suite>.json (pytest-benchmark JSON with raw samples).",
    )
    add_cli_options(run)
    run.add_argument(
        "--suite",
        dest="suites",
        action="extend",
        nargs="+",
        choices=SUITES,
        metavar="NAME",
        help=f"suite(s) to run (default: all): {', '.join(SUITES)}",
    )
    run.add_argument("--out", required=True, type=Path, metavar="DIR", help="results folder")
    run.add_argument(
        "--instructions",
        action="store_true",
        help="also count instructions per call of the CPU-bound benchmarks under Valgrind "
        "(callgrind; needs valgrind and a C compiler) into extra_info['instructions']",
    )
    run.add_argument(
        "-v", "--verbose", action="store_true", help="stream pytest's output instead of logging it"
    )
    run.add_argument(
        "--pytest-arg",
        dest="pytest_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for pytest (repeatable), e.g. --pytest-arg=--benchmark-max-time=2",
    )
    for name, (module, help_text) in _DELEGATES.items():
        p = sub.add_parser(name, help=f"{help_text} ({module})", add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _pytest_command(suite: str, out: Path, args: argparse.Namespace) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(BENCH_DIR / f"test_{suite}.py"),
        "-p",
        "no:xdist",
        "-p",
        "no:cacheprovider",
        "--benchmark-enable",
        f"--benchmark-json={out / f'{suite}.json'}",
        "--benchmark-columns=min,median,mean,rounds,iterations",
        "--benchmark-sort=name",
        "-q",
        "-rfEs",
    ]
    if args.quick:
        cmd.append("--quick")
    if args.live:
        cmd.append("--live")
    return cmd + list(args.pytest_args)


def timed_run_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a timed benchmark process: without the ``PYTEST_XDIST_*``
    variables an enclosing xdist worker leaves behind (pytest-benchmark reads
    ``PYTEST_XDIST_WORKER`` and would silently disable every benchmark)."""
    env = dict(os.environ if base is None else base)
    for name in [n for n in env if n.startswith("PYTEST_XDIST_")]:
        del env[name]
    return env


def _run_suite(suite: str, out: Path, args: argparse.Namespace, index: str) -> SuiteRun:
    target = out / f"{suite}.json"
    target.unlink(missing_ok=True)
    cmd = _pytest_command(suite, out, args)
    log_path = out / "logs" / f"{suite}.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"[{index}] {suite}: started", flush=True)
    start = time.monotonic()
    with log_path.open("w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        stream = None if args.verbose else log
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=stream, stderr=subprocess.STDOUT, env=timed_run_env()
        )
        while True:
            try:
                code = proc.wait(timeout=HEARTBEAT_S)
                break
            except subprocess.TimeoutExpired:
                print(
                    f"[{index}] {suite}: running for {time.monotonic() - start:.0f} s", flush=True
                )
            except KeyboardInterrupt:
                proc.terminate()
                proc.wait(timeout=30)
                raise
    elapsed = time.monotonic() - start
    written = target.name if target.exists() else None
    verdict = "ok" if code == 0 else f"FAILED (pytest exit {code}; see {log_path})"
    print(f"[{index}] {suite}: finished in {elapsed:.1f} s: {verdict}", flush=True)
    if code != 0 and not args.verbose:
        tail = log_path.read_text().splitlines()[-15:]
        print("\n".join("    " + line for line in tail), flush=True)
    return SuiteRun(suite=suite, file=written, exit_code=code, elapsed_s=elapsed)


def _run(args: argparse.Namespace) -> int:
    suites = [s for s in SUITES if s in (args.suites or SUITES)]
    tools = instructions.preflight() if args.instructions else None
    if isinstance(tools, str):
        print(tools, file=sys.stderr)
        return 2
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    mode = "live" if args.live else "mocked"
    print(
        f"samplemind-bench: {len(suites)} suite(s), mode={mode}, quick={args.quick}, out={out}",
        flush=True,
    )
    start = time.monotonic()
    runs: list[SuiteRun] = []
    for i, suite in enumerate(suites, 1):
        runs.append(_run_suite(suite, out, args, f"{i}/{len(suites)}"))
        if tools is not None:
            runs[-1] = instructions.count_into(runs[-1], out, tools, args, f"{i}/{len(suites)}")
        # keep the manifest current, so an interrupted run still leaves a readable folder
        write_manifest(out, mode=mode, quick=args.quick, suites=suites, runs=runs, repo=REPO)
    failed = [r.suite for r in runs if r.exit_code != 0]
    total = time.monotonic() - start
    print(
        f"samplemind-bench: done in {total:.1f} s; results in {out}"
        + (f"; FAILED suites: {', '.join(failed)}" if failed else ""),
        flush=True,
    )
    return 1 if failed else 0


def _delegate(command: str, argv: Sequence[str]) -> int:
    module_name, _ = _DELEGATES[command]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            print(
                f"samplemind-bench {command}: {module_name} is not available yet "
                f"(module {exc.name!r} not found)",
                file=sys.stderr,
            )
            return 2
        raise
    entry: Callable[[list[str]], int] | None = getattr(module, "main", None)
    if entry is None:
        print(f"samplemind-bench {command}: {module_name} has no main(argv)", file=sys.stderr)
        return 2
    return int(entry(list(argv)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``samplemind-bench``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _DELEGATES:  # hand everything after the command over untouched
        return _delegate(argv[0], argv[1:])
    args = _parser().parse_args(argv)
    return _run(args)


if __name__ == "__main__":
    raise SystemExit(main())
