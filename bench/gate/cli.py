"""``samplemind-bench gate``: compare a candidate's benchmark results with a baseline's.

Inputs are results folders (``manifest.json`` + pytest-benchmark JSON per suite,
:mod:`bench.results`), single pytest-benchmark JSON files, or ``--baseline-ref REF``: a
git worktree of REF run interleaved with the working tree in this job (:mod:`bench.ab_runner`).

A metric of a benchmark *regresses* only when the change is statistically significant on the raw
samples AND larger than the rule's allowed change, with a Holm / Benjamini-Hochberg correction over
all comparisons. Two tests:

* **paired** (``--baseline-ref``, or ``--paired`` for folders given as interleaved pairs): round
  ``i`` of the baseline and of the candidate ran together (at once on one shared CPU, or back
  to back with ``--schedule alternate``), so the gate takes each round's
  ``log(median ratio)`` and runs Yuen's trimmed-mean t-test on them (:func:`stats.compare_paired`);
  the ratio is their trimmed geometric mean. Slow machine phases cancel within a round.
* **unpaired** (otherwise): Mann-Whitney U and a seeded run-aware bootstrap CI of the ratio of
  medians that excludes 1.

Instruction counts (``samplemind-bench run --instructions``, ``extra_info["instructions"]``) are
judged by ``metric = "instructions"`` rules without statistics on samples: a change regresses when
it is beyond the rule's ``allowed`` (1 %) and beyond twice the benchmark's measured A/A spread
(``bench/instructions/aa_spreads.json``, or ``--spreads``). ``--instructions`` makes
``--baseline-ref`` count both sides (in the first ``instruction_rounds`` rounds) and requires
instruction verdicts; ``--metric instructions`` judges the counts alone.

Rules come from ``bench/gate/default.toml`` (or ``--rules``); a rule's ``timer = "cpu"`` makes
``--baseline-ref`` time that suite with the process's CPU time (``--benchmark-timer
time.process_time``), which on a shared machine removes the time spent descheduled.

Separate runs (two folders, or repeated ``--baseline``/``--candidate``) are judged with the
between-run floor (:mod:`bench.gate.floor`): a wall-time change must also exceed how far the
benchmark moves between back-to-back runs of one commit on this machine (``--floor FILE``,
default ``bench/gate/between_run_spreads.json``; measured from the runs themselves when both
sides have several), and a suite whose recorded run conditions differ beyond what the floor
covers has its wall time reported "not comparable" (exit 3), never "regressed".

Exit codes: 0 pass, 1 regression or insufficient data, 2 bad input (missing/empty/corrupt file,
unknown format version, a bad rules file, a side without raw samples, nothing compared, failed
baseline run), 3 not comparable (machines differ, ``--ignore-env``; or, with nothing else
failing, separate runs whose load differed beyond the floor's coverage).

"insufficient data" never passes on its own: a comparison that lacks data on a side (no raw
samples, a figure missing, fewer than ``min_samples``, no A/A spread for an instruction count)
fails the gate (exit 1) unless a rule marks it ``skip = true``; a gate that could compare
nothing at all exits 2. Nor does "inconclusive" (an instructions change beyond the tolerance
but within the A/A noise) unless its rule says ``on_inconclusive = "pass"`` or the command line
``--on-inconclusive pass``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench import ab_runner, environment
from bench.gate import floor as floors
from bench.gate.evaluate import Verdict, evaluate, timer_differences, unused_rules
from bench.gate.inputs import GateInputError, ResultSet, load_side, require_samples
from bench.gate.render import EXIT_BAD_INPUT, EXIT_PASS, GateReport
from bench.gate.rules import (
    INSTRUCTIONS,
    TIMER_FUNCTIONS,
    GateConfig,
    check_settings,
    load_config,
    with_spreads,
)
from bench.progress import Progress
from bench.results import ResultsFormatError

__all__ = ["main", "run", "same_input_warnings"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="samplemind-bench gate",
        description="Compare benchmark results of a candidate against a baseline "
        "(exit 0 pass, 1 regression or insufficient data, 2 bad input, 3 not comparable).",
        epilog="Separate runs (BASELINE CANDIDATE, or repeated --baseline/--candidate): a "
        "wall-time change beyond the rule's tolerance counts only beyond the between-run floor "
        "(how far benchmarks move between back-to-back runs of one commit on this machine: "
        "--floor, or measured from several runs per side). Within the floor, or when the runs' "
        "recorded conditions (load, CPU/wall, steal) differ beyond what the floor covers, "
        "wall time is NOT COMPARABLE (exit 3, naming what differed; never 'regressed', never "
        "a silent pass): use --baseline-ref REF (interleaved in one job) or --instructions, "
        "which load does not move. Exact figures (hit rates, calls, fidelity) are judged "
        "either way and still exit 1. "
        "A benchmark metric without enough data on a side ('insufficient data': no raw "
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
        choices=ab_runner.SCHEDULES,
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
    p.add_argument(
        "--instructions",
        action="store_true",
        help="--baseline-ref: also count instructions (samplemind-bench run --instructions) "
        "on both sides; with any input: fail (exit 2) when no instruction count was compared",
    )
    p.add_argument(
        "--instruction-rounds",
        type=int,
        metavar="N",
        help="--baseline-ref --instructions: count in the first N rounds (default from the "
        "rules file: [gate] instruction_rounds, 1)",
    )
    p.add_argument(
        "--spreads",
        type=Path,
        metavar="FILE",
        help="A/A spreads file for every instructions rule "
        "(default: the rule's, bench/instructions/aa_spreads.json)",
    )
    p.add_argument(
        "--floor",
        type=Path,
        metavar="FILE",
        help="between-run floor of wall time for separate runs (default: "
        "bench/gate/between_run_spreads.json, measured by nox -s study -- gate_between_runs); "
        "with several --baseline and --candidate runs the floor is measured from them",
    )
    p.add_argument(
        "--on-inconclusive",
        choices=["fail", "pass"],
        help="for every instructions rule: whether an inconclusive verdict (a change beyond the "
        "tolerance but within the A/A noise) fails the gate; it is reported either way "
        "(default: the rule's, fail)",
    )
    p.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="NAME",
        help="judge only this metric (repeatable), e.g. --metric instructions",
    )
    p.add_argument("--out", type=Path, help="--baseline-ref: keep the runs' results folders here")
    p.add_argument("--repo", type=Path, default=Path("."), help="git repository (default: .)")
    p.add_argument("--rules", type=Path, help="rules TOML (default: bench/gate/default.toml)")
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


def _require_counts(verdicts: Sequence[Verdict], base: ResultSet, cand: ResultSet) -> None:
    """``--instructions``: refuse a gate in which no instruction count was judged."""
    if any(v.metric == INSTRUCTIONS for v in verdicts):
        return
    sides = [
        name
        for name, rs in (("baseline", base), ("candidate", cand))
        if not any(INSTRUCTIONS in r.extra for r in rs.benches.values())
    ]
    where = " and ".join(sides) or "the benchmarks compared"
    raise GateInputError(
        f"--instructions: no instruction counts in the {where} ({', '.join(base.sources)} vs "
        f"{', '.join(cand.sources)}); write them with samplemind-bench run --instructions"
    )


def _missing_counts_warnings(verdicts: Sequence[Verdict]) -> list[str]:
    """One line per side whose instruction counts are missing where the other side has them."""
    out = []
    for side in ("baseline", "candidate"):
        names = [
            v.name
            for v in verdicts
            if v.metric == INSTRUCTIONS and v.reason.startswith(f"no instruction count in {side}")
        ]
        if names:
            other = "candidate" if side == "baseline" else "baseline"
            out.append(
                f"{len(names)} benchmark(s) have instruction counts in the {other} but not in "
                f"the {side} (e.g. {names[0]}): count both sides with samplemind-bench run "
                "--instructions"
            )
    return out


def _step_summary_path(env: Mapping[str, str]) -> Path | None:
    """The one place the gate reads the environment: GitHub's job-summary file."""
    value = env.get("GITHUB_STEP_SUMMARY")
    return Path(value) if value else None


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


