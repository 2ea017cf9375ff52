"""The benchmark harness end to end: abenchmark inside pytest-benchmark, results folder, CLI.

No timing assertions: only structure (samples stored, options honoured, files written).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import cli
from bench.harness.run import timed_run_env
from bench.results import FORMAT, VERSION, SuiteRun, read_manifest, write_manifest

REPO = Path(__file__).resolve().parent.parent

BENCH_BODY = """
import asyncio

calls = []

async def test_serial(abenchmark):
    abenchmark.describe("demo", "subject", "serial", unit_per_call="call")

    async def fn(x):
        calls.append(x)
        await asyncio.sleep(0)
        return x

    assert await abenchmark(fn, setup=lambda: (7,)) == 7

async def test_batch(abenchmark):
    abenchmark.describe("demo", "subject", "batch")

    async def fn():
        await asyncio.sleep(0)
        return 1

    assert await abenchmark(fn, concurrency=4) == 1

async def test_once_when_disabled(abenchmark):
    async def fn():
        calls.append("once")

    await abenchmark(fn)
    if not abenchmark.enabled:
        assert calls.count("once") == 1
"""


def _run_pytest(tmp_path: Path, *args: str) -> tuple[int, str]:
    (tmp_path / "test_demo.py").write_text(BENCH_BODY)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(tmp_path / "test_demo.py"),
        "-c",
        str(tmp_path / "pytest.ini"),
        "--rootdir",
        str(tmp_path),
        "-p",
        "bench.suites.conftest",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-o",
        "asyncio_mode=auto",
        *args,
    ]
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=120, env=timed_run_env()
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_abenchmark_stores_samples_in_pytest_benchmark_json(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    code, output = _run_pytest(
        tmp_path,
        f"--benchmark-json={out}",
        "--benchmark-max-time=0.001",
        "--benchmark-min-rounds=3",
    )
    assert code == 0, output
    assert "samplemind-bench: mode=mocked quick=False run=timed" in output  # the header
    assert "max_time=0.001 (command line)" in output
    doc = json.loads(out.read_text())
    by_name = {b["name"]: b for b in doc["benchmarks"]}
    serial = by_name["test_serial"]
    assert serial["group"] == "demo/subject"
    assert serial["extra_info"]["suite"] == "demo"
    assert serial["extra_info"]["variant"] == "serial"
    assert serial["stats"]["iterations"] == 1  # setup forces one call per round
    assert len(serial["stats"]["data"]) == serial["stats"]["rounds"] >= 3
    assert {"p50_ms", "p95_ms", "p99_ms", "req_per_s"} <= set(serial["extra_info"])
    batch = by_name["test_batch"]
    assert batch["stats"]["iterations"] == 4
    assert batch["extra_info"]["concurrency"] == 4
    assert batch["stats"]["rounds"] >= 3


@pytest.mark.slow  # about 1 CPU s or more: outside the fast tier (decision 0421)
def test_disabled_runs_the_body_once_and_quick_shortens_timings(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    code, output = _run_pytest(
        tmp_path, "--quick", "--benchmark-disable", f"--benchmark-json={out}"
    )
    assert code == 0, output  # test_once_when_disabled checks the single call
    assert "run=smoke" in output and "grid=small" in output
    assert "max_time=0.1 (--quick)" in output
    text = out.read_text() if out.exists() else ""
    assert not text or json.loads(text)["benchmarks"] == []  # nothing timed, nothing stored


def test_manifest_round_trip_and_version_refusal(tmp_path: Path) -> None:
    runs = [SuiteRun("hashing", "hashing.json", 0, 1.5), SuiteRun("cache", None, 1, 2.0)]
    written = write_manifest(
        tmp_path, mode="mocked", quick=True, suites=["hashing", "cache"], runs=runs, repo=REPO
    )
    read = read_manifest(tmp_path)
    assert read == written
    assert read["format"] == FORMAT and read["version"] == VERSION
    assert read["files"] == ["hashing.json"]
    env: dict[str, Any] = read["environment"]
    assert {"cpu", "cores", "python", "platform", "packages"} <= set(env)
    assert set(read["commit"]) == {"id", "dirty"}
    read["version"] = VERSION + 1
    (tmp_path / "manifest.json").write_text(json.dumps(read))
    with pytest.raises(ValueError, match="not supported"):
        read_manifest(tmp_path)
    with pytest.raises(ValueError, match="no manifest"):
        read_manifest(tmp_path / "missing")


def test_cli_help_and_missing_delegate(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--help"])
    assert exc.value.code == 0
    assert "--suite" in capsys.readouterr().out
    monkeypatch.setitem(cli._DELEGATES, "gate", ("bench.no_such_module", "x"))
    assert cli.main(["gate", "--anything"]) == 2
    assert "not available yet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["run", "--suite", "nope", "--out", "x"])
