"""The two-folder gate on separate runs: its between-run floor, A/A false alarms and detection.

Input: results folders of back-to-back ``samplemind-bench run --quick`` of ONE commit (an A/A
series, e.g. ``/tmp/gatefloor/r01 .. r21``); consecutive folders are the A/A pairs.

``calibrate RUN_DIR...``
    Writes the floor file the gate reads (default ``bench/gate/between_run_spreads.json``):
    per benchmark and wall-time metric, ``safety x`` the largest change over the consecutive
    pairs, and the largest differences of the recorded run conditions among them
    (:func:`bench.gate.floor.calibrate`).

``evaluate RUN_DIR...``
    Two-fold cross-fitting, so that no pair is judged by a floor fitted on itself: the floor
    of the first half of the series (pairs 1..n/2) judges the pairs of the second half, and
    the floor of the second half judges the first. Each A/A pair goes through the gate's
    console entry point (``samplemind-bench gate A B --floor FOLD_FLOOR --json ...``):
    exit 0 / 1 / 3 are counted (goal: no exit 1). Detection: in each held-out pair whose wall
    time was comparable, the candidate's samples of one benchmark are scaled by
    ``1 + slowdown`` (a copy of the folder; the other suite files are linked) and the gate
    is run on that benchmark (``--select``); flagged = "regressed"; a pair that was not
    comparable must say "not comparable" (exit 3), never pass. Figures go to ``--out`` (JSON)
    and a Markdown table to stdout.

    python -m studies.gate_between_runs calibrate /tmp/gatefloor/r{01..21}
    python -m studies.gate_between_runs evaluate /tmp/gatefloor/r{01..21} --out results/gate_between_runs.json
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import itertools
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import gate, results
from bench.gate import floor as floors

__all__ = ["calibrate_runs", "evaluate_runs", "main"]

DEFAULT_INJECT = (
    "test_fingerprint[1KB-blake3]",
    "test_route[creative-speed-healthy]",
    "test_codec[1KB-msgpack-decode]",
    "test_hash[1KiB-sha256]",
)
"""Benchmarks slowed down in the detection part: one per CPU-bound suite."""


def _load(folder: Path) -> tuple[gate.ResultSet, floors.SuiteConditions]:
    (conds,) = floors.conditions_of([folder])
    return gate.load_results(folder), conds


def _metrics_of(rs: gate.ResultSet, config: gate.GateConfig) -> dict[str, list[str]]:
    """The wall-time metrics the default rules judge, per benchmark."""
    out: dict[str, list[str]] = {}
    for key, rec in rs.benches.items():
        out[key] = [
            m
            for m, rule in config.rules_for(rec).items()
            if (floors.is_timing_metric(m) or rule.wall_clock) and rule.test != "spread"
        ]
    return out


def calibrate_runs(dirs: Sequence[Path], safety: float = floors.DEFAULT_SAFETY) -> dict[str, Any]:
    """The floor file's content from the consecutive pairs of ``dirs``."""
    config = gate.load_config()
    loaded = [_load(d) for d in dirs]
    pairs = [(a.benches, b.benches, ca, cb) for (a, ca), (b, cb) in itertools.pairwise(loaded)]
    metrics: dict[str, list[str]] = {}
    for rs, _ in loaded:
        metrics.update(_metrics_of(rs, config))
    return floors.calibrate(pairs, metrics_of=metrics, safety=safety, runs=[str(d) for d in dirs])


def _gate(argv: list[str]) -> tuple[int, dict[str, Any]]:
    """``samplemind-bench gate ARGV --json F -q`` in-process: exit code and the JSON report."""
    with tempfile.TemporaryDirectory(prefix="gbr-") as tmp:
        out = Path(tmp) / "v.json"
        sink = io.StringIO()
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            code = gate.main([*argv, "--json", str(out), "-q"])
        doc = json.loads(out.read_text()) if out.is_file() else {}
    return code, doc


def _wait_complete(folder: Path, wait_s: float, log: Any) -> None:
    """Wait up to ``wait_s`` for ``folder``'s run to finish (a series still being written)."""
    deadline = time.monotonic() + wait_s
    said = False
    while time.monotonic() < deadline:
        try:
            if json.loads((folder / "manifest.json").read_text()).get("complete") is True:
                return
        except (OSError, ValueError):
            pass
        if not said:
            log(f"  waiting for {folder} to complete")
            said = True
        time.sleep(10)


