"""The gate's verdicts: each benchmark metric of two sides judged against its rule.

:func:`evaluate` is pure (seeded, no I/O); the statistics are :mod:`bench.stats`. Between
separate runs (``between``, :mod:`bench.gate.floor`), a wall-time change must also exceed the
between-run floor, and a suite whose recorded conditions differ beyond what the floor covers
gets "not comparable" wall-time verdicts.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from bench import stats
from bench.gate.floor import BetweenRuns, change, is_timing_metric
from bench.gate.inputs import BenchRecord, ResultSet
from bench.gate.rules import Direction, GateConfig, Rule
from bench.stats import aa_spread, decide

__all__ = [
    "MIN_PAIRED_ROUNDS",
    "Status",
    "Verdict",
    "evaluate",
    "timer_differences",
    "unused_rules",
]

Status = Literal[
    "improved",
    "unchanged",
    "regressed",
    "inconclusive",
    "added",
    "removed",
    "insufficient data",
    "not comparable",
]


@dataclass(slots=True)
class Verdict:
    """The outcome for one benchmark and metric; ``ratio`` is candidate / baseline (medians)."""

    key: str
    name: str
    group: str
    metric: str
    status: Status
    direction: Direction = "lower"
    allowed: float = 0.0
    test: str = "samples"
    baseline: float | None = None
    candidate: float | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    n_baseline: int = 0
    n_candidate: int = 0
    runs_baseline: int = 0
    runs_candidate: int = 0
    reason: str = ""
    paired: bool = False
    """True when the paired round test decided (then ``ratio`` is the trimmed geometric mean of
    the per-round median ratios); False for the unpaired test (ratio of pooled medians)."""
    noise: float | None = None
    """Instructions: the spread taken as noise (max of the A/A file's and each side's own)."""
    margin: float | None = None
    """Instructions: ``safety x noise``, the change a regression must also exceed."""
    blocking: bool = True
    """An ``inconclusive`` verdict fails the gate (the rule's ``on_inconclusive = "fail"``)."""
    floor: float | None = None
    """Between separate runs: the between-run floor of this wall-time metric (0.2: +-20 %)."""
    between_change: float | None = None
    """Between separate runs: the change judged against ``floor`` (of the fastest sample, or
    of the run's figure; median over a side's runs)."""

    @property
    def change(self) -> float | None:
        """Relative change of the metric (+0.10: 10 % larger)."""
        return None if self.ratio is None else self.ratio - 1.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["change"] = self.change
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()
        }


def _median(values: Sequence[float]) -> float:
    return stats.ratio_of_medians([1.0], values)


def _values(rec: BenchRecord, metric: str) -> list[float] | None:
    if metric == "time":
        return rec.samples
    return rec.extra.get(metric)


def _decide(v: Verdict, significant: bool) -> None:
    assert v.ratio is not None
    if v.direction == "lower":
        worse, better = v.ratio > 1.0 + v.allowed, v.ratio < 1.0 - v.allowed
        sig_worse = significant and (v.ci_low is None or v.ci_low > 1.0)
        sig_better = significant and (v.ci_high is None or v.ci_high < 1.0)
    else:
        worse, better = v.ratio < 1.0 - v.allowed, v.ratio > 1.0 + v.allowed
        sig_worse = significant and (v.ci_high is None or v.ci_high < 1.0)
        sig_better = significant and (v.ci_low is None or v.ci_low > 1.0)
    pct = f"{v.ratio - 1.0:+.1%}" if math.isfinite(v.ratio) else "inf"
    if worse and sig_worse:
        v.status, v.reason = "regressed", f"{pct} beyond allowed {v.allowed:.0%}"
    elif better and sig_better:
        v.status, v.reason = "improved", f"{pct} beyond allowed {v.allowed:.0%}"
    else:
        v.status = "unchanged"
        if worse or better:
            v.reason = f"{pct} not significant"
        elif significant:
            v.reason = f"{pct} significant but within allowed {v.allowed:.0%}"
        else:
            v.reason = f"{pct} within noise"


_INSTRUCTION_STATUS: dict[str, Status] = {
    "regression": "regressed",
    "improvement": "improved",
    "inconclusive": "inconclusive",
    "unchanged": "unchanged",
}


