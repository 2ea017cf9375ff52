"""``samplemind-bench profile --out DIR [--requests N] [--quick]``: memory and CPU profiles.

Runs the pipeline workload (:mod:`bench.profile.workload`: ``AIManager`` over
fakeredis and the in-process mocked providers, no simulated latency) three ways:

1. under **memray** (``--trace-python-allocators``) on up to ``--memray-requests``
   requests → peak memory, allocation count, top allocating functions
   (``memray stats --json``) and the HTML flame graph (``memray flamegraph``);
2. under **py-spy** (``record -f speedscope``) on all ``N`` requests → top functions
   by own time, and the memory checkpoints of the leak check (py-spy samples from
   outside, so the replay's memory is its own);
3. under **py-spy** again (``-f flamegraph``) on up to 5,000 requests → an SVG flame graph.

Leak check: resident and peak RSS and CPython's allocated blocks after ``N/4``
requests against after ``N`` (5,000 vs 20,000 by default) → "no growth" or "grows".

py-spy needs ptrace rights. When it lacks them the CPU profile is marked
``unavailable`` in ``profile.json`` with the reason and how to grant them, a
warning is printed, and the leak check runs without py-spy: nothing fails silently.

Writes ``DIR/profile.json`` (format ``samplemind-profile`` version 1) and the
artefacts beside it; ``samplemind-bench report ... --profile DIR`` charts them.
Exit status: 0 when the workload ran (even if py-spy was unavailable), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

from bench.results import PROFILE_FORMAT, PROFILE_VERSION

__all__ = ["PTRACE_HELP", "find_py_spy", "leak_verdict", "main", "speedscope_top"]

WORKLOAD: Final = "bench.profile.workload"
PTRACE_HELP: Final = (
    "py-spy attaches with ptrace. Grant it by running as root, or with "
    "`sudo sysctl kernel.yama.ptrace_scope=0` (or `sudo setcap cap_sys_ptrace+ep $(which py-spy)`); "
    "in Docker start the container with `--cap-add SYS_PTRACE` "
    "(and `--security-opt seccomp=unconfined` on old Docker versions)"
)
_PTRACE_RE: Final = re.compile(
    r"permission denied|operation not permitted|ptrace|elevated permissions|EPERM", re.IGNORECASE
)
_FLAME_MAX: Final = 5000


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def _workload_cmd(requests: int, checkpoint_every: int, checkpoints: Path | None) -> list[str]:
    cmd = ["-m", WORKLOAD, "--requests", str(requests), "--checkpoint-every", str(checkpoint_every)]
    if checkpoints is not None:
        cmd += ["--checkpoints-out", str(checkpoints)]
    return cmd


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_repo()), os.environ.get("PYTHONPATH")])),
    }


def _run(cmd: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout_s, env=_env(), check=False
    )


def _run_side_by_side(
    cmds: list[list[str]], timeout_s: float
) -> list[subprocess.CompletedProcess[str]]:
    """:func:`_run` for each of ``cmds``, all started at once (readers of one finished file);
    each has ``timeout_s`` from the start (:class:`subprocess.TimeoutExpired` as with
    :func:`_run`). Every process is ended and waited for on every way out."""
    env = _env()
    procs: list[subprocess.Popen[str]] = []
    deadline = time.monotonic() + timeout_s
    try:
        for cmd in cmds:
            procs.append(
                subprocess.Popen(
                    cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
                )
            )
        done = []
        for cmd, proc in zip(cmds, procs, strict=True):
            out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            done.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
        return done
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def _repo() -> Path:
    return Path(__file__).resolve().parents[2]


# --- memray -----------------------------------------------------------------------------------


def _memray(out: Path, requests: int, timeout_s: float) -> dict[str, Any]:
    capture, stats_file, flame = (
        out / "memray.bin",
        out / "memray-stats.json",
        out / "memray-flamegraph.html",
    )
    for f in (capture, stats_file, flame):
        f.unlink(missing_ok=True)
    memray = [sys.executable, "-m", "memray"]
    run = _run(
        [
            *memray,
            "run",
            "--quiet",
            "--trace-python-allocators",
            "-f",
            "-o",
            str(capture),
            *_workload_cmd(requests, max(1, requests), None),
        ],
        timeout_s,
    )
    if run.returncode != 0 or not capture.is_file():
        return {
            "status": "failed",
            "message": f"memray run failed ({run.returncode}): {_tail(run.stderr)}",
        }
    # the statistics and the flame graph each read the whole capture (most of a small
    # profile's time): side by side, on separate cores where there are two
    st, fg = _run_side_by_side(
        [
            [*memray, "stats", "--json", "-f", "-n", "15", "-o", str(stats_file), str(capture)],
            [*memray, "flamegraph", "--no-web", "-f", "-o", str(flame), str(capture)],
        ],
        timeout_s,
    )
    if st.returncode != 0 or not stats_file.is_file():
        return {"status": "failed", "message": f"memray stats failed: {_tail(st.stderr)}"}
    stats = json.loads(stats_file.read_text(encoding="utf-8"))
    artefacts = {"stats": stats_file.name, "capture": capture.name}
    if fg.returncode == 0 and flame.is_file():
        artefacts["flamegraph"] = flame.name
    counts = {a["location"]: int(a["count"]) for a in stats.get("top_allocations_by_count", [])}
    top = []
    for a in stats.get("top_allocations_by_size", []):
        loc = str(a["location"])
        func, _, where = loc.partition(":")
        top.append(
            {"function": func, "location": where, "bytes": int(a["size"]), "count": counts.get(loc)}
        )
    return {
        "status": "ok",
        "requests": requests,
        "peak_bytes": int(stats["metadata"]["peak_memory"]),
        "total_allocations": int(stats["total_num_allocations"]),
        "total_bytes": int(stats["total_bytes_allocated"]),
        "top_functions": top,
        "top_functions_measure": "bytes allocated over the run (memray stats, by location)",
        "artefacts": artefacts,
        **({} if "flamegraph" in artefacts else {"flamegraph_error": _tail(fg.stderr)}),
    }


# --- py-spy -----------------------------------------------------------------------------------


def speedscope_top(
    doc: dict[str, Any], n: int = 15, *, region: str | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """Samples and the top ``n`` functions by own time (leaf frames) of a speedscope file.

    With ``region`` (a function name), only samples whose stack passes through that
    function count (the timed region: start-up and imports excluded), when there are any.
    """
    frames = doc["shared"]["frames"]
    stacks = [s for prof in doc.get("profiles", []) for s in prof.get("samples", []) if s]
    if region is not None:
        ids = {i for i, fr in enumerate(frames) if fr.get("name") == region}
        inside = [s for s in stacks if ids.intersection(s)]
        stacks = inside or stacks
    own: dict[tuple[str, str], float] = {}
    total = 0.0
    for stack in stacks:  # one entry per sample; py-spy's weights are durations, so count
        fr = frames[stack[-1]]
        key = (str(fr.get("name", "?")), str(fr.get("file", "")))
        own[key] = own.get(key, 0.0) + 1
        total += 1
    top = [
        {
            "function": name,
            "location": file,
            "own_samples": int(w),
            "own_fraction": (w / total) if total else 0.0,
        }
        for (name, file), w in sorted(own.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    ]
    return int(total), top


def _py_spy(
    py_spy: str | None, out: Path, requests: int, checkpoint_every: int, timeout_s: float, rate: int
) -> tuple[dict[str, Any], Path | None]:
    """CPU profile; returns (cpu section, checkpoints file if the replay ran under py-spy)."""
    if py_spy is None:
        return {
            "status": "unavailable",
            "message": "py-spy is not installed (pip install py-spy)",
            "how_to_fix": "pip install py-spy",
        }, None
    speedscope, svg, cps = (
        out / "pyspy.speedscope.json",
        out / "pyspy-flamegraph.svg",
        out / "checkpoints.json",
    )
    for f in (speedscope, svg, cps):
        f.unlink(missing_ok=True)
    base = [py_spy, "record", "--rate", str(rate)]
    rec = _run(
        [
            *base,
            "-f",
            "speedscope",
            "-o",
            str(speedscope),
            "--",
            sys.executable,
            *_workload_cmd(requests, checkpoint_every, cps),
        ],
        timeout_s,
    )
    if rec.returncode != 0 or not speedscope.is_file():
        detail = _tail(rec.stderr + "\n" + rec.stdout)
        if _PTRACE_RE.search(rec.stderr + rec.stdout):
            return {
                "status": "unavailable",
                "message": f"py-spy lacks ptrace rights, no CPU profile was taken ({detail})",
                "how_to_fix": PTRACE_HELP,
            }, None
        return {
            "status": "failed",
            "message": f"py-spy failed ({rec.returncode}): {detail}",
            "how_to_fix": None,
        }, None
    samples, top = speedscope_top(
        json.loads(speedscope.read_text(encoding="utf-8")), region="_drive"
    )
    section: dict[str, Any] = {
        "status": "ok",
        "requests": requests,
        "rate_hz": rate,
        "samples": samples,
        "region": "samples inside the replay loop bench.profile.workload._drive (start-up and imports excluded)",
        "top_functions": top,
        "artefacts": {"speedscope": speedscope.name},
    }
    flame_n = min(requests, _FLAME_MAX)
    fg = _run(
        [
            *base,
            "-f",
            "flamegraph",
            "-o",
            str(svg),
            "--",
            sys.executable,
            *_workload_cmd(flame_n, flame_n, None),
        ],
        timeout_s,
    )
    if fg.returncode == 0 and svg.is_file():
        section["artefacts"]["flamegraph"] = svg.name
        section["flamegraph_requests"] = flame_n
    else:
        section["flamegraph_error"] = _tail(fg.stderr)
    return section, cps if cps.is_file() else None


# --- leak check -------------------------------------------------------------------------------


def leak_verdict(checkpoints: list[dict[str, int]], early: int, late: int) -> dict[str, Any]:
    """Compare memory after ``early`` and ``late`` requests (the nearest checkpoints at or after them).

    "grows" when the peak RSS rose by more than max(4 MiB, 5 %) or CPython's allocated
    blocks by more than 5 % between the two; else "no growth".
    """

    def at(n: int) -> dict[str, int]:
        after = [c for c in checkpoints if c["requests"] >= n]
        return min(after, key=lambda c: c["requests"]) if after else checkpoints[-1]

    a, b = at(early), at(late)
    peak_growth = b["peak_rss_bytes"] - a["peak_rss_bytes"]
    rss_growth = b["rss_bytes"] - a["rss_bytes"]
    blocks_growth = (b["allocated_blocks"] - a["allocated_blocks"]) / max(a["allocated_blocks"], 1)
    grows = peak_growth > max(4 * 2**20, 0.05 * a["peak_rss_bytes"]) or blocks_growth > 0.05
    return {
        "early": a["requests"],
        "late": b["requests"],
        "early_rss_bytes": a["rss_bytes"],
        "late_rss_bytes": b["rss_bytes"],
        "early_peak_rss_bytes": a["peak_rss_bytes"],
        "late_peak_rss_bytes": b["peak_rss_bytes"],
        "rss_growth_bytes": rss_growth,
        "peak_growth_bytes": peak_growth,
        "blocks_growth_fraction": blocks_growth,
        "verdict": "grows" if grows else "no growth",
        "rule": "grows if peak RSS +max(4 MiB, 5 %) or allocated blocks +5 % between the two checkpoints",
        "checkpoints": checkpoints,
    }


def find_py_spy() -> str | None:
    """py-spy beside this interpreter (a virtualenv's ``bin/``, found even when the
    virtualenv is not activated), else the first on ``PATH``."""
    here = Path(sys.executable).parent
    for name in ("py-spy", "py-spy.exe"):
        cand = here / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    return shutil.which("py-spy")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="samplemind-bench profile",
        description="Profile the pipeline workload under memray and py-spy; write DIR/profile.json + artefacts.",
    )
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument(
        "--requests", type=int, default=None, help="replay length (default 20000; --quick 2000)"
    )
    p.add_argument("--quick", action="store_true", help="a short replay (2,000 requests) for CI")
    p.add_argument(
        "--memray-requests",
        type=int,
        default=3000,
        help="requests replayed under memray (max; 0 skips the memory profile)",
    )
    p.add_argument(
        "--py-spy",
        dest="py_spy",
        default=None,
        help="py-spy executable (default: beside this Python, else on PATH)",
    )
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per profiled run")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    n = args.requests or (2000 if args.quick else 20000)
    if n < 8:
        print("samplemind-bench profile: error: --requests must be at least 8", file=sys.stderr)
        return 2
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(
            f"samplemind-bench profile: error: --out {out}: {exc.strerror or exc}", file=sys.stderr
        )
        return 2
    every = max(1, n // 20)
    py_spy = args.py_spy or find_py_spy()

    memory: dict[str, Any]
    if args.memray_requests > 0:
        print(f"profile: memray on {min(n, args.memray_requests):,} requests ...", file=sys.stderr)
        memory = _memray(out, min(n, args.memray_requests), args.timeout)
    else:
        memory = {"status": "skipped", "message": "memray skipped (--memray-requests 0)"}
    print(f"profile: py-spy on {n:,} requests ...", file=sys.stderr)
    cpu, cps_file = _py_spy(py_spy, out, n, every, args.timeout, args.rate)
    if cps_file is None:  # no py-spy run: replay once without a profiler for the leak check
        cps_file = out / "checkpoints.json"
        print(f"profile: plain replay of {n:,} requests for the leak check ...", file=sys.stderr)
        plain = _run([sys.executable, *_workload_cmd(n, every, cps_file)], args.timeout)
        if plain.returncode != 0:
            cps_file.unlink(missing_ok=True)
            memory.setdefault("message", f"workload failed: {_tail(plain.stderr)}")
    leak: dict[str, Any] = {}
    if cps_file.is_file():
        cps = json.loads(cps_file.read_text(encoding="utf-8"))
        leak = leak_verdict(cps, n // 4, n)
        leak["note"] = f"RSS after {leak['early']:,} vs {leak['late']:,} requests" + (
            " (quick mode: a short replay, not the full 5,000 vs 20,000)" if n < 20000 else ""
        )
    doc = {
        "format": PROFILE_FORMAT,
        "version": PROFILE_VERSION,
        "requests": n,
        "quick": n < 20000,
        "workload": f"python -m {WORKLOAD} (AIManager + fakeredis + fixtures.mock.world_transport, latency_scale 0)",
        "memory": memory,
        "leak": leak,
        "cpu": cpu,
    }
    (out / "profile.json").write_text(
        json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )

    print(f"profile written to {out / 'profile.json'}")
    if memory.get("status") == "ok":
        print(
            f"  memray: peak {memory['peak_bytes'] / 2**20:.1f} MiB, {memory['total_allocations']:,} allocations"
        )
    else:
        print(f"  memray: {memory.get('message')}")
    if leak:
        print(
            f"  leak check: {leak['verdict']} ({leak['note']}: {leak['early_rss_bytes'] / 2**20:.1f} → "
            f"{leak['late_rss_bytes'] / 2**20:.1f} MiB)"
        )
    if cpu.get("status") == "ok":
        top: dict[str, Any] = (
            cpu["top_functions"][0]
            if cpu["top_functions"]
            else {"function": "-", "own_fraction": 0.0}
        )
        print(
            f"  py-spy: {cpu['samples']:,} samples, top own time {top['function']} {100 * top['own_fraction']:.1f} %"
        )
    else:
        print(f"WARNING: {cpu.get('message')}", file=sys.stderr)
        if cpu.get("how_to_fix"):
            print(f"WARNING: how to fix: {cpu['how_to_fix']}", file=sys.stderr)
    ok = memory.get("status") in ("ok", "skipped") and bool(leak)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
