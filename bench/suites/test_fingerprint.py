"""Fingerprint suite: canonicalisation × hasher vs the naive key, per standard request.

Group = ``fingerprint/<request>`` (256B, 1KB, 8KB, tools; sized by the
canonical bytes), variants:

* ``blake3``, ``sha256``, ``blake2b``, ``xxh3_128``: ``fingerprint(req, hasher=...)``
  on a :class:`ChatRequest` (canonicalise + keyed hash);
* ``canonical``: ``canonical_bytes(req)`` alone;
* ``naive``: ``sha256(json.dumps(req_dict, sort_keys=True))``, the original key.

Every variant also records ``canon_us`` and ``hash_us``: the two halves timed
separately (median of short repeats) so reports can show where the time goes.
Issue 2's targets (read from the same run): 1 KB median ≤ 3 µs and ≥ 3x
faster than ``naive``.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import timeit
from collections.abc import Callable
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bench.harness.fixture import describe
from bench.suites.sample_requests import REQUEST_SIZES, naive_key, request_dict, standard_request
from samplemind_core.fingerprint import (
    DEFAULT_FINGERPRINT_KEY,
    HASHERS,
    canonical_bytes,
    fingerprint,
)

__all__: list[str] = []

VARIANTS = (*HASHERS, "canonical", "naive")


def _split_us(fn: Callable[[], Any], enabled: bool, budget_s: float = 0.01) -> float | None:
    """Median µs per call of ``fn`` over 5 short repeats (``None`` in smoke runs)."""
    if not enabled:
        fn()
        return None
    timer = timeit.Timer(fn)
    once = max(timer.timeit(number=10) / 10, 1e-8)
    number = max(1, int(budget_s / 5 / once))
    runs = timer.repeat(repeat=5, number=number)
    return statistics.median(runs) / number * 1e6


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("request_name", list(REQUEST_SIZES))
def test_fingerprint(benchmark: BenchmarkFixture, request_name: str, variant: str) -> None:
    req = standard_request(request_name)
    as_dict = request_dict(req)
    canon = canonical_bytes(req)
    describe(
        benchmark,
        "fingerprint",
        request_name,
        variant,
        unit_per_call="request",
        bytes=len(canon),
    )
    enabled = benchmark.enabled
    if variant == "naive":
        dumped = json.dumps(as_dict, sort_keys=True).encode()
        key = benchmark(naive_key, as_dict)
        assert len(key) == 64
        canon_us = _split_us(lambda: json.dumps(as_dict, sort_keys=True).encode(), enabled)
        hash_us = _split_us(lambda: hashlib.sha256(dumped).hexdigest(), enabled)
    elif variant == "canonical":
        out = benchmark(canonical_bytes, req)
        assert out == canon
        canon_us = _split_us(lambda: canonical_bytes(req), enabled)
        hash_us = 0.0 if enabled else None
    else:
        hasher = HASHERS[variant]
        key = benchmark(fingerprint, req, hasher=variant)
        assert key.startswith("v1.") and key == fingerprint(as_dict, hasher=variant)
        canon_us = _split_us(lambda: canonical_bytes(req), enabled)
        hash_us = _split_us(lambda: hasher.fn(canon, DEFAULT_FINGERPRINT_KEY), enabled)
    if enabled:
        benchmark.extra_info.update(canon_us=canon_us, hash_us=hash_us)
