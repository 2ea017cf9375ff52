"""Study: why some instruction counts take two values in fresh processes of one commit.

``64B-xxh3_128`` (hashing) and ``8KB-canonical`` (fingerprint) were seen to count
differently in fresh counting processes of the same commit (939.8 / 947.3 / 954.8 and
21,904.4 / 22,181.3 instructions per call). This study counts one suite (``-k`` one or a few
benchmarks) in ``--runs`` fresh counting processes, exactly as
``samplemind-bench run --instructions`` starts them (:func:`bench.instructions.runner.counting_command`,
``counting_env``, a fresh :func:`counting_stage` each), under one or more *variants* that hold
a candidate cause fixed or move it on purpose, and prints, per benchmark and variant, the
distinct counts and how many processes gave each::

    nice python -m studies.instruction_bimodal --suite hashing -k 64B --runs 10 \\
        --variant base --variant env_pad --out /tmp/bimodal/hashing.json

Variants (``--variant NAME``, repeatable; see :data:`VARIANTS`) change only the counting
process's environment or pytest arguments. ``--root`` puts the stage elsewhere (a path of the
same length as the real one by default, so this study does not wait on other counts: the
characters of the path reach a count, so compare counts within one root only).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.instructions.runner import (
    REPO,
    counting_command,
    counting_env,
    counting_stage,
    preflight,
    read_counts,
)

__all__ = ["VARIANTS", "Variant", "main"]


@dataclass(frozen=True)
class Variant:
    """A change to the counting process: ``env`` entries set (``None`` value: removed), extra
    pytest arguments, and a per-run environment hook (``run index -> entries``)."""

    what: str
    env: dict[str, str | None] = field(default_factory=dict)
    pytest_args: tuple[str, ...] = ()
    per_run: Callable[[int], dict[str, str]] | None = None
    heap_probe: bool = False
    undo_0620: bool = False


def _pad_env(i: int) -> dict[str, str]:
    # a variable whose length grows by 1 per run: moves the initial stack (auxv/env block)
    return {"SAMPLEMIND_STUDY_PAD": "x" * (1 + i * 1)}


def _pad_env16(i: int) -> dict[str, str]:
    return {"SAMPLEMIND_STUDY_PAD": "x" * (1 + 16 * i)}


VARIANTS: dict[str, Variant] = {
    "base": Variant("the counting process as the runner starts it"),
    "before_0620": Variant(
        "the counting process as it was before decision 0620: pytest-benchmark asks git and hg "
        "(no -p bench.instructions._no_vcs), OpenBLAS starts its worker thread",
        undo_0620=True,
    ),
    "env_pad": Variant(
        "one more environment variable whose length grows by 1 byte per run "
        "(the initial stack's alignment)",
        per_run=_pad_env,
    ),
    "env_pad16": Variant(
        "one more environment variable whose length grows by 16 bytes per run", per_run=_pad_env16
    ),
    "env_fixed": Variant(
        "one more environment variable of a fixed length (control for env_pad)",
        env={"SAMPLEMIND_STUDY_PAD": "x"},
    ),
    "openblas1": Variant(
        "OPENBLAS_NUM_THREADS=1: numpy (imported by fakeredis) starts no BLAS worker thread",
        env={"OPENBLAS_NUM_THREADS": "1"},
    ),
    "heap_probe": Variant(
        "openblas1 plus the heap probe (studies/_heap_probe.py: the heap at each pytest hook, "
        "written to --work/heap-<run>.txt)",
        env={"OPENBLAS_NUM_THREADS": "1"},
        pytest_args=("-p", "studies._heap_probe"),
        heap_probe=True,
    ),
    "heap_audit": Variant(
        "heap_probe, plus the heap at every import, open, listing and subprocess (audit events)",
        env={"OPENBLAS_NUM_THREADS": "1", "SAMPLEMIND_STUDY_HEAP_AUDIT": "1"},
        pytest_args=("-p", "studies._heap_probe"),
        heap_probe=True,
    ),
    "no_jemalloc": Variant("glibc malloc instead of jemalloc", env={"LD_PRELOAD": None}),
    "jemalloc_1arena": Variant(
        "jemalloc with one arena and no thread cache",
        env={"MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1,narenas:1,tcache:false"},
    ),
    "jemalloc_notcache": Variant(
        "jemalloc without thread cache",
        env={"MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1,tcache:false"},
    ),
    "pymalloc_off": Variant(
        "PYTHONMALLOC=malloc (every object from jemalloc)", env={"PYTHONMALLOC": "malloc"}
    ),
}


def _one(
    tools: Any,
    suite: str,
    select: str,
    variant: Variant,
    i: int,
    root: Path,
    work: Path,
    quick: bool,
    extra: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    directory = work / f"{suite}-{i}"
    directory.mkdir(parents=True, exist_ok=True)
    with counting_stage(REPO, root) as stage:
        cmd = counting_command(
            tools,
            suite,
            stage.out,
            quick=quick,
            live=False,
            pytest_args=["-k", select] if select else [],
            tree=stage.src,
            basetemp=stage.tmp,
        )
        if variant.undo_0620:
            at = cmd.index("bench.instructions._no_vcs")
            del cmd[at - 1 : at + 1]
        cmd += [*variant.pytest_args, *extra]
        env = counting_env(tools, tree=stage.src)
        for key, value in variant.env.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        if variant.undo_0620:
            env.pop("OPENBLAS_NUM_THREADS", None)
        if variant.per_run is not None:
            env.update(variant.per_run(i))
        if variant.heap_probe:
            env["PYTHONPATH"] += os.pathsep + str(REPO)
            env["SAMPLEMIND_STUDY_HEAP_OUT"] = str(work / f"heap-{i}.txt")
        with (directory / "pytest.txt").open("w") as log:
            code = subprocess.run(
                ["nice", "-n", "10", *cmd],
                cwd=stage.src,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                check=False,
            ).returncode
        counts = read_counts(stage.out)
        for path in stage.out.iterdir():
            if path.is_file():
                path.replace(directory / path.name)
    if code != 0:
        raise SystemExit(f"run {i} exited {code}; see {directory / 'pytest.txt'}")
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studies.instruction_bimodal")
    parser.add_argument("--suite", required=True)
    parser.add_argument("-k", dest="select", default="")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--variant", action="append", choices=sorted(VARIANTS))
    parser.add_argument("-j", "--jobs", type=int, default=1, help="runs at once (own stage each)")
    parser.add_argument("--root", type=Path, default=None, help="stage root (job j appends j)")
    parser.add_argument("--no-quick", action="store_true")
    parser.add_argument(
        "--keep-dumps",
        action="store_true",
        help="keep each count's callgrind dump (per-function diffs)",
    )
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    tools = preflight()
    if isinstance(tools, str):
        print(tools, file=sys.stderr)
        return 2
    tmp = Path(tempfile.gettempdir())
    # same length as stage_root() ("samplemind-count-<uid>"): "bimo<j>" for job j
    roots = [
        args.root.with_name(f"{args.root.name}{j}")
        if args.root
        else tmp / f"samplemind-bimo{j}-{os.getuid()}"
        for j in range(args.jobs)
    ]
    work = args.work or Path(tempfile.mkdtemp(prefix="bimodal-"))
    variants = args.variant or ["base"]
    result: dict[str, Any] = {
        "command": " ".join(sys.argv),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "load_before": os.getloadavg(),
        "roots": [str(r) for r in roots],
        "variants": {},
    }
    for name in variants:
        variant = VARIANTS[name]
        start = time.monotonic()
        tasks = list(range(args.runs))

        def run(i: int, variant: Variant = variant, name: str = name) -> dict[str, Any]:
            root = roots[i % args.jobs]
            counts = _one(
                tools,
                args.suite,
                args.select,
                variant,
                i,
                root,
                work / name,
                not args.no_quick,
                ["--instructions-keep-dumps"] if args.keep_dumps else [],
            )
            print(f"  {name} run {i + 1}/{args.runs} done", file=sys.stderr, flush=True)
            return {"root": str(root), "counts": counts}

        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(run, tasks))
        per_bench: dict[str, list[dict[str, Any]]] = {}
        for i, row in enumerate(rows):
            for bench, count in row["counts"].items():
                per_bench.setdefault(bench, []).append(
                    {
                        "run": i,
                        "root": row["root"],
                        **{k: v for k, v in count.items() if k.startswith("instructions")},
                    }
                )
        result["variants"][name] = {
            "what": variant.what,
            "seconds": round(time.monotonic() - start, 1),
            "benchmarks": per_bench,
        }
        print(f"## {name}: {variant.what} ({time.monotonic() - start:.0f} s)")
        for bench, items in per_bench.items():
            for root in roots:
                values = [x["instructions"] for x in items if x["root"] == str(root)]
                tally = Tally(values)
                shown = ", ".join(f"{v:,.3f} x{n}" for v, n in sorted(tally.items()))
                print(f"  {bench.split('::')[-1]} [{Path(root).name}]: {shown}")
    result["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
