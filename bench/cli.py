"""``samplemind-bench``: run the benchmark suites into a results folder; dispatch report/profile/gate.

::

    samplemind-bench run --quick --out results/ci            # CI: mocked, small grids (< 2 min)
    samplemind-bench run --out results/full                  # full mocked run (< 10 min)
    samplemind-bench run --live --out results/live           # + real redis-server, cluster, emulator
    samplemind-bench run --suite cache client --out /tmp/r   # some suites only
    samplemind-bench headline results/full                  # the headline ratios of one run
    samplemind-bench report ... | profile ... | gate ...     # the other commands

``run`` starts one pytest process per suite (``bench/suites/test_<suite>.py``) with
``-p no:xdist --benchmark-enable --benchmark-json DIR/<suite>.json`` (raw
samples included), so suites are isolated from each other and a crash in one
does not lose the others. pytest's output goes to ``DIR/logs/<suite>.txt``
(``-v`` streams it instead); a line per suite reports progress and elapsed time.
``--out`` must be a new or empty folder, or a results folder (its suites' files are
replaced); anything else is refused with exit 2 before a suite runs.
Exit status: 0 when every suite passed, 1 otherwise, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bench.harness.options import add_cli_options
from bench.suite_list import SUITES

if TYPE_CHECKING:
    from bench.harness.run import out_folder_problem, timed_run_env
    from bench.results import SuiteRun

__all__ = ["main", "out_folder_problem", "timed_run_env"]

_DELEGATES: Final = {
    "report": ("reports.build", "build the HTML/Markdown report from results folders"),
    "profile": ("bench.profile.run", "profile the pipeline workload with memray and py-spy"),
    "gate": (
        "bench.gate",
        "compare a candidate's results against a baseline's (exit 0 pass, 1 regression or "
        "insufficient data, 2 bad input, 3 not comparable)",
    ),
    "headline": ("bench.harness.headline", "print the headline ratios of a results folder"),
    "history": ("bench.history.cli", "store results over commits; list; change points; trend page"),
    "bisect": ("bench.history.bisect", "find the first commit of a performance step"),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samplemind-bench",
        description="SampleMind benchmark harness: run suites, build reports, gate regressions.",
        epilog="samplemind-bench COMMAND --help shows the options of a command.",
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
    run.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="DIR",
        help="results folder: new, empty, or an earlier results folder (its suites' files are replaced)",
    )
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
        "-q",
        "--quiet",
        action="store_true",
        help="no progress lines on stderr (each suite's outcome and the summary still print)",
    )
    run.add_argument(
        "--pytest-arg",
        dest="pytest_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for pytest (repeatable), e.g. --pytest-arg=--benchmark-max-time=2",
    )
    for name, (_module, help_text) in _DELEGATES.items():
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.add_argument("args", nargs=argparse.REMAINDER)
    return parser


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
    from bench.harness.run import SuiteStage, run  # here, not at import: `--help` stays fast

    stage: SuiteStage | None = None
    if args.instructions:  # the counting stage after each suite: composed here, above both
        from bench.instructions import runner as instructions

        tools = instructions.preflight()
        if isinstance(tools, str):
            print(tools, file=sys.stderr)
            return 2

        def count(suite_run: SuiteRun, out: Path, index: str) -> SuiteRun:
            return instructions.count_into(suite_run, out, tools, args, index)

        stage = count

    return run(args, after_suite=stage)


def __getattr__(name: str) -> Any:
    """``out_folder_problem`` and ``timed_run_env`` of :mod:`bench.harness.run`, imported when
    first asked for (the results module it imports costs ~0.1 s that ``--help`` need not pay)."""
    if name in ("out_folder_problem", "timed_run_env"):
        from bench.harness import run as _run

        return getattr(_run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    raise SystemExit(main())
