"""The between-run noise floor of wall time, and when two separate runs are not comparable.

``samplemind-bench gate BASELINE CANDIDATE`` compares two separate runs. Their statistics see
the noise *within* a run; on a shared machine two runs of the same commit differ by much more
(the load changes between them). So a wall-time change between separate runs is judged
against the **between-run floor**: how far the same benchmark moves between back-to-back runs
of one commit on this machine (A/A pairs).

* **What moves.** The change judged against the floor is the change of each side's fastest
  sample (:func:`fastest_quantile`: the ``1/(n+1)`` quantile, n the size of the smaller run,
  so a run of 11 samples and one of 3,000 are compared alike): load inflates the samples
  taken while the process waited for a CPU and leaves the fastest ones nearly alone, so the
  fastest sample moves far less between runs than the median (A/A pairs of quick runs on the
  2-core team VM: see decision 0301 and docs/measurements/2026-12-06-gate-between-runs.md). A change of the whole distribution (a slower code path) moves
  it like the median.
* **Where the floor comes from.** With one run per side: the stored floor file
  (:data:`DEFAULT_FLOOR`, ``bench/gate/between_run_spreads.json``, or ``--floor FILE``), per
  benchmark and metric ``safety x`` the largest A/A change of the calibration pairs over the
  benchmarks of its suite (a rare half-speed benchmark hits any of them),
  refreshed by ``nox -s study -- gate_between_runs calibrate``. A benchmark the file does not
  know gets the largest floor of its suite (the file's largest overall when the suite is
  unknown). With several runs on a side (``--baseline A1 --baseline A2 ...``): the spread
  between those runs themselves, ``safety x`` the largest change between two runs of one
  side (:func:`repeated_floor`), this session's own noise.
* **Comparable at all?** Each run's manifest records, per suite, what the machine was doing
  (:mod:`bench.conditions`). The floor file stores the largest differences of those
  conditions among its calibration pairs (:data:`CONDITION_LIMITS`): the floor covers pairs up
  to those differences and no further. When a suite's conditions differ by more,
  :func:`condition_differences` names what differed, and the gate calls that suite's
  wall-time verdicts "not comparable" (exit 3) instead of judging them.

Wall-time metrics (:func:`is_timing_metric`) are ``time`` and ``extra_info`` figures measured
in time (``*_ms``, ``*_us``, ``*_s``) or as a rate (``*per_s``, ``gbps``, throughput); counts,
hit rates, costs and fidelities are exact figures, judged as before whatever the load.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench.conditions import NOT_RECORDED
from bench.gate.inputs import BenchRecord, GateInputError

__all__ = [
    "CONDITION_LIMITS",
    "DEFAULT_FLOOR",
    "DEFAULT_SAFETY",
    "FLOOR_FORMAT",
    "NOT_RECORDED",
    "QUANTILE",
    "BetweenRuns",
    "Floor",
    "SuiteConditions",
    "calibrate",
    "change",
    "condition_differences",
    "condition_gaps",
    "conditions_of",
    "fastest_quantile",
    "is_timing_metric",
    "load_floor",
    "location",
    "not_recorded",
    "repeated_floor",
    "side_conditions",
    "suite_of",
]

FLOOR_FORMAT: Final = "samplemind-between-run-spreads"
FLOOR_VERSION: Final = 1
DEFAULT_FLOOR: Final = Path(__file__).with_name("between_run_spreads.json")
QUANTILE: Final = 0.0
"""The quantile of a side's samples whose change is judged against the floor: 0, the
fastest sample (decision 0301: of median, 10th, 5th, 1st percentile and minimum, the minimum
moved least between A/A runs in most suites)."""
DEFAULT_SAFETY: Final = 1.5
"""The floor is ``safety x`` the largest A/A change seen (decision 0301)."""

CONDITION_LIMITS: Final[dict[str, str]] = {
    "cpu_per_wall": "CPU time / wall time of the suite (ratio of the two sides)",
    "others_busy": "CPUs busy with other processes during the suite (difference)",
    "load": "1-minute load average, mean of before and after (ratio of 1 + load)",
    "steal": "share of CPU time stolen by the hypervisor (difference)",
}
"""The recorded conditions compared between two runs, and how (:func:`condition_gaps`)."""

_TIMING = re.compile(r"(_ms|_us|_ns|_s|per_s|gbps|throughput)$")


def is_timing_metric(metric: str) -> bool:
    """Whether ``metric`` is wall time (judged against the floor; "not comparable" when the
    runs' conditions differ) rather than an exact figure.

    >>> [is_timing_metric(m) for m in ("time", "ttft_p99_ms", "req_per_s", "hit_rate", "upstream_calls")]
    [True, True, True, False, False]
    """
    return metric == "time" or bool(_TIMING.search(metric))


def location(values: Sequence[float], q: float = QUANTILE) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation)."""
    return float(np.quantile(np.asarray(values, dtype=float), q))


def fastest_quantile(*sides: Sequence[Sequence[float]]) -> float:
    """The quantile compared between runs: the fastest sample of the smallest run, ``1/(n+1)``
    of every run (the minimum of n samples sits near that quantile; comparing the minimum of
    11 samples with the minimum of 3,000 would favour the larger run), never below
    :data:`QUANTILE`.

    >>> round(fastest_quantile([[1.0] * 9], [[1.0] * 99]), 3)
    0.1
    """
    sizes = [len(r) for runs in sides for r in runs if r]
    if not sizes:
        return QUANTILE
    return max(QUANTILE, 1.0 / (min(sizes) + 1))


def suite_of(rec: BenchRecord) -> str:
    """The suite a benchmark belongs to: its group's ``<suite>/`` prefix, else its file's
    ``test_<suite>.py``, else ""."""
    if "/" in rec.group:
        return rec.group.split("/", 1)[0]
    m = re.search(r"test_([A-Za-z0-9_]+)\.py::", rec.key)
    return m.group(1) if m else ""


def _floor_key(key: str, metric: str) -> str:
    return key if metric == "time" else f"{key}|{metric}"


def _run_values(rec: BenchRecord, metric: str, q: float = QUANTILE) -> list[float]:
    """One value per run of a side: the ``q`` quantile of each run's samples, or each run's
    figure."""
    if metric == "time":
        return [location(r, q) for r in rec.runs if r]
    return [v for v in rec.extra.get(metric, []) if v > 0]


def change(base: BenchRecord, cand: BenchRecord, metric: str) -> float | None:
    """log(candidate / baseline) of the between-run statistic (median over each side's runs)."""
    q = fastest_quantile(base.runs, cand.runs)
    b, c = _run_values(base, metric, q), _run_values(cand, metric, q)
    if not b or not c:
        return None
    mb, mc = statistics.median(b), statistics.median(c)
    if mb <= 0 or mc <= 0:
        return None
    return math.log(mc / mb)


def repeated_floor(
    base: BenchRecord, cand: BenchRecord, metric: str, safety: float
) -> float | None:
    """``safety x`` the largest |log change| between two runs of the same side (None with fewer
    than two runs on both sides): the between-run noise of this session, in log units."""
    changes: list[float] = []
    q = fastest_quantile(base.runs, cand.runs)
    for rec in (base, cand):
        vals = [v for v in _run_values(rec, metric, q) if v > 0]
        changes += [abs(math.log(b / a)) for i, a in enumerate(vals) for b in vals[i + 1 :]]
    if not changes:
        return None
    return safety * max(changes)


@dataclass(frozen=True, slots=True)
class Floor:
    """A floor file: per benchmark (``key`` or ``key|metric``) the between-run floor as a
    relative change (0.2: +-20 %), the suites' largest as fallback, and the condition
    differences its calibration pairs covered."""

    source: str
    floors: dict[str, float]
    suites: dict[str, float]
    limits: dict[str, float]
    safety: float = DEFAULT_SAFETY
    pairs: int = 0
    default: float | None = None
    """The floor of a benchmark whose suite the file does not know (None: its largest)."""
    created: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def floor_for(self, rec: BenchRecord, metric: str) -> tuple[float, str]:
        """The floor (log units) for ``rec``'s ``metric`` and where it came from."""
        name = Path(self.source).name
        value = self.floors.get(_floor_key(rec.key, metric))
        if value is not None:
            return math.log1p(value), f"A/A of {self.pairs} pairs, {name}"
        suite = suite_of(rec)
        if suite in self.suites:
            return math.log1p(self.suites[suite]), f"largest of suite {suite}, {name}"
        if self.default is not None:
            return math.log1p(self.default), f"default of {name}"
        overall = max([*self.suites.values(), *self.floors.values()], default=1.0)
        return math.log1p(overall), f"largest in {name}"


def _number(value: Any, where: str, *, low: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise GateInputError(f"{where}: not a number: {value!r}")
    if value < low:
        raise GateInputError(f"{where}: {value!r} is below {low}")
    return float(value)


def _numbers(doc: Any, where: str) -> dict[str, float]:
    if not isinstance(doc, dict):
        raise GateInputError(f"{where}: not an object")
    return {str(k): _number(v, f"{where}[{k!r}]") for k, v in doc.items()}


def load_floor(path: Path) -> Floor:
    """Read and check a floor file; :class:`GateInputError` naming the file otherwise."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GateInputError(
            f"{path}: floor file not found (measure one: nox -s study -- gate_between_runs "
            "calibrate RUN_DIRS...)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise GateInputError(f"{path}: not a readable JSON floor file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FLOOR_FORMAT:
        raise GateInputError(f"{path}: not a between-run floor file (format {FLOOR_FORMAT!r})")
    if doc.get("version") != FLOOR_VERSION:
        raise GateInputError(
            f"{path}: unsupported floor file version {doc.get('version')!r} "
            f"(this gate reads {FLOOR_VERSION})"
        )
    limits = _numbers(doc.get("limits"), f"{path}: limits")
    unknown = set(limits) - set(CONDITION_LIMITS)
    if unknown:
        raise GateInputError(f"{path}: limits: unknown conditions {sorted(unknown)}")
    return Floor(
        source=str(path),
        floors=_numbers(doc.get("floors"), f"{path}: floors"),
        suites=_numbers(doc.get("suites"), f"{path}: suites"),
        limits=limits,
        safety=_number(doc.get("safety", DEFAULT_SAFETY), f"{path}: safety", low=1.0),
        pairs=int(_number(doc.get("pairs", 0), f"{path}: pairs")),
        default=None
        if doc.get("default") is None
        else _number(doc.get("default"), f"{path}: default"),
        created=str(doc.get("created", "")),
        notes={k: doc[k] for k in ("statistic", "calibration_runs", "method") if k in doc},
    )


# ---------------------------------------------------------------------------- conditions


SuiteConditions = dict[str, dict[str, Any]]
"""suite -> the conditions :mod:`bench.conditions` recorded for it in one run."""


def _median_of(values: Iterable[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return statistics.median(nums) if nums else None


def side_conditions(runs: Sequence[SuiteConditions]) -> SuiteConditions:
    """One side's conditions per suite: the median over its runs of each recorded figure (a
    suite recorded in only some runs keeps what those recorded)."""
    out: SuiteConditions = {}
    suites = {s for r in runs for s in r}
    for suite in suites:
        recs = [r[suite] for r in runs if suite in r]
        keys = {k for c in recs for k in c}
        out[suite] = {k: _median_of(c.get(k) for c in recs) for k in keys}
    return out


def _load(cond: Mapping[str, Any]) -> float | None:
    vals = [cond.get("load_before"), cond.get("load_after")]
    return _median_of(vals)


def condition_gaps(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, float]:
    """How far two recorded conditions of one suite differ, per :data:`CONDITION_LIMITS` key
    (ratios as |log|, shares as absolute differences); a figure missing on a side is left out."""
    out: dict[str, float] = {}
    ca, cb = a.get("cpu_per_wall"), b.get("cpu_per_wall")
    if isinstance(ca, int | float) and isinstance(cb, int | float) and ca > 0 and cb > 0:
        out["cpu_per_wall"] = abs(math.log(cb / ca))
    for key in ("others_busy", "steal"):
        x, y = a.get(key), b.get(key)
        if isinstance(x, int | float) and isinstance(y, int | float):
            out[key] = abs(float(y) - float(x))
    la, lb = _load(a), _load(b)
    if la is not None and lb is not None and la >= 0 and lb >= 0:
        out["load"] = abs(math.log((1.0 + lb) / (1.0 + la)))
    return out


def _show(key: str, a: Mapping[str, Any], b: Mapping[str, Any], limit: float) -> str:
    if key == "cpu_per_wall":
        return (
            f"CPU/wall {a.get('cpu_per_wall')} vs {b.get('cpu_per_wall')} "
            f"(floor covers x{math.exp(limit):.2f})"
        )
    if key == "load":
        return f"load average {_load(a):.2f} vs {_load(b):.2f} (floor covers x{math.exp(limit):.2f} of 1+load)"
    if key == "steal":
        return f"steal {a.get('steal'):.1%} vs {b.get('steal'):.1%} (floor covers +-{limit:.1%})"
    return f"other processes' CPUs {a.get(key)} vs {b.get(key)} (floor covers +-{limit:.2f} CPUs)"


def condition_differences(
    base: SuiteConditions,
    cand: SuiteConditions,
    limits: Mapping[str, float],
    suites: Iterable[str],
) -> dict[str, list[str]]:
    """Per suite of ``suites`` recorded on both sides, what differs beyond ``limits`` (an
    empty list: comparable). A suite recorded on one side only or on neither is left out:
    :func:`not_recorded` names those ("environment not recorded")."""
    out: dict[str, list[str]] = {}
    for suite in suites:
        a, b = base.get(suite), cand.get(suite)
        if a is None or b is None:
            continue
        gaps = condition_gaps(a, b)
        out[suite] = [
            _show(k, a, b, limits[k]) for k, gap in gaps.items() if k in limits and gap > limits[k]
        ]
    return out


def not_recorded(base: SuiteConditions, cand: SuiteConditions, suites: Iterable[str]) -> list[str]:
    """The suites whose conditions one side or both did not record."""
    return [s for s in suites if s not in base or s not in cand]


# ---------------------------------------------------------------------------- calibration


def calibrate(
    pairs: Sequence[
        tuple[
            Mapping[str, BenchRecord], Mapping[str, BenchRecord], SuiteConditions, SuiteConditions
        ]
    ],
    *,
    metrics_of: Mapping[str, Sequence[str]],
    safety: float = DEFAULT_SAFETY,
    runs: Sequence[str] = (),
    created: datetime | None = None,
) -> dict[str, Any]:
    """A floor file's content from A/A ``pairs`` (baseline benches, candidate benches, and each
    side's recorded conditions): per benchmark and wall-time metric (``metrics_of[key]``),
    ``safety x`` the largest |log change| over the pairs and over the suite's benchmarks with
    the same metric, as a relative change (``own``: from the benchmark's pairs alone, for
    reference); per suite the largest; as limits the largest condition gaps among the pairs."""
    worst: dict[str, float] = {}
    suite_of_key: dict[str, str] = {}
    limits: dict[str, float] = {}
    used = 0
    for base, cand, bc, cc in pairs:
        used += 1
        for key, b in base.items():
            c = cand.get(key)
            if c is None:
                continue
            for metric in metrics_of.get(key, ()):
                d = change(b, c, metric)
                if d is None:
                    continue
                fk = _floor_key(key, metric)
                worst[fk] = max(worst.get(fk, 0.0), abs(d))
                suite_of_key[fk] = suite_of(b)
        for suite in set(bc) & set(cc):
            for k, gap in condition_gaps(bc[suite], cc[suite]).items():
                limits[k] = max(limits.get(k, 0.0), gap)
    # Pooled over the suite's benchmarks with the same metric: on a shared machine a whole
    # benchmark now and then runs at half speed, fastest sample included (the CPU itself was
    # slower), and which benchmark it hits is chance; ten pairs of one benchmark do not see
    # that tail, the suite's benchmarks together do (decision 0300).
    pooled: dict[tuple[str, str], float] = {}
    for k, v in worst.items():
        cls = (suite_of_key[k], k.rsplit("|", 1)[1] if "|" in k else "time")
        pooled[cls] = max(pooled.get(cls, 0.0), v)
    own = {k: round(math.expm1(safety * v), 4) for k, v in sorted(worst.items())}
    floors = {
        k: round(
            math.expm1(
                safety * pooled[(suite_of_key[k], k.rsplit("|", 1)[1] if "|" in k else "time")]
            ),
            4,
        )
        for k in sorted(worst)
    }
    suites: dict[str, float] = {}
    for k, v in floors.items():
        s = suite_of_key[k]
        suites[s] = max(suites.get(s, 0.0), v)
    return {
        "format": FLOOR_FORMAT,
        "version": FLOOR_VERSION,
        "created": (created or datetime.now(UTC)).isoformat(timespec="seconds"),
        "method": f"floor = exp({safety:g} x max |log change| over the A/A pairs and over the "
        "suite's benchmarks with the same metric) - 1; 'own': the same from the benchmark's "
        "own pairs alone (for reference, not used)",
        "statistic": "wall time: the fastest sample, as the 1/(n+1) quantile of each run with n "
        "the size of the smallest run of the pair; other "
        "wall-time figures: the run's value",
        "safety": safety,
        "pairs": used,
        "calibration_runs": list(runs),
        "limits": {k: round(v, 4) for k, v in sorted(limits.items())},
        "suites": dict(sorted(suites.items())),
        "default": max(floors.values(), default=None),
        "floors": floors,
        "own": own,
    }


def conditions_of(paths: Sequence[Path]) -> list[SuiteConditions]:
    """The recorded conditions of each results folder (``{}`` for a pytest-benchmark JSON file
    or a manifest written before conditions were recorded)."""
    from bench import results
    from bench.conditions import from_manifest

    out: list[SuiteConditions] = []
    for path in paths:
        folder = path.parent if path.name == "manifest.json" else path
        if not folder.is_dir():
            out.append({})
            continue
        try:
            out.append(from_manifest(results.read_manifest(folder)))
        except results.ResultsFormatError as exc:
            raise GateInputError(str(exc)) from None
    return out


@dataclass(frozen=True, slots=True)
class BetweenRuns:
    """How :func:`bench.gate.evaluate` judges wall time between separate runs.

    ``floor``: the stored floor (None: none); ``repeated``: both sides have several runs, so
    each benchmark's floor is measured from them (:func:`repeated_floor`) where it can be;
    ``differences``: per suite, what differs beyond the floor's coverage (non-empty: that
    suite's wall-time verdicts are "not comparable").
    """

    floor: Floor | None
    repeated: bool = False
    safety: float = DEFAULT_SAFETY
    differences: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def not_comparable(self, rec: BenchRecord) -> Sequence[str]:
        return self.differences.get(suite_of(rec), ())

    def floor_of(
        self, base: BenchRecord, cand: BenchRecord, metric: str
    ) -> tuple[float, str] | None:
        """The floor (log units) for this benchmark metric and where it came from."""
        if self.repeated:
            own = repeated_floor(base, cand, metric, self.safety)
            if own is not None:
                n = (len(_run_values(base, metric)), len(_run_values(cand, metric)))
                return (
                    own,
                    f"{self.safety:g} x largest change between runs of a side ({n[0]}+{n[1]} runs)",
                )
        if self.floor is None:
            return None
        return self.floor.floor_for(base, metric)
