"""Headline ratios of one results folder (``samplemind-bench headline DIR``).

Reads what ``samplemind-bench run`` wrote and prints the figures the issues
ask for, all from the same run: BLAKE3 vs SHA-256 per size, fingerprint vs
the naive key, cache hit vs the raw GET floor, the L1 hit, client transports
vs raw aiohttp, the router's decision time and fallback, and the pipeline's
before/after. Medians of the raw samples; ratios > 1 mean "faster".
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.harness.streams import headline_lines as stream_headline_lines

if TYPE_CHECKING:
    from bench.results import Benchmark

__all__ = ["added_latency_text", "headline", "main"]


def _load(folder: Path) -> dict[str, list[Benchmark]]:
    """The benchmarks of ``folder`` by suite, read by the one results reader."""
    out: dict[str, list[Benchmark]] = {}
    from bench.results import read_folder  # here, not at import: `--help` stays fast

    for f in read_folder(folder).files:
        out.setdefault(f.suite, []).extend(f.benchmarks)
    return out


def _med(b: Benchmark) -> float:
    from bench import figures

    return figures.median(b)


def _by(benchmarks: list[Benchmark], **match: Any) -> Benchmark | None:
    for b in benchmarks:
        info = b.extra_info
        if all(info.get(k, b.params.get(k) if b.params else None) == v for k, v in match.items()):
            return b
    return None


def added_latency_text(info: Mapping[str, Any]) -> str:
    """The added latency of a fallback benchmark with its 95 % interval; "within noise" when
    the interval holds 0 (a figure such as -0.08 ms is then no finding).

    >>> added_latency_text({"added_latency_ms": -0.08, "added_latency_ci_low_ms": -0.5,
    ...                     "added_latency_ci_high_ms": 0.34})
    'added latency within noise (-0.08 ms, 95% CI -0.50 to +0.34 ms)'
    >>> added_latency_text({"added_latency_ms": 21.5, "added_latency_ci_low_ms": 19.0,
    ...                     "added_latency_ci_high_ms": 24.0})
    'added latency +21.50 ms (95% CI +19.00 to +24.00 ms)'
    """
    added = info.get("added_latency_ms")
    if added is None:
        return "no success"
    lo, hi = info.get("added_latency_ci_low_ms"), info.get("added_latency_ci_high_ms")
    if lo is None or hi is None:
        return f"added latency {added:+.2f} ms (no interval recorded; re-run for one)"
    interval = f"95% CI {lo:+.2f} to {hi:+.2f} ms"
    if lo <= 0.0 <= hi:
        return f"added latency within noise ({added:+.2f} ms, {interval})"
    return f"added latency {added:+.2f} ms ({interval})"


def headline(folder: Path) -> list[str]:
    """The headline lines of ``folder``."""
    from bench import figures

    suites = _load(folder)
    lines: list[str] = []
    hashing = suites.get("hashing", [])
    for subject in dict.fromkeys(b.extra_info["subject"] for b in hashing):
        sha = _by(hashing, subject=subject, variant="sha256")
        b3 = _by(hashing, subject=subject, variant="blake3")
        auto = _by(hashing, subject=subject, variant="blake3_auto")
        if sha and b3:
            text = f"hashing {subject:>6}: BLAKE3 is {figures.speedup(sha, b3):.2f}x as fast as SHA-256"
            if auto:
                text += f", BLAKE3 AUTO {figures.speedup(sha, auto):.2f}x as fast"
            text += f" (BLAKE3 {b3.extra_info.get('gbps', 0):.2f} GB/s)"
            lines.append(text)
    fp = suites.get("fingerprint", [])
    for subject in dict.fromkeys(b.extra_info["subject"] for b in fp):
        ours, naive = (
            _by(fp, subject=subject, variant="blake3"),
            _by(fp, subject=subject, variant="naive"),
        )
        if ours and naive:
            lines.append(
                f"fingerprint {subject:>5}: blake3 {_med(ours) * 1e6:.2f} us, naive "
                f"{_med(naive) * 1e6:.2f} us -> {figures.speedup(naive, ours):.2f}x faster"
            )
    cache = suites.get("cache", [])
    for b in cache:
        info = b.extra_info
        if info.get("variant") == "hit_paired-msgpack-l1_off" and "ratio_to_raw_get" in info:
            lines.append(
                f"cache {info['subject']}: hit {_med(b) * 1e6:.1f} us vs raw GET "
                f"{info['raw_get_median_us']:.1f} us, interleaved = {info['ratio_to_raw_get']:.2f}x"
            )
    for b in cache:
        info = b.extra_info
        if info.get("variant") != "raw_get":
            continue
        hit = _by(cache, subject=info["subject"], variant="hit-msgpack-l1_off")
        l1 = _by(cache, subject=info["subject"], variant="hit-msgpack-l1_on")
        if hit:
            text = (
                f"cache {info['subject']}: hit {_med(hit) * 1e6:.1f} us vs raw GET "
                f"{_med(b) * 1e6:.1f} us = {_med(hit) / _med(b):.2f}x"
            )
            if l1:
                text += f"; L1 hit {_med(l1) * 1e6:.2f} us"
            lines.append(text)
    client = suites.get("client", [])
    for b in client:
        info = b.extra_info
        if "ratio_to_raw_aiohttp" in info:
            lines.append(
                f"client {info['subject']} interleaved: {info['variant']} "
                f"{info['req_per_s']:.0f}/s = {info['ratio_to_raw_aiohttp']:.2f}x raw aiohttp"
            )
    for subject in dict.fromkeys(b.extra_info["subject"] for b in client):
        group = [
            b
            for b in client
            if b.extra_info["subject"] == subject
            and not str(b.extra_info.get("variant", "")).endswith("_paired")
        ]
        floor = _by(group, variant="raw_aiohttp") or _by(group, variant="bare_httpx")
        if not floor:
            continue
        rps0 = floor.extra_info["req_per_s"]
        parts = [
            f"{b.extra_info['variant']} {b.extra_info['req_per_s']:.0f}/s ({b.extra_info['req_per_s'] / rps0:.2f}x)"
            for b in group
        ]
        lines.append(f"client {subject}: " + ", ".join(parts))
        pooled = _by(group, variant="pooled_http1") or _by(group, variant="pooled")
        new = _by(group, variant="new_client")
        if pooled and new:
            ratio = pooled.extra_info["req_per_s"] / new.extra_info["req_per_s"]
            lines.append(f"client {subject}: pooled / new client = {ratio:.1f}x req/s")
    router = suites.get("router", [])
    route = [b for b in router if b.extra_info.get("subject") == "route"]
    if route:
        meds = sorted(_med(b) * 1e6 for b in route if "healthy" in b.extra_info["variant"])
        opened = [_med(b) * 1e6 for b in route if "one_open" in b.extra_info["variant"]]
        lines.append(
            f"router route(): healthy median {statistics.median(meds):.2f} us (worst {meds[-1]:.2f} us)"
            + (f"; one breaker open up to {max(opened):.2f} us" if opened else "")
        )
    for b in router:
        info = b.extra_info
        if "success_rate" in info:
            lines.append(
                f"router {info['subject']} {info['variant']}: success {info['success_rate']:.0%}, "
                + added_latency_text(info)
                + f" (all requests {info.get('added_latency_all_ms', 0.0):+.2f} ms; "
                f"{info.get('calls_per_request', 0.0):.2f} calls/request; scale {info.get('latency_scale')})"
            )
    pipe = suites.get("pipeline", [])
    for subject in dict.fromkeys(b.extra_info["subject"] for b in pipe):
        before = _by(pipe, subject=subject, stack="before")
        after = _by(pipe, subject=subject, stack="after")
        if before and after:
            a, bi = after.extra_info, before.extra_info
            saved = 1 - a["cost_usd"] / a["baseline_cost_usd"] if a["baseline_cost_usd"] else 0.0
            lines.append(
                f"pipeline {subject}: p50 before {bi['p50_ms']:.1f} ms / after {a['p50_ms']:.1f} ms "
                f"= {bi['p50_ms'] / a['p50_ms']:.1f}x; p95 {bi['p95_ms']:.1f} / {a['p95_ms']:.1f} ms; "
                f"hit rate {a['hit_rate']:.0%} (repeats {a['repeat_fraction']:.0%}); provider calls "
                f"{bi['provider_calls']} -> {a['provider_calls']}; after ${a['cost_usd']:.4f} vs "
                f"${a['baseline_cost_usd']:.4f} uncached ({saved:.0%} saved), before ${bi['cost_usd']:.4f}; "
                f"scale {a['latency_scale']}"
            )
    lines += _load_lines(suites.get("load", []))
    lines += stream_headline_lines(suites.get("stream", []))
    lines += _instruction_lines(suites, folder)
    return lines


def _instruction_lines(suites: dict[str, list[Benchmark]], folder: Path) -> list[str]:
    """The instruction counts of an ``--instructions`` run (headline benchmarks, and how many):
    the figures of :func:`bench.figures.headline_figures`, as in the report."""
    from bench import figures

    rows = figures.instruction_rows(b for benches in suites.values() for b in benches)
    counted = [r for r in rows if finite(r["instructions"])]
    if not counted:
        return []
    parts = [
        f"{label} {value:,.0f}"
        for label, value in figures.headline_figures(counted).items()
        if value is not None
    ]
    return [
        "instructions per call (callgrind): "
        + ("; ".join(parts) if parts else "none of the headline benchmarks counted")
        + f" ({len(counted)} benchmarks counted: python -m bench.instructions.summary {folder})"
    ]


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _load_lines(load: list[Benchmark]) -> list[str]:
    """Issue 10's figures: warm-burst hit rate vs truth, faults, knee, hits vs raw GETs, processes."""
    from bench.harness.streams import goodput_line  # the open-loop streams' line (issue 20)

    lines: list[str] = []
    bursts = sorted(
        (b.extra_info for b in load if "burst_hit_rate" in b.extra_info),
        key=lambda x: (x.get("mode", ""), x.get("burst_size", 0)),
    )
    for mode in dict.fromkeys(x.get("mode", "") for x in bursts):
        parts = [
            f"{x['burst_size']}: {x['burst_hit_rate']:.1%} (truth {x['burst_truth']:.0%}, "
            f"{x.get('caller_errors', 0)} errors, pool waits {x.get('cache_pool_waits', 0):.0f}, "
            f"timeouts {x.get('cache_pool_timeouts', 0):.0f})"
            for x in bursts
            if x.get("mode", "") == mode
        ]
        lines.append(f"load {mode} warm-burst hit rate by burst size: " + "; ".join(parts))
    for b in load:
        x = b.extra_info
        if "cache_fault_caller_errors" in x:
            faults = ", ".join(
                f"{f['name']} {f['caller_errors']} errors/{f['extra_provider_calls']:+d} calls/"
                + (
                    "no recovery"
                    if f.get("recover_s") is None
                    else f"recovered {f['recover_s']:.1f} s"
                )
                for f in x.get("faults", [])
            )
            lines.append(
                f"load {x['mode']} faults: caller errors {x['caller_errors']} "
                f"(cache faults {x['cache_fault_caller_errors']}); hits resumed "
                f"{x['resume_hits_s']:.2f} s after the restart; {faults}"
            )
        stream = goodput_line(x)
        if stream is not None:
            lines.append(stream)
        if "knee_per_s" in x:
            offered = [float(v) for v in x.get("curve_offered_per_s") or []]
            if offered and x["knee_per_s"] >= max(offered):  # never broke: not a knee
                lines.append(
                    f"load {x['mode']} knee: none up to {max(offered):.0f} req/s (the highest "
                    f"rate offered; p99 there {x['p99_ms']:.1f} ms <= {x['knee_bound_ms']:.0f} ms)"
                )
            else:
                lines.append(
                    f"load {x['mode']} knee: {x['knee_per_s']:.0f} req/s offered with p99 <= "
                    f"{x['knee_bound_ms']:.0f} ms (p99 there {x['p99_ms']:.1f} ms)"
                )
        if "hit_vs_raw_throughput" in x:
            lines.append(
                f"load {x['mode']} cache hits via AIManager {x['hit_req_per_s']:.0f}/s vs raw GET "
                f"{x['raw_get_req_per_s']:.0f}/s at concurrency {x['concurrency']} = "
                f"{x['hit_vs_raw_throughput']:.2f}x"
            )
        if "provider_calls_4proc" in x:
            off = x.get("provider_calls_4proc_no_lease")
            lines.append(
                f"load {x['mode']} cold {x['burst_size']}-burst: provider calls 1 process "
                f"{x['provider_calls_1proc']}, 4 processes {x['provider_calls_4proc']}"
                + (f", 4 processes without the lease {off}" if off is not None else "")
                + f" (distinct requests {x['distinct_requests']})"
            )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="samplemind-bench headline",
        description="Print the headline ratios of a results folder.",
    )
    parser.add_argument("results", type=Path, metavar="DIR")
    args = parser.parse_args(argv)
    try:
        lines = headline(args.results)
    except ValueError as exc:  # the results reader's ResultsFormatError names the file
        parser.error(str(exc))
    except KeyError as exc:  # a field the headline reads is missing
        parser.error(
            f"{args.results}: a benchmark lacks the field {exc.args[0]!r} the headline reads"
        )
    except (TypeError, AttributeError) as exc:  # a field of the wrong type
        parser.error(
            f"{args.results}: a benchmark's field has the wrong type for the headline ({exc})"
        )
    print("\n".join(lines))
    return 0
