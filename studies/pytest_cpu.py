"""A pytest plugin: each test's wall time and CPU time (this process and its waited-for
children), one line per test, in ``$PYTEST_CPU_OUT.<xdist worker>``.

    PYTEST_CPU_OUT=/tmp/run.cpu pytest -p studies.pytest_cpu -n 2 ...

Lines: ``wall_s<TAB>cpu_s<TAB>nodeid``. CPU is ``getrusage`` of ``RUSAGE_SELF`` plus
``RUSAGE_CHILDREN`` (user + sys) around ``pytest_runtest_protocol``: a child counts once it is
waited for, so a server started by a session fixture counts where it is stopped. Used by
:mod:`studies.xdist_units` and docs/measurements/2026-12-06-slow-tests.md.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Generator

import pytest


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    cpu, wall = _cpu(), time.perf_counter()
    yield
    out = os.environ.get("PYTEST_CPU_OUT")
    if out:
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(f"{out}.{worker}", "a", encoding="utf-8") as f:
            f.write(f"{time.perf_counter() - wall:.2f}\t{_cpu() - cpu:.2f}\t{item.nodeid}\n")
