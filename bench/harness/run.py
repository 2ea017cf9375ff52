"""The ``samplemind-bench run`` command: one pytest process per suite into a results folder.

Each suite (``bench/suites/test_<suite>.py``) runs with ``-p no:xdist --benchmark-enable
--benchmark-json DIR/<suite>.json`` (raw samples included), so suites are isolated from each
other and a crash in one does not lose the others; the manifest
(:func:`bench.harness.results.write_manifest`) is rewritten after each suite, so an interrupted
run still leaves a readable folder.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from bench.harness.options import SUITES
from bench.harness.results import SuiteRun, write_manifest
from bench.instructions import runner as instructions

__all__ = ["REPO", "SUITES_DIR", "out_folder_problem", "run", "timed_run_env"]

SUITES_DIR: Final = Path(__file__).resolve().parents[1] / "suites"
REPO: Final = SUITES_DIR.parents[1]
HEARTBEAT_S: Final = 30.0


def _pytest_command(suite: str, out: Path, args: argparse.Namespace) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(SUITES_DIR / f"test_{suite}.py"),
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


def out_folder_problem(out: Path) -> str | None:
    """Why ``out`` cannot take a results folder (None when it can): a file, something that is
    not a folder on the way, or a non-empty folder that is not a results folder."""
    if out.exists() and not out.is_dir():
        return f"{out} exists and is not a folder"
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is not a folder"
            break
    if out.is_dir() and not (out / "manifest.json").is_file():
        others = sorted(p.name for p in out.iterdir() if p.name != "logs")
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            return (
                f"{out} is not empty and not a results folder (holds {shown}); "
                "give a new or empty folder"
            )
    return None


def run(args: argparse.Namespace) -> int:
    """The ``run`` command: every chosen suite in its own pytest process, then the manifest."""
    suites = [s for s in SUITES if s in (args.suites or SUITES)]
    tools = instructions.preflight() if args.instructions else None
    if isinstance(tools, str):
        print(tools, file=sys.stderr)
        return 2
    out: Path = args.out.resolve()
    problem = out_folder_problem(out)
    if problem is None:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problem = f"{out}: {exc.strerror or exc}"
    if problem is not None:
        print(f"samplemind-bench run: error: --out: {problem}", file=sys.stderr)
        return 2
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
