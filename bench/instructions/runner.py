"""Command-line side of ``samplemind-bench run --instructions``.

After a suite's ordinary (wall-time) pytest process, :func:`count_suite` starts a
second one for the same suite under callgrind::

    PYTHONHASHSEED=0 LD_PRELOAD=libjemalloc.so.2 setarch -R valgrind --tool=callgrind --instr-atstart=no \\
        --collect-atstart=no --callgrind-out-file=DIR/instructions/<suite>/callgrind.%p \\
        python -m pytest bench/suites/test_<suite>.py --instructions=DIR/instructions/<suite> ...

which counts only the CPU-bound benchmarks (see :mod:`bench.instructions._select`),
then merges each count into the suite's results file (``DIR/<suite>.json``) as
``extra_info["instructions"]`` (instructions per call) and the ``instructions_*``
details beside the wall-time stats. Suites without a counted benchmark are left alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from bench.harness.results import SuiteRun
from bench.instructions._select import counted_suites
from bench.instructions._tools import ToolMissing, Tools, find_tools
from bench.instructions.plugin import COUNTS_FILE, COUNTS_FORMAT

__all__ = [
    "CALLGRIND_ARGS",
    "EXTRA_PYTEST_ARGS",
    "JEMALLOC_CONF",
    "count_into",
    "count_suite",
    "counting_command",
    "counting_env",
    "ensure_benchmark_storage",
    "merge_counts",
    "preflight",
    "read_counts",
]

BENCH_DIR: Final = Path(__file__).resolve().parent.parent
SUITES_DIR: Final = BENCH_DIR / "suites"
REPO: Final = BENCH_DIR.parent

CALLGRIND_ARGS: Final = (
    "--tool=callgrind",
    "--instr-atstart=no",
    "--collect-atstart=no",
    "--dump-line=no",
)
EXTRA_PYTEST_ARGS: Final = (
    "-p",
    "no:xdist",
    "-p",
    "no:cacheprovider",
    # hypothesis's plugin is most of pytest's start-up under valgrind; no benchmark uses it
    "-p",
    "no:hypothesispytest",
)


def preflight() -> Tools | str:
    """The tools, or the message to print before exiting with status 2."""
    try:
        return find_tools()
    except ToolMissing as exc:
        return f"samplemind-bench run --instructions: {exc}"


JEMALLOC_CONF: Final = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
"""jemalloc settings of a counting process: no purging of unused pages, which jemalloc
drives by elapsed time (a count must not depend on how fast the process ran)."""


def counting_env(tools: Tools, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The counting process's environment: a fixed hash seed, jemalloc, no xdist."""
    env = dict(os.environ if base is None else base)
    for name in [n for n in env if n.startswith("PYTEST_XDIST_")]:
        del env[name]
    env["PYTHONHASHSEED"] = "0"
    env["LD_PRELOAD"] = tools.allocator  # alone: another preloaded library would count too
    env["MALLOC_CONF"] = JEMALLOC_CONF
    return env


def counting_command(
    tools: Tools,
    suite: str,
    directory: Path,
    *,
    quick: bool,
    live: bool,
    pytest_args: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """``setarch -R valgrind --tool=callgrind ... python -m pytest bench/suites/test_<suite>.py ...``."""
    cmd = [
        tools.setarch,
        "-R",
        tools.valgrind,
        *CALLGRIND_ARGS,
        f"--callgrind-out-file={directory / 'callgrind.%p'}",
        f"--log-file={directory / 'valgrind.%p.log'}",
        python,
        "-m",
        "pytest",
        str(SUITES_DIR / f"test_{suite}.py"),
        *EXTRA_PYTEST_ARGS,
        "--benchmark-enable",
        f"--instructions={directory}",
        f"--instructions-shim={tools.shim}",
        "-q",
        "-rfEs",
    ]
    if quick:
        cmd.append("--quick")
    if live:
        cmd.append("--live")
    return cmd + list(pytest_args)


def ensure_benchmark_storage() -> None:
    """Create pytest-benchmark's storage folder (``.benchmarks`` in the repository) if missing.

    A counting process's pytest-benchmark creates it when it is missing and meets
    ``FileExistsError`` when it is there: two heap histories. The first counting process
    in a fresh checkout therefore counted differently from the next ones (cache
    ``codec json-encode`` 9,706 against 10,491 instructions, fingerprint ``1KB-blake3``
    -2.7 %), so the folder is made before any counting process starts.
    """
    (REPO / ".benchmarks").mkdir(exist_ok=True)


def read_counts(directory: Path) -> dict[str, dict[str, Any]]:
    """``{fullname: count}`` from ``directory/counts.json`` (empty when there is none)."""
    path = directory / COUNTS_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if data.get("format") != COUNTS_FORMAT or data.get("version") != 1:
        raise ValueError(f"{path}: not a {COUNTS_FORMAT} v1 file")
    counts: dict[str, dict[str, Any]] = data["counts"]
    return counts


def merge_counts(
    results: Path, counts: Mapping[str, Mapping[str, Any]], tool: str
) -> tuple[int, list[str]]:
    """Write each count into the matching benchmark's ``extra_info`` → (merged, unmatched names)."""
    data = json.loads(results.read_text())
    merged = 0
    seen: set[str] = set()
    for bench in data.get("benchmarks", []):
        count = counts.get(bench.get("fullname", ""))
        if count is None:
            continue
        info = bench.setdefault("extra_info", {})
        info.update({k: v for k, v in count.items() if k.startswith("instructions")})
        info["instructions_tool"] = tool
        seen.add(bench["fullname"])
        merged += 1
    tmp = results.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=4) + "\n")
    tmp.replace(results)
    return merged, sorted(set(counts) - seen)


