"""The gate's rules: which benchmarks and metrics are checked, how much change is allowed.

Read from a TOML rules file (``[gate]``, ``[environment]``, ``[[rule]]``); the default one is
``bench/gate/default.toml`` (:data:`DEFAULT_RULES`), which also holds the default number of
``--baseline-ref`` rounds (:data:`DEFAULT_ROUNDS`, ``[gate] rounds``).

A ``metric = "instructions"`` rule judges the instruction counts of ``samplemind-bench run
--instructions`` (``extra_info["instructions"]``) with
:func:`bench.stats.decide`: a change regresses only when it reaches the
rule's ``allowed`` (default 1 %) *and* is beyond ``safety`` x the benchmark's measured A/A spread, read
from the rule's ``spreads`` file (default :data:`DEFAULT_SPREADS`) and from the spread between
several counts of a side.
"""

from __future__ import annotations

import fnmatch
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal

from bench import environment, results
from bench.gate.inputs import BenchRecord, GateInputError
from bench.stats import DEFAULT_SAFETY, load_spreads

__all__ = [
    "DEFAULT_ROUNDS",
    "DEFAULT_RULES",
    "DEFAULT_SPREADS",
    "INSTRUCTIONS",
    "TIMER_FUNCTIONS",
    "Direction",
    "GateConfig",
    "Rule",
    "Timer",
    "check_settings",
    "default_direction",
    "load_config",
    "with_spreads",
]

DEFAULT_RULES: Final = Path(__file__).with_name("default.toml")
DEFAULT_SPREADS: Final = Path(__file__).resolve().parent.parent / "instructions" / "aa_spreads.json"
"""The committed A/A spreads of the counted benchmarks (provenance inside the file)."""
INSTRUCTIONS: Final = "instructions"
"""The metric of instruction-count rules (``extra_info["instructions"]``, per call)."""

Direction = Literal["lower", "higher"]
Timer = Literal["wall", "cpu"]

TIMER_FUNCTIONS: dict[str, str] = {"wall": "time.perf_counter", "cpu": "time.process_time"}
"""pytest-benchmark ``--benchmark-timer`` value of each rule timer."""

_DEFAULT_SUITES = ("hashing", "fingerprint", "router", "cache")
_HIGHER_IS_BETTER = ("req_per_s", "gbps", "hit_rate", "success_rate", "ops", "throughput")


def _default_rounds() -> int:
    rounds = tomllib.loads(DEFAULT_RULES.read_text(encoding="utf-8"))["gate"]["rounds"]
    assert isinstance(rounds, int) and rounds >= 1, f"{DEFAULT_RULES}: [gate] rounds"
    return rounds


DEFAULT_ROUNDS: Final = _default_rounds()
"""``--baseline-ref`` rounds when neither ``--rounds`` nor the rules file sets them: ``[gate]
rounds`` of the default rules file, the one place this default is written."""


def _fraction(value: Any, where: str, key: str = "allowed") -> float:
    """A tolerated change: "10%" or 0.10; finite and not negative."""
    n: float | None
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            n = float(value.strip()[:-1]) / 100.0
        except ValueError:
            n = None
    else:
        n = results.finite_number(value)
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
    test: Literal["samples", "exact", "spread"] = "samples"
    """``spread`` (instructions rules only): reaching ``allowed`` and beyond ``safety`` x the A/A spread."""
    skip: bool = False
    timer: Timer = "wall"
    """Clock for ``--baseline-ref`` runs of the suites this rule covers (``time`` rules only)."""
    spreads: str = ""
    """Instructions rules: the A/A spreads file (resolved path; key of ``GateConfig.spreads``)."""
    safety: float = DEFAULT_SAFETY
    """Instructions rules: a change must exceed ``safety`` x the measured spread."""
    on_inconclusive: Literal["fail", "pass"] = "fail"
    """Instructions rules: whether an ``inconclusive`` verdict (a change reaching ``allowed`` but
    within the noise margin) fails the gate; it is reported either way."""
    wall_clock: bool = False
    """The figure depends on the wall clock although it is not a time (a breaker cooldown in
    seconds, time-bound rounds): between separate runs it is judged like wall time, against
    the between-run floor, and is "not comparable" when the runs' load differed."""

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

    @property
    def blocks_inconclusive(self) -> bool:
        return self.on_inconclusive == "fail"


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
    rounds: int = DEFAULT_ROUNDS
    suites: tuple[str, ...] = _DEFAULT_SUITES
    env_fields: tuple[str, ...] = environment.FIELDS
    ignore_packages: tuple[str, ...] = tuple(sorted(environment.DEFAULT_IGNORED_PACKAGES))
    source: str = "built-in"
    trim: float = 0.2
    """Paired test: fraction of rounds trimmed from each end (Yuen)."""
    instruction_rounds: int = 1
    """``--baseline-ref --instructions``: the first N rounds also count instructions."""
    spreads: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """A/A spreads per spreads file (``Rule.spreads``): ``{benchmark key: spread}``."""

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


_RULE_KEYS = frozenset(
    {"name", "group", "metric", "direction", "allowed", "test", "skip", "timer", "wall_clock"}
)
_INSTRUCTION_KEYS = frozenset({"spreads", "safety", "on_inconclusive"})
_GATE_KEYS = frozenset(
    {"alpha", "correction", "confidence", "n_boot", "seed", "min_samples", "default_allowed"}
    | {"rounds", "suites", "trim", "instruction_rounds"}
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
    n = results.finite_number(value)
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
        "instruction_rounds": (1, 10**5, True),
    }
    for key, value in values.items():
        if key in limits:
            lo, hi, integer = limits[key]
            _in_range(value, where, prefix + key, lo, hi, integer=integer)


