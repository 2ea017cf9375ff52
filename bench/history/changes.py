"""Change points of one series (a benchmark x metric x machine, commits in order).

The detection itself comes from a maintained library; :data:`DETECTORS` wraps the three that were
compared (``python -m studies.history_detectors``; figures in docs/measurements/2026-12-01-history.md) behind one signature,
``detect(values) -> [index of the first point of each new level]``, on log values (a step of
+5 % is the same size at 1 µs and at 1 s):

``ruptures-pelt`` (default)
    ``ruptures`` PELT with the L2 cost (its C implementation) and a BIC-style penalty,
    ``3 sigma^2 ln n``, from a robust noise estimate (median absolute first difference).
``e-divisive``
    MongoDB's ``signal-processing-algorithms``: E-Divisive means with a permutation test
    (p < 0.05, 100 seeded permutations). Not a dependency: it pins numpy < 2, which this project's
    pandas cannot use; used if installed.
``otava``
    Apache Otava (ex-Hunter) sliding-window E-Divisive with t-test merge (p < 0.001). Its
    package pins numpy and pulls cloud clients, so it is not a dependency: used if installed.

Whatever found a change point, it is checked and described the same way: :func:`detect` merges
away, weakest first, points whose neighbouring segments do not differ (confidence below
:data:`DEFAULT_MIN_CONFIDENCE`); :func:`describe` gives the levels (medians of the segments
before and after it, bounded by the neighbouring change points), ``ratio`` (after / before) and
``confidence`` (1 - the Mann-Whitney p-value of the two segments).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np

from bench import stats as gate_stats
from bench.history._ingest import HistoryError

__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_MIN_CONFIDENCE",
    "DETECTORS",
    "Change",
    "DetectorUnavailable",
    "describe",
    "detect",
]

MIN_POINTS: Final = 8
"""Shorter series are not analysed: a level needs a few commits to be a level."""

DEFAULT_MIN_CONFIDENCE: Final = 0.95
"""Change points whose neighbouring segments do not differ at this level are merged away."""


class DetectorUnavailable(HistoryError):
    """The change-point library is not installed."""


def _e_divisive(logs: np.ndarray[Any, Any]) -> list[int]:
    try:
        from signal_processing_algorithms.energy_statistics.energy_statistics import e_divisive
    except ModuleNotFoundError as exc:
        raise DetectorUnavailable(
            f"E-Divisive missing ({exc.name}): pip install signal-processing-algorithms "
            "(it needs numpy < 2: use a separate environment)"
        ) from None
    state = np.random.get_state()
    np.random.seed(0)  # the permutation test draws from numpy's global generator
    try:
        return sorted(int(i) for i in e_divisive(logs, pvalue=0.05, permutations=100))
    finally:
        np.random.set_state(state)


def robust_sigma(logs: np.ndarray[Any, Any]) -> float:
    """Noise sd from the median absolute first difference (insensitive to steps)."""
    d = np.diff(logs)
    if d.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / math.sqrt(2))


def _ruptures_pelt(logs: np.ndarray[Any, Any]) -> list[int]:
    try:
        import ruptures
    except ModuleNotFoundError as exc:
        raise DetectorUnavailable(
            f"change-point library missing ({exc.name}): pip install 'samplemind-core[history]'"
        ) from None
    sigma = robust_sigma(logs) or 1e-12
    pen = 3.0 * sigma**2 * math.log(len(logs))
    # PELT with the L2 cost, in ruptures' C implementation (a linear kernel is the L2 cost);
    # ruptures.Pelt(model="l2") finds the same points in pure Python, about 50x slower
    algo = ruptures.KernelCPD(kernel="linear", min_size=3, jump=1)
    bkps = algo.fit(logs.reshape(-1, 1)).predict(pen=pen)
    return [int(b) for b in bkps[:-1]]


def _otava(logs: np.ndarray[Any, Any]) -> list[int]:
    try:
        from otava.analysis import compute_change_points
    except ModuleNotFoundError as exc:
        raise DetectorUnavailable(
            f"Apache Otava missing ({exc.name}): pip install --no-deps apache-otava"
        ) from None
    cps, _weak = compute_change_points(logs.tolist(), window_len=50, max_pvalue=0.001)
    return sorted(int(c.index) for c in cps)


Detector = Callable[[np.ndarray[Any, Any]], list[int]]
DETECTORS: Final[dict[str, Detector]] = {
    "ruptures-pelt": _ruptures_pelt,
    "e-divisive": _e_divisive,
    "otava": _otava,
}
DEFAULT_DETECTOR: Final = "ruptures-pelt"


def _confidences(values: Sequence[float], cps: Sequence[int]) -> list[float]:
    """1 - Mann-Whitney p of the segments either side of each change point (0 if one is 1 long)."""
    bounds = [0, *cps, len(values)]
    out = []
    for k, cp in enumerate(cps, 1):
        before, after = list(values[bounds[k - 1] : cp]), list(values[cp : bounds[k + 1]])
        p = gate_stats.mann_whitney_p(before, after) if len(before) > 1 and len(after) > 1 else 1.0
        out.append(1.0 - p)
    return out


def detect(
    values: Sequence[float],
    detector: str = DEFAULT_DETECTOR,
    *,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
) -> list[int]:
    """Indices of the first point of each new level in ``values`` (all > 0), oldest first.

    The library's change points are then merged back, weakest first, while any has a confidence
    (1 - Mann-Whitney p between its neighbouring segments) below ``min_confidence``: a split the
    data on either side cannot support is not reported (0 keeps every point the library found).
    """
    arr = np.asarray(values, dtype=float)
    if arr.size < MIN_POINTS or np.any(arr <= 0) or not np.all(np.isfinite(arr)):
        return []
    logs = np.log(arr)
    if np.all(logs == logs[0]):
        return []
    cps = [i for i in DETECTORS[detector](logs) if 0 < i < arr.size]
    while cps:
        conf = _confidences(list(logs), cps)
        weakest = int(np.argmin(conf))
        if conf[weakest] >= min_confidence:
            break
        del cps[weakest]
    return cps


@dataclass(frozen=True, slots=True)
class Change:
    """One change point of one series, as ``history changes --json`` prints it."""

    benchmark: str
    metric: str
    machine: str
    commit: str
    """The first commit of the new level."""
    previous_commit: str
    """The last commit of the old level."""
    index: int
    ratio: float
    """New level / old level (medians of the segments either side)."""
    level_before: float
    level_after: float
    confidence: float
    """1 - Mann-Whitney p-value of the two segments."""
    points_before: int
    points_after: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe(
    values: Sequence[float],
    cps: Sequence[int],
    commits: Sequence[str],
    *,
    benchmark: str,
    metric: str,
    machine: str,
) -> list[Change]:
    """One :class:`Change` per change point (see the module docstring for the figures)."""
    bounds = [0, *cps, len(values)]
    out: list[Change] = []
    for k, cp in enumerate(cps, 1):
        before = list(values[bounds[k - 1] : cp])
        after = list(values[cp : bounds[k + 1]])
        lb, la = float(np.median(before)), float(np.median(after))
        p = gate_stats.mann_whitney_p(before, after) if len(before) > 1 and len(after) > 1 else 1.0
        out.append(
            Change(
                benchmark=benchmark,
                metric=metric,
                machine=machine,
                commit=commits[cp],
                previous_commit=commits[cp - 1],
                index=cp,
                ratio=la / lb if lb else math.inf,
                level_before=lb,
                level_after=la,
                confidence=1.0 - p,
                points_before=len(before),
                points_after=len(after),
            )
        )
    return out