def _judge_counts(
    v: Verdict, bv: Sequence[float], cv: Sequence[float], rule: Rule, spreads: Mapping[str, float]
) -> None:
    """An instructions verdict: :func:`decide` with the A/A spread of the rule's spreads file.

    Without a measured spread the counts themselves must show the noise: at least two counts
    on each side; otherwise the verdict stays ``insufficient data`` (never a silent pass).
    """
    if min(*bv, *cv) <= 0:
        v.reason = "an instruction count <= 0 (a broken count)"
        return
    v.baseline, v.candidate = _median(bv), _median(cv)
    v.runs_baseline, v.runs_candidate = len(bv), len(cv)
    spread = spreads.get(v.key)
    file = Path(rule.spreads).name
    if spread is None and min(len(bv), len(cv)) < 2:
        v.ratio = v.candidate / v.baseline
        v.reason = (
            f"no A/A spread for this benchmark in {file} and {len(bv)} vs {len(cv)} counts: "
            "the noise is unknown (measure it: python -m studies.instructions_study aa, "
            "or count >= 2 processes per side)"
        )
        return
    d = decide(bv, cv, spread=spread, tolerance=rule.allowed, safety=rule.safety)
    v.ratio, v.noise, v.margin = d.candidate / d.baseline, d.noise, d.margin
    v.status = _INSTRUCTION_STATUS[d.verdict]
    own = [aa_spread(x) for x in (bv, cv) if len(x) > 1]
    source = " + ".join(
        ([] if spread is None else [f"A/A {spread:.3%} ({file})"])
        + ([f"in-run {max(own):.3%}"] if own else [])
    )
    change = f"{d.change:+.2%}"
    allowed = f"allowed {rule.allowed:.1%}"
    margin = f"margin {d.margin:.3%} = {rule.safety:g} x spread [{source}]"
    if d.verdict == "unchanged":
        v.reason = f"{change} below {allowed}"
    elif d.verdict == "inconclusive":
        v.blocking = rule.blocks_inconclusive
        v.reason = (
            f"{change} reaches {allowed} but is within {margin}: too noisy to tell at this "
            f"tolerance; {'fails' if v.blocking else 'passes'} (on_inconclusive = "
            f"{rule.on_inconclusive})"
        )
    else:
        v.reason = f"{change} reaches {allowed} and is beyond {margin}"


CANNOT_TELL = "cannot tell"
"""The start of the reason of a "not comparable" verdict whose change is within the floor."""


def _cannot_tell(v: Verdict, d: float, source: str) -> None:
    """A change beyond ``allowed`` but within the between-run floor: not comparable."""
    assert v.floor is not None
    what = "fastest sample" if v.metric == "time" else "figure"
    v.status = "not comparable"
    v.reason = (
        f"{CANNOT_TELL}: {what} {math.expm1(d):+.1%} is beyond allowed {v.allowed:.0%} but "
        f"within the between-run floor +-{v.floor:.0%} ({source}) of separate runs on this "
        "machine"
    )


def _apply_floor(v: Verdict, b: BenchRecord, c: BenchRecord, between: BetweenRuns) -> None:
    """Between separate runs, after the test: a regression or improvement stands only beyond
    the between-run floor; within it the verdict is "not comparable" (cannot tell)."""
    found = between.floor_of(b, c, v.metric)
    d = change(b, c, v.metric)
    if found is None or d is None:
        return
    floor_log, source = found
    v.floor, v.between_change = math.expm1(floor_log), math.expm1(d)
    if v.status not in ("regressed", "improved"):
        return
    worse = v.status == "regressed"
    sign = 1.0 if (v.direction == "lower") == worse else -1.0
    if sign * d > floor_log and abs(d) > math.log1p(v.allowed):
        v.reason += f"; beyond the between-run floor +-{v.floor:.0%} ({source})"
    elif abs(d) <= math.log1p(v.allowed):
        v.status = "unchanged"
        v.reason += f"; but the {'fastest sample' if v.metric == 'time' else 'figure'} moved {math.expm1(d):+.1%}, within allowed"
    else:
        _cannot_tell(v, d, source)


