"""Measure the gate's own quality on this machine: A/A false alarms and power for injected slowdowns.

Real timings, not simulations. The operation under test is ``samplemind_core.fingerprint`` of the
standard 1 KB chat request (the ``fingerprint/1KB`` benchmark). Two worker *processes* time it in
blocks, alternately (A B A B ... in a seeded random order), like ``samplemind-bench gate
--baseline-ref`` alternates runs; every round gets a fresh pair of processes, so process-level
differences (address layout, hash seeds, core placement) are part of the noise, as in the gate.

* **A/A**: both workers run the same code. Any "regressed" verdict is a false alarm.
* **A/B at X %**: worker B adds, after every sample's ``k`` calls, a calibrated busy loop costing
  X % of those calls' own median time (the injection lives here, never in ``samplemind_core``;
  worker A calls the same loop with 0 iterations, so the only difference is the added work). A
  busy loop of interpreter work, not a wall-clock wait, so it slows down under load like the
  operation does. The observed ratio per scenario is reported to check the calibration.

Each set is judged by the gate's own code path (:func:`bench.gate.evaluate` with the default
rules of ``bench/gate.toml``: group ``fingerprint/*``, 5 % allowed) and, on the same samples, by
pytest-benchmark's ``--benchmark-compare-fail=min:5%`` rule (fail when the candidate's ``min``
exceeds the saved run's ``min`` by more than 5 %: one aggregate against one saved run, no
statistics), both as "one saved run vs one new run" (one block each) and pooled.

    python -m bench.gate_study --out results/gate_study.json            # ~5-10 min on 2 busy cores
    python -m bench.gate_study --sets 40 --out /tmp/quick_study.json    # smoke run

Figures go to the JSON file (and a summary to stdout). Rates carry Wilson 95 % intervals: zero
false alarms in 200 sets bounds the rate at about 1.9 %, not 0.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["StudyConfig", "main", "run_study", "wilson"]

SLOWDOWNS: tuple[float, ...] = (0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.10)
GROUP = "fingerprint/1KB"


# --------------------------------------------------------------------------- worker process


def _worker() -> int:
    """Time blocks of calls on request; one JSON command per stdin line, one JSON reply per line."""
    from bench._requests import standard_request
    from samplemind_core.fingerprint import fingerprint

    req = standard_request("1KB")
    clock = time.perf_counter_ns

    def spin(units: int) -> None:
        x = 0
        for i in range(units):
            x += i

    for line in sys.stdin:
        cmd = json.loads(line)
        op, n, k, units = cmd["op"], int(cmd["n"]), int(cmd["k"]), int(cmd.get("units", 0))
        out: list[float] = []
        if op == "spin":  # calibration of the busy loop alone
            for _ in range(n):
                t0 = clock()
                spin(units)
                out.append((clock() - t0) / 1e9)
        else:
            for _ in range(n):
                t0 = clock()
                for _ in range(k):
                    fingerprint(req)
                spin(units)  # both sides call it; A with 0 units
                out.append((clock() - t0) / k / 1e9)
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return 0


class Worker:
    """A child interpreter running :func:`_worker`."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.gate_study", "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def block(self, n: int, k: int, units: int = 0, op: str = "fp") -> list[float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, "n": n, "k": k, "units": units}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("study worker died")
        return [float(x) for x in json.loads(line)]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# --------------------------------------------------------------------------- study


