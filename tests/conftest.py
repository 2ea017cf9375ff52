"""Fixtures shared by test modules: the counted runs the valgrind tests read, and the schedule.

A counted run (``samplemind-bench run --instructions``) costs tens of seconds of Valgrind, and
every count of one user queues behind one lock (``bench.instructions.runner.counting_stage``).
So each run below is made once per test session and shared: by every test that reads it, and
across pytest-xdist workers. As soon as the session knows which runs its selected tests read,
a background process starts making them (:mod:`tests._counted`), and the tests that read them
run last: under ``pytest -n N`` as one unit at the end of the queue
(:func:`pytest_xdist_make_scheduler`), without xdist at the end of the session. The counts are
made meanwhile, on the time the other tests' waits leave a core idle (docs/decisions/0820;
before that, record 0580 ran the valgrind files as one unit first). Tests that change a counted
folder change a copy.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

from tests._counted import (
    HEADLINES,
    PAIR,
    PAIR_PYTEST_ARGS,
    READERS,
    Background,
    CountedPair,
    GateRun,
    counted_run,
    once,
    start_background,
    wanted,
)

__all__ = ["PAIR_PYTEST_ARGS", "CountedPair", "GateRun", "counted_run"]

# Keep compiled bytecode between test sessions, even under PYTHONDONTWRITEBYTECODE: pytest then
# reads its assertion-rewritten test modules (and Python the project's modules) from
# ``__pycache__`` (git-ignored) instead of rewriting and compiling all of them again in every
# xdist worker, which was half of a worker's collection (decision 0560). Set here, before any
# test module is imported; counting processes do not load this file (their stage copies no
# ``tests/``) and keep their own PYTHONDONTWRITEBYTECODE=1.
sys.dont_write_bytecode = False

REPO = Path(__file__).resolve().parent.parent

VALGRIND_FILES = ("tests/test_instructions.py", "tests/gate/test_instructions_cli.py")
"""The test files of every test marked ``valgrind`` (checked at collection)."""

READERS_GROUP = "counted-run-readers"
"""The unit of the tests that read a counted run (:data:`tests._counted.READERS`): one worker
runs them, last (:func:`pytest_xdist_make_scheduler`)."""

_BASE_KEY = "samplemind_counted_base"
"""``workerinput`` key: the session's folder of counted runs (:func:`pytest_configure_node`)."""
_BASE = pytest.StashKey[Path]()
_BACKGROUND = pytest.StashKey[Background]()

REPORT_FILES = ("tests/test_report_golden.py", "tests/test_report_browser.py")
"""The test files that read :func:`report_of_run_a_and_b`: under ``pytest -n N`` one worker
runs them, so the report is built once, not once per worker."""

REPORT_GROUP = "report-of-run-a-and-b"
"""The unit of :data:`REPORT_FILES` in the schedule."""

MODULE_FIXTURE_FILES = ("tests/test_history_page.py",)
"""Test files whose tests share a costly module-scoped fixture (a history store and its
page): under ``pytest -n N`` each runs in one worker, so the fixture is built once, not once
per worker."""

_IMPLICIT_DIST = pytest.StashKey[bool]()


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Note whether ``-n N`` came without ``--dist`` (before xdist's own hook makes that
    ``load``): only then does :func:`pytest_xdist_make_scheduler` choose the schedule."""
    option = config.option
    implicit = bool(getattr(option, "numprocesses", None)) and getattr(option, "dist", "") == "no"
    config.stash[_IMPLICIT_DIST] = implicit


def _session_base(config: pytest.Config) -> Path:
    """The session's folder of counted runs (made once, removed at :func:`pytest_unconfigure`)."""
    if _BASE not in config.stash:
        config.stash[_BASE] = Path(tempfile.mkdtemp(prefix="samplemind-counted-"))
    return config.stash[_BASE]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist (controller): tell each worker the session's folder of counted runs."""
    node.workerinput[_BASE_KEY] = str(_session_base(node.config))


def _start_counting(config: pytest.Config, nodeids: list[str]) -> None:
    """Start making, in the background, the counted runs that ``nodeids`` read (once)."""
    names = wanted(nodeids)
    if names and _BACKGROUND not in config.stash:
        config.stash[_BACKGROUND] = start_background(_session_base(config), names)