def _suite_file(src: Path, bench_name: str) -> str | None:
    """The suite file of ``src`` that holds ``bench_name`` (None: none)."""
    manifest = json.loads((src / "manifest.json").read_text())
    for name in manifest["files"]:
        doc = results.read_suite_document(src / name)  # plain or .json.gz
        if any(b.get("name") == bench_name for b in doc.get("benchmarks", [])):
            return str(name)
    return None


def _one_suite(src: Path, dest: Path, file: str, bench_name: str, factor: float) -> None:
    """A results folder at ``dest`` with the one suite file ``file`` of ``src`` (its manifest
    entry and recorded conditions kept); ``bench_name``'s raw samples and summary stats
    scaled by ``factor`` (1.0: a link to the original file)."""
    dest.mkdir(parents=True)
    manifest = json.loads((src / "manifest.json").read_text())
    suite = results.suite_name(file)
    out = file if factor == 1.0 else f"{suite}.json"  # a scaled copy is written plain
    manifest["suites"] = [suite]
    manifest["files"] = [out]
    manifest["runs"] = [r for r in manifest.get("runs", []) if r.get("suite") == suite]
    for run in manifest["runs"]:
        if "file" in run:
            run["file"] = out
    (dest / "manifest.json").write_text(json.dumps(manifest))
    if factor == 1.0:
        (dest / file).symlink_to(src / file)
        return
    doc = results.read_suite_document(src / file)
    for b in doc["benchmarks"]:
        if b["name"] == bench_name:
            st = b["stats"]
            st["data"] = [x * factor for x in st["data"]]
            for k in ("min", "max", "mean", "median", "q1", "q3", "stddev", "iqr", "total"):
                if isinstance(st.get(k), int | float):
                    st[k] = st[k] * factor
    (dest / out).write_text(json.dumps(doc))