@dataclass(frozen=True)
class StudyConfig:
    """Shape of one A/B sample set and of the whole study."""

    sets: int = 200
    rounds: int = 6
    block: int = 20
    sample_s: float = 50e-6
    slowdowns: tuple[float, ...] = SLOWDOWNS
    seed: int = 1


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k/n``.

    >>> [round(x, 4) for x in wilson(0, 200)]
    [0.0, 0.0188]
    """
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def _calibrate(cfg: StudyConfig) -> dict[str, float]:
    """Median op time, calls per sample, and the cost of one busy-loop unit (same load, one process)."""
    w = Worker()
    try:
        w.block(50, 20)  # warm up
        op = statistics.median(w.block(200, 20))
        k = max(1, round(cfg.sample_s / op))
        units = 20000
        unit = statistics.median(w.block(100, 1, units, op="spin")) / units
    finally:
        w.close()
    return {"op_median_s": op, "calls_per_sample": k, "unit_s": unit}


def _one_set(
    rng: random.Random, cfg: StudyConfig, k: int, units: dict[float, int]
) -> dict[float, tuple[list[list[float]], list[list[float]]]]:
    """``rounds`` rounds; each round a fresh A and a fresh B process (as ``--baseline-ref`` runs
    each side's suite in a new process), one A/B block pair per slowdown in random order."""
    out: dict[float, tuple[list[list[float]], list[list[float]]]] = {
        x: ([], []) for x in cfg.slowdowns
    }
    for _ in range(cfg.rounds):
        a, b = Worker(), Worker()
        try:
            a.block(5, k)
            b.block(5, k)
            order = list(cfg.slowdowns)
            rng.shuffle(order)
            for x in order:
                sides = ["a", "b"]
                rng.shuffle(sides)
                for side in sides:
                    if side == "a":
                        out[x][0].append(a.block(cfg.block, k))
                    else:
                        out[x][1].append(b.block(cfg.block, k, units[x]))
        finally:
            a.close()
            b.close()
    return out


def _verdict(
    base: list[list[float]], cand: list[list[float]], config: Any, seed: int
) -> tuple[str, float]:
    """The gate's verdict on two sides given as runs (blocks), through :func:`bench.gate.evaluate`."""
    from bench import gate

    def rs(runs: list[list[float]]) -> gate.ResultSet:
        flat = [x for r in runs for x in r]
        rec = gate.BenchRecord("study::fingerprint[1KB]", "fingerprint[1KB]", GROUP, flat, {}, runs)
        return gate.ResultSet(["study"], {}, {rec.key: rec})

    (v,) = gate.evaluate(rs(base), rs(cand), config, seed=seed)
    return v.status, v.ratio or float("nan")


def run_study(cfg: StudyConfig, log: Any = print) -> dict[str, Any]:
    """Collect the sets and judge them; returns the figures as a JSON-ready dict."""
    from bench import gate

    config = gate.load_config()
    zero = gate.GateConfig(
        **{
            **{f: getattr(config, f) for f in config.__dataclass_fields__},
            "rules": (gate.Rule(allowed=0.0),),
        }
    )
    allowed = config.rules_for(gate.BenchRecord("k", "fingerprint[1KB]", GROUP))["time"].allowed
    cal = _calibrate(cfg)
    k = int(cal["calls_per_sample"])
    units = {x: round(x * k * cal["op_median_s"] / cal["unit_s"]) for x in cfg.slowdowns}
    log(
        f"calibration: op median {cal['op_median_s'] * 1e6:.2f} µs, {k} calls/sample, "
        f"busy-loop units {units}"
    )
    rng = random.Random(cfg.seed)
    tallies: dict[float, dict[str, Any]] = {
        x: {"gate": 0, "test_only": 0, "pb_single": 0, "pb_pooled": 0, "ratios": []}
        for x in cfg.slowdowns
    }
    started = time.monotonic()
    for i in range(cfg.sets):
        data = _one_set(rng, cfg, k, units)
        for x, (blocks_a, blocks_b) in data.items():
            pa = [s for blk in blocks_a for s in blk]
            pb = [s for blk in blocks_b for s in blk]
            status, ratio = _verdict(blocks_a, blocks_b, config, seed=cfg.seed + i)
            status0, _ = _verdict(blocks_a, blocks_b, zero, seed=cfg.seed + i)
            t = tallies[x]
            t["gate"] += status == "regressed"
            t["test_only"] += status0 == "regressed"
            # pytest-benchmark: one saved run (A's first block) vs one new run (B's last block)
            t["pb_single"] += min(blocks_b[-1]) > min(blocks_a[0]) * 1.05
            t["pb_pooled"] += min(pb) > min(pa) * 1.05
            t["ratios"].append(ratio)
        if (i + 1) % 10 == 0 or i + 1 == cfg.sets:
            el = time.monotonic() - started
            first = tallies[cfg.slowdowns[0]]
            log(
                f"set {i + 1}/{cfg.sets} ({el:.0f} s): {cfg.slowdowns[0]:.0%} gate alarms "
                f"{first['gate']}, pytest-benchmark min:5% alarms {first['pb_single']}"
            )
    scenarios = []
    for x in cfg.slowdowns:
        t = tallies[x]
        n = cfg.sets
        scenarios.append(
            {
                "injected_slowdown": x,
                "busy_loop_units": units[x],
                "sets": n,
                "gate_regressed": t["gate"],
                "gate_rate": t["gate"] / n,
                "gate_rate_wilson95": wilson(t["gate"], n),
                "test_only_regressed": t["test_only"],
                "test_only_rate": t["test_only"] / n,
                "pytest_benchmark_min5_single_run": t["pb_single"],
                "pytest_benchmark_min5_single_run_rate": t["pb_single"] / n,
                "pytest_benchmark_min5_pooled": t["pb_pooled"],
                "pytest_benchmark_min5_pooled_rate": t["pb_pooled"] / n,
                "median_observed_ratio": statistics.median(t["ratios"]),
            }
        )
    by_x = {s["injected_slowdown"]: s for s in scenarios}
    detected = [x for x in cfg.slowdowns if x > 0 and by_x[x]["gate_rate"] >= 0.95]
    aa: dict[str, Any] | None = by_x.get(0.0)
    return {
        "format": "samplemind-gate-study",
        "version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "operation": "samplemind_core.fingerprint(standard_request('1KB'))",
        "design": {
            "sets": cfg.sets,
            "rounds_per_set": cfg.rounds,
            "samples_per_block": cfg.block,
            "samples_per_side": cfg.rounds * cfg.block,
            "calls_per_sample": k,
            "fresh_process_pair_per_round": True,
            "seed": cfg.seed,
            "gate_rule": f"group {GROUP}: time, allowed {allowed:.0%}, alpha {config.alpha}, "
            f"Mann-Whitney + bootstrap CI {config.confidence:.0%}",
            "pytest_benchmark_rule": "fail if candidate min > baseline min * 1.05 "
            "(--benchmark-compare-fail=min:5%)",
        },
        "calibration": cal,
        "elapsed_s": time.monotonic() - started,
        "scenarios": scenarios,
        "summary": {
            "aa_false_alarm_rate": aa["gate_rate"] if aa else None,
            "aa_false_alarm_wilson95": aa["gate_rate_wilson95"] if aa else None,
            "power_at_10pct": by_x[0.10]["gate_rate"] if 0.10 in by_x else None,
            "smallest_slowdown_detected_at_95pct_power": min(detected) if detected else None,
            "pytest_benchmark_min5_aa_false_alarm_rate": aa["pytest_benchmark_min5_single_run_rate"]
            if aa
            else None,
            "pytest_benchmark_min5_aa_false_alarm_rate_pooled": aa[
                "pytest_benchmark_min5_pooled_rate"
            ]
            if aa
            else None,
        },
    }


def _table(result: dict[str, Any]) -> str:
    lines = [
        "slowdown  gate regressed  (test alone, 0% allowed)  pytest-benchmark min:5% (1 run / pooled)  observed ratio",
    ]
    for s in result["scenarios"]:
        lo, hi = s["gate_rate_wilson95"]
        lines.append(
            f"{s['injected_slowdown']:>7.0%}  {s['gate_rate']:>6.1%} [{lo:.1%}, {hi:.1%}]  "
            f"{s['test_only_rate']:>8.1%}                  "
            f"{s['pytest_benchmark_min5_single_run_rate']:>6.1%} / {s['pytest_benchmark_min5_pooled_rate']:>6.1%}"
            f"                     {s['median_observed_ratio']:.3f}"
        )
    sm = result["summary"]
    lines.append(
        f"A/A false alarms: {sm['aa_false_alarm_rate']:.2%}; power at 10 %: {sm['power_at_10pct']:.1%}; "
        f"smallest slowdown at >=95 % power: {sm['smallest_slowdown_detected_at_95pct_power']}; "
        f"pytest-benchmark min:5% A/A false alarms: {sm['pytest_benchmark_min5_aa_false_alarm_rate']:.1%}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.gate_study [--sets N] [--out FILE]``."""
    p = argparse.ArgumentParser(
        prog="python -m bench.gate_study", description=__doc__.split("\n")[0]
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--sets", type=int, default=StudyConfig.sets, help="A/B sample sets (default 200)"
    )
    p.add_argument("--rounds", type=int, default=StudyConfig.rounds)
    p.add_argument("--block", type=int, default=StudyConfig.block, help="samples per block")
    p.add_argument("--seed", type=int, default=StudyConfig.seed)
    p.add_argument(
        "--slowdowns",
        default=",".join(f"{x:g}" for x in SLOWDOWNS),
        help="comma-separated injected slowdowns (0 = A/A)",
    )
    p.add_argument("--out", type=Path, default=Path("results/gate_study.json"))
    args = p.parse_args(argv)
    if args.worker:
        return _worker()
    cfg = StudyConfig(
        sets=args.sets,
        rounds=args.rounds,
        block=args.block,
        seed=args.seed,
        slowdowns=tuple(float(x) for x in args.slowdowns.split(",")),
    )
    result = run_study(cfg)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(_table(result))
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
