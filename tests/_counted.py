"""The counted runs the valgrind tests read, made once per test session: what makes them, where
they go, and a background process that makes them while other tests run.

A counted run (``samplemind-bench run --instructions``) is tens of seconds of one core under
Valgrind, and the tests that read one spend well under a second each on it. So the session
starts :func:`main` (``python -m tests._counted BASE NAME...``) as soon as it knows which runs its
selected tests read (:func:`start_background`, called by ``tests/conftest.py``): the runs are
made beside the other tests, on the time their waits (servers, back-offs, paced streams) leave
a core idle, and the readers, scheduled last, find them made (docs/decisions/0820).

Whoever asks first makes a run, under a file lock in the session's shared folder
(:func:`once`): the background process, or a reader's fixture when there is no background
process (``pytest -n N --dist load``, a session that started none) or it failed (the fixture then
makes the run again itself, so the failure is reported by the test that reads it).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "HEADLINES",
    "PAIR",
    "PAIR_PYTEST_ARGS",
    "READERS",
    "Background",
    "CountedPair",
    "GateRun",
    "counted_run",
    "main",
    "once",
    "start_background",
    "wanted",
    "working_tree_ref",
]

REPO: Final = Path(__file__).resolve().parent.parent
BENCH_SCRIPT: Final = Path(sys.executable).parent / "samplemind-bench"

HEADLINES: Final = "counted-headlines"
"""One counted run of this checkout: the report's headline benchmarks (cache, router, pipeline)
and the router benchmarks of the end-to-end test (``results/`` in its folder)."""

PAIR: Final = "counted-pair"
"""One ``gate --baseline-ref REF --instructions`` run: two fresh counted processes of the same
code in two checkouts (``runs/``, ``verdicts.json``, ``gate.json`` in its folder)."""

PAIR_K: Final = "chat-speed"
"""The A/A pair's selection: two counted router benchmarks, healthy and one_open."""

REPORT_K: Final = "fakeredis-hit-msgpack or chat-speed-healthy or request_cpu"
"""One counted benchmark per headline: cache hit (L1 off and on), routing decision, request."""

END_TO_END_K: Final = "chat-speed or fallback and mock-fail0"
"""Router benchmarks counted (chat-speed) beside one that is not (an I/O-bound fallback)."""

PAIR_PYTEST_ARGS: Final = ("-k", PAIR_K, "-pno:hypothesispytest")
"""The pytest arguments of both sides of the pair (and of a recount in one of its checkouts)."""

_GATE: Final = "tests/gate/test_instructions_cli.py::"
_INSTR: Final = "tests/test_instructions.py::"
READERS: Final[dict[str, str]] = {
    _INSTR + "test_run_instructions_end_to_end": HEADLINES,
    _INSTR + "test_report_shows_counts_beside_time_from_a_real_run": HEADLINES,
    _INSTR + "test_counts_do_not_depend_on_the_checkout_path": PAIR,
    _GATE + "test_aa_of_two_fresh_processes_passes": PAIR,
    _GATE + "test_two_percent_more_instructions_in_one_benchmark_fails_and_is_named": PAIR,
    _GATE + "test_wall_time_stays_the_looser_guard": PAIR,
    _GATE + "test_missing_spread_is_not_a_pass": PAIR,
    _GATE + "test_counts_on_one_side_only_get_a_clear_message": PAIR,
    _GATE + "test_baseline_ref_counts_both_sides": PAIR,
}
"""Every test that reads a counted run, and the run it reads (``tests/conftest.py`` checks at
collection that this is exactly the tests using ``counted_headlines`` / ``counted_pair``)."""


