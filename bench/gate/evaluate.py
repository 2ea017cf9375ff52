"""``samplemind-bench gate``: compare a candidate's benchmark results with a baseline's.

Inputs are results folders (``manifest.json`` + pytest-benchmark JSON per suite, see the team
contract), single pytest-benchmark JSON files, or ``--baseline-ref REF``: a git worktree of REF
run interleaved with the working tree in this job (:mod:`bench._abrun`).

A metric of a benchmark *regresses* only when the change is statistically significant on the raw
samples AND larger than the rule's allowed change, with a Holm / Benjamini-Hochberg correction over
all comparisons. Two tests:

* **paired** (``--baseline-ref``, or ``--paired`` for folders given as interleaved pairs): round
  ``i`` of the baseline and of the candidate ran together (at once on one shared CPU, or back
  to back with ``--schedule alternate``), so the gate takes each round's
  ``log(median ratio)`` and runs Yuen's trimmed-mean t-test on them (:func:`_stats.compare_paired`);
  the ratio is their trimmed geometric mean. Slow machine phases cancel within a round.
* **unpaired** (otherwise): Mann-Whitney U and a seeded run-aware bootstrap CI of the ratio of
  medians that excludes 1.

Rules come from ``bench/gate.toml`` (or ``--rules``); a rule's ``timer = "cpu"`` makes
``--baseline-ref`` time that suite with the process's CPU time (``--benchmark-timer
time.process_time``), which on a shared machine removes the time spent descheduled.

Exit codes: 0 pass, 1 regression or insufficient data, 2 bad input (missing/empty/corrupt file,
unknown format version, a bad rules file, a side without raw samples, nothing compared, failed
baseline run), 3 not comparable (environments differ; ``--ignore-env``).

"insufficient data" never passes on its own: a comparison that lacks data on a side (no raw
samples, a figure missing, fewer than ``min_samples``) fails the gate (exit 1) unless a rule
marks it ``skip = true``; a gate that could compare nothing at all exits 2.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench import _abrun, _envfp, _stats

__all__ = [
    "DEFAULT_RULES",
    "EXIT_BAD_INPUT",
    "EXIT_NOT_COMPARABLE",
    "EXIT_PASS",
    "EXIT_REGRESSION",
    "BenchRecord",
    "GateConfig",
    "GateInputError",
    "GateReport",
    "ResultSet",
    "Rule",
    "Verdict",
    "check_settings",
    "evaluate",
    "load_config",
    "load_results",
    "main",
    "pool",
    "require_samples",
    "same_input_warnings",
    "timer_differences",
    "unused_rules",
]

EXIT_PASS = 0
EXIT_REGRESSION = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_COMPARABLE = 3

RESULTS_FORMAT = "samplemind-bench-results"
SUPPORTED_VERSIONS = frozenset({1})
DEFAULT_RULES = Path(__file__).with_name("gate.toml")

Status = Literal["improved", "unchanged", "regressed", "added", "removed", "insufficient data"]
Direction = Literal["lower", "higher"]
Timer = Literal["wall", "cpu"]

TIMER_FUNCTIONS: dict[str, str] = {"wall": "time.perf_counter", "cpu": "time.process_time"}
"""pytest-benchmark ``--benchmark-timer`` value of each rule timer."""

_DEFAULT_SUITES = ("hashing", "fingerprint", "router", "cache")
_HIGHER_IS_BETTER = ("req_per_s", "gbps", "hit_rate", "success_rate", "ops", "throughput")


class GateInputError(Exception):
    """Bad gate input; the message names the offending file."""


# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class BenchRecord:
    """One benchmark's raw figures, possibly pooled over several runs."""

    key: str
    name: str
    group: str
    samples: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    runs: list[list[float]] = field(default_factory=list)
    """The samples of each run separately (pooled sets: one entry per results folder)."""
    timer: str = ""
    """pytest-benchmark's timer (``options.timer``), e.g. ``time.perf_counter``; "" if unknown."""


@dataclass(slots=True)
class ResultSet:
    """The benchmarks of one side, with where they came from and the environment they ran in."""

    sources: list[str]
    environment: dict[str, Any]
    benches: dict[str, BenchRecord]
    commit: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    """The benchmark JSON files read."""


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise GateInputError(f"{path}: file not found")
    if not path.is_file():
        raise GateInputError(f"{path}: not a file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise GateInputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if not raw.strip():
        raise GateInputError(f"{path}: file is empty")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise GateInputError(f"{path}: not valid JSON ({exc})") from exc


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None


def _parse_benchmarks(doc: Any, path: Path) -> dict[str, BenchRecord]:
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        raise GateInputError(
            f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list); "
            "write it with --benchmark-json"
        )
    out: dict[str, BenchRecord] = {}
    for i, bench in enumerate(doc["benchmarks"]):
        if not isinstance(bench, dict) or not isinstance(bench.get("name"), str):
            raise GateInputError(f"{path}: benchmark #{i} has no name")
        stats = bench.get("stats")
        if not isinstance(stats, dict):
            raise GateInputError(f"{path}: benchmark {bench['name']!r} has no 'stats' object")
        data = stats.get("data")
        if data is not None and not isinstance(data, list):
            raise GateInputError(f"{path}: benchmark {bench['name']!r}: stats.data is not a list")
        samples: list[float] = []
        if isinstance(data, list):
            for v in data:
                n = _number(v)
                if n is None:
                    raise GateInputError(
                        f"{path}: benchmark {bench['name']!r} has a non-numeric sample {v!r}"
                    )
                samples.append(n)
        extra_info = bench.get("extra_info") or {}
        if not isinstance(extra_info, dict):
            raise GateInputError(
                f"{path}: benchmark {bench['name']!r}: extra_info is not an object"
            )
        extra: dict[str, list[float]] = {}
        for k, v in extra_info.items():
            n = _number(v)
            if n is not None:
                extra[str(k)] = [n]
        key = str(bench.get("fullname") or bench["name"])
        options = bench.get("options")
        timer = options.get("timer") if isinstance(options, dict) else None
        if key in out:
            raise GateInputError(f"{path}: benchmark {key!r} appears twice")
        out[key] = BenchRecord(
            key=key,
            name=bench["name"],
            group=str(bench.get("group") or ""),
            samples=samples,
            extra=extra,
            runs=[list(samples)],
            timer=str(timer) if timer else "",
        )
    return out


