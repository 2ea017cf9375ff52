"""Find the first commit of a performance step between GOOD and BAD (like ChromePerf's Pinpoint).

Every measurement is the gate's interleaved A/B run (:func:`bench.ab_runner.run_interleaved`): GOOD
and one other commit, each in its own git worktree, run round by round in the same job, and the
paired per-round ratio of medians (:func:`bench.stats.compare_paired`) compares them. Steps:

1. GOOD vs BAD: the size of the step (its log ratio ``L``) and the benchmark that shows it most
   (of those ``-k`` selects). No significant step: exit 1, nothing to bisect.
2. Binary search over ``git rev-list --ancestry-path GOOD..BAD``: a commit whose ratio to GOOD
   is nearer ``L`` than 0 (in log space) already has the step. ceil(log2 n) measurements.
3. The commit found against its parent: the measured ratio of the step itself.

``samplemind-bench bisect --good REF --bad REF --suite S [-k NAME] [--rounds N]`` prints the
commit and its ratio. Exit status: 0 found; 1 no significant step between GOOD and BAD; 2 bad
input (unknown refs, GOOD not an ancestor of BAD, a failed benchmark run).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import ab_runner, vcs
from bench import stats as gate_stats
from bench.history._ingest import HistoryError, read_run

__all__ = ["BisectResult", "Measurement", "bisect", "main"]


@dataclass(frozen=True, slots=True)
class Measurement:
    base: str
    commit: str
    benchmark: str
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True, slots=True)
class BisectResult:
    good: str
    bad: str
    candidates: int
    first_bad: str | None
    total: Measurement
    step: Measurement | None
    measurements: list[Measurement]

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _git(repo: Path, *args: str) -> str:
    return vcs.git(repo, *args, error=HistoryError)


def _medians(folders: Sequence[Path]) -> list[dict[str, float]]:
    out = []
    for f in folders:
        out.append({p.benchmark: p.value for p in read_run(f).points if p.metric == "time"})
    return out


def _measure(
    repo: Path,
    base: str,
    commit: str,
    *,
    suite: str,
    rounds: int,
    seed: int,
    runner: ab_runner.Runner,
    benchmark: str | None,
    log: Callable[[str], None],
    scratch: Path,
    alpha: float,
) -> Measurement:
    """Interleaved ``base`` vs ``commit``: the paired ratio of one benchmark (or the largest)."""
    out_root = Path(tempfile.mkdtemp(prefix="m-", dir=scratch))
    with ab_runner.worktree(repo, commit) as tree:
        dirs = ab_runner.run_interleaved(
            tree,
            base,
            [suite],
            rounds=rounds,
            seed=seed,
            out_root=out_root,
            runner=runner,
            log=log,
        )
    b, c = _medians(dirs["baseline"]), _medians(dirs["candidate"])
    names = sorted(set.intersection(*(set(x) for x in b + c))) if b and c else []
    if not names:
        raise HistoryError(f"suite {suite!r}: no benchmark ran on both sides")
    results = {}
    for name in [benchmark] if benchmark else names:
        cmp = gate_stats.compare_paired(
            [[x[name]] for x in b], [[x[name]] for x in c], confidence=1.0 - alpha
        )
        results[name] = cmp
    name = max(results, key=lambda n: abs(math.log(results[n].ratio)))
    cmp = results[name]
    return Measurement(base, commit, name, cmp.ratio, cmp.ci_low, cmp.ci_high, cmp.p_value)


def bisect(
    repo: Path,
    good: str,
    bad: str,
    *,
    suite: str,
    rounds: int = 5,
    seed: int = 0,
    runner: ab_runner.Runner,
    alpha: float = 0.05,
    log: Callable[[str], None] = lambda _m: None,
) -> BisectResult:
    """See the module docstring; raises :class:`HistoryError` on bad refs or failed runs."""
    good_sha = _git(repo, "rev-parse", "--verify", f"{good}^{{commit}}")
    bad_sha = _git(repo, "rev-parse", "--verify", f"{bad}^{{commit}}")
    if _git(repo, "merge-base", good_sha, bad_sha) != good_sha:
        raise HistoryError(f"--good {good} is not an ancestor of --bad {bad}")
    path = _git(
        repo, "rev-list", "--ancestry-path", "--first-parent", "--reverse", f"{good_sha}..{bad_sha}"
    )
    candidates = path.split()
    if not candidates:
        raise HistoryError(f"no commits between {good} and {bad}")
    measured: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="samplemind-bisect-") as tmp:
        scratch = Path(tmp)

        def measure(base: str, commit: str, benchmark: str | None) -> Measurement:
            log(f"measuring {commit[:10]} against {base[:10]} ({rounds} interleaved rounds)")
            m = _measure(
                repo,
                base,
                commit,
                suite=suite,
                rounds=rounds,
                seed=seed + len(measured),
                runner=runner,
                benchmark=benchmark,
                log=log,
                scratch=scratch,
                alpha=alpha,
            )
            log(f"  {m.benchmark}: ratio {m.ratio:.3f} (CI {m.ci_low:.3f}-{m.ci_high:.3f})")
            measured.append(m)
            return m

        total = measure(good_sha, bad_sha, None)
        if total.p_value >= alpha or total.ci_low <= 1.0 <= total.ci_high:
            return BisectResult(good_sha, bad_sha, len(candidates), None, total, None, measured)
        target = math.log(total.ratio)
        lo, hi = -1, len(candidates) - 1  # candidates[hi] has the step; lo (-1 = GOOD) has not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            m = measure(good_sha, candidates[mid], total.benchmark)
            if abs(math.log(m.ratio) - target) < abs(math.log(m.ratio)):
                hi = mid
            else:
                lo = mid
        first = candidates[hi]
        parent = good_sha if hi == 0 else candidates[hi - 1]
        step = measure(parent, first, total.benchmark)
    return BisectResult(good_sha, bad_sha, len(candidates), first, total, step, measured)


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


_BISECT_EPILOG = """\
output: one progress line per measurement ("measuring C against G (N interleaved rounds)",
then "BENCHMARK: ratio R (CI lo-hi)"; a ratio > 1 means the commit is slower), then
  first commit of the step: SHA (BENCHMARK: ratio R against its parent, CI lo-hi;
  good->bad R; M measurements for N commits)