def evaluate_runs(
    dirs: Sequence[Path],
    *,
    inject: Sequence[str] = DEFAULT_INJECT,
    slowdown: float = 0.25,
    detect_pairs: int = 10,
    safety: float = floors.DEFAULT_SAFETY,
    only_fold: int | None = None,
    wait_s: float = 0.0,
    detect_only: bool = False,
    log: Any = print,
) -> dict[str, Any]:
    """The A/A and detection figures of the module docstring (two-fold cross-fitted floors)."""
    n_pairs = len(dirs) - 1
    half = n_pairs // 2
    folds = [
        (list(dirs[: half + 1]), list(range(half, n_pairs))),  # floor of pairs 1..half
        (list(dirs[half:]), list(range(0, half))),  # floor of pairs half+1..n
    ]
    pairs_out: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gate-between-runs-") as tmp_s:
        tmp = Path(tmp_s)
        for f, (cal_dirs, held_out) in enumerate(folds):
            if only_fold is not None and f + 1 != only_fold:
                continue
            floor_file = tmp / f"floor{f}.json"
            doc = calibrate_runs(cal_dirs, safety)
            floor_file.write_text(json.dumps(doc))
            # the alternative: each benchmark's floor from its own pairs only (not pooled)
            own_file = tmp / f"floor{f}-own.json"
            own_suites: dict[str, float] = {}
            for k, v in doc["own"].items():
                s = k.split("test_", 1)[-1].split(".py", 1)[0]
                own_suites[s] = max(own_suites.get(s, 0.0), v)
            own_file.write_text(json.dumps({**doc, "floors": doc["own"], "suites": own_suites}))
            log(
                f"fold {f + 1}: floor from {cal_dirs[0].name}..{cal_dirs[-1].name} "
                f"({doc['pairs']} pairs); judging pairs {[i + 1 for i in held_out]}"
            )
            for i in held_out:
                a, b = dirs[i], dirs[i + 1]
                if wait_s:
                    _wait_complete(b, wait_s, log)
                if detect_only:
                    code, own_code = -1, -1
                    rep: dict[str, Any] = {}
                else:
                    code, rep = _gate([str(a), str(b), "--floor", str(floor_file)])
                    own_code, _ = _gate([str(a), str(b), "--floor", str(own_file)])
                counts = rep.get("counts", {})
                regressed = [
                    f"{v['name']} {v['metric']} {v.get('change') or 0:+.0%}"
                    for v in rep.get("verdicts", [])
                    if v["status"] == "regressed"
                ]
                entry = {
                    "pair": f"{a.name},{b.name}",
                    "fold": f + 1,
                    "exit": code,
                    "exit_own_floor": own_code,
                    "counts": counts,
                    "regressed": regressed,
                    "not_comparable_suites": sorted(
                        {
                            v["group"].split("/")[0]
                            for v in rep.get("verdicts", [])
                            if v["status"] == "not comparable"
                        }
                    ),
                }
                pairs_out.append(entry)
                log(
                    f"  {entry['pair']}: exit {code} {counts} "
                    f"({time.monotonic() - started:.0f} s)"
                    + (f" regressed: {regressed[:4]}" if regressed else "")
                )
                for name in inject:
                    done = [d for d in detections if d["benchmark"] == name]
                    if sum(d["status"] != "not comparable" for d in done) >= detect_pairs:
                        continue
                    file = _suite_file(b, name)
                    if file is None:
                        continue
                    tag = f"{i}-{file}"
                    base_dir, inj_dir = tmp / f"base-{tag}", tmp / f"inj-{tag}-{len(done)}"
                    if not base_dir.exists():
                        _one_suite(a, base_dir, file, name, 1.0)
                    _one_suite(b, inj_dir, file, name, 1.0 + slowdown)
                    dcode, drep = _gate(
                        [
                            str(base_dir),
                            str(inj_dir),
                            "--floor",
                            str(floor_file),
                            "--select",
                            glob.escape(name),
                        ]
                    )
                    shutil.rmtree(inj_dir)
                    (v,) = [x for x in drep.get("verdicts", []) if x["metric"] == "time"]
                    detections.append(
                        {
                            "pair": entry["pair"],
                            "benchmark": name,
                            "exit": dcode,
                            "status": v["status"],
                            "floor": v.get("floor"),
                            "change_fastest": v.get("between_change"),
                            "change_median": v.get("change"),
                            "reason": v.get("reason"),
                        }
                    )
                    log(f"    +{slowdown:.0%} {name}: exit {dcode}, {v['status']}")
    return _summary(
        {
            "format": "samplemind-gate-between-runs-study",
            "version": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "runs": [str(d) for d in dirs],
            "safety": safety,
            "slowdown": slowdown,
            "detect_pairs": detect_pairs,
            "inject": list(inject),
            "aa_pairs": pairs_out,
            "detections": detections,
            "elapsed_s": round(time.monotonic() - started, 1),
        }
    )


def _summary(res: dict[str, Any]) -> dict[str, Any]:
    """Counts over ``aa_pairs`` and ``detections`` (the first ``detect_pairs`` comparable
    pairs per benchmark)."""
    pairs_out, detections = res["aa_pairs"], res["detections"]
    res["pairs"] = len(pairs_out)
    res["aa_exit_counts"] = {c: sum(p["exit"] == c for p in pairs_out) for c in (0, 1, 2, 3)}
    res["aa_exit_counts_own_floor"] = {
        c: sum(p.get("exit_own_floor") == c for p in pairs_out) for c in (0, 1, 2, 3)
    }
    per_bench: dict[str, dict[str, Any]] = {}
    for name in res["inject"]:
        rows = [d for d in detections if d["benchmark"] == name]
        comparable = [d for d in rows if d["status"] != "not comparable"][: res["detect_pairs"]]
        floors_seen = [d["floor"] for d in rows if d["floor"] is not None]
        per_bench[name] = {
            "comparable_pairs": len(comparable),
            "flagged": sum(d["status"] == "regressed" for d in comparable),
            "passed": sum(d["status"] != "regressed" for d in comparable),
            "not_comparable_pairs": sum(d["status"] == "not comparable" for d in rows),
            "not_comparable_exit_3": all(
                d["exit"] == 3 for d in rows if d["status"] == "not comparable"
            ),
            "median_floor": statistics.median(floors_seen) if floors_seen else math.nan,
        }
    res["detection"] = per_bench
    return res