def count_suite(
    suite: str,
    out: Path,
    tools: Tools,
    *,
    quick: bool,
    live: bool,
    pytest_args: Sequence[str] = (),
    verbose: bool = False,
    index: str = "",
) -> tuple[int, float]:
    """Count ``suite``'s CPU-bound benchmarks into ``out/<suite>.json`` → (exit code, seconds).

    Exit code 0 also when the suite has nothing to count (nothing is run then).
    """
    tag = f"[{index}] {suite}" if index else suite
    if suite not in counted_suites():
        print(f"{tag}: no CPU-bound benchmark to count (wall time only)", flush=True)
        return 0, 0.0
    directory = out / "instructions" / suite
    directory.mkdir(parents=True, exist_ok=True)
    ensure_benchmark_storage()
    for old in [*directory.glob("callgrind.*"), *directory.glob("valgrind.*.log")]:
        old.unlink()
    (directory / COUNTS_FILE).unlink(missing_ok=True)
    cmd = counting_command(tools, suite, directory, quick=quick, live=live, pytest_args=pytest_args)
    log_path = out / "logs" / f"{suite}-instructions.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"{tag}: counting instructions under callgrind", flush=True)
    start = time.monotonic()
    with log_path.open("w") as log:
        env = counting_env(tools)
        shown = ("PYTHONHASHSEED", "LD_PRELOAD", "MALLOC_CONF")
        log.write("$ " + " ".join([*(f"{k}={env[k]}" for k in shown), *cmd]) + "\n")
        log.flush()
        code = subprocess.run(
            cmd,
            cwd=REPO,
            stdout=None if verbose else log,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        ).returncode
    elapsed = time.monotonic() - start
    counts = read_counts(directory)
    results = out / f"{suite}.json"
    note = ""
    if counts and results.exists():
        merged, unmatched = merge_counts(
            results, counts, tools.valgrind_version + " callgrind jemalloc"
        )
        note = f"; {merged} benchmark(s) counted"
        if unmatched:
            note += f"; {len(unmatched)} count(s) without a wall-time entry: {unmatched[:3]}"
    elif counts:
        note = f"; {results.name} missing: counts kept in {directory / COUNTS_FILE}"
    if code == 5 and not counts:  # pytest: nothing selected (e.g. -k chose no counted benchmark)
        code, verdict = 0, "nothing selected to count"
    elif code != 0:
        verdict = f"FAILED (exit {code}; see {log_path})"
    elif not counts:
        code, verdict = 1, f"FAILED (no count written; see {log_path})"
    else:
        verdict = "ok"
    print(f"{tag}: instructions counted in {elapsed:.1f} s: {verdict}{note}", flush=True)
    if code != 0 and not verbose:
        tail = log_path.read_text().splitlines()[-15:]
        print("\n".join("    " + line for line in tail), flush=True)
    return code, elapsed


def count_into(run: SuiteRun, out: Path, tools: Tools, args: Any, index: str) -> SuiteRun:
    """:func:`count_suite` after ``run`` (the suite's wall-time run); a failed count fails the suite."""
    code, elapsed = count_suite(
        run.suite,
        out,
        tools,
        quick=bool(args.quick),
        live=bool(args.live),
        pytest_args=list(args.pytest_args),
        verbose=bool(args.verbose),
        index=index,
    )
    return dataclasses.replace(
        run, exit_code=run.exit_code or code, elapsed_s=run.elapsed_s + elapsed
    )
