"""Measure the gate's own quality on this machine: A/A false alarms and power for injected slowdowns.

Real timings, not simulations. The operation under test is ``samplemind_core.fingerprint`` of the
standard 1 KB chat request (the ``fingerprint/1KB`` benchmark). Two worker *processes* time it in
blocks, alternately (A B A B ... in a seeded random order, unpinned); every round gets a fresh
pair of processes, so process-level differences (address layout, core placement, what the other
core does) are part of the noise. This is the *statistic's* quality under the gate's old
``--schedule alternate`` order; ``samplemind-bench gate --baseline-ref`` now runs each round's
pair at once on one shared CPU (:mod:`bench.ab_runner`), whose real per-round noise is lower, and
whose A/A and injected-slowdown figures are measured end to end with the gate itself. Each sample is timed with both clocks (wall ``perf_counter_ns`` and CPU
``process_time_ns``) around the same calls, so the two timers are compared on the same data.

* **A/A**: both workers run the same code. Any "regressed" verdict is a false alarm.
* **A/B at X %**: worker B adds, after every sample's ``k`` calls, a busy loop whose cost was
  *measured in-process* to add X % to those calls (secant steps on the CPU-time ratio of blocks
  with and without the loop; worker A calls the same loop with 0 iterations). The injection
  lives here, never in ``samplemind_core``. The ratio the study then observes is reported per
  scenario and clock, to check the calibration.

Each comparison (a "set" of ``rounds`` rounds) is judged by the gate's own code path
(:func:`bench.gate.evaluate`, ``paired=True`` as under ``--baseline-ref``, the default rules of
``bench/gate/default.toml``: group ``fingerprint/*``, 5 % allowed, alpha 0.01), on the rule's clock and,
as alternatives on the same blocks, the other clock and the previous unpaired statistic; also on
the first 8/10/15/20 rounds only (power vs rounds). pytest-benchmark's
``--benchmark-compare-fail=min:5%`` (fail when the candidate's ``min`` exceeds the saved run's by
more than 5 %: one aggregate against one saved run, no statistics) is applied to the same
samples, as "one saved run vs one new run" (one block each) and pooled.

    python -m studies.gate_study --sets 100 --max-minutes 26 --out results/gate_study.json  # ~25 min
    python -m studies.gate_study --sets 4 --rounds 10 --out /tmp/quick_study.json             # smoke

Figures go to the JSON file (and a summary to stdout). Rates carry Wilson 95 % intervals: zero
false alarms in 100 sets bounds the rate at about 3.7 %, not 0.
"""

from __future__ import annotations

import argparse
import dataclasses
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

from bench.gate.rules import DEFAULT_ROUNDS

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["StudyConfig", "main", "run_study", "wilson", "write_figures"]

SLOWDOWNS: tuple[float, ...] = (0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.10)
GROUP = "fingerprint/1KB"
TIMERS: tuple[str, ...] = ("cpu", "wall")


# --------------------------------------------------------------------------- worker process


def _worker() -> int:
    """Time blocks of calls on request; one JSON command per stdin line, one JSON reply per line.

    Every sample is timed with both clocks around the same calls: wall time
    (``perf_counter_ns``, pytest-benchmark's default) and the process's CPU time
    (``process_time_ns``, what ``--benchmark-timer=time.process_time`` measures), so the two
    timers are compared on the very same executions.
    """
    from bench.suites.sample_requests import standard_request
    from samplemind_core.fingerprint import fingerprint

    req = standard_request("1KB")
    wall, cpu = time.perf_counter_ns, time.process_time_ns

    def spin(units: int) -> None:
        x = 0
        for i in range(units):
            x += i

    for line in sys.stdin:
        cmd = json.loads(line)
        n, k, units = int(cmd["n"]), int(cmd["k"]), int(cmd.get("units", 0))
        out_w: list[float] = []
        out_c: list[float] = []
        for _ in range(n):
            w0, c0 = wall(), cpu()
            for _ in range(k):
                fingerprint(req)
            spin(units)  # both sides call it; A with 0 units
            c1, w1 = cpu(), wall()
            out_w.append((w1 - w0) / k / 1e9)
            out_c.append((c1 - c0) / k / 1e9)
        sys.stdout.write(json.dumps({"wall": out_w, "cpu": out_c}) + "\n")
        sys.stdout.flush()
    return 0


