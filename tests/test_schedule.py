"""How ``pytest -n N`` schedules this suite (the root ``conftest.py``): work stealing by
default, and the Valgrind and slow tests first, all in the first worker's share.

One real ``pytest -n 2`` run of a probe file (``tests/data/schedule_probe.py``) shows what xdist
does with the order; the rest is checked in-process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import conftest as root_conftest

REPO = Path(__file__).resolve().parent.parent
PROBE = REPO / "tests" / "data" / "schedule_probe.py"


class _Item:
    """Enough of a ``pytest.Item`` for :func:`conftest.cost_rank`: its markers."""

    def __init__(self, name: str, *markers: str) -> None:
        self.name, self.markers = name, set(markers)

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.markers else None


def test_cost_rank_puts_valgrind_then_slow_then_servers_first() -> None:
    rank: Any = root_conftest.cost_rank
    assert rank(_Item("v", "valgrind", "slow")) == 0
    assert rank(_Item("s", "slow", "redis")) == 1
    assert [rank(_Item("x", m)) for m in ("cluster", "postgres", "browser", "live", "redis")] == [
        2
    ] * 5
    assert rank(_Item("p")) == 3 and rank(_Item("a", "asyncio")) == 3


def _order(workerinput: dict[str, Any] | None, items: list[_Item]) -> list[str]:
    config: Any = (
        SimpleNamespace() if workerinput is None else SimpleNamespace(workerinput=workerinput)
    )
    root_conftest.pytest_collection_modifyitems(config, items)  # type: ignore[arg-type]
    return [i.name for i in items]


def test_only_a_work_stealing_worker_reorders_and_the_order_is_stable() -> None:
    def items() -> list[_Item]:
        return [
            _Item("a"),
            _Item("b", "slow"),
            _Item("c"),
            _Item("d", "valgrind"),
            _Item("e", "slow"),
        ]

    key = root_conftest.ORDER_KEY
    assert _order({key: True}, items()) == ["d", "b", "e", "a", "c"]
    assert _order({key: False}, items()) == ["a", "b", "c", "d", "e"]  # another --dist
    assert _order(None, items()) == ["a", "b", "c", "d", "e"]  # no xdist: pytest's order


def _dist_after_cmdline(**options: Any) -> str:
    """``option.dist`` once the root conftest's ``pytest_cmdline_main`` wrapper has run."""
    option = argparse.Namespace(
        **{"numprocesses": None, "dist": "no", "distload": False, **options}
    )
    hook = root_conftest.pytest_cmdline_main(SimpleNamespace(option=option))  # type: ignore[arg-type]
    next(hook)  # the part before xdist's own hook
    with pytest.raises(StopIteration):
        hook.send(0)
    return str(option.dist)


def test_n_without_dist_means_worksteal_and_an_explicit_dist_is_kept() -> None:
    assert _dist_after_cmdline(numprocesses=2) == "worksteal"
    assert _dist_after_cmdline(numprocesses="auto") == "worksteal"
    assert _dist_after_cmdline(numprocesses=2, dist="load") == "load"
    assert _dist_after_cmdline(numprocesses=2, dist="loadgroup") == "loadgroup"
    assert _dist_after_cmdline(numprocesses=2, distload=True) == "no"  # -d: xdist makes it load
    assert _dist_after_cmdline(numprocesses=None) == "no"  # no -n: a serial run
    assert _dist_after_cmdline(numprocesses=0) == "no"


@pytest.mark.slow  # one real pytest -n 2 (a controller and two workers: ~8 CPU s)
def test_pytest_n_2_runs_valgrind_then_slow_first_on_one_worker(tmp_path: Path) -> None:
    log = tmp_path / "order.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(SCHEDULE_PROBE_LOG=str(log), PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", str(PROBE)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    runs = [line.split() for line in log.read_text().splitlines()]
    assert len(runs) == 13
    by_worker: dict[str, list[str]] = {}
    for worker, name in runs:
        by_worker.setdefault(worker, []).append(name)
    assert set(by_worker) == {"gw0", "gw1"}
    # work stealing, longest first: the first share (that of the worker ready first) starts
    # with the costly ones; a steal takes the end of a queue and leaves it at least two tests,
    # so these three stay on that worker
    starts = {names[0]: names for names in by_worker.values()}
    assert "test_counted[0]" in starts, by_worker
    assert starts["test_counted[0]"][:3] == ["test_counted[0]", "test_counted[1]", "test_slow[0]"]
