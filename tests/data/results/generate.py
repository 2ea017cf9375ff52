"""Regenerate the small committed results folders used by the report golden tests.

``python tests/data/results/generate.py`` rewrites ``run_a/`` and ``run_b/``. The
figures are hand-chosen to look like a real quick run on a 2-core machine (the
design notes' reference figures), with a few samples per benchmark and a
deterministic pseudo-random spread. ``run_b`` differs from ``run_a`` by one removed
benchmark (blake2b at 64 B), one added benchmark (raw aiohttp at 100 connections)
and slightly different timings, so the comparison code has something to find.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

SIZES = [64, 1024, 16384, 1048576]
# median seconds per call, per algorithm label and size
HASH_S = {
    ("blake3", "1 thread"): [0.20e-6, 1.40e-6, 5.2e-6, 0.180e-3],
    ("blake3", "auto"): [0.35e-6, 1.60e-6, 5.6e-6, 0.120e-3],
    ("sha256", ""): [0.25e-6, 0.90e-6, 10.5e-6, 0.650e-3],
    ("blake2b", ""): [0.30e-6, 1.50e-6, 19.0e-6, 1.200e-3],
    ("xxh3_128", ""): [0.05e-6, 0.09e-6, 1.0e-6, 0.055e-3],
}


def samples(rng: random.Random, median: float, n: int = 5, spread: float = 0.08) -> list[float]:
    out = [median * (1 + rng.uniform(-spread, spread)) for _ in range(n - 1)]
    out.append(median * (1 + 3 * spread))  # one slow outlier, as real runs have
    out.insert(n // 2, median)
    return [float(f"{x:.6g}") for x in out]


def bench(
    suite: str,
    subject: str,
    name: str,
    params: dict[str, Any],
    data: list[float],
    extra: dict[str, Any],
    variant: str = "",
) -> dict[str, Any]:
    param = "-".join(str(v) for v in params.values())
    full_name = (
        f"bench/test_{suite}.py::{name}[{param}]" if param else f"bench/test_{suite}.py::{name}"
    )
    info: dict[str, Any] = {"suite": suite, "subject": subject}
    if variant:
        info["variant"] = variant
    info.update(extra)
    srt = sorted(data)
    n = len(srt)
    mean = sum(srt) / n
    return {
        "group": f"{suite}/{subject}",
        "name": f"{name}[{param}]" if param else name,
        "fullname": full_name,
        "params": params,
        "param": param,
        "extra_info": info,
        "options": {"timer": "perf_counter", "warmup": False},
        "stats": {
            "min": srt[0],
            "max": srt[-1],
            "mean": mean,
            "stddev": (sum((x - mean) ** 2 for x in srt) / max(n - 1, 1)) ** 0.5,
            "median": srt[n // 2],
            "iqr": srt[(3 * n) // 4] - srt[n // 4],
            "q1": srt[n // 4],
            "q3": srt[(3 * n) // 4],
            "rounds": n,
            "iterations": 1,
            "ops": 1 / mean,
            "data": data,
        },
    }


def hashing(rng: random.Random, drop_small_blake2b: bool, slow: float) -> list[dict[str, Any]]:
    out = []
    for (algo, variant), medians in HASH_S.items():
        for size, med in zip(SIZES, medians, strict=True):
            if drop_small_blake2b and algo == "blake2b" and size == 64:
                continue
            m = med * slow
            label = f"{algo}_auto" if variant == "auto" else algo
            out.append(
                bench(
                    "hashing",
                    f"{size}B",
                    "test_hash",
                    {"algorithm": label, "size": size},
                    samples(rng, m),
                    {"unit_per_call": "call", "bytes": size, "gbps": round(size / m / 1e9, 4)},
                    label,
                )
            )
    return out


def fingerprint(rng: random.Random) -> list[dict[str, Any]]:
    rows = [
        ("1KB", "naive", 5.8, 1.0),
        ("1KB", "blake3", 0.6, 1.35),
        ("1KB", "sha256", 0.6, 0.95),
        ("1KB", "canonical", 0.6, 0.0),
        ("8KB", "naive", 40.0, 5.0),
        ("8KB", "blake3", 4.0, 4.1),
    ]
    out = []
    for request, variant, canon, hsh in rows:
        total = (canon + hsh) * 1e-6
        out.append(
            bench(
                "fingerprint",
                request,
                "test_fingerprint",
                {"request_name": request, "variant": variant},
                samples(rng, total),
                {"canon_us": canon, "hash_us": hsh, "unit_per_call": "request"},
                variant,
            )
        )
    return out


def cache(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for op, med, p99 in (
        ("hit", 62e-6, 0.21e-3),
        ("miss", 48e-6, 0.15e-3),
        ("set", 70e-6, 0.25e-3),
    ):
        data = samples(rng, med)
        data[-1] = p99
        out.append(
            bench(
                "cache",
                op,
                "test_cache",
                {
                    "op": op,
                    "backend": "fakeredis",
                    "size": "1KB",
                    "serializer": "msgpack",
                    "l1": "off",
                },
                data,
                {"p50_ms": med * 1e3, "p99_ms": p99 * 1e3, "bytes": 1024},
                "fakeredis",
            )
        )
    return out


def client(rng: random.Random, add_aiohttp_100: bool) -> list[dict[str, Any]]:
    rps = {
        "httpx-new-client": {1: 45, 50: 60},
        "httpx-http1": {1: 900, 50: 320},
        "httpx-http2": {1: 850, 50: 680},
        "httpx-aiohttp": {1: 1600, 50: 2100},
        "raw-aiohttp": {1: 1700, 50: 2500},
    }
    if add_aiohttp_100:
        rps["raw-aiohttp"][100] = 2600
    out = []
    for transport, per_c in rps.items():
        for conc, r in per_c.items():
            per_req = 1 / r
            p50 = per_req * conc * 1e3
            out.append(
                bench(
                    "client",
                    transport,
                    "test_client",
                    {"transport": transport, "concurrency": conc},
                    samples(rng, per_req),
                    {
                        "concurrency": conc,
                        "req_per_s": r,
                        "p50_ms": round(p50, 3),
                        "p95_ms": round(p50 * 1.6, 3),
                        "p99_ms": round(p50 * 2.2, 3),
                        "unit_per_call": "request",
                    },
                    "h2" if "http2" in transport else "http/1.1",
                )
            )
    return out


def router(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for task, prio, med in (
        ("chat", "speed", 1.9e-6),
        ("creative", "quality", 2.1e-6),
        ("tools", "cost", 2.4e-6),
    ):
        out.append(
            bench(
                "router",
                "route",
                "test_route",
                {"task": task, "priority": prio},
                samples(rng, med),
                {"unit_per_call": "decision"},
            )
        )
    for rate, success, added in ((0.0, 1.0, 0.0), (0.1, 1.0, 3.2), (0.5, 0.97, 21.5)):
        out.append(
            bench(
                "router",
                "fallback",
                "test_fallback",
                {"fault_rate": rate},
                samples(rng, 0.004 + added / 1e3),
                {"fault_rate": rate, "success_rate": success, "added_latency_ms": added},
            )
        )
    return out


def pipeline(rng: random.Random) -> list[dict[str, Any]]:
    n = 40
    providers = ["ollama", "gemini", "anthropic", "openai"]
    unique = 12  # 40 requests over 12 distinct prompts: repeat fraction 0.7
    order = [k % unique for k in range(unique)] + [rng.randrange(unique) for _ in range(n - unique)]
    prov_of = {k: providers[k % 4] for k in range(unique)}
    base_ms = {"ollama": 8.0, "gemini": 30.0, "anthropic": 50.0, "openai": 40.0}
    price = {"ollama": 0.0, "gemini": 0.0004, "anthropic": 0.003, "openai": 0.0025}
    out = []
    for stack in ("before", "after"):
        seen: set[int] = set()
        reqs = []
        for i, k in enumerate(order):
            prov = prov_of[k]
            cached = stack == "after" and k in seen
            seen.add(k)
            if cached:
                lat = round(rng.uniform(0.25, 0.6), 3)
                cost = 0.0
            else:
                extra = 2.5 if stack == "before" else 0.4  # before: new client, json+sha256 key
                lat = round(base_ms[prov] * rng.uniform(0.8, 1.3) + extra, 3)
                cost = price[prov]
            reqs.append(
                {"i": i, "latency_ms": lat, "provider": prov, "cached": cached, "cost_usd": cost}
            )
        lats = sorted(r["latency_ms"] for r in reqs)
        cost = round(sum(r["cost_usd"] for r in reqs), 6)
        hits = sum(r["cached"] for r in reqs)
        out.append(
            bench(
                "pipeline",
                stack,
                "test_pipeline",
                {"stack": stack, "workload": "mixed-0.7"},
                [r["latency_ms"] / 1e3 for r in reqs],
                {
                    "stack": stack,
                    "repeat_fraction": 0.7,
                    "hit_rate": hits / n,
                    "provider_calls": n - hits,
                    "cost_usd": cost,
                    "baseline_cost_usd": 0.0 if stack == "before" else None,
                    "p50_ms": lats[n // 2],
                    "p99_ms": lats[-1],
                    "requests": reqs,
                },
                stack,
            )
        )
    before_cost = out[0]["extra_info"]["cost_usd"]
    out[0]["extra_info"]["baseline_cost_usd"] = before_cost
    out[1]["extra_info"]["baseline_cost_usd"] = before_cost
    return out


def write_run(folder: Path, seed: int, variant_b: bool) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    suites = {
        "hashing": hashing(rng, drop_small_blake2b=variant_b, slow=1.04 if variant_b else 1.0),
        "fingerprint": fingerprint(rng),
        "cache": cache(rng),
        "client": client(rng, add_aiohttp_100=variant_b),
        "router": router(rng),
        "pipeline": pipeline(rng),
    }
    for suite, benches in suites.items():
        doc = {
            "machine_info": {"node": "ci", "cpu": {"brand_raw": "AMD EPYC (synthetic)"}},
            "commit_info": {"id": "0" * 40, "dirty": False},
            "benchmarks": benches,
            "datetime": "2025-10-05T12:00:00+00:00",
            "version": "5.2.3",
        }
        (folder / f"{suite}.json").write_text(json.dumps(doc, indent=1) + "\n")
    manifest = {
        "format": "samplemind-bench-results",
        "version": 1,
        "created": "2025-10-05T12:00:00+00:00" if not variant_b else "2025-10-06T12:00:00+00:00",
        "mode": "mocked",
        "quick": True,
        "suites": list(suites),
        "files": [f"{s}.json" for s in suites],
        "environment": {
            "cpu": "AMD EPYC (synthetic fixture)",
            "cores": 2,
            "python": "3.11.9",
            "platform": "Linux-x86_64",
            "packages": {"blake3": "1.0.0", "httpx": "0.28.1"},
        },
        "commit": {"id": ("b" if variant_b else "a") * 40, "dirty": False},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    write_run(HERE / "run_a", seed=1, variant_b=False)
    write_run(HERE / "run_b", seed=2, variant_b=True)
