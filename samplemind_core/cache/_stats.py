"""Counters of a :class:`~samplemind_core.ResponseCache` (``stats()`` returns a snapshot)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["CacheStats"]


@dataclass(slots=True)
class CacheStats:
    """Counters of one :class:`ResponseCache` (a snapshot when returned by ``stats()``).

    ``hits`` includes ``l1_hits``. ``errors`` = ``backend_errors`` (Redis
    failed or timed out) + ``value_errors`` (corrupt, foreign or oversized
    values, values of another Redis type, generation fields that are not
    integers). ``foreign`` (within ``value_errors``) counts what Redis held
    that was not what its key says: a valid envelope answering another
    request, or a generation field that is not an integer; each such value is
    a miss and is removed (a bad generation field is ignored).
    ``refused_writes`` counts writes Redis refused because it is full (``OOM``:
    ``maxmemory`` with ``noeviction``): not in ``errors``, and they never stop
    reads. ``bypassed`` counts operations not sent to Redis during a back-off
    after a failure; ``skipped_writes`` counts values over ``max_value_bytes``;
    ``coalesced`` counts ``get_or_call`` callers that awaited another caller's
    call (single-flight). ``pool_waits`` counts operations (a batch of lookups
    is one) that found every connection slot taken
    (``CacheConfig.max_connections``) and had to wait for one; ``pool_timeouts`` counts operations given up because no slot came
    within ``pool_timeout_s`` (or the client's own pool refused a connection):
    each is a miss or a skipped write, is not in ``errors`` or
    ``backend_errors``, and never marks Redis unhealthy. ``leases`` counts
    cross-process leases this cache took (``CacheConfig.lease_s``) and
    ``lease_waits`` the ``get_or_call`` callers whose first lookup missed and
    who were then served by another process's call (counted as hits, not
    misses).
    ``latency_saved_ms`` and ``cost_saved_usd`` sum the
    recorded latency and cost of every response served from the cache.
    """

    hits: int = 0
    misses: int = 0
    l1_hits: int = 0
    sets: int = 0
    errors: int = 0
    backend_errors: int = 0
    value_errors: int = 0
    foreign: int = 0
    skipped_writes: int = 0
    refused_writes: int = 0
    bypassed: int = 0
    coalesced: int = 0
    pool_waits: int = 0
    pool_timeouts: int = 0
    leases: int = 0
    lease_waits: int = 0
    purged: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    latency_saved_ms: float = 0.0
    cost_saved_usd: float = 0.0

    @property
    def hit_rate(self) -> float:
        """hits / (hits + misses); 0.0 before the first lookup."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """All counters plus ``hit_rate`` as a plain dict (for JSON and reports)."""
        out: dict[str, float | int] = asdict(self)
        out["hit_rate"] = self.hit_rate
        return out
