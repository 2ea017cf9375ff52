"""The claims table: each speed / cost claim of SampleMind's plan against this run.

Every :class:`Claim` carries the claim as the optimisation plan states it (README.md), the
figure measured in this run, a verdict (``holds`` / ``does not hold`` /
``machine-limited`` / ``not measured here``) and the benchmark it came from.
"machine-limited" means the bare store call without our layer (the raw GET
floor) already misses the claim's bound on this machine, so the run cannot
say whether our layer would meet it; the floor's figure stands beside it. Verdicts are strict:
a claim stated without qualification ("BLAKE3 is 10x faster than SHA-256")
holds only if it holds at every measured point; a partial result is reported in
the measured text and the verdict is "does not hold".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
import pandas as pd

from .analysis import (
    cache_ops,
    client_table,
    fmt_ms,
    fmt_pct,
    fmt_ratio,
    fmt_size,
    hash_speedup,
    pipeline_requests,
    row_at,
)
from .data import Run
from .provenance import suites_label

__all__ = [
    "DOES_NOT_HOLD",
    "HOLDS",
    "HTTP2_COMMAND",
    "MACHINE_LIMITED",
    "NOT_MEASURED",
    "Claim",
    "claims_frame",
    "evaluate_claims",
    "with_source",
]

HOLDS: Final = "holds"
DOES_NOT_HOLD: Final = "does not hold"
NOT_MEASURED: Final = "not measured here"
MACHINE_LIMITED: Final = "machine-limited"


@dataclass(frozen=True)
class Claim:
    """One row of the claims table."""

    claim: str
    measured: str
    verdict: str
    source: str


def _verdict(ok: bool) -> str:
    return HOLDS if ok else DOES_NOT_HOLD


def claim_blake3(run: Run) -> Claim:
    text = "BLAKE3 is 10x faster than SHA-256"
    sp = hash_speedup(run, "blake3 1 thread")
    if sp.empty:
        return Claim(
            text, "no BLAKE3 and SHA-256 hashing benchmarks in this run", NOT_MEASURED, "hashing"
        )
    parts = []
    at_1k = sp[sp["size"] == 1024]
    if not at_1k.empty:
        parts.append(f"{fmt_ratio(float(at_1k.ratio.iloc[0]))} at 1 KiB")
    best = row_at(sp, "ratio")
    worst = row_at(sp, "ratio", largest=False)
    if 1024 in (float(best["size"]), float(worst["size"])):
        parts.clear()
    parts.append(
        f"{fmt_ratio(float(worst.ratio))} at {fmt_size(float(worst['size']))} to "
        f"{fmt_ratio(float(best.ratio))} at {fmt_size(float(best['size']))} (1 thread)"
    )
    auto = hash_speedup(run, "blake3 AUTO")
    if not auto.empty:
        a = row_at(auto, "ratio")
        parts.append(f"AUTO best {fmt_ratio(float(a.ratio))} at {fmt_size(float(a['size']))}")
    holding = sp[sp.ratio >= 10]
    if holding.empty:
        parts.append("10x at no size")
    elif len(holding) < len(sp):
        parts.append(f"10x only at {', '.join(fmt_size(float(s)) for s in holding['size'])}")
    sizes = f"{fmt_size(float(sp['size'].min()))}-{fmt_size(float(sp['size'].max()))}"
    return Claim(
        text, "; ".join(parts), _verdict(len(holding) == len(sp)), f"hashing (median, {sizes})"
    )


HTTP2_COMMAND: Final = "samplemind-bench run --live --suite client --out DIR"
"""The command that measures HTTP/2 against pooled HTTP/1.1 (the client suite's live target)."""


def claim_http2(run: Run) -> Claim:
    text = "HTTP/2 is 2-4x faster than HTTP/1.1"
    ct = client_table(run)
    h2 = ct[ct.kind == "http2"].set_index("concurrency").req_per_s
    h1 = ct[ct.kind == "http1"].set_index("concurrency").req_per_s
    common = sorted(set(h2.index) & set(h1.index))
    if not common:
        return Claim(
            text,
            "no HTTP/2 and pooled HTTP/1.1 client benchmarks in this run; HTTP/2 needs "
            f"sockets (the emulator over h2c), so a live client run measures it: `{HTTP2_COMMAND}`",
            NOT_MEASURED,
            "client",
        )
    ratios = {c: float(h2[c] / h1[c]) for c in common}
    measured = ", ".join(f"{fmt_ratio(r)} at {c} concurrent" for c, r in ratios.items())
    ok = all(r >= 2 for r in ratios.values())
    if not ok and any(r >= 2 for r in ratios.values()):
        measured += " (2x reached only at some concurrency levels)"
    return Claim(
        text, f"req/s ratio {measured}", _verdict(ok), "client (httpx HTTP/2 vs pooled HTTP/1.1)"
    )


CACHE_HIT_BOUND_MS: Final = 2.0


def claim_cache_hit(run: Run) -> Claim:
    text = "A cache hit takes under 2 ms"
    ops = cache_ops(run)
    hits = ops[ops.op.str.contains("hit") & ~ops["floor"]]
    if hits.empty:
        return Claim(text, "no cache-hit benchmarks in this run", NOT_MEASURED, "cache")
    parts = []
    for backend, g in hits.groupby("backend", sort=True):
        parts.append(
            f"{str(backend) or 'cache'}: p50 {fmt_ms(float(g.median_ms.max()))}, p99 {fmt_ms(float(g.p99_ms.max()))}"
        )
    worst = float(hits.p99_ms.max())
    floor = ops[ops["floor"]]
    verdict = _verdict(worst < CACHE_HIT_BOUND_MS)
    if (
        not floor.empty
    ):  # the store alone, without our layer: tail noise of the machine shows here too
        # the floor on the same backend as the worst hit when there is one, else the lowest
        worst_backend = str(hits["backend"].iloc[int(hits["p99_ms"].to_numpy().argmax())])
        same = floor[floor.backend == worst_backend]
        f = same if not same.empty else floor
        f_p50, f_p99 = float(f.median_ms.min()), float(f.p99_ms.min())
        note = f"raw GET floor p50 {fmt_ms(f_p50)}, p99 {fmt_ms(f_p99)}"
        if verdict == DOES_NOT_HOLD and f_p99 >= CACHE_HIT_BOUND_MS:
            verdict = MACHINE_LIMITED
            note += (
                f" (the floor itself misses {fmt_ms(CACHE_HIT_BOUND_MS)}: machine-limited, "
                "not a verdict on our layer)"
            )
        parts.append(note)
    return Claim(
        text,
        "; ".join(parts) + f" (worst of {len(hits)} hit benchmarks)",
        verdict,
        "cache (p99 of raw samples)",
    )


def _pipeline(run: Run) -> pd.DataFrame:
    return pipeline_requests(run)


def claim_cached_calls(run: Run) -> Claim:
    text = "Cached provider calls take under 50 ms"
    req = _pipeline(run)
    cached = req[(req["stack"] == "after") & req.cached]
    if cached.empty:
        return Claim(
            text, "no cached requests in a pipeline replay of this run", NOT_MEASURED, "pipeline"
        )
    per = cached.groupby("provider", sort=True).latency_ms
    p99 = per.quantile(0.99)
    worst_p = str(p99.idxmax())
    measured = (
        f"p99 {fmt_ms(float(p99.max()))} (worst provider: {worst_p}), "
        f"p50 {fmt_ms(float(np.median(cached.latency_ms)))} over {len(cached)} cached requests"
    )
    return Claim(text, measured, _verdict(float(p99.max()) < 50.0), "pipeline, after stack")


def claim_hit_rate(run: Run) -> Claim:
    text = "Cache hit rate of 60-80 %"
    req = _pipeline(run)
    after = req[req["stack"] == "after"]
    if after.empty:
        return Claim(text, "no after-stack pipeline replay in this run", NOT_MEASURED, "pipeline")
    hr = float(after.cached.mean())
    rf = after.drop_duplicates("fullname").repeat_fraction.dropna()
    measured = f"{fmt_pct(hr)} over {len(after)} requests"
    if not rf.empty:
        measured += f" of workloads with {', '.join(fmt_pct(float(x)) for x in sorted(rf.unique()))} repeats (the ceiling)"
    return Claim(text, measured, _verdict(hr >= 0.6), "pipeline, after stack")


def claim_cost(run: Run) -> Claim:
    """The plan's "60-80 % cost reduction (fewer API calls)" is the cache's lever: judged on
    the after stack's dollars against what the same stack would have paid without a cache
    (``baseline_cost_usd``); the before-vs-after total (router and cache together) is shown too."""
    text = "Cost reduction of 60-80 %"
    req = _pipeline(run)
    before = float(req[req["stack"] == "before"].cost_usd.sum())
    after = float(req[req["stack"] == "after"].cost_usd.sum())
    baseline = sum(
        float(b.extra_info["baseline_cost_usd"])
        for b in run.benchmarks
        if b.extra_info.get("stack") == "after"
        and isinstance(b.extra_info.get("baseline_cost_usd"), int | float)
    )
    if req[req["stack"] == "after"].empty or (baseline <= 0 and before <= 0):
        return Claim(
            text, "no before/after pipeline replay with costs in this run", NOT_MEASURED, "pipeline"
        )
    parts = []
    if baseline > 0:
        cache_red = 1 - after / baseline
        parts.append(
            f"cache: {fmt_pct(cache_red)} (${after:.4f} vs ${baseline:.4f} for the same "
            "requests uncached)"
        )
        verdict = _verdict(cache_red >= 0.6)
    if before > 0:
        parts.append(f"before vs after: {fmt_pct(1 - after / before)} (${before:.4f} before)")
        if baseline <= 0:
            verdict = _verdict(1 - after / before >= 0.6)
    return Claim(text, "; ".join(parts), verdict, "pipeline, after stack vs uncached and before")


def claim_ollama(run: Run) -> Claim:
    text = "Local Ollama answers in under 50 ms"
    req = _pipeline(run)
    ol = req[(req.provider == "ollama") & ~req.cached]
    source = "pipeline" if not ol.empty else "-"
    why = (
        "no real Ollama model ran: its latency here comes from the emulator's world model "
        "(a parameter, fixtures/world.py), so it is an input, not a measurement"
    )
    if not ol.empty:
        why += (
            f" (modelled uncached p50 {fmt_ms(float(np.median(ol.latency_ms)))}, {run.mode} mode)"
        )
    return Claim(text, why, NOT_MEASURED, source)


CLAIMS: Final[tuple[Callable[[Run], Claim], ...]] = (
    claim_blake3,
    claim_http2,
    claim_cache_hit,
    claim_cached_calls,
    claim_hit_rate,
    claim_cost,
    claim_ollama,
)


CLAIM_SUITES: Final[dict[str, tuple[str, ...]]] = {
    "claim_blake3": ("hashing",),
    "claim_http2": ("client",),
    "claim_cache_hit": ("cache",),
    "claim_cached_calls": ("pipeline",),
    "claim_hit_rate": ("pipeline",),
    "claim_cost": ("pipeline",),
    "claim_ollama": ("pipeline",),
}


def with_source(claim: Claim, run: Run, suites: tuple[str, ...]) -> Claim:
    """``claim`` with where its number came from beside it (:mod:`reports.provenance`):
    `` [from: mocks, latency scale 0.01]``. A claim with nothing measured is left as it is."""
    if not any(run.suite(s) for s in suites):
        return claim
    return replace(claim, measured=f"{claim.measured} [from: {suites_label(run, suites)}]")


def evaluate_claims(run: Run) -> list[Claim]:
    """All claims of the optimisation plan, in a fixed order, evaluated on ``run``; each
    measured text ends with where its figures came from (mocks / the emulator / live)."""
    return [with_source(c(run), run, CLAIM_SUITES[c.__name__]) for c in CLAIMS]


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame(
        [(c.claim, c.measured, c.verdict, c.source) for c in claims],
        columns=["claim", "measured", "verdict", "source"],
    )
