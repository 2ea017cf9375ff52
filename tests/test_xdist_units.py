"""The schedule of ``pytest -n N`` (tests/conftest.py, decisions 0580 and 0820): which tests go
to one worker together, which go last, and when the project's schedule applies instead of
xdist's own."""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

from tests import conftest
from tests._counted import HEADLINES, PAIR, READERS, wanted


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


def test_counted_run_readers_are_one_unit_module_fixture_files_one_each_the_rest_alone() -> None:
    unit = conftest.schedule_unit
    readers = "counted-run-readers"
    assert unit("tests/test_instructions.py::test_run_instructions_end_to_end") == readers
    assert unit("tests/gate/test_instructions_cli.py::test_baseline_ref_counts_both_sides") == (
        readers
    )
    assert {unit(n) for n in READERS} == {readers}
    golden = "tests/test_report_golden.py::test_data_csv_golden"
    browser = "tests/test_report_browser.py::test_report_page_renders_without_broken_images"
    assert unit(golden) == unit(browser) == "report-of-run-a-and-b"
    page = "tests/test_history_page.py::test_page_is_one_self_contained_file"
    assert unit(page) == "tests/test_history_page.py"
    for alone in (
        "tests/test_cache.py::test_miss_set_hit_round_trips_every_field[cluster]",
        "tests/gate/test_cli.py::test_x",
        "bench/suites/test_router.py::test_route[chat-speed-healthy]",
        # a valgrind test that reads no shared run, and one that reads none at all
        "tests/test_instructions.py::test_counts_are_deterministic_and_scale",
        "tests/test_instructions.py::test_decide[base0-cand0-0.0-unchanged]",
        "tests/test_instructions_other.py::test_x",  # a prefix of a listed file is not that file
    ):
        assert unit(alone) == alone


def test_the_readers_unit_stays_at_the_end_of_the_work_queue() -> None:
    queue = conftest._ReadersLast()
    for key in ("report-of-run-a-and-b", "counted-run-readers", "a", "b"):
        queue[key] = {}
    assert list(queue) == ["report-of-run-a-and-b", "a", "b", "counted-run-readers"]
    assert queue.popitem(last=False)[0] == "report-of-run-a-and-b"


def test_the_runs_to_make_are_those_the_selected_tests_read() -> None:
    end_to_end = "tests/test_instructions.py::test_run_instructions_end_to_end"
    gate = "tests/gate/test_instructions_cli.py::test_baseline_ref_counts_both_sides"
    assert wanted(["tests/test_cache.py::test_x"]) == []
    assert wanted([end_to_end, "tests/test_cache.py::test_x"]) == [HEADLINES]
    assert wanted([gate, end_to_end]) == [HEADLINES, PAIR]
    assert wanted(READERS) == [HEADLINES, PAIR]


def test_the_schedule_applies_to_n_without_dist_only() -> None:
    scheduler = conftest.pytest_xdist_make_scheduler(_Config(implicit=True), None)
    assert isinstance(scheduler, LoadScopeScheduling)
    nodeid = "tests/test_instructions.py::test_run_instructions_end_to_end"
    assert scheduler._split_scope(nodeid) == conftest.schedule_unit(nodeid)
    assert scheduler._split_scope(nodeid) == "counted-run-readers"
    assert isinstance(scheduler.workqueue, conftest._ReadersLast)
    assert conftest.pytest_xdist_make_scheduler(_Config(implicit=False), None) is None
    assert conftest.pytest_xdist_make_scheduler(_Config(implicit=None), None) is None


class _Item:
    def __init__(self, nodeid: str, valgrind: bool, fixturenames: tuple[str, ...] = ()) -> None:
        self.nodeid = nodeid
        self._valgrind = valgrind
        self.fixturenames = fixturenames

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


def test_readers_are_listed_exactly_and_go_last() -> None:
    end_to_end = "tests/test_instructions.py::test_run_instructions_end_to_end"
    items = [
        _Item(end_to_end, valgrind=True, fixturenames=("tools", "counted_headlines")),
        _Item("tests/test_instructions.py::test_x", valgrind=True),
        _Item("tests/test_cache.py::test_y", valgrind=False),
    ]
    conftest.pytest_collection_modifyitems(None, items)  # type: ignore[arg-type]
    assert [i.nodeid for i in items][-1] == end_to_end  # the others keep their order
    assert [i.nodeid for i in items][:2] == [
        "tests/test_instructions.py::test_x",
        "tests/test_cache.py::test_y",
    ]
    unlisted = _Item("tests/test_instructions.py::test_new", True, ("counted_pair",))
    with pytest.raises(
        pytest.UsageError, match=r"test_new reads the counted runs \['counted-pair'\]"
    ):
        conftest.pytest_collection_modifyitems(None, [unlisted])  # type: ignore[arg-type, list-item]
    stale = _Item(end_to_end, valgrind=True, fixturenames=("tools",))  # no longer reads it
    with pytest.raises(pytest.UsageError, match="reads the counted runs none but"):
        conftest.pytest_collection_modifyitems(None, [stale])  # type: ignore[arg-type, list-item]
