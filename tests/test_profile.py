"""``samplemind-bench profile``: profile.json figures, the leak rule, and the py-spy-without-ptrace path."""

from __future__ import annotations

import importlib.util
import json
import stat
import sys
from pathlib import Path

import pytest

from bench.profile import PTRACE_HELP, leak_verdict, main, speedscope_top

MiB = 2**20


def _pipeline_ready() -> None:
    if importlib.util.find_spec("samplemind_core.providers.ollama") is None:
        pytest.skip("samplemind_core.providers.ollama is missing: the pipeline workload cannot run")


def test_speedscope_top_counts_own_time_of_leaf_frames() -> None:
    doc = {
        "shared": {
            "frames": [
                {"name": "main", "file": "a.py"},
                {"name": "hot", "file": "b.py"},
                {"name": "warm", "file": "c.py"},
            ]
        },
        "profiles": [
            {"type": "sampled", "samples": [[0, 1], [0, 1], [0, 2], [0]], "weights": [1, 1, 1, 1]},
            {"type": "sampled", "samples": [[0, 1]], "weights": [2]},
        ],
    }
    total, top = speedscope_top(doc)
    assert total == 5  # samples are counted (py-spy's weights are durations)
    assert [(t["function"], t["own_samples"]) for t in top] == [
        ("hot", 3),
        ("main", 1),
        ("warm", 1),
    ]
    assert top[0]["own_fraction"] == pytest.approx(3 / 5)
    # only the timed region: samples passing through "warm"'s caller chain containing frame 2
    total, top = speedscope_top(doc, region="warm")
    assert total == 1 and top[0]["function"] == "warm"
    total, _ = speedscope_top(doc, region="absent")  # no such frame: every sample counts
    assert total == 5


def _cp(n: int, rss: int, peak: int, blocks: int) -> dict[str, int]:
    return {"requests": n, "rss_bytes": rss, "peak_rss_bytes": peak, "allocated_blocks": blocks}


def test_leak_verdict_flat_vs_growing() -> None:
    flat = [_cp(5000, 80 * MiB, 82 * MiB, 500_000), _cp(20000, 81 * MiB, 83 * MiB, 505_000)]
    assert leak_verdict(flat, 5000, 20000)["verdict"] == "no growth"
    growing = [_cp(5000, 80 * MiB, 82 * MiB, 500_000), _cp(20000, 120 * MiB, 121 * MiB, 900_000)]
    v = leak_verdict(growing, 5000, 20000)
    assert v["verdict"] == "grows" and v["peak_growth_bytes"] == 39 * MiB
    objects_only = [_cp(5000, 80 * MiB, 82 * MiB, 500_000), _cp(20000, 80 * MiB, 82 * MiB, 600_000)]
    assert leak_verdict(objects_only, 5000, 20000)["verdict"] == "grows"


@pytest.fixture
def fake_py_spy(tmp_path: Path) -> Path:
    """A py-spy that fails the way it does without ptrace rights."""
    exe = tmp_path / "py-spy"
    exe.write_text(
        f"#!{sys.executable}\nimport sys\n"
        "print('Error: Failed to attach to process: Permission denied (os error 13)', file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


@pytest.mark.profile
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_profile_without_ptrace_says_how_to_grant_it(
    tmp_path: Path, fake_py_spy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pipeline_ready()
    out = tmp_path / "prof"
    argv = ["--out", str(out), "--requests", "200", "--py-spy", str(fake_py_spy)]
    assert main([*argv, "--memray-requests", "0"]) == 0  # memray is the other test's job
    doc = json.loads((out / "profile.json").read_text())
    assert doc["cpu"]["status"] == "unavailable"
    assert "ptrace" in doc["cpu"]["message"] and "Permission denied" in doc["cpu"]["message"]
    assert doc["cpu"]["how_to_fix"] == PTRACE_HELP and "SYS_PTRACE" in PTRACE_HELP
    err = capsys.readouterr().err
    assert "WARNING: py-spy lacks ptrace rights" in err and "SYS_PTRACE" in err
    # the leak check still ran (a plain replay instead of the py-spy one)
    assert doc["leak"]["verdict"] in ("no growth", "grows")
    assert doc["leak"]["checkpoints"][-1]["requests"] == 200


@pytest.mark.profile
@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_tiny_profile_writes_figures_and_artefacts(tmp_path: Path) -> None:
    _pipeline_ready()
    out = tmp_path / "prof"
    assert main(["--out", str(out), "--requests", "120"]) == 0
    doc = json.loads((out / "profile.json").read_text())
    assert doc["format"] == "samplemind-profile" and doc["version"] == 1 and doc["quick"] is True
    mem = doc["memory"]
    assert mem["status"] == "ok" and mem["peak_bytes"] > MiB and mem["total_allocations"] > 1000
    assert mem["top_functions"] and all(f["bytes"] > 0 for f in mem["top_functions"])
    assert (
        (out / mem["artefacts"]["flamegraph"])
        .read_text()
        .lstrip()
        .lower()
        .startswith("<!doctype html")
    )
    leak = doc["leak"]
    assert leak["early"] == 30 and leak["late"] == 120 and leak["verdict"] in ("no growth", "grows")
    assert "quick mode" in leak["note"]
    cpu = doc["cpu"]
    if cpu["status"] != "ok":  # a machine without ptrace: the message must say how to fix it
        assert cpu["how_to_fix"]
        return
    assert cpu["samples"] > 0 and cpu["top_functions"]
    assert sum(f["own_fraction"] for f in cpu["top_functions"]) <= 1.0 + 1e-9
    assert (out / cpu["artefacts"]["flamegraph"]).read_text().lstrip().startswith("<?xml")
    json.loads((out / cpu["artefacts"]["speedscope"]).read_text())
