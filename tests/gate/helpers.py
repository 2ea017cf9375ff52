"""Synthetic results for the gate's tests: seeded samples, results folders, a recording runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench import ab_runner, gate

ENV: dict[str, Any] = {
    "cpu": "AMD EPYC 7B13",
    "cores": 2,
    "python": "3.11.7",
    "platform": "Linux",
    "packages": {"httpx": "0.28.1", "orjson": "3.10.0", "samplemind-core": "0.1.0"},
}


def samples(median: float, n: int = 200, *, noise: float = 0.03, seed: int = 0) -> list[float]:
    """Seeded log-normal samples around ``median`` (seconds per call)."""
    rng = np.random.default_rng(seed)
    return [float(x) for x in median * np.exp(noise * rng.standard_normal(n))]


def bench(
    name: str,
    data: Sequence[float],
    *,
    group: str = "fingerprint/canonical",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    arr = np.asarray(data, dtype=float)
    return {
        "name": name,
        "fullname": f"bench/test_x.py::{name}",
        "group": group,
        "params": {},
        "param": None,
        "stats": {
            "min": float(arr.min()),
            "max": float(arr.max()),
            "mean": float(arr.mean()),
            "median": float(np.median(arr)),
            "rounds": len(data),
            "iterations": 1,
            "data": list(data),
        },
        "extra_info": dict(extra or {}),
    }


def write_results(
    root: Path,
    benches: Sequence[dict[str, Any]],
    *,
    env: Mapping[str, Any] = ENV,
    version: Any = 1,
    suite: str = "fingerprint",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{suite}.json").write_text(
        json.dumps(
            {"machine_info": {}, "commit_info": {}, "version": "5.2.3", "benchmarks": list(benches)}
        )
    )
    manifest = {
        "format": "samplemind-bench-results",
        "version": version,
        "created": "2025-01-01T00:00:00+00:00",
        "mode": "mocked",
        "quick": True,
        "suites": [suite],
        "files": [f"{suite}.json"],
        "environment": dict(env),
        "commit": {"id": None, "dirty": None},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def zero_floor(root: Path) -> Path:
    """A between-run floor file of 0 for every benchmark: separate synthetic runs are then
    judged on their within-run statistics alone (their samples have no between-run noise)."""
    path = root / "zero_floor.json"
    path.write_text(
        json.dumps(
            {
                "format": "samplemind-between-run-spreads",
                "version": 1,
                "pairs": 0,
                "limits": {},
                "suites": {},
                "default": 0.0,
                "floors": {},
            }
        )
    )
    return path


def pair(
    tmp_path: Path,
    base: Sequence[dict[str, Any]],
    cand: Sequence[dict[str, Any]],
    *,
    cand_env: Mapping[str, Any] = ENV,
) -> tuple[str, str]:
    b = write_results(tmp_path / "base", base)
    c = write_results(tmp_path / "cand", cand, env=cand_env)
    return str(b), str(c)


def result_sets(
    base: Sequence[dict[str, Any]], cand: Sequence[dict[str, Any]], tmp_path: Path
) -> tuple[gate.ResultSet, gate.ResultSet]:
    b, c = pair(tmp_path, base, cand)
    return gate.load_results(Path(b)), gate.load_results(Path(c))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


class RecordingRunner:
    """Runs a real child interpreter with the side's environment to see which package it imports."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.calls: list[tuple[ab_runner.Slot, float]] = []

    def __call__(self, slot: ab_runner.Slot, out: Path, side: ab_runner.SideEnv) -> None:
        proc = subprocess.run(
            [sys.executable, "-c", "import samplemind_core as s; print(s.SPEED, s.__file__)"],
            env=dict(side.env),
            cwd=side.cwd,
            capture_output=True,
            text=True,
            check=True,
        )
        speed_s, where = proc.stdout.split()
        speed = float(speed_s)
        assert (slot.side == "baseline") == ("samplemind-gate-" in where), where
        self.calls.append((slot, speed))
        seed = slot.round * 2 + (slot.side == "baseline")
        # a real run's process works in the side's checkout: a relative ``out`` would land there
        write_results(
            side.cwd / out, [bench("op", samples(1e-6 * speed, n=50, seed=seed))], suite=slot.suite
        )


needs_affinity = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux-only"
)


def phased_rounds(
    rounds: int, factor: float, *, seed: int, phase_sd: float = 0.3, n: int = 40
) -> tuple[list[list[float]], list[list[float]]]:
    """Interleaved rounds whose machine speed drifts a lot between rounds (lognormal ``phase_sd``)
    but is shared by the A and B runs of a round; B is ``factor`` times slower."""
    rng = np.random.default_rng(seed)
    base: list[list[float]] = []
    cand: list[list[float]] = []
    for _ in range(rounds):
        phase = 1e-6 * float(np.exp(phase_sd * rng.standard_normal()))
        base.append([float(x) for x in phase * np.exp(0.03 * rng.standard_normal(n))])
        cand.append([float(x) for x in factor * phase * np.exp(0.03 * rng.standard_normal(n))])
    return base, cand