def load_results(path: Path) -> ResultSet:
    """Load a results folder (or its ``manifest.json``) or a single pytest-benchmark JSON file."""
    if path.is_file() and path.name == "manifest.json":
        path = path.parent
    if path.is_dir():
        manifest_path = path / "manifest.json"
        manifest = _read_json(manifest_path)
        if not isinstance(manifest, dict) or manifest.get("format") != RESULTS_FORMAT:
            raise GateInputError(f"{manifest_path}: not a {RESULTS_FORMAT} manifest")
        version = manifest.get("version")
        if type(version) is not int or version not in SUPPORTED_VERSIONS:
            raise GateInputError(
                f"{manifest_path}: unknown format version {version!r} "
                f"(this gate reads {sorted(SUPPORTED_VERSIONS)})"
            )
        files = manifest.get("files")
        if not isinstance(files, list) or not files:
            raise GateInputError(f"{manifest_path}: 'files' is missing or empty")
        benches: dict[str, BenchRecord] = {}
        for name in files:
            if (
                not isinstance(name, str)
                or not name
                or Path(name).is_absolute()
                or ".." in Path(name).parts
            ):
                raise GateInputError(
                    f"{manifest_path}: 'files' entry {name!r} is not a file name in the folder"
                )
            file_path = path / name
            for key, rec in _parse_benchmarks(_read_json(file_path), file_path).items():
                if key in benches:
                    raise GateInputError(f"{file_path}: benchmark {key!r} is also in another file")
                benches[key] = rec
        commit = manifest.get("commit")
        return ResultSet(
            sources=[str(path)],
            environment=_environment(manifest.get("environment"), manifest_path),
            benches=benches,
            commit=dict(commit) if isinstance(commit, dict) else {},
            files=[str(path / n) for n in files],
        )
    if not path.exists():
        raise GateInputError(f"{path}: no such results folder or file")
    doc = _read_json(path)
    benches = _parse_benchmarks(doc, path)
    machine = doc.get("machine_info")
    env = _envfp.from_machine_info(machine) if isinstance(machine, dict) else {}
    commit = doc.get("commit_info")
    return ResultSet(
        sources=[str(path)],
        environment=env,
        benches=benches,
        commit=dict(commit) if isinstance(commit, dict) else {},
        files=[str(path)],
    )


def _environment(env: Any, where: Path) -> dict[str, Any]:
    """The manifest's environment block; a malformed one is bad input, not a crash later."""
    if env is None:
        return {}
    if not isinstance(env, dict):
        raise GateInputError(f"{where}: 'environment' is not an object")
    if not isinstance(env.get("packages") or {}, dict):
        raise GateInputError(f"{where}: 'environment.packages' is not an object")
    return dict(env)


def require_samples(side: str, rs: ResultSet) -> None:
    """Refuse a side none of whose benchmarks carries raw samples: the gate would compare nothing."""
    if any(rec.samples for rec in rs.benches.values()):
        return
    what = "no benchmarks" if not rs.benches else "no raw samples (stats.data) in any benchmark"
    raise GateInputError(
        f"{side} {', '.join(rs.files or rs.sources)}: {what}; nothing to compare "
        "(write results with samplemind-bench run, or pytest --benchmark-json)"
    )


def pool(sets: Sequence[ResultSet]) -> tuple[ResultSet, list[str]]:
    """Merge several runs of one side; returns the pooled set and environment differences among them."""
    if not sets:
        raise GateInputError("no results given")
    first = sets[0]
    diffs: list[str] = []
    benches: dict[str, BenchRecord] = {}
    for rs in sets:
        diffs += [
            f"{rs.sources[0]} vs {first.sources[0]}: {d}"
            for d in _envfp.differences(first.environment, rs.environment)
        ]
        for key, rec in rs.benches.items():
            have = benches.get(key)
            if have is None:
                benches[key] = BenchRecord(
                    key,
                    rec.name,
                    rec.group,
                    list(rec.samples),
                    {k: list(v) for k, v in rec.extra.items()},
                    [list(r) for r in rec.runs],
                    rec.timer,
                )
                continue
            if rec.timer and have.timer and rec.timer != have.timer:
                diffs.append(
                    f"{rs.sources[0]} vs {first.sources[0]}: {key} timed with "
                    f"{rec.timer} vs {have.timer}"
                )
            have.samples.extend(rec.samples)
            have.runs.extend(list(r) for r in rec.runs)
            for k, v in rec.extra.items():
                have.extra.setdefault(k, []).extend(v)
    sources = [s for rs in sets for s in rs.sources]
    files = [f for rs in sets for f in rs.files]
    return ResultSet(sources, dict(first.environment), benches, dict(first.commit), files), diffs


