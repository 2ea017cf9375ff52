"""Every manifest records what the machine was doing during each suite (issue 21 item 1).

The arithmetic of :func:`bench.conditions.between` on synthetic snapshots; the CPU frequency
from a fake sysfs / cpuinfo; and one ``samplemind-bench run`` in-process whose suite process
is a small CPU-burning script (a real child process, so ``RUSAGE_CHILDREN`` sees it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from bench import conditions
from bench.harness import run as run_mod
from bench.results import read_manifest
from tests._helpers import run_args

RUN_A = Path(__file__).parent / "data" / "results" / "run_a"


def _snap(t: float, cpu: float, jiffies: tuple[int, ...] | None, load: float = 1.0):  # type: ignore[no-untyped-def]
    return conditions.Snapshot(monotonic=t, load1=load, children_cpu_s=cpu, jiffies=jiffies)


def test_between_splits_own_cpu_others_and_steal() -> None:
    # 10 s, 100 ticks/s, 2 CPUs: 2000 jiffies; 300 idle, 100 steal -> 1600 busy = 1.6 CPUs
    before = _snap(100.0, 5.0, (0, 0, 0, 0, 0, 0, 0, 0, 0, 0), load=1.2)
    after = _snap(110.0, 14.0, (1000, 400, 200, 250, 50, 0, 0, 100, 0, 0), load=2.5)
    got = conditions.between(before, after, clock_ticks=100)
    assert got["wall_s"] == 10.0
    assert got["cpu_s"] == 9.0
    assert got["cpu_per_wall"] == 0.9
    assert got["machine_busy"] == 1.6
    assert got["others_busy"] == pytest.approx(0.7)
    assert got["steal"] == 0.05
    assert (got["load_before"], got["load_after"]) == (1.2, 2.5)
    assert got["version"] == conditions.CONDITIONS_VERSION


def test_between_without_proc_stat_says_none() -> None:
    got = conditions.between(_snap(0.0, 0.0, None), _snap(2.0, 1.0, None), clock_ticks=100)
    assert got["cpu_per_wall"] == 0.5
    assert got["machine_busy"] is None and got["steal"] is None and got["others_busy"] is None


def test_cpu_frequency_sources(tmp_path: Path) -> None:
    sysfs = tmp_path / "cpu"
    for i, khz in enumerate((2_000_000, 3_000_000)):
        d = sysfs / f"cpu{i}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_cur_freq").write_text(f"{khz}\n")
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor\t: 0\ncpu MHz\t\t: 2793.438\nprocessor\t: 1\ncpu MHz\t\t: 2793.562\n"
    )
    assert conditions.cpu_mhz(sysfs, info) == (2500.0, "scaling_cur_freq")
    assert conditions.cpu_mhz(tmp_path / "none", info) == (2793.5, "/proc/cpuinfo")
    mhz, source = conditions.cpu_mhz(tmp_path / "none", tmp_path / "missing")
    assert mhz is None and source.startswith("unreadable:")


def test_old_manifest_has_no_conditions() -> None:
    assert conditions.from_manifest(read_manifest(RUN_A)) == {}
    assert conditions.from_manifest({"runs": [{"suite": "x", "conditions": "junk"}, 3]}) == {}


BURN = """
import json, sys, time
end = time.process_time() + 0.4
while time.process_time() < end:
    pass
out = sys.argv[1]
json.dump({"benchmarks": [], "machine_info": {}, "commit_info": {}}, open(out, "w"))
"""


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_run_records_conditions_per_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "burn.py"
    script.write_text(BURN)

    def command(suite: str, out: Path, _args: argparse.Namespace) -> list[str]:
        return [sys.executable, str(script), str(out / f"{suite}.json")]

    monkeypatch.setattr(run_mod, "_pytest_command", command)
    out = tmp_path / "results"
    assert run_mod.run(run_args(out, ["hashing", "router"])) == 0
    manifest = read_manifest(out)
    recorded = conditions.from_manifest(manifest)
    assert sorted(recorded) == ["hashing", "router"]
    for suite, cond in recorded.items():
        assert cond["cpu_s"] >= 0.35, (suite, cond)  # the child's CPU time, not the parent's
        assert 0 < cond["cpu_per_wall"] <= 1.5, cond
        assert cond["wall_s"] > 0 and cond["load_before"] is not None
        assert cond["cpu_mhz_source"]
        if Path("/proc/stat").is_file():
            assert cond["machine_busy"] is not None and cond["steal"] is not None
    # the entry is still read by the one completeness rule and written as JSON
    assert manifest["complete"] is True
    json.dumps(manifest)
