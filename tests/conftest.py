"""Fixtures shared by test modules: the counted runs the valgrind tests read.

A counted run (``samplemind-bench run --instructions``) costs tens of seconds of Valgrind, and
every count of one user queues behind one lock (``bench.instructions.runner.counting_stage``).
So each run below is made once per test session and shared: by every test that reads it, and
across pytest-xdist workers (the first worker to need it makes it under a file lock in the
session's shared temporary folder; the others wait for it and read the same files). Tests
that change a counted folder change a copy.

Under ``pytest -n N`` the files of the tests marked ``valgrind`` also run in one worker, one
test after another, started first (:func:`pytest_xdist_make_scheduler`): a test that reads a
shared counted run would otherwise wait, idle, for the other worker to make it, and two
counts would queue on the one lock while a core stays idle (docs/decisions/0580).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Keep compiled bytecode between test sessions, even under PYTHONDONTWRITEBYTECODE: pytest then
# reads its assertion-rewritten test modules (and Python the project's modules) from
# ``__pycache__`` (git-ignored) instead of rewriting and compiling all of them again in every
# xdist worker, which was half of a worker's collection (decision 0560). Set here, before any
# test module is imported; counting processes do not load this file (their stage copies no
# ``tests/``) and keep their own PYTHONDONTWRITEBYTECODE=1.
sys.dont_write_bytecode = False

REPO = Path(__file__).resolve().parent.parent
BENCH_SCRIPT = Path(sys.executable).parent / "samplemind-bench"

PAIR_K = "chat-speed"
"""The A/A pair's selection: two counted router benchmarks, healthy and one_open."""

REPORT_K = "fakeredis-hit-msgpack or chat-speed-healthy or request_cpu"
"""One counted benchmark per headline: cache hit (L1 off and on), routing decision, request."""

END_TO_END_K = "chat-speed or fallback and mock-fail0"
"""Router benchmarks counted (chat-speed) beside one that is not (an I/O-bound fallback)."""


VALGRIND_FILES = ("tests/test_instructions.py", "tests/gate/test_instructions_cli.py")
"""The test files of every test marked ``valgrind``: under ``pytest -n N`` one worker runs
them, one test after another (:func:`pytest_xdist_make_scheduler`)."""

VALGRIND_GROUP = "valgrind"
"""The unit of :data:`VALGRIND_FILES` in the schedule."""

REPORT_FILES = ("tests/test_report_golden.py", "tests/test_report_browser.py")
"""The test files that read :func:`report_of_run_a_and_b`: under ``pytest -n N`` one worker
runs them, so the report is built once, not once per worker."""

REPORT_GROUP = "report-of-run-a-and-b"
"""The unit of :data:`REPORT_FILES` in the schedule."""

MODULE_FIXTURE_FILES = ("tests/test_history_page.py",)
"""Test files whose tests share a costly module-scoped fixture (a history store and its
page): under ``pytest -n N`` each runs in one worker, so the fixture is built once, not once
per worker."""

STREAM_POOL_TESTS = (
    "tests/test_stream_relay.py::test_four_processes_share_one_upstream",
    "bench/suites/test_stream.py::test_stream_processes",
)
"""The tests that use the fixture ``stream_worker_pool`` (every parametrisation): under
``pytest -n N`` one worker runs them, so the four worker processes start once, not once per
xdist worker (docs/decisions/0981)."""

STREAM_POOL_GROUP = "stream-worker-pool"
"""The unit of :data:`STREAM_POOL_TESTS` in the schedule."""

_IMPLICIT_DIST = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Note whether ``-n N`` came without ``--dist`` (before xdist's own hook makes that
    ``load``): only then does :func:`pytest_xdist_make_scheduler` choose the schedule."""
    option = config.option
    implicit = bool(getattr(option, "numprocesses", None)) and getattr(option, "dist", "") == "no"
    config.stash[_IMPLICIT_DIST] = implicit


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n N`` without ``--dist``: every test is sent on its own to the worker that needs
    work (xdist's ``loadscope`` with one test per scope), except the tests of
    :data:`VALGRIND_FILES`: one unit, sent first (the largest), so that the counting chain
    starts at once in one worker while the other runs the rest; :data:`REPORT_FILES`, one
    unit; each file of :data:`MODULE_FIXTURE_FILES`, one unit each (docs/decisions/0580);
    :data:`STREAM_POOL_TESTS`, one unit (0981). An explicit ``--dist`` is kept (None: xdist's
    own scheduler).

    ``--dist loadgroup`` with ``xdist_group`` marks would say the same, but xdist 3.8 groups
    by renaming items, which pytest 9.2 items ignore (the group is silently lost).
    """
    if not config.stash.get(_IMPLICIT_DIST, False):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class TogetherScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return schedule_unit(nodeid)

    return TogetherScheduling(config, log)