def _between_runs(
    args: argparse.Namespace,
    paired: bool,
    baseline_paths: Sequence[Path],
    candidate_paths: Sequence[Path],
    base: ResultSet,
) -> tuple[floors.BetweenRuns | None, str]:
    """How separate runs' wall time is judged (None when paired) and the note saying so."""
    if paired:
        return None, ""
    floor = floors.load_floor(args.floor or floors.DEFAULT_FLOOR)
    b_runs, c_runs = floors.conditions_of(baseline_paths), floors.conditions_of(candidate_paths)
    repeated = len(baseline_paths) >= 2 and len(candidate_paths) >= 2
    limits = dict(floor.limits)
    if repeated:  # the floor comes from these runs: so does the load they cover
        for runs in (b_runs, c_runs):
            for i, a in enumerate(runs):
                for b in runs[i + 1 :]:
                    for suite in set(a) & set(b):
                        for k, gap in floors.condition_gaps(a[suite], b[suite]).items():
                            limits[k] = max(limits.get(k, 0.0), gap)
    b_side, c_side = floors.side_conditions(b_runs), floors.side_conditions(c_runs)
    suites = sorted({floors.suite_of(r) for r in base.benches.values()})
    differences = floors.condition_differences(b_side, c_side, limits, suites)
    between = floors.BetweenRuns(
        floor=floor, repeated=repeated, safety=floor.safety, differences=differences
    )
    source = (
        f"measured from the {len(baseline_paths)}+{len(candidate_paths)} runs "
        f"({floor.safety:g} x the largest change between two runs of a side)"
        if repeated
        else f"{floor.source} ({'--floor' if args.floor else 'default'}; {floor.pairs} A/A "
        f"pairs, {floor.safety:g} x their largest change)"
    )
    note = (
        f"separate runs: a wall-time change must exceed the between-run floor, {source}; "
        "the change judged against it is the fastest sample's (the median's is shown)"
    )
    missing = floors.not_recorded(b_side, c_side, suites)
    if missing:
        note += (
            f"; {floors.NOT_RECORDED} for suite(s) {', '.join(missing)} (a manifest from "
            "before 2026-12-06 or a JSON file): whether the load was comparable is not checked"
        )
    return between, note