class Worker:
    """A child interpreter running :func:`_worker`."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "studies.gate_study", "--worker"],
            cwd=ROOT,  # studies/ is not installed: it is found from the checkout's root
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def block(self, n: int, k: int, units: int = 0) -> dict[str, list[float]]:
        """``n`` samples of ``k`` calls (plus ``units`` of busy loop): ``{"wall": [...], "cpu": [...]}``."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"n": n, "k": k, "units": units}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("study worker died")
        doc = json.loads(line)
        return {t: [float(x) for x in doc[t]] for t in TIMERS}

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
    """Shape of one A/B sample set and of the whole study (defaults = the gate's defaults)."""

    sets: int = 100
    rounds: int = DEFAULT_ROUNDS
    block: int = 60  # 60 x ~50 µs = ~3 ms per block (a --quick run: ~100 ms per benchmark)
    sample_s: float = 50e-6
    slowdowns: tuple[float, ...] = SLOWDOWNS
    seed: int = 1
    max_minutes: float | None = None
    """Stop collecting after this long (figures then cover the sets completed: ``design.sets``)."""
    prefix_rounds: tuple[int, ...] = (8, 10, 15, 20)
    """Also judge each set on its first R rounds only (power and false alarms vs rounds)."""


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k/n`` (``scipy.stats.binomtest``); (0, 1) for n = 0.

    >>> [round(x, 4) for x in wilson(0, 200)]
    [0.0, 0.0188]
    """
    if n == 0:
        return (0.0, 1.0)
    from scipy import stats as sps  # type: ignore[import-untyped]

    ci = sps.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def _calibrate(cfg: StudyConfig, target: float = 0.10, steps: int = 6) -> dict[str, Any]:
    """Calls per sample, and busy-loop units that make the *measured* slowdown ``target``.

    In one process, blocks with ``u`` units and with 0 units alternate; the ratio of their CPU
    time medians is the slowdown ``u`` really causes on top of the operation (interpreter state
    and caches as in the study's own blocks). ``u`` is corrected by secant steps until the
    measured ratio hits ``target``; the final units come from the median over the steps of
    the measured slope (slowdown per unit), and other slowdowns scale linearly (the loop's cost is
    linear in its units). The ratio the study then observes is reported per scenario as a check.
    """
    w = Worker()
    try:
        w.block(50, 20)  # warm up
        op = statistics.median(w.block(200, 20)["cpu"])
        k = max(1, round(cfg.sample_s / op))
        base = statistics.median(w.block(5, 1, 200_000)["cpu"])  # ~ units * unit cost
        units = max(1, round(target * k * op / (base / 200_000)))
        history: list[tuple[int, float]] = []
        for _ in range(steps):
            zero: list[float] = []
            slow: list[float] = []
            for _ in range(15):
                zero += w.block(10, k)["cpu"]
                slow += w.block(10, k, units)["cpu"]
            ratio = statistics.median(slow) / statistics.median(zero)
            history.append((units, ratio))
            if ratio <= 1.0:
                units *= 2
                continue
            units = max(1, round(units * target / (ratio - 1.0)))
        slopes = [(r - 1.0) / u for u, r in history if r > 1.0]
        if slopes:  # median slope: one step hit by a noise spike cannot skew it
            units = max(1, round(target / statistics.median(slopes)))
    finally:
        w.close()
    return {
        "op_median_s": op,
        "calls_per_sample": k,
        "units_for_target": units,
        "target": target,
        "steps": [{"units": u, "measured_ratio": r} for u, r in history],
    }


Blocks = dict[str, list[list[float]]]


def _one_set(
    rng: random.Random, cfg: StudyConfig, k: int, units: dict[float, int]
) -> dict[float, tuple[Blocks, Blocks]]:
    """``rounds`` rounds; each round a fresh A and a fresh B process (as ``--baseline-ref`` runs
    each side's suite in a new process), one A/B block pair per slowdown in random order."""
    out: dict[float, tuple[Blocks, Blocks]] = {
        x: ({t: [] for t in TIMERS}, {t: [] for t in TIMERS}) for x in cfg.slowdowns
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
                    blk = a.block(cfg.block, k) if side == "a" else b.block(cfg.block, k, units[x])
                    dest = out[x][0] if side == "a" else out[x][1]
                    for t in TIMERS:
                        dest[t].append(blk[t])
        finally:
            a.close()
            b.close()
    return out


def _verdict(
    base: list[list[float]], cand: list[list[float]], config: Any, seed: int, *, paired: bool
) -> tuple[str, float]:
    """The gate's verdict on two sides given as runs (rounds), through :func:`bench.gate.evaluate`."""
    from bench import gate

    def rs(runs: list[list[float]]) -> gate.ResultSet:
        flat = [x for r in runs for x in r]
        rec = gate.BenchRecord("study::fingerprint[1KB]", "fingerprint[1KB]", GROUP, flat, {}, runs)
        return gate.ResultSet(["study"], {}, {rec.key: rec})

    (v,) = gate.evaluate(rs(base), rs(cand), config, seed=seed, paired=paired)
    return v.status, v.ratio or float("nan")


def _with(config: Any, **changes: Any) -> Any:
    return dataclasses.replace(config, **changes)


# The verdicts tallied per scenario: (label, timer, paired, rules) -- "rule" = the default
# rules, "zero" = the same with 0 % allowed (significance alone). "gate" uses the timer of the
# default rule for fingerprint/*; the other rows are alternatives judged on the same blocks.
def _methods(timer: str) -> tuple[tuple[str, str, bool, str], ...]:
    other = "wall" if timer == "cpu" else "cpu"
    return (
        ("gate", timer, True, "rule"),
        (f"gate_{other}_paired", other, True, "rule"),
        ("previous_gate_wall_unpaired", "wall", False, "rule"),
        ("test_only_paired", timer, True, "zero"),
    )


def run_study(cfg: StudyConfig, log: Any = print) -> dict[str, Any]:
    """Collect the sets and judge them; returns the figures as a JSON-ready dict."""
    from bench import gate

    config = gate.load_config()
    zero = _with(config, rules=(gate.Rule(allowed=0.0),))
    rule = config.rules_for(gate.BenchRecord("k", "fingerprint[1KB]", GROUP))["time"]
    methods = _methods(rule.timer)
    prefixes = [r for r in cfg.prefix_rounds if r < cfg.rounds]
    cal = _calibrate(cfg)
    k = int(cal["calls_per_sample"])
    u10 = int(cal["units_for_target"])
    units = {x: round(u10 * x / cal["target"]) for x in cfg.slowdowns}
    log(
        f"calibration: op median {cal['op_median_s'] * 1e6:.2f} µs (CPU), {k} calls/sample, "
        f"busy-loop units {units}; secant steps "
        + ", ".join(f"{st['units']}->{st['measured_ratio']:.3f}" for st in cal["steps"])
    )
    rng = random.Random(cfg.seed)
    tallies: dict[float, dict[str, Any]] = {
        x: {
            **{m[0]: 0 for m in methods},
            **{f"gate_first_{r}_rounds": 0 for r in prefixes},
            **{f"pb_single_{t}": 0 for t in TIMERS},
            **{f"pb_pooled_{t}": 0 for t in TIMERS},
            **{f"ratios_{t}": [] for t in TIMERS},
            **{f"round_sd_{t}": [] for t in TIMERS},
        }
        for x in cfg.slowdowns
    }
    started = time.monotonic()
    done = 0
    for i in range(cfg.sets):
        if cfg.max_minutes is not None and time.monotonic() - started > cfg.max_minutes * 60:
            log(f"time limit of {cfg.max_minutes} min reached after {i} sets")
            break
        data = _one_set(rng, cfg, k, units)
        done = i + 1
        for x, (blocks_a, blocks_b) in data.items():
            t = tallies[x]
            for label, timer, paired, which in methods:
                status, _ = _verdict(
                    blocks_a[timer],
                    blocks_b[timer],
                    config if which == "rule" else zero,
                    seed=cfg.seed + i,
                    paired=paired,
                )
                t[label] += status == "regressed"
            for r in prefixes:
                ba, bb = blocks_a[rule.timer][:r], blocks_b[rule.timer][:r]
                status, _ = _verdict(ba, bb, config, seed=cfg.seed + i, paired=True)
                t[f"gate_first_{r}_rounds"] += status == "regressed"
            for timer in TIMERS:
                ba, bb = blocks_a[timer], blocks_b[timer]
                d = [
                    math.log(statistics.median(y) / statistics.median(z))
                    for z, y in zip(ba, bb, strict=True)
                ]
                t[f"ratios_{timer}"].append(math.exp(statistics.median(d)))
                t[f"round_sd_{timer}"].append(statistics.stdev(d) if len(d) > 1 else 0.0)
                # pytest-benchmark min:5%: one saved run (A's first block) vs one new run
                # (B's last block), and all of A vs all of B
                pa = [s for blk in ba for s in blk]
                pb = [s for blk in bb for s in blk]
                t[f"pb_single_{timer}"] += min(bb[-1]) > min(ba[0]) * 1.05
                t[f"pb_pooled_{timer}"] += min(pb) > min(pa) * 1.05
        if (i + 1) % 10 == 0 or i + 1 == cfg.sets:
            el = time.monotonic() - started
            first = tallies[cfg.slowdowns[0]]
            top = tallies[max(cfg.slowdowns)]
            log(
                f"set {i + 1}/{cfg.sets} ({el:.0f} s): {cfg.slowdowns[0]:.0%} gate alarms "
                f"{first['gate']}, pytest-benchmark min:5% alarms {first['pb_single_wall']}; "
                f"{max(cfg.slowdowns):.0%} detected {top['gate']}"
            )
    n = done
    scenarios = []
    for x in cfg.slowdowns:
        t = tallies[x]
        sc: dict[str, Any] = {"injected_slowdown": x, "busy_loop_units": units[x], "sets": n}
        for label in [m[0] for m in methods] + [f"gate_first_{r}_rounds" for r in prefixes]:
            sc[f"{label}_regressed"] = t[label]
            sc[f"{label}_rate"] = t[label] / n
            sc[f"{label}_rate_wilson95"] = wilson(t[label], n)
        for timer in TIMERS:
            for kind in ("single_run", "pooled"):
                hits = t[f"pb_{kind.split('_')[0]}_{timer}"]
                sc[f"pytest_benchmark_min5_{kind}_{timer}"] = hits
                sc[f"pytest_benchmark_min5_{kind}_{timer}_rate"] = hits / n
                sc[f"pytest_benchmark_min5_{kind}_{timer}_wilson95"] = wilson(hits, n)
            sc[f"median_observed_ratio_{timer}"] = statistics.median(t[f"ratios_{timer}"])
            sc[f"median_per_round_log_ratio_sd_{timer}"] = statistics.median(t[f"round_sd_{timer}"])
        scenarios.append(sc)
    by_x = {s["injected_slowdown"]: s for s in scenarios}
    detected = [x for x in cfg.slowdowns if x > 0 and by_x[x]["gate_rate"] >= 0.95]
    by_rounds = {
        str(r): {f"{x:g}": by_x[x][f"gate_first_{r}_rounds_rate"] for x in cfg.slowdowns}
        for r in prefixes
    }
    by_rounds[str(cfg.rounds)] = {f"{x:g}": by_x[x]["gate_rate"] for x in cfg.slowdowns}
    aa: dict[str, Any] | None = by_x.get(0.0)
    return {
        "format": "samplemind-gate-study",
        "version": 2,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "operation": "samplemind_core.fingerprint(standard_request('1KB'))",
        "design": {
            "sets": done,
            "sets_requested": cfg.sets,
            "rounds_per_set": cfg.rounds,
            "samples_per_block": cfg.block,
            "samples_per_side": cfg.rounds * cfg.block,
            "calls_per_sample": k,
            "fresh_process_pair_per_round": True,
            "seed": cfg.seed,
            "gate_rule": f"group {rule.group}: time, timer {rule.timer}, allowed "
            f"{rule.allowed:.0%}; alpha {config.alpha}; paired Yuen test (trim {config.trim}) "
            f"on per-round log ratios of block medians, {config.confidence:.0%} CI",
            "methods": {
                "gate": f"as configured: paired rounds, {rule.timer} clock",
                "gate_<other>_paired": "same statistic on the other clock's samples of the "
                "same blocks (cpu = process_time_ns, wall = perf_counter_ns)",
                "previous_gate_wall_unpaired": "the previous statistic (Mann-Whitney + "
                "two-level bootstrap, unpaired) on wall-clock samples",
                "test_only_paired": "paired test alone with 0 % allowed",
                "gate_first_<R>_rounds": "the gate on the first R rounds of each set",
            },
            "pytest_benchmark_rule": "fail if candidate min > baseline min * 1.05 "
            "(--benchmark-compare-fail=min:5%); single_run = A's first block vs B's last",
        },
        "calibration": cal,
        "elapsed_s": time.monotonic() - started,
        "scenarios": scenarios,
        "gate_rate_by_rounds": by_rounds,
        "summary": {
            "aa_false_alarm_rate": aa["gate_rate"] if aa else None,
            "aa_false_alarm_wilson95": aa["gate_rate_wilson95"] if aa else None,
            "power_at_10pct": by_x[0.10]["gate_rate"] if 0.10 in by_x else None,
            "observed_ratio_at_10pct_cpu": by_x[0.10]["median_observed_ratio_cpu"]
            if 0.10 in by_x
            else None,
            "observed_ratio_at_10pct_wall": by_x[0.10]["median_observed_ratio_wall"]
            if 0.10 in by_x
            else None,
            "smallest_slowdown_detected_at_95pct_power": min(detected) if detected else None,
            "pytest_benchmark_min5_aa_false_alarm_rate": aa[
                "pytest_benchmark_min5_single_run_wall_rate"
            ]
            if aa
            else None,
            "pytest_benchmark_min5_aa_false_alarm_rate_pooled": aa[
                "pytest_benchmark_min5_pooled_wall_rate"
            ]
            if aa
            else None,
        },
    }


def _table(result: dict[str, Any]) -> str:
    scen = result["scenarios"]
    other = next(k[5:-12] for k in scen[0] if k.startswith("gate_") and k.endswith("_paired_rate"))
    lines = [
        f"slowdown  gate [Wilson 95%]       {other}-clock paired  previous (wall, unpaired)  "
        "test only  pytest-benchmark min:5% wall 1-run/pooled  observed ratio cpu/wall",
    ]
    for s in scen:
        lo, hi = s["gate_rate_wilson95"]
        lines.append(
            f"{s['injected_slowdown']:>7.0%}  {s['gate_rate']:>6.1%} [{lo:.1%}, {hi:.1%}]"
            f"   {s[f'gate_{other}_paired_rate']:>6.1%}            "
            f"{s['previous_gate_wall_unpaired_rate']:>6.1%}                  "
            f"{s['test_only_paired_rate']:>6.1%}   "
            f"{s['pytest_benchmark_min5_single_run_wall_rate']:>6.1%} / "
            f"{s['pytest_benchmark_min5_pooled_wall_rate']:>6.1%}"
            f"                        {s['median_observed_ratio_cpu']:.3f} / "
            f"{s['median_observed_ratio_wall']:.3f}"
        )
    lines.append("gate rate by rounds per comparison:")
    for r, rates in result["gate_rate_by_rounds"].items():
        lines.append(f"  {r:>3} rounds: " + "  ".join(f"{x}: {v:.1%}" for x, v in rates.items()))
    sm = result["summary"]
    power = sm["power_at_10pct"]
    lines.append(
        f"A/A false alarms: {sm['aa_false_alarm_rate']:.2%} (Wilson 95 % upper "
        f"{sm['aa_false_alarm_wilson95'][1]:.2%}); power at 10 %: "
        f"{'n/a' if power is None else f'{power:.1%}'}; "
        f"smallest slowdown at >=95 % power: {sm['smallest_slowdown_detected_at_95pct_power']}; "
        f"pytest-benchmark min:5% A/A false alarms: "
        f"{sm['pytest_benchmark_min5_aa_false_alarm_rate']:.1%}"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m studies.gate_study [--sets N] [--rounds R] [--out FILE]``."""
    p = argparse.ArgumentParser(
        prog="python -m studies.gate_study", description=__doc__.split("\n")[0]
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--sets", type=int, default=StudyConfig.sets, help="A/B sample sets (comparisons)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="rounds per comparison (default: [gate] rounds of bench/gate/default.toml)",
    )
    p.add_argument("--block", type=int, default=StudyConfig.block, help="samples per block")
    p.add_argument("--seed", type=int, default=StudyConfig.seed)
    p.add_argument(
        "--slowdowns",
        default=",".join(f"{x:g}" for x in SLOWDOWNS),
        help="comma-separated injected slowdowns (0 = A/A)",
    )
    p.add_argument("--max-minutes", type=float, default=None, help="stop collecting after this")
    p.add_argument("--out", type=Path, default=Path("results/gate_study.json"))
    args = p.parse_args(argv)
    if args.worker:
        return _worker()
    if args.rounds is None:
        args.rounds = DEFAULT_ROUNDS
    cfg = StudyConfig(
        sets=args.sets,
        rounds=args.rounds,
        block=args.block,
        seed=args.seed,
        slowdowns=tuple(float(x) for x in args.slowdowns.split(",")),
        max_minutes=args.max_minutes,
    )
    result = run_study(cfg)
    write_figures(args.out, result, _table(result))
    return 0


def write_figures(out: Path, result: dict[str, Any], table: str) -> None:
    """Write ``result`` as JSON to ``out`` and print the summary ``table``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(table)
    print(f"figures written to {out}")


if __name__ == "__main__":
    raise SystemExit(main())