def _merge(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One result from the outputs of ``evaluate --fold 1`` and ``--fold 2``."""
    first = dict(parts[0])
    first["aa_pairs"] = sorted(
        (p for part in parts for p in part["aa_pairs"]), key=lambda p: str(p["pair"])
    )
    first["detections"] = [d for part in parts for d in part["detections"]]
    first["elapsed_s"] = sum(part["elapsed_s"] for part in parts)
    return _summary(first)


def _markdown(res: dict[str, Any]) -> str:
    aa = res["aa_exit_counts"]
    lines = [
        f"A/A pairs: {res['pairs']}; exit 0: {aa[0]}, exit 1: {aa[1]}, exit 3: {aa[3]}, "
        f"exit 2: {aa[2]}",
        "With each benchmark's own floor instead (not pooled over its suite): "
        + ", ".join(f"exit {c}: {n}" for c, n in res["aa_exit_counts_own_floor"].items()),
        "",
        "| pair | fold | exit | exit, own floors | not comparable (suites) | regressed |",
        "|---|---|---|---|---|---|",
    ]
    for p in res["aa_pairs"]:
        lines.append(
            f"| {p['pair']} | {p['fold']} | {p['exit']} | {p.get('exit_own_floor')} | "
            f"{', '.join(p['not_comparable_suites'])} | {'; '.join(p['regressed'][:3])} |"
        )
    lines += [
        "",
        f"Detection of a +{res['slowdown']:.0%} slowdown injected into one benchmark:",
        "",
        "| benchmark | comparable pairs | flagged | passed | not comparable (all exit 3) | median floor |",
        "|---|---|---|---|---|---|",
    ]
    for name, d in res["detection"].items():
        lines.append(
            f"| {name} | {d['comparable_pairs']} | {d['flagged']} | {d['passed']} | "
            f"{d['not_comparable_pairs']} ({d['not_comparable_exit_3']}) | {d['median_floor']:.0%} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m studies.gate_between_runs", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("calibrate", help="write the floor file from an A/A series")
    c.add_argument("runs", nargs="+", type=Path)
    c.add_argument("--out", type=Path, default=floors.DEFAULT_FLOOR)
    c.add_argument("--safety", type=float, default=floors.DEFAULT_SAFETY)
    e = sub.add_parser("evaluate", help="A/A exit codes and detection, cross-fitted")
    e.add_argument("runs", nargs="+", type=Path)
    e.add_argument("--out", type=Path, default=Path("results/gate_between_runs.json"))
    e.add_argument("--safety", type=float, default=floors.DEFAULT_SAFETY)
    e.add_argument("--slowdown", type=float, default=0.25)
    e.add_argument("--inject", action="append", default=[], metavar="BENCHMARK")
    e.add_argument(
        "--wait", type=float, default=0.0, metavar="S", help="wait for runs still being written"
    )
    e.add_argument(
        "--detect-only", action="store_true", help="skip the A/A gates (exit codes shown as -1)"
    )
    e.add_argument("--detect-pairs", type=int, default=10, help="comparable pairs per benchmark")
    e.add_argument("--fold", type=int, choices=(1, 2), help="judge one fold's held-out pairs")
    r = sub.add_parser("table", help="merge evaluate outputs (e.g. of --fold 1 and 2)")
    r.add_argument("files", nargs="+", type=Path)
    args = p.parse_args(argv)
    if args.command == "table":
        merged = _merge([json.loads(f.read_text()) for f in args.files])
        print(_markdown(merged))
        return 0
    if len(args.runs) < 3 and not getattr(args, "wait", 0):
        p.error("give at least 3 results folders of one commit, in the order they ran")
    if args.command == "calibrate":
        doc = calibrate_runs(args.runs, args.safety)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        print(
            f"floor of {len(doc['floors'])} benchmark metrics from {doc['pairs']} A/A pairs "
            f"written to {args.out}; limits {doc['limits']}"
        )
        return 0
    res = evaluate_runs(
        args.runs,
        inject=args.inject or DEFAULT_INJECT,
        slowdown=args.slowdown,
        safety=args.safety,
        only_fold=args.fold,
        detect_pairs=args.detect_pairs,
        wait_s=args.wait,
        detect_only=args.detect_only,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(_markdown(res))
    print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