# --------------------------------------------------------------------------- rules


def _fraction(value: Any, where: str, key: str = "allowed") -> float:
    """A tolerated change: "10%" or 0.10; finite and not negative."""
    n: float | None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            n = float(value.strip()[:-1]) / 100.0
        except ValueError:
            n = None
    else:
        n = _number(value)
    if n is None or not math.isfinite(n) or n < 0:
        raise GateInputError(
            f'{where}: {key!r} must be a change >= 0 like "10%" or 0.10, got {value!r}'
        )
    return n


def default_direction(metric: str) -> Direction:
    """Latency, time and cost: lower is better; throughput, hit and success rates: higher."""
    return "higher" if any(metric.endswith(h) for h in _HIGHER_IS_BETTER) else "lower"


@dataclass(frozen=True, slots=True)
class Rule:
    """Which benchmarks (globs), which metric, which direction is better, how much change is allowed."""

    name: str = "*"
    group: str = "*"
    metric: str = "time"
    direction: Direction = "lower"
    allowed: float = 0.10
    test: Literal["samples", "exact"] = "samples"
    skip: bool = False
    timer: Timer = "wall"
    """Clock for ``--baseline-ref`` runs of the suites this rule covers (``time`` rules only)."""

    def matches(self, rec: BenchRecord) -> bool:
        name_ok = fnmatch.fnmatchcase(rec.name, self.name) or fnmatch.fnmatchcase(
            rec.key, self.name
        )
        return name_ok and fnmatch.fnmatchcase(rec.group, self.group)

    def describe(self) -> str:
        timer = f" timer={self.timer}" if self.metric == "time" else ""
        return (
            f"name={self.name} group={self.group} metric={self.metric} "
            f"allowed={self.allowed:.0%}{timer}"
        )


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Statistical settings and rules (``[gate]``, ``[environment]`` and ``[[rule]]`` of the TOML)."""

    rules: tuple[Rule, ...] = ()
    alpha: float = 0.01
    correction: Literal["holm", "bh", "none"] = "holm"
    confidence: float = 0.99
    n_boot: int = 2000
    seed: int = 0
    min_samples: int = 5
    default_allowed: float = 0.10
    rounds: int = 5
    suites: tuple[str, ...] = _DEFAULT_SUITES
    env_fields: tuple[str, ...] = _envfp.FIELDS
    ignore_packages: tuple[str, ...] = tuple(sorted(_envfp.DEFAULT_IGNORED_PACKAGES))
    source: str = "built-in"
    trim: float = 0.2
    """Paired test: fraction of rounds trimmed from each end (Yuen)."""

    def suite_timer(self, suite: str) -> Timer:
        """The clock a suite runs with under ``--baseline-ref``.

        That of the first suite-wide (``name = "*"``) ``time`` rule whose group glob covers
        ``<suite>/*``; wall time when none does. Benchmark-specific rules cannot change the
        clock of a whole suite run.
        """
        for rule in self.rules:
            suite_wide = rule.metric == "time" and rule.name == "*" and not rule.skip
            if suite_wide and fnmatch.fnmatchcase(f"{suite}/*", rule.group):
                return rule.timer
        return "wall"

    def rules_for(self, rec: BenchRecord) -> dict[str, Rule]:
        """First matching rule per metric; ``time`` always checked (default rule) unless skipped."""
        chosen: dict[str, Rule] = {}
        for rule in self.rules:
            if rule.metric not in chosen and rule.matches(rec):
                chosen[rule.metric] = rule
        chosen.setdefault("time", Rule(allowed=self.default_allowed))
        return {m: r for m, r in chosen.items() if not r.skip}


_RULE_KEYS = frozenset({"name", "group", "metric", "direction", "allowed", "test", "skip", "timer"})
_GATE_KEYS = frozenset(
    {"alpha", "correction", "confidence", "n_boot", "seed", "min_samples", "default_allowed"}
    | {"rounds", "suites", "trim"}
)
_ENV_KEYS = frozenset({"fields", "ignore_packages"})


def _table(doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise GateInputError(f"{where}: [{key}] must be a table")
    return value


def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise GateInputError(f"{where}: {key} must be a list of non-empty strings, got {value!r}")
    return tuple(value)


def _in_range(
    value: Any, where: str, key: str, lo: float, hi: float, *, integer: bool = False
) -> Any:
    """``value`` if it is a number (an integer when asked) with ``lo <= value <= hi``."""
    n = _number(value)
    if n is None or (integer and not isinstance(value, int)) or not lo <= n <= hi:
        kind, span = (
            ("an integer", f"[{int(lo)}, {int(hi)}]")
            if integer
            else ("a number", f"[{lo:g}, {hi:g}]")
        )
        raise GateInputError(f"{where}: {key} must be {kind} in {span}, got {value!r}")
    return value


def check_settings(values: Mapping[str, Any], where: str, *, prefix: str = "") -> None:
    """Range checks of the numeric settings (rules file or command-line overrides)."""
    limits: dict[str, tuple[float, float, bool]] = {
        "alpha": (1e-12, 0.5, False),
        "confidence": (0.5, 1 - 1e-9, False),
        "n_boot": (100, 10**6, True),
        "seed": (0, 2**63 - 1, True),
        "min_samples": (2, 10**9, True),
        "rounds": (1, 10**5, True),
        "trim": (0.0, 0.45, False),
    }
    for key, value in values.items():
        if key in limits:
            lo, hi, integer = limits[key]
            _in_range(value, where, prefix + key, lo, hi, integer=integer)


def load_config(path: Path | None = None) -> GateConfig:
    """Read a rules file (default: ``bench/gate.toml``); anything malformed raises GateInputError."""
    path = path or DEFAULT_RULES
    if not path.is_file():
        raise GateInputError(f"{path}: rules file not found")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise GateInputError(f"{path}: not valid TOML ({exc})") from exc
    except OSError as exc:
        raise GateInputError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    unknown = set(doc) - {"gate", "environment", "rule"}
    if unknown:
        raise GateInputError(
            f"{path}: unknown sections {sorted(unknown)} (gate, environment, rule)"
        )
    g = _table(doc, "gate", str(path))
    e = _table(doc, "environment", str(path))
    for section, table, known in (("gate", g, _GATE_KEYS), ("environment", e, _ENV_KEYS)):
        unknown = set(table) - known
        if unknown:
            raise GateInputError(f"{path}: [{section}] unknown keys {sorted(unknown)}")
    rule_docs = doc.get("rule", [])
    if not isinstance(rule_docs, list):
        raise GateInputError(f"{path}: rules must be [[rule]] tables")
    rules: list[Rule] = []
    for i, r in enumerate(rule_docs):
        where = f"{path}: rule #{i + 1}"
        if not isinstance(r, dict):
            raise GateInputError(f"{where}: not a table")
        unknown = set(r) - _RULE_KEYS
        if unknown:
            raise GateInputError(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("name", "group", "metric"):
            if key in r and not (isinstance(r[key], str) and r[key]):
                raise GateInputError(f"{where}: {key} must be a non-empty string, got {r[key]!r}")
        metric = r.get("metric", "time")
        direction = r.get("direction", default_direction(metric))
        test = r.get("test", "samples")
        if direction not in ("lower", "higher") or test not in ("samples", "exact"):
            raise GateInputError(f"{where}: direction must be lower|higher, test samples|exact")
        timer = r.get("timer", "wall")
        if timer not in ("wall", "cpu") or (timer != "wall" and metric != "time"):
            raise GateInputError(f'{where}: timer must be "wall" or "cpu" (time rules only)')
        skip = r.get("skip", False)
        if not isinstance(skip, bool):
            raise GateInputError(f"{where}: skip must be true or false, got {skip!r}")
        rules.append(
            Rule(
                name=r.get("name", "*"),
                group=r.get("group", "*"),
                metric=metric,
                direction=direction,
                allowed=_fraction(r.get("allowed", "10%"), where, "allowed"),
                test=test,
                skip=skip,
                timer=timer,
            )
        )
    correction = g.get("correction", "holm")
    if correction not in ("holm", "bh", "none"):
        raise GateInputError(f"{path}: [gate] correction must be holm|bh|none")
    check_settings(g, f"{path}: [gate]")
    return GateConfig(
        rules=tuple(rules),
        alpha=float(g.get("alpha", 0.01)),
        correction=correction,
        confidence=float(g.get("confidence", 0.99)),
        n_boot=int(g.get("n_boot", 2000)),
        seed=int(g.get("seed", 0)),
        min_samples=int(g.get("min_samples", 5)),
        default_allowed=_fraction(
            g.get("default_allowed", "10%"), f"{path}: [gate]", "default_allowed"
        ),
        rounds=int(g.get("rounds", 5)),
        suites=_strings(g.get("suites", list(_DEFAULT_SUITES)), f"{path}: [gate]", "suites"),
        env_fields=_strings(
            e.get("fields", list(_envfp.FIELDS)), f"{path}: [environment]", "fields"
        ),
        ignore_packages=_strings(
            e.get("ignore_packages", sorted(_envfp.DEFAULT_IGNORED_PACKAGES)),
            f"{path}: [environment]",
            "ignore_packages",
        ),
        source=str(path),
        trim=float(g.get("trim", 0.2)),
    )


# --------------------------------------------------------------------------- verdicts


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
    return _stats.ratio_of_medians([1.0], values)


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
) -> list[Verdict]:
    """Verdicts for every benchmark and checked metric (pure: seeded, no I/O).

    ``paired``: the sides' runs are interleaved rounds in the same order (``--baseline-ref``);
    the time metric of a benchmark with the same number (>= 3) of non-empty runs on both sides
    is then judged by the paired round test, other metrics and benchmarks by the unpaired one.
    """
    seed = config.seed if seed is None else seed
    keys = list(baseline.benches) + [k for k in candidate.benches if k not in baseline.benches]
    verdicts: list[Verdict] = []
    tested: list[Verdict] = []
    for key in keys:
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
            if not bv or not cv:
                where = "baseline" if not bv else "candidate"
                what = "raw samples (stats.data)" if metric == "time" else metric
                v.reason = f"no {what} in {where}"
                continue
            v.baseline = _median(bv)
            v.candidate = _median(cv)
            v.ratio = _stats.ratio_of_medians(bv, cv)
            if rule.test == "exact":
                v.ci_low = v.ci_high = v.ratio
                _decide(v, significant=v.ratio != 1.0)
                if v.ratio == 1.0:
                    v.reason = "exact: no change"
                elif v.status == "unchanged":
                    v.reason = f"exact: {v.ratio - 1.0:+.1%} within allowed {v.allowed:.0%}"
                continue
            if min(len(bv), len(cv)) < config.min_samples:
                v.reason = f"fewer than {config.min_samples} samples ({len(bv)} vs {len(cv)})"
                continue
            if paired and metric == "time" and _pairable(b.runs, c.runs):
                cmp = _stats.compare_paired(
                    b.runs, c.runs, confidence=config.confidence, trim=config.trim
                )
                v.ratio, v.paired = cmp.ratio, True
            else:
                cmp = _stats.compare_samples(
                    bv,
                    cv,
                    confidence=config.confidence,
                    n_boot=config.n_boot,
                    seed=_stats.stable_seed(seed, f"{key}|{metric}"),
                    baseline_runs=b.runs if metric == "time" else None,
                    candidate_runs=c.runs if metric == "time" else None,
                )
            v.ci_low, v.ci_high, v.p_value = cmp.ci_low, cmp.ci_high, cmp.p_value
            v.runs_baseline = len(b.runs) if metric == "time" else len(bv)
            v.runs_candidate = len(c.runs) if metric == "time" else len(cv)
            tested.append(v)
    pvals = [v.p_value for v in tested if v.p_value is not None]
    if config.correction == "holm":
        adjusted = _stats.holm(pvals)
    elif config.correction == "bh":
        adjusted = _stats.benjamini_hochberg(pvals)
    else:
        adjusted = list(pvals)
    for v, p in zip(tested, adjusted, strict=True):
        v.p_adjusted = p
        _decide(v, significant=p < config.alpha)
        if v.paired:
            v.reason += f" (paired, {v.runs_baseline} rounds)"
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


# --------------------------------------------------------------------------- report


_ORDER: dict[str, int] = {
    "regressed": 0,
    "improved": 1,
    "insufficient data": 2,
    "added": 3,
    "removed": 4,
    "unchanged": 5,
}


@dataclass(slots=True)
class GateReport:
    """Everything the gate decided, renderable as a terminal table, JSON and Markdown."""

    verdicts: list[Verdict]
    env_differences: list[str]
    ignore_env: bool
    baseline_sources: list[str]
    candidate_sources: list[str]
    settings: dict[str, str]
    note: str = ""

    @property
    def comparable(self) -> bool:
        compared = any(v.status not in ("added", "removed") for v in self.verdicts)
        return compared and (self.ignore_env or not self.env_differences)

    @property
    def compared(self) -> int:
        """How many benchmark metrics were judged (improved, unchanged or regressed)."""
        return sum(v.status in ("improved", "unchanged", "regressed") for v in self.verdicts)

    @property
    def exit_code(self) -> int:
        if not self.comparable:
            return EXIT_NOT_COMPARABLE
        if not self.compared:
            return EXIT_BAD_INPUT
        if any(v.status in ("regressed", "insufficient data") for v in self.verdicts):
            return EXIT_REGRESSION
        return EXIT_PASS

    @property
    def outcome(self) -> str:
        """PASS, REGRESSION, INSUFFICIENT DATA (exit 1 without a regression), NOTHING COMPARED
        (exit 2) or NOT COMPARABLE (exit 3)."""
        code = self.exit_code
        if code == EXIT_REGRESSION and not any(v.status == "regressed" for v in self.verdicts):
            return "INSUFFICIENT DATA"
        return {
            EXIT_PASS: "PASS",
            EXIT_REGRESSION: "REGRESSION",
            EXIT_BAD_INPUT: "NOTHING COMPARED",
            EXIT_NOT_COMPARABLE: "NOT COMPARABLE",
        }[code]

    def _explanation(self) -> str:
        """Why a gate without a regression did not pass (empty otherwise)."""
        outcome = self.outcome
        if outcome == "NOTHING COMPARED":
            return (
                "NOTHING COMPARED: no benchmark metric had enough data on both sides "
                "(see 'why'); a gate that compared nothing does not pass"
            )
        n = self.counts().get("insufficient data", 0)
        if n:
            return (
                f"{n} comparison(s) lack data (see 'why'): insufficient data fails the gate; "
                "a rule with skip = true accepts a benchmark metric that has none"
            )
        return ""

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.verdicts:
            out[v.status] = out.get(v.status, 0) + 1
        return out

    def _why_not_comparable(self) -> str:
        if self.env_differences and not self.ignore_env:
            return (
                "environments differ: "
                + "; ".join(self.env_differences)
                + " (use --ignore-env to compare anyway)"
            )
        return "no benchmark is present in both baseline and candidate"

    def sorted_verdicts(self) -> list[Verdict]:
        return sorted(self.verdicts, key=lambda v: (_ORDER[v.status], v.group, v.name, v.metric))

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": "samplemind-gate-verdicts",
            "version": 1,
            "outcome": self.outcome,
            "exit_code": self.exit_code,
            "comparable": self.comparable,
            "env_differences": self.env_differences,
            "ignore_env": self.ignore_env,
            "baseline": self.baseline_sources,
            "candidate": self.candidate_sources,
            "settings": self.settings,
            "note": self.note,
            "counts": self.counts(),
            "verdicts": [v.as_dict() for v in self.sorted_verdicts()],
        }

    def _rows(self) -> list[list[str]]:
        rows = []
        for v in self.sorted_verdicts():
            ci = (
                ""
                if v.ci_low is None or v.ci_high is None or v.test == "exact"
                else f"[{v.ci_low:.3f}, {v.ci_high:.3f}]"
            )
            rows.append(
                [
                    v.status,
                    v.name,
                    v.metric,
                    _fmt(v.metric, v.baseline),
                    _fmt(v.metric, v.candidate),
                    "" if v.ratio is None else f"{v.ratio:.3f}",
                    ci,
                    "" if v.p_adjusted is None else f"{v.p_adjusted:.2g}",
                    f"{v.n_baseline}/{v.n_candidate}",
                    v.reason,
                ]
            )
        return rows

    _HEAD = (
        "status",
        "benchmark",
        "metric",
        "baseline",
        "candidate",
        "ratio",
        "CI",
        "p adj",
        "n",
        "why",
    )

    def to_table(self) -> str:
        rows = [list(self._HEAD), *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self._HEAD))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        head = f"gate: {self.outcome}  " + ", ".join(
            f"{n} {s}" for s, n in sorted(self.counts().items())
        )
        tail = [f"  {k}: {val}" for k, val in self.settings.items()]
        if not self.comparable:
            head += "\n  NOT COMPARABLE: " + self._why_not_comparable()
        elif self.env_differences:
            head += "\n  environments differ (ignored): " + "; ".join(self.env_differences)
        if self._explanation():
            head += "\n  " + self._explanation()
        if self.note:
            head += "\n  " + self.note
        return "\n".join([head, *lines, "settings:", *tail])

    def to_markdown(self) -> str:
        icon = {
            "PASS": "✅",
            "REGRESSION": "❌",
            "INSUFFICIENT DATA": "❌",
            "NOTHING COMPARED": "⚠️",
            "NOT COMPARABLE": "⚠️",
        }[self.outcome]
        out = [f"## Performance gate: {icon} {self.outcome}", ""]
        out.append(
            ", ".join(f"**{n}** {s}" for s, n in sorted(self.counts().items())) or "no benchmarks"
        )
        out.append("")
        if not self.comparable:
            out += [f"**Not comparable:** {self._why_not_comparable()}", ""]
        elif self.env_differences:
            out += [
                "Environments differ (ignored with `--ignore-env`): "
                + "; ".join(self.env_differences),
                "",
            ]
        if self._explanation():
            out += [self._explanation(), ""]
        if self.note:
            out += [self.note, ""]
        out.append("| " + " | ".join(self._HEAD) + " |")
        out.append("|" + "---|" * len(self._HEAD))
        for r in self._rows():
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
        out += ["", "<details><summary>settings</summary>", ""]
        out += [f"- {k}: `{val}`" for k, val in self.settings.items()]
        out += ["", "</details>", ""]
        return "\n".join(out)


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return ""
    if not math.isfinite(value):
        return str(value)
    if metric == "time":
        for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
            if abs(value) >= scale:
                return f"{value / scale:.3g} {unit}"
        return f"{value / 1e-9:.3g} ns"
    return f"{value:.4g}"


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="samplemind-bench gate",
        description="Compare benchmark results of a candidate against a baseline "
        "(exit 0 pass, 1 regression or insufficient data, 2 bad input, 3 not comparable).",
        epilog="A benchmark metric without enough data on a side ('insufficient data': no raw "
        "samples, a figure missing, fewer than min_samples) fails the gate unless a rule marks it "
        "skip = true; a gate that compares nothing at all, or a side without any raw samples, "
        "exits 2. Giving the same results as baseline and candidate passes with a warning.",
    )
    p.add_argument(
        "paths",
        nargs="*",
        type=Path,
        metavar="PATH",
        help="BASELINE CANDIDATE: results folders or pytest-benchmark JSON files",
    )
    p.add_argument(
        "--baseline",
        action="append",
        type=Path,
        default=[],
        help="baseline results (repeat to pool several runs)",
    )
    p.add_argument(
        "--candidate",
        action="append",
        type=Path,
        default=[],
        help="candidate results (repeat to pool several runs)",
    )
    p.add_argument(
        "--baseline-ref",
        metavar="REF",
        help="git ref: run its samplemind_core interleaved with the working tree's",
    )
    p.add_argument(
        "--suite",
        action="append",
        default=[],
        help="--baseline-ref: suite to run (repeatable; default from the rules file)",
    )
    p.add_argument("--rounds", type=int, help="--baseline-ref: interleaved A/B rounds")
    p.add_argument(
        "--schedule",
        choices=_abrun.SCHEDULES,
        help="--baseline-ref: 'pairs' runs each round's A and B at once on one shared CPU, a pair "
        "per CPU (default on Linux); 'alternate' runs A and B one after the other",
    )
    p.add_argument(
        "--pytest-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="--baseline-ref: extra pytest argument for both sides' runs (e.g. --pytest-arg=-k1KB)",
    )
    p.add_argument(
        "--paired",
        action="store_true",
        help="--baseline/--candidate folders are interleaved rounds given in the same order: "
        "judge time with the paired round test (automatic with --baseline-ref)",
    )
    p.add_argument("--out", type=Path, help="--baseline-ref: keep the runs' results folders here")
    p.add_argument("--repo", type=Path, default=Path("."), help="git repository (default: .)")
    p.add_argument("--rules", type=Path, help="rules TOML (default: bench/gate.toml)")
    p.add_argument(
        "--select", metavar="GLOB", help="only benchmarks whose name/fullname/group match"
    )
    p.add_argument("--seed", type=int, help="bootstrap and scheduler seed (default from rules)")
    p.add_argument("--alpha", type=float, help="significance level after correction")
    p.add_argument("--correction", choices=["holm", "bh", "none"])
    p.add_argument(
        "--ignore-env",
        action="store_true",
        help="compare even when CPU/cores/Python/packages differ",
    )
    p.add_argument("--json", type=Path, dest="json_out", metavar="FILE", help="write JSON verdicts")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write a Markdown summary")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the outcome line")
    return p


def _step_summary_path(env: Mapping[str, str]) -> Path | None:
    """The one place the gate reads the environment: GitHub's job-summary file."""
    value = env.get("GITHUB_STEP_SUMMARY")
    return Path(value) if value else None


def _load_side(paths: Iterable[Path]) -> tuple[ResultSet, list[str]]:
    return pool([load_results(p) for p in paths])


def _check_output(path: Path) -> None:
    """Refuse an output path that cannot be a file before any work is done."""
    if path.is_dir():
        raise GateInputError(f"{path}: is a folder; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise GateInputError(f"{path}: {parent} is not a folder")
            break


def _same_path(a: Path, b: Path) -> bool:
    def norm(p: Path) -> Path:
        p = p.resolve()
        return p.parent if p.name == "manifest.json" and p.is_file() else p

    return norm(a) == norm(b)


def same_input_warnings(
    baseline_paths: Sequence[Path],
    candidate_paths: Sequence[Path],
    base: ResultSet,
    cand: ResultSet,
) -> list[str]:
    """Warnings for a comparison of a run with itself: the same path on both sides or twice on
    one side, or identical raw samples on both sides (a copy of the same run)."""
    out: list[str] = []
    for b in baseline_paths:
        for c in candidate_paths:
            if _same_path(b, c):
                out.append(
                    f"{c} is both baseline and candidate: the gate compares a run with itself"
                )
    for side, paths in (("baseline", baseline_paths), ("candidate", candidate_paths)):
        for i, a in enumerate(paths):
            if any(_same_path(a, b) for b in paths[:i]):
                out.append(f"{a} is given twice as {side}: its samples are pooled twice")
    if not out:
        common = [k for k in base.benches if k in cand.benches and base.benches[k].samples]
        if common and all(base.benches[k].samples == cand.benches[k].samples for k in common):
            out.append(
                "baseline and candidate hold identical raw samples: the same run compared with itself"
            )
    return out


def run(argv: Sequence[str], env: Mapping[str, str], runner: _abrun.Runner | None = None) -> int:
    """The gate with explicit environment and (for ``--baseline-ref``) an injectable runner."""
    with tempfile.TemporaryDirectory(prefix="samplemind-gate-runs-") as scratch:
        return _run(argv, env, runner, Path(scratch))


def _run(
    argv: Sequence[str], env: Mapping[str, str], runner: _abrun.Runner | None, scratch: Path
) -> int:
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return EXIT_BAD_INPUT if exc.code not in (0, None) else EXIT_PASS
    err = sys.stderr
    try:
        config = load_config(args.rules)
        settings: dict[str, str] = {
            "rules": f"{config.source} ({'--rules' if args.rules else 'default'})",
        }
        replace: dict[str, Any] = {}
        for opt in ("seed", "alpha", "correction", "rounds"):
            val = getattr(args, opt)
            if val is not None:
                replace[opt] = val
            settings[opt] = (
                f"{val if val is not None else getattr(config, opt)} ({'--' + opt if val is not None else 'rules file'})"
            )
        check_settings(replace, "command line", prefix="--")
        for out_file in (args.json_out, args.markdown):
            if out_file is not None:
                _check_output(out_file)
        if args.suite:
            replace["suites"] = tuple(args.suite)
        config = GateConfig(
            **{**{f: getattr(config, f) for f in config.__dataclass_fields__}, **replace}
        )
        paired = bool(args.paired or args.baseline_ref)
        if paired:
            settings["test"] = (
                f"time: paired rounds, Yuen trimmed-mean t-test (trim {config.trim}) on per-round "
                f"log median ratios, CI {config.confidence:.0%}; other metrics and unpaired runs: "
                f"max(Mann-Whitney U, run-aware bootstrap) p; {config.correction}-corrected"
            )
        else:
            settings["test"] = (
                f"max(Mann-Whitney U, run-aware bootstrap) p, {config.correction}-corrected; "
                f"bootstrap CI {config.confidence:.0%} of median ratio, n_boot={config.n_boot}"
            )
        baseline_paths = [*args.baseline]
        candidate_paths = [*args.candidate]
        note = ""
        if args.baseline_ref:
            if args.paths or args.baseline:
                raise GateInputError("--baseline-ref: give no baseline paths")
            if not candidate_paths:
                out_root = (
                    args.out.resolve() if args.out else scratch
                )  # the runs work in other dirs
                settings["suites"] = ", ".join(config.suites) + (
                    " (--suite)" if args.suite else " (rules file)"
                )
                settings["baseline_ref"] = args.baseline_ref
                timers = {s: config.suite_timer(s) for s in config.suites}
                settings["timers"] = ", ".join(f"{s}={t}" for s, t in timers.items())
                kind = args.schedule or _abrun.default_schedule()
                settings["schedule"] = f"{kind} ({'--schedule' if args.schedule else 'default'})"
                suite_args = {
                    s: [f"--benchmark-timer={TIMER_FUNCTIONS[t]}"]
                    for s, t in timers.items()
                    if t != "wall"
                }
                dirs = _abrun.run_interleaved(
                    args.repo.resolve(),
                    args.baseline_ref,
                    config.suites,
                    rounds=config.rounds,
                    seed=config.seed,
                    out_root=out_root,
                    runner=runner or _abrun.make_bench_cli_runner(args.pytest_arg, suite_args),
                    base_env=env,
                    log=lambda m: print(f"gate: {m}", file=err),
                    schedule_kind=kind,
                )
                baseline_paths, candidate_paths = dirs["baseline"], dirs["candidate"]
                note = (
                    f"baseline {args.baseline_ref} and candidate run interleaved in this job: "
                    f"{config.rounds} rounds ({kind} schedule), seed {config.seed}"
                    + (f"; results in {out_root}" if args.out else "")
                )
        else:
            if len(args.paths) == 2 and not baseline_paths and not candidate_paths:
                baseline_paths, candidate_paths = [args.paths[0]], [args.paths[1]]
            elif args.paths:
                raise GateInputError(
                    "give BASELINE CANDIDATE, or --baseline/--candidate, or --baseline-ref"
                )
            if not baseline_paths or not candidate_paths:
                raise GateInputError("missing baseline or candidate (see --help)")
        base, b_diffs = _load_side(baseline_paths)
        cand, c_diffs = _load_side(candidate_paths)
        require_samples("baseline", base)
        require_samples("candidate", cand)
        verdicts = evaluate(base, cand, config, select=args.select, paired=paired)
        if args.select and not verdicts:
            raise GateInputError(f"--select {args.select!r} matches no benchmark")
    except GateInputError as exc:
        print(f"gate: bad input: {exc}", file=err)
        return EXIT_BAD_INPUT
    except _abrun.ABRunError as exc:
        print(f"gate: baseline run failed: {exc}", file=err)
        return EXIT_BAD_INPUT
    fields = config.env_fields
    diffs = _envfp.differences(
        base.environment, cand.environment, fields=fields, ignore_packages=config.ignore_packages
    )
    diffs += timer_differences(base, cand)
    diffs += [f"within baseline runs: {d}" for d in b_diffs] + [
        f"within candidate runs: {d}" for d in c_diffs
    ]
    settings["ignore_env"] = str(args.ignore_env)
    if not note and (len(baseline_paths) < 2 or len(candidate_paths) < 2):
        note = (
            "one run per side: the statistics see the noise within a run, not between runs "
            "(load drift on a shared machine); for a verdict you can trust, use --baseline-ref "
            "(interleaved) or several runs per side"
        )
    if args.rules:  # the default rules cover every suite; a partial run leaves some unused
        for unused in unused_rules(config, base, cand):
            print(f"gate: warning: {config.source}: {unused}", file=err)
    for warning in same_input_warnings(baseline_paths, candidate_paths, base, cand):
        print(f"gate: warning: {warning}", file=err)
        note = f"WARNING: {warning}" + (f"; {note}" if note else "")
    report = GateReport(
        verdicts=verdicts,
        env_differences=diffs,
        ignore_env=args.ignore_env,
        baseline_sources=base.sources,
        candidate_sources=cand.sources,
        settings=settings,
        note=note,
    )
    text = report.to_table()
    print(text.splitlines()[0] if args.quiet else text)
    markdown = report.to_markdown()
    outputs: list[tuple[Path, str, str]] = []
    if args.json_out:
        outputs.append((args.json_out, json.dumps(report.as_dict(), indent=2) + "\n", "w"))
    if args.markdown:
        outputs.append((args.markdown, markdown, "w"))
    summary = _step_summary_path(env)
    if summary is not None:
        outputs.append((summary, markdown + "\n", "a"))
    for out_path, text, mode in outputs:
        try:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            with out_path.open(mode, encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            print(f"gate: cannot write {out_path}: {exc.strerror or exc}", file=err)
            return EXIT_BAD_INPUT
    return report.exit_code


def main(argv: list[str] | None = None, *, runner: _abrun.Runner | None = None) -> int:
    """Entry point for ``samplemind-bench gate`` (``bench.cli`` dispatches here)."""
    return run(sys.argv[1:] if argv is None else argv, os.environ, runner)


if __name__ == "__main__":
    raise SystemExit(main())
