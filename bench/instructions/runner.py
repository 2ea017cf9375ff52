"""Command-line side of ``samplemind-bench run --instructions``.

After a suite's ordinary (wall-time) pytest process, :func:`count_suite` starts a
second one for the same suite under callgrind, in a *stage* (:func:`counting_stage`)::

    PYTHONHASHSEED=0 LD_PRELOAD=libjemalloc.so.2 setarch -R valgrind --tool=callgrind --instr-atstart=no \\
        --collect-atstart=no --callgrind-out-file=STAGE/out/callgrind.%p \\
        python -m pytest STAGE/src/bench/suites/test_<suite>.py --instructions=STAGE/out ...

which counts only the CPU-bound benchmarks (see :mod:`bench.instructions._select`),
then merges each count into the suite's results file (``DIR/<suite>.json``) as
``extra_info["instructions"]`` (instructions per call) and the ``instructions_*``
details beside the wall-time stats. Suites without a counted benchmark are left alone.

The stage is a copy of the checkout's code at one fixed path (:func:`stage_root`; counts
take turns there), and the counting process gets a fixed environment
(:func:`counting_env`): Python's small-object allocator lays objects out by the sizes and
the order of everything allocated before, path strings included, so the same code counted
from two checkouts at other paths differed (docs/measurements/2026-12-01-instruction-counts.md, 7.z). A count
therefore does not depend on where the checkout, the results folder or the caller's shell
are.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Final

from bench.instructions._format import COUNTS_FILE, COUNTS_FORMAT
from bench.instructions._select import counted_suites
from bench.instructions._tools import ToolMissing, Tools, find_tools
from bench.results import SuiteRun, read_suite_document

__all__ = [
    "CALLGRIND_ARGS",
    "EXTRA_PYTEST_ARGS",
    "JEMALLOC_CONF",
    "KEPT_ENV",
    "STAGED",
    "Stage",
    "copy_code",
    "count_into",
    "count_suite",
    "counting_command",
    "counting_env",
    "counting_stage",
    "ensure_benchmark_storage",
    "merge_counts",
    "preflight",
    "read_counts",
    "run_counting",
    "stage_problem",
    "stage_root",
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
    # pytest-benchmark's commit lookup without git/hg subprocesses: a failing exec's error
    # pipe, read in a scheduling-dependent number of parts, made counts bimodal (decision 0620)
    "-p",
    "bench.instructions._no_vcs",
)


def preflight() -> Tools | str:
    """The tools, or the message to print before exiting with status 2 (a tool is missing,
    or the stage's folder cannot be used)."""
    try:
        tools = find_tools()
    except ToolMissing as exc:
        return f"samplemind-bench run --instructions: {exc}"
    problem = stage_problem()
    if problem is not None:
        return f"samplemind-bench run --instructions: {problem}"
    return tools


def stage_problem(root: Path | None = None) -> str | None:
    """Why counts cannot run at ``root`` (default :func:`stage_root`), or None.

    A stage folder left by a killed count is fine (it is replaced); anything else at that
    path is not touched, so it is named instead.
    """
    root = root or stage_root()
    if root.exists() and not root.is_dir():
        return f"the counting stage {root} exists and is not a folder: remove it"
    lock = root.with_name(root.name + ".lock")
    try:
        with lock.open("a"):
            pass
    except OSError as exc:
        return f"cannot open the counting stage's lock {lock}: {exc.strerror or exc}"
    return None


JEMALLOC_CONF: Final = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
"""jemalloc settings of a counting process: no purging of unused pages, which jemalloc
drives by elapsed time (a count must not depend on how fast the process ran)."""


KEPT_ENV: Final = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "CI",
    "VIRTUAL_ENV",
    "XDG_CACHE_HOME",
)
"""Variables a counting process keeps from its caller's environment, with every ``LC_*`` and
``SAMPLEMIND_*`` one; the rest (``PWD``, ``OLDPWD``, ``_``, terminal and CI job variables, ...)
is dropped: the interpreter copies its environment into ``os.environ`` at start-up, so
variables that differ between two shells would change the heap a count runs on."""


def _is_checkout(path: Path) -> bool:
    """Whether ``path`` is this repository or another checkout of it (it has this runner)."""
    return path.resolve() == REPO or (path / "bench" / "instructions" / "runner.py").is_file()


