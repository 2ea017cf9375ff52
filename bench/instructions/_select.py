"""Which benchmarks are counted under ``--instructions``, and how many calls each.

Only CPU-bound bodies qualify: hashing up to 16 KiB, the fingerprint (and the
canonicalisation alone), the router's decision, the cache's codec, its L1 hit and
its hit/miss/set over fakeredis (in process, no socket), the raw fakeredis GET
floor, and the client-side CPU of one pipeline request over the in-process mock.
Everything else waits on sockets, sleeps or replays scheduled workloads, so a
count would measure the event loop's idling, not the code; such items are
deselected in the counting process and keep their wall-time figures.

``calls`` is fixed per rule (never calibrated from a measurement), so a baseline
and a candidate always divide the same loop by the same count; it keeps each count
to a few million instructions (callgrind runs them about 50 times slower than
the CPU does). Multi-threaded bodies (``blake3_auto``) are not counted: callgrind's
collection switch is per thread, so worker threads would be missed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["RULES", "Rule", "counted_suites", "rule_for"]

KiB: Final = 1024

Params = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Rule:
    """Benchmarks of ``test`` in ``bench/suites/test_<suite>.py`` whose parameters satisfy ``where``."""

    suite: str
    test: str
    what: str
    calls: Callable[[Params], int]
    where: Callable[[Params], bool] = lambda _p: True


def _hash_calls(p: Params) -> int:
    size = int(p.get("size", 0))
    return 400 if size <= 64 else 100 if size <= KiB else 12


def _fingerprint_calls(p: Params) -> int:
    return 100 if p.get("request_name") in ("256B", "1KB") else 30


def _fakeredis(p: Params) -> bool:
    return p.get("backend") == "fakeredis"


RULES: Final[tuple[Rule, ...]] = (
    Rule(
        "hashing",
        "test_hash",
        "digest of up to 16 KiB",
        _hash_calls,
        # blake3_auto may hash on worker threads, whose instructions a count would miss
        lambda p: int(p.get("size", 1 << 62)) <= 16 * KiB and p.get("algorithm") != "blake3_auto",
    ),
    Rule("fingerprint", "test_fingerprint", "canonicalise + hash a request", _fingerprint_calls),
    Rule("router", "test_route", "one routing decision", lambda _p: 400),
    Rule("cache", "test_codec", "encode / decode a cached response", lambda _p: 100),
    Rule(
        "cache",
        "test_cache_op",
        "cache get/set over fakeredis (L1 on: the L1 hit path)",
        lambda _p: 12,
        lambda p: _fakeredis(p) and p.get("op") in ("hit", "miss", "set"),
    ),
    Rule("cache", "test_raw_get", "raw fakeredis GET (the floor)", lambda _p: 12, _fakeredis),
    Rule(
        "pipeline",
        "test_request_cpu",
        "client-side CPU of one request over the in-process mock",
        lambda _p: 8,
    ),
)
"""The counted benchmarks; every other benchmark is deselected in the counting process."""


def rule_for(suite: str, test: str, params: Params) -> Rule | None:
    """The rule that counts this benchmark, or ``None`` when it is not counted."""
    for rule in RULES:
        if rule.suite == suite and rule.test == test and rule.where(params):
            return rule
    return None


def counted_suites() -> tuple[str, ...]:
    """Suites with at least one counted benchmark, in rule order."""
    return tuple(dict.fromkeys(r.suite for r in RULES))
