"""The schedule of ``pytest -n N`` (tests/conftest.py, decision 0580): which tests go to one
worker together, and when the project's schedule applies instead of xdist's own."""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from tests import conftest


class _Config:
    """What xdist's scheduler and the hook read of a pytest config: the stash and options."""

    def __init__(self, implicit: bool | None) -> None:
        self.stash = pytest.Stash()
        if implicit is not None:
            self.stash[conftest._IMPLICIT_DIST] = implicit
        self.options = {
            "tx": ["2*popen"],
            "numprocesses": 2,
            "dist": "load",
            "loadscopereorder": True,
        }

    def getvalue(self, name: str) -> Any:
        return self.options[name]

    getoption = getvalue


def test_valgrind_files_are_one_unit_module_fixture_files_one_each_the_rest_alone() -> None:
    unit = conftest.schedule_unit
    assert unit("tests/test_instructions.py::test_run_instructions_end_to_end") == "valgrind"
    assert unit("tests/test_instructions.py::test_decide[base0-cand0-0.0-unchanged]") == "valgrind"
    assert unit("tests/gate/test_instructions_cli.py::test_baseline_ref_counts_both_sides") == (
        "valgrind"
    )
    golden = "tests/test_report_golden.py::test_data_csv_golden"
    browser = "tests/test_report_browser.py::test_report_page_renders_without_broken_images"
    assert unit(golden) == unit(browser) == "report-of-run-a-and-b"
    page = "tests/test_history_page.py::test_page_is_one_self_contained_file"
    assert unit(page) == "tests/test_history_page.py"
    pooled = [
        "tests/test_stream_relay.py::test_four_processes_share_one_upstream[relay]",
        "tests/test_stream_relay.py::test_four_processes_share_one_upstream[no-relay]",
        "bench/suites/test_stream.py::test_stream_processes[relay]",
        "bench/suites/test_stream.py::test_stream_processes[no_relay]",
    ]
    assert {unit(n) for n in pooled} == {"stream-worker-pool"}  # one pool of workers (0981)
    for alone in (
        "tests/test_cache.py::test_miss_set_hit_round_trips_every_field[cluster]",
        "tests/test_stream_relay.py::test_relay_keys_are_not_counted_as_entries",
        "bench/suites/test_stream.py::test_stream_processes_x",  # a prefix is not the test
        "tests/gate/test_cli.py::test_x",
        "bench/suites/test_router.py::test_route[chat-speed-healthy]",
        "tests/test_instructions_other.py::test_x",  # a prefix of a listed file is not that file
    ):
        assert unit(alone) == alone


def test_the_schedule_applies_to_n_without_dist_only() -> None:
    scheduler = conftest.pytest_xdist_make_scheduler(_Config(implicit=True), None)
    assert isinstance(scheduler, LoadScopeScheduling)
    nodeid = "tests/test_instructions.py::test_read_dump_total"
    assert scheduler._split_scope(nodeid) == conftest.schedule_unit(nodeid) == "valgrind"
    assert conftest.pytest_xdist_make_scheduler(_Config(implicit=False), None) is None
    assert conftest.pytest_xdist_make_scheduler(_Config(implicit=None), None) is None


class _Item:
    def __init__(self, nodeid: str, valgrind: bool) -> None:
        self.nodeid = nodeid
        self._valgrind = valgrind

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == "valgrind" and self._valgrind else None


def test_a_valgrind_test_outside_the_listed_files_is_refused_at_collection() -> None:
    fine = [
        _Item("tests/test_instructions.py::test_x", valgrind=True),
        _Item("tests/test_cache.py::test_y", valgrind=False),
    ]
    conftest.pytest_collection_modifyitems(None, fine)  # type: ignore[arg-type]
    stray = [*fine, _Item("tests/test_new.py::test_counts", valgrind=True)]
    with pytest.raises(pytest.UsageError, match=r"tests/test_new\.py::test_counts is marked"):
        conftest.pytest_collection_modifyitems(None, stray)  # type: ignore[arg-type]
