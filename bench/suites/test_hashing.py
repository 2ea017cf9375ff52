"""Hashing suite: raw digest throughput of the cache-key hash candidates.

BLAKE3 (one thread, and ``blake3.AUTO`` threads), SHA-256, BLAKE2b-256 and
xxh3_128 over random inputs from 64 B to 64 MiB → GB/s in ``extra_info``.
Group = ``hashing/<size>`` so each size compares the algorithms side by side.
Smoke runs hash at most 1 MiB (the 64 MiB case says so in ``extra_info``).
"""

from __future__ import annotations

import functools
import hashlib
import random
from collections.abc import Callable

import blake3
import pytest
import xxhash
from pytest_benchmark.fixture import BenchmarkFixture

from bench.harness.aggregate import gbps
from bench.harness.fixture import describe, median_s
from bench.suites.conftest import bench_options

__all__: list[str] = []

KiB, MiB = 1 << 10, 1 << 20
FULL_SIZES = (64, KiB, 16 * KiB, 256 * KiB, MiB, 16 * MiB, 64 * MiB)
QUICK_SIZES = (64, KiB, 16 * KiB, MiB, 64 * MiB)
SMOKE_MAX = MiB

_B3 = blake3.blake3
_AUTO = blake3.blake3.AUTO

ALGORITHMS: dict[str, Callable[[bytes], bytes]] = {
    "blake3": lambda d: _B3(d).digest(),  # max_threads=1 (the default)
    "blake3_auto": lambda d: _B3(d, max_threads=_AUTO).digest(),
    "sha256": lambda d: hashlib.sha256(d).digest(),
    "blake2b": lambda d: hashlib.blake2b(d, digest_size=32).digest(),
    "xxh3_128": xxhash.xxh3_128_digest,
}


def label(size: int) -> str:
    """``64B``, ``1KiB``, ``64MiB``."""
    if size >= MiB:
        return f"{size // MiB}MiB"
    if size >= KiB:
        return f"{size // KiB}KiB"
    return f"{size}B"


@functools.cache
def payload(size: int) -> bytes:
    """Deterministic pseudo-random bytes (seeded; same input every run)."""
    return random.Random(size).randbytes(size)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "size" in metafunc.fixturenames:
        opts = bench_options(metafunc.config)
        sizes = QUICK_SIZES if opts.small_grid else FULL_SIZES
        metafunc.parametrize("size", sizes, ids=[label(s) for s in sizes])


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_hash(benchmark: BenchmarkFixture, algorithm: str, size: int) -> None:
    fn = ALGORITHMS[algorithm]
    smoke = not benchmark.enabled
    data = payload(min(size, SMOKE_MAX) if smoke else size)
    describe(
        benchmark,
        "hashing",
        label(size),
        algorithm,
        unit_per_call="call",
        bytes=len(data),
        smoke_note=f"smoke run hashed {len(data)} B" if len(data) != size else None,
    )
    digest = benchmark(fn, data)
    assert digest == fn(data) and len(digest) in (16, 32)
    median = median_s(benchmark)
    if median:
        benchmark.extra_info["gbps"] = gbps(len(data), median)