def counting_env(
    tools: Tools, base: Mapping[str, str] | None = None, *, tree: Path | None = None
) -> dict[str, str]:
    """The counting process's environment: :data:`KEPT_ENV` of ``base``, a fixed hash seed,
    jemalloc, no bytecode writing, one BLAS thread; with ``tree`` (the stage's code), ``tree`` first on
    ``PYTHONPATH`` instead of any checkout of this project (the caller's, or another side's) and
    ``PWD=tree``.
    """
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if k in KEPT_ENV or k.startswith(("LC_", "SAMPLEMIND_"))}
    env["PYTHONHASHSEED"] = "0"
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # every count compiles the same sources the same way
    env["LD_PRELOAD"] = tools.allocator  # alone: another preloaded library would count too
    env["MALLOC_CONF"] = JEMALLOC_CONF
    # numpy (imported by fakeredis) starts an OpenBLAS worker thread per extra CPU; its
    # spinning after start-up, interleaved by valgrind's scheduler, made counts vary within
    # a mode (decision 0620). No counted body uses BLAS.
    env["OPENBLAS_NUM_THREADS"] = "1"
    if tree is not None:
        # no checkout of this project besides the stage: with PYTHONPATH=CANDIDATE exported,
        # the baseline side of `gate --baseline-ref` kept the candidate's checkout on its path
        # and counted 64B-xxh3_128 at 961.6 against the candidate's 942.5, same code (decision 0620)
        rest = [
            p
            for p in source.get("PYTHONPATH", "").split(os.pathsep)
            if p and not _is_checkout(Path(p))
        ]
        env["PYTHONPATH"] = os.pathsep.join([str(tree), *rest])
        env["PWD"] = str(tree)
    return env


STAGED: Final = (
    "bench",
    "fixtures",
    "samplemind_core",
    "conftest.py",
    "pytest.ini",
    "pyproject.toml",
)
"""What of the checkout a counting process needs, copied into its stage."""


@dataclasses.dataclass(frozen=True, slots=True)
class Stage:
    """Where one counting process runs: ``src`` (the copied code, its working directory),
    ``out`` (its dumps and ``counts.json``), ``tmp`` (pytest's ``--basetemp``)."""

    src: Path
    out: Path
    tmp: Path


