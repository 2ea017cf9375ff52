"""``fixtures.stream_worker.WorkerPool`` (decision 0981): the processes kept for the
cross-process stream cases say why a run failed, and leave no process behind on any way out.

The runs that succeed are the cross-process cases themselves
(``tests/test_stream_relay.py::test_four_processes_share_one_upstream``,
``bench/suites/test_stream.py::test_stream_processes``)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from fixtures.stream_worker import WorkerPool

# starts real worker processes (about 2 CPU s for the file): outside the fast tier (decision 0421)
pytestmark = pytest.mark.slow


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False  # still there (or a zombie nobody reaped)


def test_a_failed_run_says_why_and_closes_the_pool() -> None:
    pool = WorkerPool(2)
    pids = pool.pids
    assert len(set(pids)) == 2
    with pytest.raises(
        RuntimeError, match=r"(?s)run failed: .*ValueError: the following arguments are required"
    ):
        pool.run(["--n", "1"], timeout_s=30)  # no --redis, no --emulator
    assert pool.closed and pool.pids == [] and all(_gone(p) for p in pids)
    with pytest.raises(RuntimeError, match="closed"):
        pool.run(["--n", "1"], timeout_s=30)


def test_a_worker_that_dies_is_named_and_the_others_are_ended() -> None:
    with WorkerPool(2) as pool:
        pids = pool.pids
        os.kill(pids[0], signal.SIGKILL)
        for _ in range(2000):  # dead (a zombie until the pool reaps it): its stdin is closed
            if Path(f"/proc/{pids[0]}/stat").read_text().split(")")[-1].split()[0] == "Z":
                break
            time.sleep(0.005)
        with pytest.raises(RuntimeError, match="stream worker exited -9"):
            pool.run(["--n", "1"], timeout_s=60)  # the live one refuses at once
        assert pool.closed
    assert all(_gone(p) for p in pids)