or "no significant step between GOOD and BAD (...)". --json FILE also writes every measurement.

exit status: 0 found; 1 no significant step between GOOD and BAD; 2 bad input (unknown refs,
GOOD not an ancestor of BAD, a failed benchmark run).

example: samplemind-bench bisect --good v1 --bad HEAD --suite fingerprint -k 1KB-blake3
"""


def _bisect_parser() -> argparse.ArgumentParser:
    from bench.suite_list import SUITES

    p = argparse.ArgumentParser(
        prog="samplemind-bench bisect",
        description="Find the first commit of a performance step between GOOD and BAD with\n"
        "interleaved A/B runs: GOOD vs BAD, then a binary search (about log2(n) measurements\n"
        "for n commits), each measurement --rounds rounds of both sides in their own worktrees.",
        epilog=_BISECT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--good",
        required=True,
        metavar="REF",
        help="a commit without the step (any git ref: a tag, a sha, HEAD~20); required",
    )
    p.add_argument(
        "--bad",
        required=True,
        metavar="REF",
        help="a later commit with the step (GOOD must be its ancestor); required",
    )
    p.add_argument(
        "--suite",
        required=True,
        choices=SUITES,
        metavar="S",
        help=f"the suite to measure, one of: {', '.join(SUITES)}; required",
    )
    p.add_argument(
        "-k",
        dest="select",
        metavar="NAME",
        help="pytest -k expression choosing the benchmarks (default: every benchmark of the "
        "suite; the one that shows the step most is followed)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="interleaved rounds per measurement, at least 2 (default: %(default)s); more "
        "rounds find smaller steps and take longer",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the order of the sides in each round (default: %(default)s)",
    )
    p.add_argument(
        "--repo",
        type=Path,
        default=Path.cwd(),
        help="the git repository holding GOOD and BAD (default: the current directory)",
    )
    p.add_argument(
        "--pytest-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the suite's pytest, repeatable (default: none)",
    )
    p.add_argument(
        "--json",
        type=Path,
        metavar="FILE",
        help="also write every measurement (commits, ratios, intervals) to FILE as JSON "
        "(default: not written)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``samplemind-bench bisect``."""
    prog = "samplemind-bench bisect"
    args = _bisect_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.rounds < 2:
        return _fail(prog, "--rounds must be at least 2 (the paired test needs rounds)")
    pytest_args = list(args.pytest_arg) + (["-k", args.select] if args.select else [])
    runner = ab_runner.make_bench_cli_runner(pytest_args)
    try:
        result = bisect(
            args.repo.resolve(),
            args.good,
            args.bad,
            suite=args.suite,
            rounds=args.rounds,
            seed=args.seed,
            runner=runner,
            log=lambda m: print(m, flush=True),
        )
    except (HistoryError, ab_runner.ABRunError) as exc:
        return _fail(prog, str(exc))
    if args.json:
        args.json.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    t = result.total
    if result.first_bad is None or result.step is None:
        print(
            f"{prog}: no significant step between {args.good} and {args.bad} "
            f"({t.benchmark}: ratio {t.ratio:.3f}, CI {t.ci_low:.3f}-{t.ci_high:.3f})"
        )
        return 1
    s = result.step
    print(
        f"first commit of the step: {result.first_bad} ({s.benchmark}: ratio {s.ratio:.3f} "
        f"against its parent, CI {s.ci_low:.3f}-{s.ci_high:.3f}; good->bad {t.ratio:.3f}; "
        f"{len(result.measurements)} measurements for {result.candidates} commits)"
    )
    return 0
