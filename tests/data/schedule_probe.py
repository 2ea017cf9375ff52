"""Run by tests/test_schedule.py under ``pytest -n 2`` (not collected otherwise: the name does
not start with ``test_``): each test appends ``<worker> <name>`` to the file named by
``SCHEDULE_PROBE_LOG``, so the test sees which worker ran what, in which order."""

from __future__ import annotations

import os

import pytest


def _log(request: pytest.FixtureRequest) -> None:
    with open(os.environ["SCHEDULE_PROBE_LOG"], "a") as log:
        log.write(f"{os.environ.get('PYTEST_XDIST_WORKER', '-')} {request.node.name}\n")


@pytest.mark.parametrize("i", range(6))
def test_plain(i: int, request: pytest.FixtureRequest) -> None:
    _log(request)


@pytest.mark.redis
@pytest.mark.parametrize("i", range(2))
def test_server(i: int, request: pytest.FixtureRequest) -> None:
    _log(request)


@pytest.mark.slow
@pytest.mark.parametrize("i", range(3))
def test_slow(i: int, request: pytest.FixtureRequest) -> None:
    _log(request)


@pytest.mark.valgrind
@pytest.mark.slow
@pytest.mark.parametrize("i", range(2))
def test_counted(i: int, request: pytest.FixtureRequest) -> None:
    _log(request)