def run(argv: Sequence[str], env: Mapping[str, str], runner: ab_runner.Runner | None = None) -> int:
    """The gate with explicit environment and (for ``--baseline-ref``) an injectable runner."""
    with tempfile.TemporaryDirectory(prefix="samplemind-gate-runs-") as scratch:
        return _run(argv, env, runner, Path(scratch))


def _configure(args: argparse.Namespace) -> tuple[GateConfig, dict[str, str]]:
    """The rules file with the command line's overrides, and the settings text of the report."""
    config = load_config(args.rules)
    settings: dict[str, str] = {
        "rules": f"{config.source} ({'--rules' if args.rules else 'default'})",
    }
    overrides: dict[str, Any] = {}
    for opt in ("seed", "alpha", "correction", "rounds", "instruction_rounds"):
        val = getattr(args, opt)
        if val is not None:
            overrides[opt] = val
        settings[opt] = (
            f"{val if val is not None else getattr(config, opt)} ({'--' + opt if val is not None else 'rules file'})"
        )
    check_settings(overrides, "command line", prefix="--")
    for out_file in (args.json_out, args.markdown):
        if out_file is not None:
            _check_output(out_file)
    if args.suite:
        overrides["suites"] = tuple(args.suite)
    config = dataclasses.replace(config, **overrides)
    if args.on_inconclusive is not None:
        rules = tuple(
            dataclasses.replace(r, on_inconclusive=args.on_inconclusive)
            if r.test == "spread"
            else r
            for r in config.rules
        )
        config = dataclasses.replace(config, rules=rules)
        settings["on_inconclusive"] = f"{args.on_inconclusive} (--on-inconclusive)"
    if args.spreads is not None:
        config = with_spreads(config, args.spreads)
        settings["spreads"] = f"{args.spreads} (--spreads)"
    elif any(r.test == "spread" for r in config.rules):
        settings["spreads"] = ", ".join(sorted({r.spreads for r in config.rules if r.spreads}))
    if args.paired or args.baseline_ref:
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
    return config, settings


def _run_baseline_ref(
    args: argparse.Namespace,
    config: GateConfig,
    settings: dict[str, str],
    env: Mapping[str, str],
    runner: ab_runner.Runner | None,
    scratch: Path,
) -> tuple[list[Path], list[Path], str]:
    """Run REF's harness and the working tree's interleaved; each side's folders and the note."""
    out_root = args.out.resolve() if args.out else scratch  # the runs work in other dirs
    settings["suites"] = ", ".join(config.suites) + (
        " (--suite)" if args.suite else " (rules file)"
    )
    settings["baseline_ref"] = args.baseline_ref
    timers = {s: config.suite_timer(s) for s in config.suites}
    settings["timers"] = ", ".join(f"{s}={t}" for s, t in timers.items())
    kind = args.schedule or ab_runner.default_schedule()
    settings["schedule"] = f"{kind} ({'--schedule' if args.schedule else 'default'})"
    suite_args = {
        s: [f"--benchmark-timer={TIMER_FUNCTIONS[t]}"] for s, t in timers.items() if t != "wall"
    }
    count_rounds = min(config.instruction_rounds, config.rounds) if args.instructions else 0
    if count_rounds:
        settings["instructions"] = f"counted in the first {count_rounds} round(s), both sides"
    dirs = ab_runner.run_interleaved(
        args.repo.resolve(),
        args.baseline_ref,
        config.suites,
        rounds=config.rounds,
        seed=config.seed,
        out_root=out_root,
        runner=runner
        or ab_runner.make_bench_cli_runner(args.pytest_arg, suite_args, count_rounds=count_rounds),
        base_env=env,
        log=_log_line,
        schedule_kind=kind,
    )
    note = (
        f"baseline {args.baseline_ref} and candidate run interleaved in this job: "
        f"{config.rounds} rounds ({kind} schedule), seed {config.seed}"
        + (f"; results in {out_root}" if args.out else "")
    )
    return dirs["baseline"], dirs["candidate"], note