def copy_code(repo: Path, dest: Path) -> None:
    """Copy ``repo``'s :data:`STAGED` code into ``dest``, without ``__pycache__`` or ``.benchmarks``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".benchmarks")
    for name in STAGED:
        source = repo / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=ignore)
        elif source.is_file():
            shutil.copy2(source, dest / name)


def stage_root() -> Path:
    """``<temporary directory>/samplemind-count-<uid>``: where every count of this user runs."""
    return Path(tempfile.gettempdir()) / f"samplemind-count-{os.getuid()}"


@contextmanager
def counting_stage(
    repo: Path = REPO, root: Path | None = None, *, wait: Callable[[Path], None] | None = None
) -> Iterator[Stage]:
    """A fresh copy of ``repo``'s :data:`STAGED` code at one fixed path, removed afterwards.

    The path is :func:`stage_root` (or ``root``) for every count, wherever ``repo`` is:
    not only its length but its characters reach a count (they are hashed, and the
    order of hashed sets decides the order of allocations). So counts take turns: an
    exclusive lock on ``<root>.lock`` is held from the copy to the removal, and ``wait``
    is called once with the lock's path when another count holds it. A stage left
    behind by a killed count is removed first. Caches (``__pycache__``, ``.benchmarks``)
    are not copied: each counting process compiles the sources and finds an empty
    ``.benchmarks``.
    """
    root = root or stage_root()
    lock_path = root.with_name(root.name + ".lock")
    with lock_path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if wait is not None:
                wait(lock_path)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            shutil.rmtree(root, ignore_errors=True)
            stage = Stage(root / "src", root / "out", root / "tmp")
            stage.src.mkdir(parents=True)
            stage.out.mkdir()
            copy_code(repo, stage.src)
            ensure_benchmark_storage(stage.src)
            yield stage
        finally:
            shutil.rmtree(root, ignore_errors=True)
            fcntl.flock(lock, fcntl.LOCK_UN)


def counting_command(
    tools: Tools,
    suite: str,
    directory: Path,
    *,
    quick: bool,
    live: bool,
    pytest_args: Sequence[str] = (),
    python: str = sys.executable,
    tree: Path = REPO,
    basetemp: Path | None = None,
) -> list[str]:
    """``setarch -R valgrind --tool=callgrind ... python -m pytest TREE/bench/suites/test_<suite>.py ...``

    (dumps, logs and ``counts.json`` into ``directory``)."""
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
        str(tree / SUITES_DIR.relative_to(REPO) / f"test_{suite}.py"),
        *EXTRA_PYTEST_ARGS,
        "--benchmark-enable",
        f"--instructions={directory}",
        f"--instructions-shim={tools.shim}",
        "-q",
        "-rfEs",
    ]
    if basetemp is not None:
        cmd.append(f"--basetemp={basetemp}")
    if quick:
        cmd.append("--quick")
    if live:
        cmd.append("--live")
    return cmd + list(pytest_args)


def ensure_benchmark_storage(tree: Path | None = None) -> None:
    """Create pytest-benchmark's storage folder (``.benchmarks`` in ``tree``, default the
    repository) if missing.

    A counting process's pytest-benchmark creates it when it is missing and meets
    ``FileExistsError`` when it is there: two heap histories. The first counting process
    in a fresh checkout therefore counted differently from the next ones (cache
    ``codec json-encode`` 9,706 against 10,491 instructions, fingerprint ``1KB-blake3``
    -2.7 %), so the folder is made before any counting process starts.
    """
    ((REPO if tree is None else tree) / ".benchmarks").mkdir(exist_ok=True)


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
    data = read_suite_document(results)  # the one reader's checks, before anything is written
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


def run_counting(
    tools: Tools,
    suite: str,
    directory: Path,
    stdout: IO[str] | None,
    *,
    quick: bool,
    live: bool,
    pytest_args: Sequence[str] = (),
) -> int:
    """Run one counting process for ``suite`` in a fresh :func:`counting_stage` → its exit code.

    What it writes (``counts.json``, valgrind logs, dumps kept with
    ``--instructions-keep-dumps``) is moved into ``directory`` afterwards, also when it failed.
    ``stdout``: where its output goes (``None``: this process's).
    """
    directory.mkdir(parents=True, exist_ok=True)

    def waiting(lock: Path) -> None:
        if stdout is not None:
            stdout.write(f"# waiting for another count to finish (lock {lock})\n")
            stdout.flush()

    with counting_stage(wait=waiting) as stage:
        cmd = counting_command(
            tools,
            suite,
            stage.out,
            quick=quick,
            live=live,
            pytest_args=pytest_args,
            tree=stage.src,
            basetemp=stage.tmp,
        )
        env = counting_env(tools, tree=stage.src)
        if stdout is not None:
            shown = ("PYTHONHASHSEED", "LD_PRELOAD", "MALLOC_CONF")
            stdout.write(f"# stage {stage.src} (a copy of {REPO})\n")
            stdout.write("$ " + " ".join([*(f"{k}={env[k]}" for k in shown), *cmd]) + "\n")
            stdout.flush()
        try:
            return subprocess.run(
                cmd, cwd=stage.src, stdout=stdout, stderr=subprocess.STDOUT, env=env, check=False
            ).returncode
        finally:
            for path in stage.out.iterdir():
                if path.is_file():
                    shutil.move(path, directory / path.name)


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
    for old in [*directory.glob("callgrind.*"), *directory.glob("valgrind.*.log")]:
        old.unlink()
    (directory / COUNTS_FILE).unlink(missing_ok=True)
    log_path = out / "logs" / f"{suite}-instructions.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"{tag}: counting instructions under callgrind", flush=True)
    start = time.monotonic()
    with log_path.open("w") as log:
        try:
            code = run_counting(
                tools,
                suite,
                directory,
                None if verbose else log,
                quick=quick,
                live=live,
                pytest_args=pytest_args,
            )
        except OSError as exc:  # the stage could not be made (disk full, permissions)
            log.write(f"samplemind-bench: the counting stage failed: {exc}\n")
            code = 1
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
