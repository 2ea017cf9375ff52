"""The ``samplemind-bench run`` command: one pytest process per suite into a results folder.

Each suite (``bench/suites/test_<suite>.py``) runs with ``-p no:xdist --benchmark-enable
--benchmark-json DIR/<suite>.json`` (raw samples included), so suites are isolated from each
other and a crash in one does not lose the others. Once a suite (and its counting stage) is
done, its file is rewritten as ``DIR/<suite>.json.gz``: the same document, compact and
gzip-compressed, every sample kept (a quick run: about 3.4 MB instead of 28 MB; the summary line
says the folder's size). The manifest
(:func:`bench.results.write_manifest`) is rewritten after each suite, so an interrupted
run still leaves a readable folder, marked ``"complete": false`` until the last suite is done.

Ctrl-C (SIGINT) or SIGTERM stops the run: the running suite's pytest (started in a process
group of its own, with whatever it started) is sent SIGINT, then SIGTERM after
:data:`STOP_GRACE_S`, then SIGKILL; the manifest records that suite as ``"interrupted"`` and the
folder as incomplete; the command says which suites were kept and exits 130 (143 for
SIGTERM) without a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Final

from bench import conditions
from bench.results import (
    INTERRUPTED_EXIT,
    SuiteRun,
    compress_suite_file,
    folder_size,
    write_manifest,
)
from bench.suite_list import SUITES

__all__ = ["REPO", "SUITES_DIR", "SuiteStage", "out_folder_problem", "run", "timed_run_env"]

SUITES_DIR: Final = Path(__file__).resolve().parents[1] / "suites"
REPO: Final = SUITES_DIR.parents[1]
HEARTBEAT_S: Final = 10.0
STOP_GRACE_S: Final = 5.0
"""How long a suite's pytest is given to stop on SIGINT (its fixtures' teardown) before SIGTERM."""


SuiteStage = Callable[[SuiteRun, Path, str], SuiteRun]
"""A stage run after each suite's wall-time run: ``stage(suite_run, out, "i/n")`` returns the
suite's record, updated (``run --instructions``: the counting stage of :mod:`bench.instructions`,
which :mod:`bench.cli` composes with :func:`run`; this module imports no feature)."""


class Stopped(Exception):
    """The run was asked to stop (SIGINT or SIGTERM); ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Stopped` in the main thread for the duration."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        # the first signal stops the run; a second one must not cut the cleanup short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Stopped(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _stop_group(proc: subprocess.Popen[bytes], grace_s: float = STOP_GRACE_S) -> None:
    """Stop ``proc`` and its process group: SIGINT, then SIGTERM, then SIGKILL."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue
        with suppress(ProcessLookupError, PermissionError):
            # the leader is gone: what it started (servers, workers) goes with it
            os.killpg(proc.pid, signal.SIGKILL)
        return


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
    if getattr(args, "stream_slo", None):
        cmd.append(f"--stream-slo={args.stream_slo}")
    return cmd + list(args.pytest_args)


def timed_run_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a timed benchmark process: without the ``PYTEST_XDIST_*``
    variables an enclosing xdist worker leaves behind (pytest-benchmark reads
    ``PYTEST_XDIST_WORKER`` and would silently disable every benchmark)."""
    env = dict(os.environ if base is None else base)
    for name in [n for n in env if n.startswith("PYTEST_XDIST_")]:
        del env[name]
    return env


def _progress(args: argparse.Namespace, text: str) -> None:
    """A progress line on stderr (silenced by ``-q``)."""
    if not getattr(args, "quiet", False):
        print(text, file=sys.stderr, flush=True)


def _run_suite(
    suite: str, out: Path, args: argparse.Namespace, index: str, after: Sequence[str] = ()
) -> SuiteRun:
    target = out / f"{suite}.json"
    target.unlink(missing_ok=True)
    target.with_name(f"{suite}.json.gz").unlink(missing_ok=True)  # of an earlier run here
    cmd = _pytest_command(suite, out, args)
    log_path = out / "logs" / f"{suite}.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    left = f"; then {', '.join(after)}" if after else "; the last suite"
    _progress(args, f"[{index}] {suite}: started{left}")
    before = conditions.snapshot()
    start = time.monotonic()
    with log_path.open("w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        stream = None if args.verbose else log
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=stream,
            stderr=subprocess.STDOUT,
            env=timed_run_env(),
            start_new_session=True,  # its own process group: stopped whole on Ctrl-C
        )
        try:
            while True:
                try:
                    code = proc.wait(timeout=HEARTBEAT_S)
                    break
                except subprocess.TimeoutExpired:
                    _progress(
                        args,
                        f"[{index}] {suite}: running for {time.monotonic() - start:.0f} s"
                        + (f" ({len(after)} suite(s) after it)" if after else ""),
                    )
        except (Stopped, KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print(f"[{index}] {suite}: stopping its pytest (pid {proc.pid})...", flush=True)
            _stop_group(proc)
            raise
    elapsed = time.monotonic() - start
    recorded = conditions.between(before, conditions.snapshot())
    written = target.name if target.exists() else None
    verdict = "ok" if code == 0 else f"FAILED (pytest exit {code}; see {log_path})"
    print(f"[{index}] {suite}: finished in {elapsed:.1f} s: {verdict}", flush=True)
    if code != 0 and not args.verbose:
        tail = log_path.read_text().splitlines()[-15:]
        print("\n".join("    " + line for line in tail), flush=True)
    return SuiteRun(
        suite=suite, file=written, exit_code=code, elapsed_s=elapsed, conditions=recorded
    )


def _compressed(run: SuiteRun, out: Path) -> SuiteRun:
    """``run`` with its suite file rewritten as ``<suite>.json.gz`` (lossless: compact JSON,
    gzip; :func:`~bench.results.compress_suite_file`), once pytest (and the counting
    stage) are done with it; a run that wrote no file is returned as is."""
    if run.file is None or not (out / run.file).is_file():
        return run
    return dataclasses.replace(run, file=compress_suite_file(out / run.file).name)


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


def _interrupted(
    exc: BaseException,
    current: str,
    suite_start: float,
    suites: list[str],
    runs: list[SuiteRun],
    manifest: Callable[[bool | None], None],
    out: Path,
    start: float,
) -> int:
    """Record the stopped run (the current suite "interrupted", the folder incomplete), say
    what was kept, and return the exit status (130 for SIGINT, 128 + the signal otherwise)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # finish the record even on a second Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signum = exc.signum if isinstance(exc, Stopped) else int(signal.SIGINT)
    if current:
        runs[:] = [r for r in runs if r.suite != current]  # stopped during its count, too
        elapsed = time.monotonic() - suite_start
        runs.append(SuiteRun(current, None, -signum, elapsed, "interrupted"))
    manifest(False)
    kept = [r.suite for r in runs if r.effective_status == "completed"]
    lost = [s for s in suites if s not in kept]
    print(
        f"samplemind-bench: interrupted ({signal.Signals(signum).name}) after "
        f"{time.monotonic() - start:.1f} s; kept {len(kept)} completed suite(s) in {out}"
        + (f" ({', '.join(kept)})" if kept else "")
        + f"; not complete: {', '.join(lost)}. The folder is marked incomplete: "
        "report, gate, history add and headline refuse it.",
        file=sys.stderr,
        flush=True,
    )
    return INTERRUPTED_EXIT if signum == signal.SIGINT else 128 + signum


def run(args: argparse.Namespace, *, after_suite: SuiteStage | None = None) -> int:
    """The ``run`` command: every chosen suite in its own pytest process, then the manifest.

    ``after_suite`` runs after each suite's wall-time run, before its file is compressed and
    the manifest rewritten (``--instructions``: the counting stage, whose tools the caller has
    checked already); ``args.instructions`` without it raises ``ValueError`` (a run that would
    silently count nothing)."""
    if getattr(args, "instructions", False) and after_suite is None:
        raise ValueError("run --instructions needs its counting stage: call bench.cli.main")
    suites = [s for s in SUITES if s in (args.suites or SUITES)]
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

    def manifest(complete: bool | None = None) -> None:
        write_manifest(
            out, mode=mode, quick=args.quick, suites=suites, runs=runs, repo=REPO, complete=complete
        )

    current, suite_start = "", start
    with _stop_on_signals():  # also around the record of a stop: no second-signal traceback
        try:
            manifest(complete=False)  # from the start: a folder being written is incomplete
            for i, suite in enumerate(suites, 1):
                current, suite_start = suite, time.monotonic()
                runs.append(_run_suite(suite, out, args, f"{i}/{len(suites)}", suites[i:]))
                if after_suite is not None:
                    runs[-1] = after_suite(runs[-1], out, f"{i}/{len(suites)}")
                runs[-1] = _compressed(runs[-1], out)
                current = ""
                # keep the manifest current, so an interrupted run still leaves a readable folder
                manifest(complete=False if i < len(suites) else None)
        except (Stopped, KeyboardInterrupt) as exc:
            return _interrupted(exc, current, suite_start, suites, runs, manifest, out, start)
    failed = [r.suite for r in runs if r.exit_code != 0]
    total = time.monotonic() - start
    print(
        f"samplemind-bench: done in {total:.1f} s; results in {out} "
        f"({folder_size(out) / 1e6:.1f} MB)"
        + (f"; FAILED suites: {', '.join(failed)}" if failed else ""),
        flush=True,
    )
    return 1 if failed else 0