def _read_spreads(path: Path) -> dict[str, float]:
    """A spreads file keyed like the gate's benchmarks (:func:`results.benchmark_key`)."""
    try:
        spreads = load_spreads(path)
    except ValueError as exc:
        raise GateInputError(
            f"{exc} (regenerate it: python -m studies.instructions_study aa)"
        ) from None
    return {results.benchmark_key(name): spread for name, spread in spreads.items()}


def with_spreads(config: GateConfig, path: Path) -> GateConfig:
    """``config`` with every instructions rule reading its A/A spreads from ``path``
    (``--spreads``)."""
    key = str(path.resolve())
    rules = tuple(replace(r, spreads=key) if r.test == "spread" else r for r in config.rules)
    return replace(config, rules=rules, spreads={**config.spreads, key: _read_spreads(path)})


def _instruction_settings(r: Mapping[str, Any], where: str, base: Path) -> dict[str, Any]:
    """``test``, ``spreads``, ``safety`` and ``on_inconclusive`` of an instructions rule."""
    if r.get("test", "spread") != "spread" or r.get("direction", "lower") != "lower":
        raise GateInputError(
            f'{where}: an instructions rule has test = "spread" and direction = "lower"'
        )
    spreads = r.get("spreads", str(DEFAULT_SPREADS))
    if not (isinstance(spreads, str) and spreads):
        raise GateInputError(f"{where}: spreads must be a path, got {spreads!r}")
    safety = _in_range(r.get("safety", DEFAULT_SAFETY), where, "safety", 0.1, 100.0)
    on_inconclusive = r.get("on_inconclusive", "fail")
    if on_inconclusive not in ("fail", "pass"):
        raise GateInputError(f'{where}: on_inconclusive must be "fail" or "pass"')
    return {
        "test": "spread",
        "spreads": str((base / spreads).resolve()),
        "safety": float(safety),
        "on_inconclusive": on_inconclusive,
    }


def load_config(path: Path | None = None) -> GateConfig:
    """Read a rules file (default: ``bench/gate/default.toml``); anything malformed raises GateInputError."""
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
    spreads: dict[str, dict[str, float]] = {}
    for i, r in enumerate(rule_docs):
        where = f"{path}: rule #{i + 1}"
        if not isinstance(r, dict):
            raise GateInputError(f"{where}: not a table")
        unknown = set(r) - _RULE_KEYS - _INSTRUCTION_KEYS
        if unknown:
            raise GateInputError(f"{where}: unknown keys {sorted(unknown)}")
        for key in ("name", "group", "metric"):
            if key in r and not (isinstance(r[key], str) and r[key]):
                raise GateInputError(f"{where}: {key} must be a non-empty string, got {r[key]!r}")
        metric = r.get("metric", "time")
        instruction: dict[str, Any] = {}
        if metric == INSTRUCTIONS:
            instruction = _instruction_settings(r, where, path.resolve().parent)
        elif set(r) & _INSTRUCTION_KEYS:
            raise GateInputError(
                f"{where}: {sorted(set(r) & _INSTRUCTION_KEYS)} apply to instructions rules only"
            )
        direction = r.get("direction", default_direction(metric))
        test = r.get("test", "spread" if instruction else "samples")
        if direction not in ("lower", "higher") or test not in ("samples", "exact", "spread"):
            raise GateInputError(f"{where}: direction must be lower|higher, test samples|exact")
        if test == "spread" and not instruction:
            raise GateInputError(f'{where}: test = "spread" is for metric = "instructions"')
        timer = r.get("timer", "wall")
        if timer not in ("wall", "cpu") or (timer != "wall" and metric != "time"):
            raise GateInputError(f'{where}: timer must be "wall" or "cpu" (time rules only)')
        skip = r.get("skip", False)
        if not isinstance(skip, bool):
            raise GateInputError(f"{where}: skip must be true or false, got {skip!r}")
        wall_clock = r.get("wall_clock", False)
        if not isinstance(wall_clock, bool) or (wall_clock and metric == INSTRUCTIONS):
            raise GateInputError(
                f"{where}: wall_clock must be true or false (not for instructions rules), "
                f"got {wall_clock!r}"
            )
        allowed = _fraction(r.get("allowed", "1%" if instruction else "10%"), where, "allowed")
        if instruction and allowed <= 0:
            raise GateInputError(f"{where}: allowed of an instructions rule must be > 0")
        rules.append(
            Rule(
                name=r.get("name", "*"),
                group=r.get("group", "*"),
                metric=metric,
                direction=direction,
                allowed=allowed,
                skip=skip,
                timer=timer,
                wall_clock=wall_clock,
                **{"test": test, **instruction},
            )
        )
        file = instruction.get("spreads")
        if file and not skip and file not in spreads:
            spreads[file] = _read_spreads(Path(file))
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
        rounds=int(g.get("rounds", DEFAULT_ROUNDS)),
        suites=_strings(g.get("suites", list(_DEFAULT_SUITES)), f"{path}: [gate]", "suites"),
        env_fields=_strings(
            e.get("fields", list(environment.FIELDS)), f"{path}: [environment]", "fields"
        ),
        ignore_packages=_strings(
            e.get("ignore_packages", sorted(environment.DEFAULT_IGNORED_PACKAGES)),
            f"{path}: [environment]",
            "ignore_packages",
        ),
        source=str(path),
        trim=float(g.get("trim", 0.2)),
        instruction_rounds=int(g.get("instruction_rounds", 1)),
        spreads=spreads,
    )
