"""Which change-point library finds performance steps best? ``python -m studies.history_detectors``.

Synthetic histories of ``--commits`` (200) commits, seeded. Each commit's figure is a level times
``exp(noise)``; the noise is drawn (with replacement) from real run-to-run variation: the
residuals of log(median time) of each benchmark across the A/A results folders given with
``--aa`` (several ``samplemind-bench run`` of the same commit on this machine): each series takes
the spread (sd) of one real benchmark, drawn at random, and the shape of the pooled standardised
residuals. Results are also broken down by that noise level. Kinds of series (``--series`` of each):

``step+3%``, ``step+5%``, ``step+10%``, ``step-8%``
    one step at a random commit in [40, 160).
``drift``
    +0.1 % per commit over 50 commits starting at a random commit in [40, 110).
``flat``
    no change (controls: anything found is a false positive).

A detection within ``--tolerance`` commits of a step is a true positive (one per step); one
inside a drift's span (widened by the tolerance) is a true positive for the drift (further ones
inside the span are not counted either way: the level did move there); every other detection is
a false positive. Reported per library and kind: precision, recall, and the mean absolute
location error (commits) of the true positives (for a drift: from its first commit).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.history._ingest import HistoryInputError, read_run
from bench.history.changes import (
    DEFAULT_MIN_CONFIDENCE,
    DETECTORS,
    DetectorUnavailable,
    detect,
)

KINDS: dict[str, float] = {"step+3%": 0.03, "step+5%": 0.05, "step+10%": 0.10, "step-8%": -0.08}


def aa_residuals(
    folders: Sequence[Path], max_sd: float = math.inf
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``(standardised residuals, per-benchmark sd)`` of log(median time) across A/A runs.

    Residuals are pooled over benchmarks after dividing by their benchmark's sd (the shape of
    the noise); the sds are the real spread of each benchmark (its scale).
    """
    per_bench: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for folder in folders:
        for p in read_run(folder).points:
            if p.metric == "time" and p.value > 0:
                per_bench[(p.suite, p.benchmark, p.params)].append(math.log(p.value))
    res: list[float] = []
    sds: list[float] = []
    for logs in per_bench.values():
        k = len(logs)
        sd = float(np.std(logs, ddof=1)) if k > 1 else 0.0
        if sd <= 0 or sd > max_sd:
            continue
        m = sum(logs) / k
        sds.append(sd)
        res += [(x - m) * math.sqrt(k / (k - 1)) / sd for x in logs]
    if len(res) < 10:
        raise HistoryInputError("the A/A folders give fewer than 10 residuals: pass more runs")
    return np.asarray(res), np.asarray(sds)


@dataclass
class Truth:
    kind: str
    start: int
    end: int  # last commit of the change's span (== start for a step)


def make_series(
    rng: np.random.Generator, kind: str, n: int, noise: np.ndarray[Any, Any], sd: float
) -> tuple[np.ndarray[Any, Any], Truth | None]:
    log_level: np.ndarray[Any, Any] = np.zeros(n)
    truth: Truth | None = None
    if kind in KINDS:
        at = int(rng.integers(40, 160))
        log_level[at:] = math.log1p(KINDS[kind])
        truth = Truth(kind, at, at)
    elif kind == "drift":
        at = int(rng.integers(40, 110))
        steps = np.arange(n) - at + 1
        log_level = np.clip(steps, 0, 50) * math.log1p(0.001)
        truth = Truth(kind, at, at + 49)
    return np.exp(log_level + sd * rng.choice(noise, size=n)) * 1e-6, truth


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    errors: list[int] | None = None

    def add_error(self, e: int) -> None:
        self.errors = [*(self.errors or []), e]

    def as_dict(self) -> dict[str, Any]:
        det = self.tp + self.fp
        truth = self.tp + self.fn
        errs = self.errors or []
        return {
            "true_positives": self.tp,
            "false_positives": self.fp,
            "missed": self.fn,
            "precision": round(self.tp / det, 3) if det else None,
            "recall": round(self.tp / truth, 3) if truth else None,
            "location_error_mean": round(float(np.mean(errs)), 2) if errs else None,
            "location_error_median": float(np.median(errs)) if errs else None,
        }


