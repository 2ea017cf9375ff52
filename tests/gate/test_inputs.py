"""The gate's inputs (:mod:`bench.gate.inputs`): single JSON files, pooled folders."""

from __future__ import annotations

import json
from pathlib import Path

from bench import environment, gate
from tests.gate.helpers import bench, samples, write_results


def test_single_pytest_benchmark_json_files(tmp_path: Path) -> None:
    def pbjson(path: Path, data: list[float], cpu: str) -> Path:
        path.write_text(
            json.dumps(
                {
                    "machine_info": {
                        "python_version": "3.11.7",
                        "cpu": {"brand_raw": cpu, "count": 2},
                    },
                    "benchmarks": [bench("a", data)],
                }
            )
        )
        return path

    b = pbjson(tmp_path / "b.json", samples(1e-6, seed=1), "EPYC")
    c = pbjson(tmp_path / "c.json", samples(2e-6, seed=2), "EPYC")
    assert gate.main([str(b), str(c)]) == gate.EXIT_REGRESSION
    x = pbjson(tmp_path / "x.json", samples(1e-6, seed=2), "Xeon")
    assert gate.main([str(b), str(x)]) == gate.EXIT_NOT_COMPARABLE
    assert environment.from_machine_info({"cpu": {"brand_raw": "Xeon", "count": 2}})["cores"] == 2


def test_pooled_folders_keep_their_runs(tmp_path: Path) -> None:
    sets = [
        gate.load_results(
            write_results(tmp_path / f"r{i}", [bench("a", samples(1e-6, n=10, seed=i))])
        )
        for i in range(3)
    ]
    pooled, diffs = gate.pool(sets)
    rec = pooled.benches["bench/test_x.py::a"]
    assert diffs == [] and len(rec.runs) == 3 and len(rec.samples) == 30
    assert rec.runs[1] == sets[1].benches["bench/test_x.py::a"].samples
