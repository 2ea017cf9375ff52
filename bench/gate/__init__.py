"""The regression gate (``samplemind-bench gate``): is a candidate slower than a baseline?

One module per step: :mod:`~bench.gate.inputs` (results → samples), :mod:`~bench.gate.rules`
(what is checked, how much change is allowed), :mod:`~bench.gate.evaluate` (verdicts, with
:mod:`~bench.stats`), :mod:`~bench.gate.render` (table, JSON, Markdown, exit code) and
:mod:`~bench.gate.cli` (the command). ``--baseline-ref`` runs both sides interleaved in one job
(:mod:`~bench.ab_runner`) and refuses to compare different machines
(:mod:`~bench.environment`); separate runs are judged against the between-run floor
(:mod:`~bench.gate.floor`). :mod:`~studies.gate_study` and :mod:`~studies.gate_e2e` measure
the gate itself. This package re-exports the public names of those modules.
"""

from __future__ import annotations

from bench.gate.cli import main, run, same_input_warnings
from bench.gate.evaluate import Verdict, evaluate, timer_differences, unused_rules
from bench.gate.floor import BetweenRuns, Floor, load_floor
from bench.gate.inputs import (
    BenchRecord,
    GateInputError,
    ResultSet,
    load_results,
    pool,
    require_samples,
)
from bench.gate.render import (
    EXIT_BAD_INPUT,
    EXIT_NOT_COMPARABLE,
    EXIT_PASS,
    EXIT_REGRESSION,
    GateReport,
)
from bench.gate.rules import (
    DEFAULT_ROUNDS,
    DEFAULT_RULES,
    GateConfig,
    Rule,
    check_settings,
    default_direction,
    load_config,
)

__all__ = [
    "DEFAULT_ROUNDS",
    "DEFAULT_RULES",
    "EXIT_BAD_INPUT",
    "EXIT_NOT_COMPARABLE",
    "EXIT_PASS",
    "EXIT_REGRESSION",
    "BenchRecord",
    "BetweenRuns",
    "Floor",
    "GateConfig",
    "GateInputError",
    "GateReport",
    "ResultSet",
    "Rule",
    "Verdict",
    "check_settings",
    "default_direction",
    "evaluate",
    "load_config",
    "load_floor",
    "load_results",
    "main",
    "pool",
    "require_samples",
    "run",
    "same_input_warnings",
    "timer_differences",
    "unused_rules",
]
