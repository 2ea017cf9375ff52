"""Root conftest: loads the project's pytest plugin (fixtures/plugin.py) for tests/ and bench/,
and schedules a pytest-xdist run (``pytest -n N``, ``nox -s tests``) so that its wall time comes
close to its CPU time divided by N.

* ``-n N`` without ``--dist`` distributes by work stealing (``--dist worksteal``): each worker
  starts with a contiguous share of the tests and an idle worker takes half of the longest
  queue left, so no worker idles while another still has a queue. An explicit ``--dist`` is
  kept as given.
* Under ``--dist worksteal`` each worker orders the collected tests longest first by their
  markers (:func:`cost_rank`): the Valgrind tests, which take turns at one counting lock
  (``bench.instructions.runner.counting_stage``), start at once and all in the first worker's
  share, so the other worker never waits for that lock; the ``slow`` tests follow, then the
  tests that start servers, then the rest. The order within a rank is the collection order
  (module and session fixtures stay together). Serial runs, other ``--dist`` modes and the
  benchmark suites' own runs (``samplemind-bench run``, no xdist) keep pytest's order.

docs/decisions/0420-xdist-worksteal-longest-first.md has the reasoning and the figures.
"""

from __future__ import annotations

import typing
from collections.abc import Generator

import pytest

pytest_plugins = ["fixtures.plugin"]

RANKS = (("valgrind",), ("slow",), ("cluster", "postgres", "browser", "profile", "live", "redis"))
"""Marker groups, costliest first; a test takes the rank of the first group it has a marker of."""


def cost_rank(item: pytest.Item) -> int:
    """0 for a Valgrind test, 1 slow, 2 one that starts servers or profilers, 3 the rest."""
    for rank, names in enumerate(RANKS):
        if any(item.get_closest_marker(name) for name in names):
            return rank
    return len(RANKS)


@pytest.hookimpl(wrapper=True)
def pytest_cmdline_main(config: pytest.Config) -> Generator[None, object, object]:
    # Before xdist's own hook turns ``-n N`` without ``--dist`` into ``--dist load``.
    option = config.option
    if (
        getattr(option, "numprocesses", None)
        and getattr(option, "dist", None) == "no"
        and not getattr(option, "distload", False)
    ):
        option.dist = "worksteal"
    return (yield)


ORDER_KEY = "samplemind_longest_first"
"""Set in a worker's ``workerinput`` by the controller when the run distributes by work
stealing (a worker's own ``--dist`` option is always ``no``)."""


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: typing.Any) -> None:  # xdist's WorkerController
    node.workerinput[ORDER_KEY] = node.config.getoption("dist") == "worksteal"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if getattr(config, "workerinput", {}).get(ORDER_KEY):
        items.sort(key=cost_rank)  # stable: collection order within a rank