class _ReadersLast(OrderedDict[str, dict[str, bool]]):
    """xdist's work queue with :data:`READERS_GROUP` kept at the end: a unit put in after it
    goes before it."""

    def __setitem__(self, key: str, value: dict[str, bool]) -> None:
        super().__setitem__(key, value)
        if key != READERS_GROUP and READERS_GROUP in self:
            self.move_to_end(READERS_GROUP)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n N`` without ``--dist``: every test is sent on its own to the worker that needs
    work (xdist's ``loadscope`` with one test per scope, largest units first), except the tests
    that read a counted run: one unit, sent last, to one worker (:data:`READERS_GROUP`); when
    the workers' collection is in, the runs they read start in the background
    (:mod:`tests._counted`); :data:`REPORT_FILES`, one unit; each file of
    :data:`MODULE_FIXTURE_FILES`, one unit each (docs/decisions/0580, 0820). An explicit
    ``--dist`` is kept (None: xdist's own scheduler; the readers then make the runs).

    ``--dist loadgroup`` with ``xdist_group`` marks would say the same, but xdist 3.8 groups
    by renaming items, which pytest 9.2 items ignore (the group is silently lost).
    """
    if not config.stash.get(_IMPLICIT_DIST, False):
        return None
    from xdist.scheduler import LoadScopeScheduling

    class TogetherScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def __init__(self, config: pytest.Config, log: Any = None) -> None:
            super().__init__(config, log)
            self.workqueue = _ReadersLast()

        def _split_scope(self, nodeid: str) -> str:
            return schedule_unit(nodeid)

        def schedule(self) -> None:
            if self.collection is None and self.collection_is_completed:
                collections = list(self.registered_collections.values())
                if collections:
                    _start_counting(self.config, list(collections[0]))
            super().schedule()

    return TogetherScheduling(config, log)


def schedule_unit(nodeid: str) -> str:
    """The unit of work a test belongs to under ``pytest -n N``: :data:`READERS_GROUP` for
    the tests that read a counted run, :data:`REPORT_GROUP` for :data:`REPORT_FILES`, the
    file for :data:`MODULE_FIXTURE_FILES`, else the test itself."""
    if nodeid in READERS:
        return READERS_GROUP
    path = nodeid.split("::", 1)[0]
    if path in REPORT_FILES:
        return REPORT_GROUP
    return path if path in MODULE_FIXTURE_FILES else nodeid


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every ``valgrind`` test lives in one of :data:`VALGRIND_FILES` (the list the project
    keeps of them); :data:`tests._counted.READERS` names exactly the tests that read a counted
    run, and they go last (:func:`pytest_collection_finish` starts the runs meanwhile)."""
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        if item.get_closest_marker("valgrind") is not None and path not in VALGRIND_FILES:
            raise pytest.UsageError(
                f"{item.nodeid} is marked valgrind but its file is not in VALGRIND_FILES "
                "(tests/conftest.py): add it there"
            )
        fixtures = getattr(item, "fixturenames", ())
        reads = {HEADLINES} if "counted_headlines" in fixtures else set()
        reads |= {PAIR} if {"counted_pair", "counted_runs"} & set(fixtures) else set()
        listed = {READERS[item.nodeid]} if item.nodeid in READERS else set()
        if reads != listed:
            raise pytest.UsageError(
                f"{item.nodeid} reads the counted runs {sorted(reads) or 'none'} but "
                f"tests/_counted.py READERS lists {sorted(listed) or 'none'}: update READERS"
            )
    items.sort(key=lambda item: item.nodeid in READERS)  # stable: the readers last


def pytest_collection_finish(session: pytest.Session) -> None:
    """Without xdist: start making the counted runs the selected tests read (they run last).
    In an xdist worker nothing starts here (the controller's scheduler starts them)."""
    config = session.config
    if hasattr(config, "workerinput") or session.config.option.collectonly:
        return
    _start_counting(config, [item.nodeid for item in session.items])


def pytest_unconfigure(config: pytest.Config) -> None:
    """End the background process if it still runs; remove the session's counted runs."""
    background = config.stash.get(_BACKGROUND, None)
    if background is not None:
        background.stop()
    base = config.stash.get(_BASE, None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)


def need_valgrind() -> None:
    """Skip without valgrind (the apt hint), unless ``CI`` is set: then fail."""
    from bench.instructions._tools import ToolMissing, find_tools

    try:
        find_tools()
    except ToolMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{exc} (CI is set, so valgrind tests must run)", pytrace=False)
        pytest.skip(str(exc))


def _shared(config: pytest.Config, factory: pytest.TempPathFactory, name: str) -> Path:
    """The counted run ``name``, made by whichever process of the session asks first (the
    background process, or this fixture) in the session's folder: the controller's under xdist,
    this process's without; else (a session that made none) the workers' shared basetemp."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and _BASE_KEY in workerinput:
        base = Path(workerinput[_BASE_KEY])
    elif _BASE in config.stash:
        base = config.stash[_BASE]
    else:
        base = factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):
            base = base.parent  # shared by the workers of this session
    return once(base, name)


@pytest.fixture(scope="session")
def counted_pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> CountedPair:
    """``gate --baseline-ref REF --instructions --rounds 1 --suite router --metric
    instructions -k chat-speed --out ...``, once per session (:func:`tests._counted.make_pair`):
    the interleaved runner counts REF in a git worktree and this checkout, two fresh processes
    of the same code. One counted pair serves the ``--baseline-ref`` test (its exit code,
    output and verdicts), the A/A gate tests (its two results folders) and the checkout-path
    test (the worktree lies in a folder named by 48 or 49 b's). A failed gate still leaves its
    folders; only a missing folder fails every reader here.
    """
    need_valgrind()
    root = _shared(request.config, tmp_path_factory, PAIR)
    record = json.loads((root / "gate.json").read_text())
    gate = GateRun(record["returncode"], record["stdout"], record["stderr"], root / "verdicts.json")
    a, b = root / "runs" / "baseline" / "r00-router", root / "runs" / "candidate" / "r00-router"
    assert a.is_dir() and b.is_dir(), gate.stdout[-3000:] + gate.stderr[-3000:]
    return CountedPair(a, b, (Path(record["baseline_tree"]), REPO), record["ref"], gate)


@pytest.fixture(scope="session")
def counted_headlines(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One counted run of this checkout: the report's headline benchmarks (cache, router,
    pipeline) and the router benchmarks of the end-to-end test
    (:func:`tests._counted.make_headlines`)."""
    need_valgrind()
    return _shared(request.config, tmp_path_factory, HEADLINES) / "results"


@pytest.fixture(scope="session")
def report_of_run_a_and_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the committed ``tests/data/results/run_a`` and ``run_b``, built once per
    session (per xdist worker: :data:`REPORT_FILES` run in one). Read it; never change it."""
    from reports.build import build_report

    results = REPO / "tests" / "data" / "results"
    out = tmp_path_factory.mktemp("report-of-run-a-and-b")
    build_report([results / "run_a", results / "run_b"], out)
    return out
