"""The harness's statistics (one module, shared by the gate, history and the studies).

Wall time: ratio of medians, bootstrap CI, Mann-Whitney U, corrections, paired rounds.
Instruction counts: :func:`aa_spread` and :func:`decide` (below).

Everything here is a pure function of its inputs (and an explicit seed), so the gate's verdicts are
reproducible and unit-testable without timing anything.

>>> ratio_of_medians([1.0, 1.0, 1.0], [1.1, 1.1, 1.1])
1.1
>>> holm([0.01, 0.04, 0.03])
[0.03, 0.06, 0.06]
"""

from __future__ import annotations

import json
import math
import statistics
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np


def _sps() -> Any:
    """``scipy.stats``, imported on first use: a command's ``--help`` does not pay for it."""
    from scipy import stats  # type: ignore[import-untyped]

    return stats


__all__ = [
    "DEFAULT_SAFETY",
    "DEFAULT_TOLERANCE",
    "Comparison",
    "InstructionVerdict",
    "aa_spread",
    "benjamini_hochberg",
    "bootstrap_p",
    "bootstrap_ratios",
    "compare_paired",
    "compare_samples",
    "decide",
    "holm",
    "load_spreads",
    "mann_whitney_p",
    "ratio_of_medians",
    "round_log_ratios",
    "stable_seed",
    "yuen_one_sample",
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


Runs = Sequence[Sequence[float]]


def _resample_medians(
    rng: np.random.Generator, runs: Runs, n_boot: int
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Bootstrap medians of one side; two-level (runs, then samples within) when there are 2+ runs.

    Samples of one run (one process, one block of time) share that run's conditions, so they are
    not independent; resampling whole runs first carries the run-to-run variation into the CI.
    """
    flat = np.concatenate([np.asarray(r, dtype=float) for r in runs])
    if len(runs) < 2:
        idx = rng.integers(0, flat.size, size=(n_boot, flat.size))
        return np.asarray(np.median(flat[idx], axis=1), dtype=np.float64)
    lengths = np.array([len(r) for r in runs])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    per_run = max(1, round(flat.size / len(runs)))
    chosen = rng.integers(0, len(runs), size=(n_boot, len(runs)))
    u = rng.random(size=(n_boot, len(runs), per_run))
    idx = offsets[chosen][:, :, None] + (u * lengths[chosen][:, :, None]).astype(int)
    return np.asarray(np.median(flat[idx].reshape(n_boot, -1), axis=1), dtype=np.float64)


def _as_runs(samples: Sequence[float], runs: Runs | None) -> Runs:
    runs = [r for r in (runs or []) if len(r)]
    return runs if runs else [samples]


def bootstrap_ratios(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    baseline_runs: Runs | None = None,
    candidate_runs: Runs | None = None,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Bootstrap distribution of ``median(candidate) / median(baseline)`` (seeded)."""
    rng = np.random.default_rng(seed)
    base_med = _resample_medians(rng, _as_runs(baseline, baseline_runs), n_boot)
    cand_med = _resample_medians(rng, _as_runs(candidate, candidate_runs), n_boot)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(
            base_med == 0.0, np.where(cand_med == 0.0, 1.0, np.inf), cand_med / base_med
        )
    return np.asarray(ratios, dtype=np.float64)


def _percentile_ci(ratios: Any, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(ratios, [tail, 1.0 - tail])
    return float(lo), float(hi)


def bootstrap_p(ratios: np.ndarray[Any, np.dtype[np.float64]]) -> float:
    """Two-sided p-value of "ratio = 1" from the bootstrap standard error of the log ratio.

    A normal approximation, so p-values far below ``1 / n_boot`` (needed after a Holm correction
    over dozens of benchmarks) stay meaningful.
    """
    finite = ratios[np.isfinite(ratios) & (ratios > 0)]
    if finite.size < 2:
        return 1.0
    logs = np.log(finite)
    sd = float(np.std(logs, ddof=1))
    centre = float(np.median(logs))
    if sd == 0.0:
        return 1.0 if centre == 0.0 else 0.0
    return float(2.0 * _sps().norm.sf(abs(centre) / sd))


def mann_whitney_p(baseline: Sequence[float], candidate: Sequence[float]) -> float:
    """Two-sided Mann-Whitney U p-value (1.0 when both sides are constant and equal)."""
    base = np.asarray(baseline, dtype=float)
    cand = np.asarray(candidate, dtype=float)
    if np.all(base == base[0]) and np.all(cand == base[0]):
        return 1.0
    result = _sps().mannwhitneyu(cand, base, alternative="two-sided", method="asymptotic")
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
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in input order
    (``scipy.stats.false_discovery_control``)."""
    if not pvalues:
        return []
    adjusted = _sps().false_discovery_control(np.asarray(pvalues, dtype=float), method="bh")
    return [round(float(p), 15) for p in adjusted]


@dataclass(frozen=True, slots=True)
class Comparison:
    """The raw statistics of one baseline/candidate pair, before any rule is applied.

    ``p_value`` is the larger of the Mann-Whitney and the bootstrap p-values: the change must
    be significant by both the rank test on samples and the run-aware bootstrap.
    """

    n_baseline: int
    n_candidate: int
    baseline_median: float
    candidate_median: float
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float
    p_mann_whitney: float
    p_bootstrap: float
    test: str = "unpaired"
    """``"unpaired"`` (Mann-Whitney + run-aware bootstrap) or ``"paired"`` (:func:`compare_paired`)."""
    rounds: int = 0
    """Paired rounds used (0 for the unpaired test)."""


def compare_samples(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    confidence: float = 0.99,
    n_boot: int = 2000,
    seed: int = 0,
    baseline_runs: Runs | None = None,
    candidate_runs: Runs | None = None,
) -> Comparison:
    """Ratio of medians, its percentile bootstrap CI and p-values for two sample sets.

    Each side is resampled independently (by run, then by sample, when runs are given); the
    generator is seeded, so the same inputs and seed always give the same interval.
    """
    ratios = bootstrap_ratios(
        baseline,
        candidate,
        n_boot=n_boot,
        seed=seed,
        baseline_runs=baseline_runs,
        candidate_runs=candidate_runs,
    )
    lo, hi = _percentile_ci(ratios, confidence)
    p_mw = mann_whitney_p(baseline, candidate)
    p_bs = bootstrap_p(ratios)
    return Comparison(
        n_baseline=len(baseline),
        n_candidate=len(candidate),
        baseline_median=float(np.median(np.asarray(baseline, dtype=float))),
        candidate_median=float(np.median(np.asarray(candidate, dtype=float))),
        ratio=ratio_of_medians(baseline, candidate),
        ci_low=float(lo),
        ci_high=float(hi),
        p_value=max(p_mw, p_bs),
        p_mann_whitney=p_mw,
        p_bootstrap=p_bs,
    )


def round_log_ratios(
    baseline_runs: Runs, candidate_runs: Runs
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Per-round ``log(median(candidate_i) / median(baseline_i))`` of paired runs.

    Round ``i``'s baseline and candidate ran back to back (interleaved, in random order), so a
    slow phase of the machine hits both and cancels in the ratio. Rounds where either median is
    not positive are dropped.

    >>> [round(float(x), 4) for x in round_log_ratios([[1.0, 1.0], [2.0]], [[1.1, 1.1], [2.0]])]
    [0.0953, 0.0]
    """
    if len(baseline_runs) != len(candidate_runs):
        raise ValueError(
            f"paired runs need equal counts ({len(baseline_runs)} vs {len(candidate_runs)})"
        )
    out = []
    for b, c in zip(baseline_runs, candidate_runs, strict=True):
        if not len(b) or not len(c):
            continue
        mb = float(np.median(np.asarray(b, dtype=float)))
        mc = float(np.median(np.asarray(c, dtype=float)))
        if mb > 0.0 and mc > 0.0:
            out.append(math.log(mc / mb))
    return np.asarray(out, dtype=np.float64)


def yuen_one_sample(
    values: Sequence[float] | np.ndarray[Any, np.dtype[np.float64]], *, trim: float = 0.2
) -> tuple[float, float, int, float]:
    """Yuen's trimmed-mean t-test of "centre = 0": ``(trimmed mean, standard error, df, p)``.

    A t-test on the ``trim``-trimmed mean with the winsorised variance (Yuen 1974; Wilcox,
    *Introduction to Robust Estimation*, ch. 4): robust to a few outlying rounds (the sibling
    core busy during one side's block only) and, unlike a rank or permutation test, without a
    floor on the p-value, so a Holm correction over dozens of benchmarks stays usable with a
    dozen rounds. Two-sided p.

    >>> tm, se, df, p = yuen_one_sample([0.1, 0.12, 0.09, 0.11, 0.1, 0.5, 0.1, 0.08, 0.1, 0.11])
    >>> round(tm, 4), df, p < 1e-6
    (0.1033, 5, True)
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = int(x.size)
    if n < 2:
        return (float(x.mean()) if n else 0.0, math.inf, 0, 1.0)
    g = math.floor(trim * n)
    h = n - 2 * g
    if h < 2:
        raise ValueError(f"trim {trim} leaves fewer than 2 of {n} values")
    tm = float(x[g : n - g].mean())
    w = np.clip(x, x[g], x[n - g - 1])
    sw2 = float(np.var(w, ddof=1))
    se = math.sqrt((n - 1) * sw2 / (h * (h - 1)))
    df = h - 1
    if se == 0.0:
        return (tm, 0.0, df, 1.0 if tm == 0.0 else 0.0)
    p = float(2.0 * _sps().t.sf(abs(tm) / se, df))
    return (tm, se, df, p)


def compare_paired(
    baseline_runs: Runs,
    candidate_runs: Runs,
    *,
    confidence: float = 0.99,
    trim: float = 0.2,
) -> Comparison:
    """Paired comparison of interleaved rounds: Yuen's test on per-round log ratios of medians.

    ``ratio`` is ``exp(trimmed mean of the per-round log ratios)`` (a robust geometric mean of
    the rounds' median ratios) and the CI is Yuen's t interval, exponentiated. Machine phases
    common to the two blocks of a round cancel; what is left is the process-to-process and
    block-to-block noise, which the between-round spread estimates honestly (rounds, not samples,
    are the independent units).
    """
    d = round_log_ratios(baseline_runs, candidate_runs)
    tm, se, df, p = yuen_one_sample(d, trim=trim)
    if math.isfinite(se) and df > 0:
        half = float(_sps().t.ppf(0.5 + confidence / 2.0, df)) * se
    else:
        half = math.inf
    flat_b = np.concatenate([np.asarray(r, dtype=float) for r in baseline_runs])
    flat_c = np.concatenate([np.asarray(r, dtype=float) for r in candidate_runs])
    return Comparison(
        n_baseline=int(flat_b.size),
        n_candidate=int(flat_c.size),
        baseline_median=float(np.median(flat_b)),
        candidate_median=float(np.median(flat_c)),
        ratio=math.exp(tm),
        ci_low=math.exp(tm - half),
        ci_high=math.exp(tm + half) if math.isfinite(half) else math.inf,
        p_value=p,
        p_mann_whitney=math.nan,
        p_bootstrap=math.nan,
        test="paired",
        rounds=int(d.size),
    )


# ----------------------------------------------------------------- instruction counts
#
# The instruction gate's decision: a change counts when it beats the tolerance *and* the A/A spread.
#
# Instruction counts are nearly deterministic, but not exactly (see
# docs/measurements/2026-12-01-instruction-counts.md, issue 13): the same code counted in fresh processes differs by
# a small, benchmark-specific amount. The A/A spread of a benchmark,
# ``(max - min) / median`` of its counts over several fresh processes of the same
# code (:func:`aa_spread`, measured by ``python -m studies.instructions_study aa``),
# is that noise. :func:`decide` calls a change
#
# * ``regression`` when it is ``+tolerance`` or more and above ``safety x spread``;
# * ``improvement`` when it is ``-tolerance`` or less and beyond ``safety x spread``;
# * ``inconclusive`` when it reaches the tolerance but is within ``safety x spread``
#   (this benchmark is too noisy to gate at this tolerance: widen it or fix the noise);
# * ``unchanged`` when it is smaller than the tolerance.
#
# The tolerance is the smallest change that counts: with the default 1 %, a change of
# exactly 1 % is a regression (when the spread allows), so a gate at 1 % sees 1 % steps.
#
# ``safety`` (default 2) covers that a new pair of processes can land outside the
# range that a handful of A/A processes happened to show. With several counts per
# side (repeated processes), the medians are compared and the spread of each side
# also counts as noise.

DEFAULT_TOLERANCE: Final = 0.01
DEFAULT_SAFETY: Final = 2.0

Verdict = Literal["regression", "improvement", "inconclusive", "unchanged"]


def aa_spread(counts: Sequence[float]) -> float:
    """``(max - min) / median`` of counts of the same code (0.0 for a single count).

    >>> aa_spread([1000, 1001, 1000])
    0.001
    """
    if not counts:
        raise ValueError("no counts")
    if any(c <= 0 for c in counts):
        raise ValueError(f"instruction counts must be positive, got {list(counts)}")
    return (max(counts) - min(counts)) / statistics.median(counts)


@dataclass(frozen=True, slots=True)
class InstructionVerdict:
    """One benchmark's decision; ``change`` = candidate / baseline - 1 (medians)."""

    baseline: float
    candidate: float
    change: float
    noise: float
    margin: float
    tolerance: float
    verdict: Verdict

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(
    baseline: Sequence[float],
    candidate: Sequence[float],
    *,
    spread: float | None,
    tolerance: float = DEFAULT_TOLERANCE,
    safety: float = DEFAULT_SAFETY,
) -> InstructionVerdict:
    """Decide one benchmark from its counts per call (one or more fresh processes per side).

    ``spread`` is the benchmark's measured A/A spread (``None`` when it was never
    measured: then only the spreads seen within ``baseline`` and ``candidate``
    count, which is zero for single counts, so measure it).
    """
    if tolerance <= 0 or safety <= 0:
        raise ValueError("tolerance and safety must be > 0")
    if spread is not None and spread < 0:
        raise ValueError(f"spread must be >= 0, got {spread}")
    base = statistics.median(baseline) if baseline else 0.0
    cand = statistics.median(candidate) if candidate else 0.0
    if base <= 0 or cand <= 0:
        raise ValueError("baseline and candidate need at least one positive count each")
    noise = max(
        spread or 0.0,
        aa_spread(baseline) if len(baseline) > 1 else 0.0,
        aa_spread(candidate) if len(candidate) > 1 else 0.0,
    )
    change = cand / base - 1.0
    margin = safety * noise
    verdict: Verdict
    if abs(change) < tolerance and not math.isclose(abs(change), tolerance, rel_tol=1e-9):
        verdict = "unchanged"
    elif abs(change) <= margin:
        verdict = "inconclusive"
    else:
        verdict = "regression" if change > 0 else "improvement"
    return InstructionVerdict(base, cand, change, noise, margin, tolerance, verdict)


def load_spreads(path: Path) -> dict[str, float]:
    """``{benchmark fullname: spread}`` from an A/A spreads file (``study aa --out``).

    Raises :class:`ValueError` naming ``path`` when the file is missing, unreadable, not
    JSON, not an A/A study file, or holds a spread that is not a finite number >= 0.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: A/A spreads file not found") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, Mapping) or data.get("format") != "samplemind-bench-instructions-aa":
        raise ValueError(f"{path}: not an instruction A/A study file")
    rows = data.get("benchmarks")
    if not isinstance(rows, Mapping):
        raise ValueError(f"{path}: 'benchmarks' must be an object")
    out: dict[str, float] = {}
    for name, row in rows.items():
        spread = row.get("spread") if isinstance(row, Mapping) else None
        if (
            not isinstance(spread, int | float)
            or isinstance(spread, bool)
            or not math.isfinite(spread)
            or spread < 0
        ):
            raise ValueError(f"{path}: benchmark {name!r}: 'spread' must be a number >= 0")
        out[str(name)] = float(spread)
    return out