def _within_floor(v: Verdict, b: BenchRecord, c: BenchRecord, between: BetweenRuns) -> bool:
    """Between separate runs, screen before the statistics (True: decided, not tested): a
    change of the fastest sample within ``allowed`` is "unchanged"; beyond it but within the
    floor, "not comparable" (cannot tell from these runs)."""
    found = between.floor_of(b, c, v.metric)
    d = change(b, c, v.metric)
    if found is None or d is None:
        return False
    floor_log, source = found
    if abs(d) > floor_log and abs(d) > math.log1p(v.allowed):
        return False
    v.floor, v.between_change = math.expm1(floor_log), math.expm1(d)
    if abs(d) > math.log1p(v.allowed):
        _cannot_tell(v, d, source)
        return True
    v.status = "unchanged"
    median = f"{v.ratio - 1.0:+.1%}" if v.ratio is not None and math.isfinite(v.ratio) else "n/a"
    v.reason = (
        f"fastest sample {math.expm1(d):+.1%} within allowed {v.allowed:.0%} "
        f"(median {median}; between-run floor +-{v.floor:.0%}); not tested"
    )
    return True


MIN_PAIRED_ROUNDS = 3


def _pairable(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> bool:
    if len(a) != len(b) or len(a) < MIN_PAIRED_ROUNDS:
        return False
    return all(len(x) and len(y) for x, y in zip(a, b, strict=True))


def evaluate(
    baseline: ResultSet,
    candidate: ResultSet,
    config: GateConfig,
    *,
    select: str | None = None,
    seed: int | None = None,
    paired: bool = False,
    metrics: Collection[str] = (),
    progress: Callable[[int, int], None] | None = None,
    between: BetweenRuns | None = None,
) -> list[Verdict]:
    """Verdicts for every benchmark and checked metric (pure: seeded, no I/O).

    ``metrics``: judge only these metrics (all when empty); the others are not computed.
    ``progress(done, total)`` is called before each benchmark and at the end.

    ``paired``: the sides' runs are interleaved rounds in the same order (``--baseline-ref``);
    the time metric of a benchmark with the same number (>= 3) of non-empty runs on both sides
    is then judged by the paired round test, other metrics and benchmarks by the unpaired one.

    ``between`` (separate runs, not ``paired``): wall-time metrics (time, and ``*_ms`` /
    ``*per_s`` figures) of a suite whose conditions differ beyond the floor's coverage are
    "not comparable"; the others regress or improve only beyond the between-run floor.
    """
    if paired:
        between = None
    seed = config.seed if seed is None else seed
    keys = list(baseline.benches) + [k for k in candidate.benches if k not in baseline.benches]
    verdicts: list[Verdict] = []
    tested: list[Verdict] = []
    floored: list[tuple[Verdict, BenchRecord, BenchRecord]] = []
    for done, key in enumerate(keys):
        if progress is not None:
            progress(done, len(keys))
        b, c = baseline.benches.get(key), candidate.benches.get(key)
        rec = b or c
        assert rec is not None
        if select and not (
            fnmatch.fnmatchcase(rec.key, select)
            or fnmatch.fnmatchcase(rec.name, select)
            or fnmatch.fnmatchcase(rec.group, select)
        ):
            continue
        if b is None or c is None:
            status: Status = "added" if b is None else "removed"
            side = c if b is None else b
            assert side is not None
            med = _median(side.samples) if side.samples else None
            verdicts.append(
                Verdict(
                    key,
                    rec.name,
                    rec.group,
                    "time",
                    status,
                    baseline=None if b is None else med,
                    candidate=None if c is None else med,
                    n_baseline=len(b.samples) if b else 0,
                    n_candidate=len(c.samples) if c else 0,
                    reason="only in candidate" if b is None else "only in baseline",
                )
            )
            continue
        rules = config.rules_for(b)
        for metric, rule in rules.items():
            if metrics and metric not in metrics:
                continue
            bv, cv = _values(b, metric), _values(c, metric)
            if metric != "time" and bv is None and cv is None:
                continue
            v = Verdict(
                key,
                rec.name,
                rec.group,
                metric,
                "insufficient data",
                direction=rule.direction,
                allowed=rule.allowed,
                test=rule.test,
                n_baseline=len(bv or []),
                n_candidate=len(cv or []),
            )
            verdicts.append(v)
            timing = (
                between is not None
                and (is_timing_metric(metric) or rule.wall_clock)
                and rule.test != "spread"
            )
            if timing and between is not None and between.not_comparable(b):
                v.status = "not comparable"
                v.reason = "run conditions differ: " + "; ".join(between.not_comparable(b))
                continue
            if not bv or not cv:
                where = "baseline" if not bv else "candidate"
                what = "raw samples (stats.data)" if metric == "time" else metric
                v.reason = f"no {what} in {where}"
                if rule.test == "spread":
                    v.reason = (
                        f"no instruction count in {where} (count it: samplemind-bench run "
                        "--instructions, or gate --baseline-ref ... --instructions)"
                    )
                continue
            if rule.test == "spread":
                _judge_counts(v, bv, cv, rule, config.spreads.get(rule.spreads, {}))
                continue
            v.baseline = _median(bv)
            v.candidate = _median(cv)
            v.ratio = stats.ratio_of_medians(bv, cv)
            if rule.test == "exact":
                v.ci_low = v.ci_high = v.ratio
                _decide(v, significant=v.ratio != 1.0)
                if v.ratio == 1.0:
                    v.reason = "exact: no change"
                elif v.status == "unchanged":
                    v.reason = f"exact: {v.ratio - 1.0:+.1%} within allowed {v.allowed:.0%}"
                if timing and between is not None:
                    _apply_floor(v, b, c, between)
                continue
            if min(len(bv), len(cv)) < config.min_samples:
                v.reason = f"fewer than {config.min_samples} samples ({len(bv)} vs {len(cv)})"
                continue
            if timing and between is not None and _within_floor(v, b, c, between):
                continue  # cannot regress or improve: not tested (nor counted by the correction)
            if paired and metric == "time" and _pairable(b.runs, c.runs):
                cmp = stats.compare_paired(
                    b.runs, c.runs, confidence=config.confidence, trim=config.trim
                )
                v.ratio, v.paired = cmp.ratio, True
            else:
                cmp = stats.compare_samples(
                    bv,
                    cv,
                    confidence=config.confidence,
                    n_boot=config.n_boot,
                    seed=stats.stable_seed(seed, f"{key}|{metric}"),
                    baseline_runs=b.runs if metric == "time" else None,
                    candidate_runs=c.runs if metric == "time" else None,
                )
            v.ci_low, v.ci_high, v.p_value = cmp.ci_low, cmp.ci_high, cmp.p_value
            v.runs_baseline = len(b.runs) if metric == "time" else len(bv)
            v.runs_candidate = len(c.runs) if metric == "time" else len(cv)
            tested.append(v)
            if timing:
                floored.append((v, b, c))
    pvals = [v.p_value for v in tested if v.p_value is not None]
    if config.correction == "holm":
        adjusted = stats.holm(pvals)
    elif config.correction == "bh":
        adjusted = stats.benjamini_hochberg(pvals)
    else:
        adjusted = list(pvals)
    for v, p in zip(tested, adjusted, strict=True):
        v.p_adjusted = p
        _decide(v, significant=p < config.alpha)
        if v.paired:
            v.reason += f" (paired, {v.runs_baseline} rounds)"
    if between is not None:
        for v, b, c in floored:
            _apply_floor(v, b, c, between)
    return verdicts


def unused_rules(config: GateConfig, *sets: ResultSet) -> list[str]:
    """Rules that apply to nothing in these results: their globs match no benchmark, or no
    matching benchmark has their metric (a typo such as ``hit_rtae`` or ``name = "[abc"``)."""
    out = []
    for i, rule in enumerate(config.rules, 1):
        recs = [r for rs in sets for r in rs.benches.values() if rule.matches(r)]
        if rule.metric != "time":
            recs = [r for r in recs if rule.metric in r.extra]
        if not recs:
            what = (
                "benchmark" if rule.metric == "time" else f"benchmark with a {rule.metric!r} figure"
            )
            out.append(f"rule #{i} ({rule.describe()}) matches no {what}")
    return out


def timer_differences(baseline: ResultSet, candidate: ResultSet) -> list[str]:
    """Benchmarks timed with different clocks on the two sides (their samples do not compare)."""
    out = []
    for key, b in baseline.benches.items():
        c = candidate.benches.get(key)
        if c is not None and b.timer and c.timer and b.timer != c.timer:
            out.append(f"timer of {key}: baseline {b.timer}, candidate {c.timer}")
    return out