def schedule_unit(nodeid: str) -> str:
    """The unit of work a test belongs to under ``pytest -n N``: :data:`VALGRIND_GROUP` for
    the tests of :data:`VALGRIND_FILES`, :data:`REPORT_GROUP` for :data:`REPORT_FILES`, the
    file for :data:`MODULE_FIXTURE_FILES`, :data:`STREAM_POOL_GROUP` for
    :data:`STREAM_POOL_TESTS`, else the test itself."""
    path = nodeid.split("::", 1)[0]
    if path in VALGRIND_FILES:
        return VALGRIND_GROUP
    if path in REPORT_FILES:
        return REPORT_GROUP
    if nodeid.split("[", 1)[0] in STREAM_POOL_TESTS:
        return STREAM_POOL_GROUP
    return path if path in MODULE_FIXTURE_FILES else nodeid


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every ``valgrind`` test lives in one of :data:`VALGRIND_FILES`: one elsewhere would be
    scheduled beside the others and wait, idle, for their counting lock."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        pooled = item.nodeid.split("[", 1)[0] in STREAM_POOL_TESTS
        if ("stream_worker_pool" in getattr(item, "fixturenames", ())) != pooled:
            raise pytest.UsageError(
                f"{item.nodeid}: the tests that use the fixture stream_worker_pool are exactly "
                "STREAM_POOL_TESTS (tests/conftest.py): update it, so that pytest -n N runs "
                "them in one worker and the pool starts once"
            )
        if item.get_closest_marker("valgrind") is not None and path not in VALGRIND_FILES:
            raise pytest.UsageError(
                f"{item.nodeid} is marked valgrind but its file is not in VALGRIND_FILES "
                "(tests/conftest.py): add it there, so that pytest -n N runs it in the "
                "valgrind tests' worker"
            )


def need_valgrind() -> None:
    """Skip without valgrind (the apt hint), unless ``CI`` is set: then fail."""
    from bench.instructions._tools import ToolMissing, find_tools

    try:
        find_tools()
    except ToolMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI is set, so valgrind tests must run)", pytrace=False)
        pytest.skip(str(exc))


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


def _once(factory: pytest.TempPathFactory, name: str, make: Callable[[Path], None]) -> Path:
    """``make(folder)`` once per session, whichever xdist worker asks first; the folder."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session
    folder, done = base / name, base / f"{name}.done"
    with (base / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # an earlier attempt that failed
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


PAIR_PYTEST_ARGS = ("-k", PAIR_K, "-pno:hypothesispytest")
"""The pytest arguments of both sides of the pair (and of a recount in one of its checkouts)."""


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


@pytest.fixture(scope="session")
def counted_pair(tmp_path_factory: pytest.TempPathFactory) -> CountedPair:
    """``gate --baseline-ref REF --instructions --rounds 1 --suite router --metric
    instructions -k chat-speed --out ...``, once per session: the interleaved runner counts
    REF in a git worktree and this checkout, two fresh processes of the same code (REF:
    :func:`working_tree_ref`). One counted pair serves the ``--baseline-ref`` test (its
    exit code, output and verdicts), the A/A gate tests (its two results folders) and the
    checkout-path test (the worktree lies in a folder named by 48 b's, 49 where that would
    make its path as long as this checkout's). A failed gate still leaves its folders;
    only a missing folder fails every reader here.
    """
    need_valgrind()
    import tempfile

    from bench import cli
    from tests._helpers import run_main

    def make(root: Path) -> None:
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

    root = _once(tmp_path_factory, "counted-pair", make)
    record = json.loads((root / "gate.json").read_text())
    gate = GateRun(record["returncode"], record["stdout"], record["stderr"], root / "verdicts.json")
    a, b = root / "runs" / "baseline" / "r00-router", root / "runs" / "candidate" / "r00-router"
    assert a.is_dir() and b.is_dir(), gate.stdout[-3000:] + gate.stderr[-3000:]
    return CountedPair(a, b, (Path(record["baseline_tree"]), REPO), record["ref"], gate)


@pytest.fixture(scope="session")
def counted_headlines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One counted run of this checkout: the report's headline benchmarks (cache, router,
    pipeline) and the router benchmarks of the end-to-end test."""
    need_valgrind()
    from bench.harness.run import timed_run_env

    def make(root: Path) -> None:
        select = f"{REPORT_K} or {END_TO_END_K}"
        suites = ["cache", "router", "pipeline"]
        counted_run(root / "results", suites, ["-k", select], REPO, timed_run_env())

    return _once(tmp_path_factory, "counted-headlines", make) / "results"


@pytest.fixture(scope="session")
def report_of_run_a_and_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the committed ``tests/data/results/run_a`` and ``run_b``, built once per
    session (per xdist worker: :data:`REPORT_FILES` run in one). Read it; never change it."""
    from reports.build import build_report

    results = REPO / "tests" / "data" / "results"
    out = tmp_path_factory.mktemp("report-of-run-a-and-b")
    build_report([results / "run_a", results / "run_b"], out)
    return out
