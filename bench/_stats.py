"""Statistics for the regression gate: ratio of medians, bootstrap CI, Mann-Whitney U, corrections.

Everything here is a pure function of its inputs (and an explicit seed), so the gate's verdicts are
reproducible and unit-testable without timing anything.

>>> ratio_of_medians([1.0, 1.0, 1.0], [1.1, 1.1, 1.1])
1.1
>>> holm([0.01, 0.04, 0.03])
[0.03, 0.06, 0.06]
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _sps  # type: ignore[import-untyped]

__all__ = [
    "Comparison",
    "benjamini_hochberg",
    "bootstrap_ratio_ci",
    "compare_samples",
    "holm",
    "mann_whitney_p",
    "ratio_of_medians",
    "stable_seed",
]


def ratio_of_medians(baseline: Sequence[float], candidate: Sequence[float]) -> float:
    """``median(candidate) / median(baseline)`` (``inf`` when the baseline median is 0)."""
    base = float(np.median(np.asarray(baseline, dtype=float)))
    cand = float(np.median(np.asarray(candidate, dtype=float)))
    if base == 0.0:
        return 1.0 if cand == 0.0 else float("inf")
    return cand / base


def stable_seed(seed: int, name: str) -> int:
    """A per-benchmark seed that does not depend on the order benchmarks are compared in."""
    return (seed * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**32)


def bootstrap_ratio_ci(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    confidence: float = 0.99,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``median(candidate) / median(baseline)``.

    Each side is resampled independently with replacement; the generator is seeded, so the
    same inputs and seed always give the same interval.
    """
    base = np.asarray(baseline, dtype=float)
    cand = np.asarray(candidate, dtype=float)
    rng = np.random.default_rng(seed)
    base_idx = rng.integers(0, base.size, size=(n_boot, base.size))
    cand_idx = rng.integers(0, cand.size, size=(n_boot, cand.size))
    base_med = np.median(base[base_idx], axis=1)
    cand_med = np.median(cand[cand_idx], axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(
            base_med == 0.0, np.where(cand_med == 0.0, 1.0, np.inf), cand_med / base_med
        )
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(ratios, [tail, 1.0 - tail])
    return float(lo), float(hi)


def mann_whitney_p(baseline: Sequence[float], candidate: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value (1.0 when both sides are constant and equal)."""
    base = np.asarray(baseline, dtype=float)
    cand = np.asarray(candidate, dtype=float)
    if np.all(base == base[0]) and np.all(cand == base[0]):
        return 1.0
    result = _sps.mannwhitneyu(cand, base, alternative="two-sided", method="asymptotic")
    return float(result.pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return [round(p, 15) for p in adjusted]


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i], reverse=True)
    adjusted = [0.0] * m
    running = 1.0
    for k, i in enumerate(order):
        rank = m - k
        running = min(running, pvalues[i] * m / rank)
        adjusted[i] = min(1.0, running)
    return [round(p, 15) for p in adjusted]


@dataclass(frozen=True, slots=True)
class Comparison:
    """The raw statistics of one baseline/candidate pair, before any rule is applied."""

    n_baseline: int
    n_candidate: int
    baseline_median: float
    candidate_median: float
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float


def compare_samples(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    confidence: float = 0.99,
    n_boot: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Ratio of medians, its bootstrap CI and the Mann-Whitney p-value for two sample sets."""
    lo, hi = bootstrap_ratio_ci(
        baseline, candidate, confidence=confidence, n_boot=n_boot, seed=seed
    )
    return Comparison(
        n_baseline=len(baseline),
        n_candidate=len(candidate),
        baseline_median=float(np.median(np.asarray(baseline, dtype=float))),
        candidate_median=float(np.median(np.asarray(candidate, dtype=float))),
        ratio=ratio_of_medians(baseline, candidate),
        ci_low=lo,
        ci_high=hi,
        p_value=mann_whitney_p(baseline, candidate),
    )