def score(found: Sequence[int], truth: Truth | None, tol: int, s: Score) -> None:
    matched = False
    for i in found:
        if truth is not None and truth.start - tol <= i <= truth.end + tol:
            if not matched:
                matched = True
                s.tp += 1
                s.add_error(abs(i - truth.start))
            continue
        s.fp += 1
    if truth is not None and not matched:
        s.fn += 1


TIERS: dict[str, tuple[float, float]] = {
    "noise sd <= 5%": (0.0, 0.05),
    "noise sd 5-20%": (0.05, 0.20),
    "noise sd > 20%": (0.20, math.inf),
}


def _tier(sd: float) -> str:
    return next(t for t, (lo, hi) in TIERS.items() if lo < sd <= hi or (lo == 0 and sd <= hi))


def run_study(
    noise: np.ndarray[Any, Any],
    sds: np.ndarray[Any, Any],
    *,
    detectors: Sequence[str],
    commits: int,
    per_kind: int,
    seed: int,
    tolerance: int,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> dict[str, Any]:
    kinds = [*KINDS, "drift", "flat"]
    rng = np.random.default_rng(seed)
    cases = []
    for k in kinds:
        for _ in range(per_kind):
            sd = float(rng.choice(sds))
            cases.append((k, sd, *make_series(rng, k, commits, noise, sd)))
    out: dict[str, Any] = {}
    for name in detectors:
        scores = {k: Score() for k in kinds}
        tiers = {t: Score() for t in TIERS}
        total = Score()
        t0 = time.perf_counter()
        try:
            for kind, sd, values, truth in cases:
                found = detect(values.tolist(), name, min_confidence=min_confidence)
                score(found, truth, tolerance, scores[kind])
                score(found, truth, tolerance, tiers[_tier(sd)])
                score(found, truth, tolerance, total)
        except DetectorUnavailable as exc:
            out[name] = {"unavailable": str(exc)}
            continue
        out[name] = {
            "overall": total.as_dict(),
            "by_kind": {k: v.as_dict() for k, v in scores.items()},
            "by_noise": {k: v.as_dict() for k, v in tiers.items()},
            "seconds_per_series": round((time.perf_counter() - t0) / len(cases), 4),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m studies.history_detectors", description=__doc__
    )
    parser.add_argument("--aa", nargs="+", type=Path, required=True, metavar="DIR")
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--series", type=int, default=30, help="series per kind")
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--tolerance", type=int, default=5)
    parser.add_argument("--detector", action="append", choices=list(DETECTORS))
    parser.add_argument(
        "--min-confidence",
        type=float,
        default=DEFAULT_MIN_CONFIDENCE,
        help="merge away change points below this confidence (0: keep the library's points)",
    )
    parser.add_argument(
        "--max-sd",
        type=float,
        default=math.inf,
        help="only benchmarks whose A/A sd of log(median) is at most this (a quieter machine)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    try:
        noise, sds = aa_residuals(args.aa, args.max_sd)
    except HistoryInputError as exc:
        print(f"study: {exc}", file=sys.stderr)
        return 2
    result = run_study(
        noise,
        sds,
        detectors=args.detector or list(DETECTORS),
        commits=args.commits,
        per_kind=args.series,
        seed=args.seed,
        tolerance=args.tolerance,
        min_confidence=args.min_confidence,
    )
    doc = {
        "noise": {
            "residuals": int(noise.size),
            "benchmarks": int(sds.size),
            "benchmark_sd_log_quartiles": [
                round(float(q), 4) for q in np.quantile(sds, [0.25, 0.5, 0.75])
            ],
            "tiers": {t: int(sum(_tier(float(s)) == t for s in sds)) for t in TIERS},
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("aa", "json")},
        "results": result,
    }
    text = json.dumps(doc, indent=2, default=str)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