def _run(
    argv: Sequence[str], env: Mapping[str, str], runner: ab_runner.Runner | None, scratch: Path
) -> int:
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return EXIT_BAD_INPUT if exc.code not in (0, None) else EXIT_PASS
    err = sys.stderr
    try:
        config, settings = _configure(args)
        paired = bool(args.paired or args.baseline_ref)
        baseline_paths = [*args.baseline]
        candidate_paths = [*args.candidate]
        note = ""
        if args.baseline_ref:
            if args.paths or args.baseline:
                raise GateInputError("--baseline-ref: give no baseline paths")
            if not candidate_paths:
                baseline_paths, candidate_paths, note = _run_baseline_ref(
                    args, config, settings, env, runner, scratch
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
        base, b_diffs = load_side(baseline_paths, "baseline")
        cand, c_diffs = load_side(candidate_paths, "candidate")
        require_samples("baseline", base)
        require_samples("candidate", cand)
        between, floor_note = _between_runs(args, paired, baseline_paths, candidate_paths, base)
        if between is not None:
            settings["floor"] = floor_note
        meter = Progress("gate: comparing benchmarks", 0, enabled=not args.quiet)
        verdicts = evaluate(
            base,
            cand,
            config,
            select=args.select,
            paired=paired,
            metrics=args.metric or (),
            progress=meter.update,
            between=between,
        )
        meter.done()
        if args.select and not verdicts:
            raise GateInputError(f"--select {args.select!r} matches no benchmark")
        if args.metric:
            verdicts = [v for v in verdicts if v.metric in args.metric]
        if args.instructions:
            _require_counts(verdicts, base, cand)
    except (GateInputError, ResultsFormatError) as exc:  # a results file: the reader's error
        print(f"gate: bad input: {exc}", file=err)
        return EXIT_BAD_INPUT
    except ab_runner.ABRunError as exc:
        print(f"gate: baseline run failed: {exc}", file=err)
        return EXIT_BAD_INPUT
    diffs = environment.differences(
        base.environment,
        cand.environment,
        fields=config.env_fields,
        ignore_packages=config.ignore_packages,
    )
    diffs += timer_differences(base, cand)
    diffs += [f"within baseline runs: {d}" for d in b_diffs] + [
        f"within candidate runs: {d}" for d in c_diffs
    ]
    settings["ignore_env"] = str(args.ignore_env)
    if not note and between is not None:
        note = floor_note

    if args.rules:  # the default rules cover every suite; a partial run leaves some unused
        for unused in unused_rules(config, base, cand):
            print(f"gate: warning: {config.source}: {unused}", file=err)
    for warning in _missing_counts_warnings(verdicts):
        print(f"gate: {warning}", file=err)
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
    if not _write_outputs(args, report, env):
        return EXIT_BAD_INPUT
    return report.exit_code


def _write_outputs(args: argparse.Namespace, report: GateReport, env: Mapping[str, str]) -> bool:
    """``--json``, ``--markdown`` and GitHub's step summary; False (after saying why) when one
    cannot be written."""
    err = sys.stderr
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
            return False
    return True


def _log_line(message: str) -> None:
    """One write per line: the interleaved pairs' threads log at once (``print`` writes the
    newline apart, so two threads' lines ran together)."""
    sys.stderr.write(f"gate: {message}\n")


def main(argv: list[str] | None = None, *, runner: ab_runner.Runner | None = None) -> int:
    """Entry point for ``samplemind-bench gate`` (``bench.cli`` dispatches here)."""
    return run(sys.argv[1:] if argv is None else argv, os.environ, runner)


if __name__ == "__main__":
    raise SystemExit(main())