def counted_run(
    out: Path, suites: list[str], pytest_args: Sequence[str], cwd: Path, env: dict[str, str]
) -> Path:
    """``samplemind-bench run --instructions --quick --suite SUITES --out OUT`` with
    ``--pytest-arg=A`` for each of ``pytest_args``."""
    cmd = [str(BENCH_SCRIPT), "run", "--instructions", "--quick", "--suite", *suites]
    proc = subprocess.run(
        [*cmd, "--out", str(out), *(f"--pytest-arg={a}" for a in pytest_args)],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=cwd,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [r["suite"] for r in manifest["runs"]] == suites
    # each suite file compressed once counted (the counts are read back from it by the gate
    # tests), and the summary line gives the folder's size
    assert manifest["files"] == [f"{s}.json.gz" for s in suites] and manifest["version"] == 2
    assert [p.name for p in out.glob("*.json")] == ["manifest.json"]  # no plain suite file left
    assert f"results in {out} (" in proc.stdout and " MB)" in proc.stdout, proc.stdout[-500:]
    return out


@dataclass(frozen=True)
class GateRun:
    """What ``samplemind-bench gate --baseline-ref ... --json REPORT`` returned, printed and wrote."""

    returncode: int
    stdout: str
    stderr: str
    report: Path


@dataclass(frozen=True)
class CountedPair:
    """Two fresh counted processes of the same code, in two checkouts at paths of other
    lengths (``trees``: the baseline's git worktree, then this checkout), made by one
    ``gate --baseline-ref REF --instructions`` (``gate``; ``ref``: HEAD, or a commit of the
    working tree when it differs from HEAD's)."""

    a: Path
    b: Path
    trees: tuple[Path, Path]
    ref: str
    gate: GateRun


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout.strip()


def working_tree_ref(repo: Path, scratch: Path) -> str:
    """``HEAD`` when ``repo``'s working tree (tracked files and untracked ones git does not
    ignore) is HEAD's tree, else a commit of the working tree on top of HEAD, made through a
    scratch index (``git commit-tree``: no ref moves, the index is untouched), so that a
    baseline checked out from it is the code under test while you edit."""
    env = {
        **os.environ,
        "GIT_INDEX_FILE": str(scratch / "index"),
        "GIT_AUTHOR_NAME": "samplemind tests",
        "GIT_AUTHOR_EMAIL": "tests@samplemind.local",
        "GIT_COMMITTER_NAME": "samplemind tests",
        "GIT_COMMITTER_EMAIL": "tests@samplemind.local",
    }
    _git(repo, "read-tree", "HEAD", env=env)
    _git(repo, "add", "-A", env=env)
    tree = _git(repo, "write-tree", env=env)
    (scratch / "index").unlink()
    if tree == _git(repo, "rev-parse", "HEAD^{tree}"):
        return "HEAD"
    return _git(repo, "commit-tree", tree, "-p", "HEAD", "-m", "working tree (tests)", env=env)


def make_headlines(root: Path) -> None:
    """:data:`HEADLINES` into ``root/results``."""
    from bench.harness.run import timed_run_env

    select = f"{REPORT_K} or {END_TO_END_K}"
    suites = ["cache", "router", "pipeline"]
    counted_run(root / "results", suites, ["-k", select], REPO, timed_run_env())


def make_pair(root: Path) -> None:
    """:data:`PAIR` into ``root``: ``gate --baseline-ref REF --instructions --rounds 1 --suite
    router --metric instructions -k chat-speed --out root/runs`` (in this process, through the
    console script's ``main()``), REF :func:`working_tree_ref`; the baseline's worktree lies in a
    folder named by 48 b's (49 where that would make its path as long as this checkout's). A
    failed gate still leaves its folders; ``gate.json`` records its exit code and output."""
    import tempfile

    from bench import cli
    from tests._helpers import run_main

    ref = working_tree_ref(REPO, root)
    # the baseline's worktree goes to <root>/bbb.../samplemind-gate-XXXXXXXX/baseline (a path
    # of another length than this checkout's); only this process's temporary folder moves:
    # the runs keep the environment, so every count still takes its turns at one stage
    made: list[str] = []
    mkdtemp, tempdir = tempfile.mkdtemp, tempfile.tempdir
    tail = len("/samplemind-gate-XXXXXXXX/baseline")
    pad = 48 if len(str(root)) + 1 + 48 + tail != len(str(REPO)) else 49
    (root / ("b" * pad)).mkdir()

    def recording(*args: Any, **kwargs: Any) -> str:
        path = mkdtemp(*args, **kwargs)
        made.append(path)
        return path

    out, report = root / "runs", root / "verdicts.json"
    args = [
        "gate",
        "--baseline-ref",
        ref,
        "--instructions",
        "--rounds",
        "1",
        "--suite",
        "router",
        "--metric",
        "instructions",
        *(f"--pytest-arg={a}" for a in PAIR_PYTEST_ARGS),
        "--json",
        str(report),
        "--out",
        str(out),
    ]
    tempfile.tempdir, tempfile.mkdtemp = str(root / ("b" * pad)), recording
    try:
        proc = run_main(cli.main, args, cwd=REPO, env=cli.timed_run_env())
    finally:
        tempfile.tempdir, tempfile.mkdtemp = tempdir, mkdtemp
    worktrees = [Path(p).resolve() / "baseline" for p in made if "-runs-" not in p]
    assert len(worktrees) == 1, (made, proc.stdout[-3000:], proc.stderr[-3000:])
    (worktree,) = worktrees
    assert len(str(worktree)) != len(str(REPO)), (worktree, REPO)
    record = {
        "returncode": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "ref": ref,
        "baseline_tree": str(worktree),
    }
    (root / "gate.json").write_text(json.dumps(record))


MAKERS: Final[dict[str, Callable[[Path], None]]] = {HEADLINES: make_headlines, PAIR: make_pair}


def once(base: Path, name: str) -> Path:
    """``MAKERS[name](base/name)`` once per ``base`` (a session's shared folder), whichever
    process asks first (the others wait for it); the folder. A maker that failed left no
    ``NAME.done``: the next to ask makes it again."""
    folder, done = base / name, base / f"{name}.done"
    with (base / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # an earlier attempt that failed
            folder.mkdir()
            MAKERS[name](folder)
            done.touch()
    return folder


@dataclass
class Background:
    """The process making counted runs beside the tests (:func:`start_background`)."""

    base: Path
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        """End the process and everything it started (its own process group) if it still
        runs, and wait for it."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


def wanted(nodeids: Iterable[str]) -> list[str]:
    """The counted runs read by the tests ``nodeids`` (in :data:`MAKERS` order)."""
    names = {READERS[n] for n in nodeids if n in READERS}
    return [n for n in MAKERS if n in names]


def start_background(base: Path, names: Sequence[str]) -> Background:
    """``python -m tests._counted BASE NAMES...`` in a process group of its own (ended by
    :meth:`Background.stop`), output in ``BASE/background.log``."""
    base.mkdir(parents=True, exist_ok=True)
    with (base / "background.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests._counted", str(base), *names],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Background(base, proc)


def main(argv: Sequence[str] | None = None) -> int:
    """Make each named run in BASE (``python -m tests._counted BASE NAME...``); 1 if one failed
    (its reader's fixture makes it again and reports why), 0 if all were made or valgrind
    is missing (the readers skip, or fail under CI, on their own)."""
    base, *names = list(sys.argv[1:] if argv is None else argv)
    from bench.instructions._tools import ToolMissing, find_tools

    try:
        find_tools()
    except ToolMissing as exc:
        print(f"no counted runs: {exc}", flush=True)
        return 0
    failed = 0
    for name in names:
        try:
            once(Path(base), name)
            print(f"{name}: made", flush=True)
        except Exception:  # every failure goes to the log; the reader makes it again
            traceback.print_exc()
            failed = 1
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
