"""Health of the store and the back-off after a failure, where the failure is.

When Redis fails (unreachable, killed, too slow for ``op_timeout_s``), the
cache logs one warning, then skips Redis for a short, growing interval
(``CacheConfig.backoff_min_s`` doubling up to ``backoff_max_s``) and tries
again; the first success logs one "recovered" line.

The back-off is kept where the failure is:

- per node, for a client that can tell which node serves a key (a cluster
  client: ``keyslot`` and ``nodes_manager``, duck-typed): an operation on a
  key of a failed node backs off that node only; keys of the healthy nodes
  are served as before. A failure that names no key (a bulk write), or the
  generation hash's node failing before the generations were ever loaded,
  backs off the whole store.
- per kind: a write refused because Redis is full (``OOM``, ``maxmemory``
  with ``noeviction``) is counted in ``stats().refused_writes`` and backs
  nothing off: reads go on, and a refused lease was never taken.

A slot wait that runs out (:class:`_PoolExhausted`) or an operation skipped
during a back-off (:class:`_Skipped`) is counted, never a failure of Redis; a
value error (what Redis holds is wrong) is counted and backs nothing off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .._cache.envelope import ForeignValue
from .._config import CacheConfig
from .._exceptions import CacheError, CacheValueError
from ._errors import _PoolExhausted, _Skipped, _WriteRefused
from ._stats import CacheStats

__all__ = ["_Health", "logger"]

logger = logging.getLogger("samplemind_core.cache")
"""The cache's one logger (its name predates the package split; filters rely on it)."""


def _node_locator(redis: Any) -> Callable[[str], str | None] | None:
    """``key -> name of the node serving it`` for a client that can tell, else None."""
    keyslot = getattr(redis, "keyslot", None)
    nodes = getattr(redis, "nodes_manager", None)
    by_slot = getattr(nodes, "get_node_from_slot", None)
    if not callable(keyslot) or not callable(by_slot):
        return None

    def where(key: str) -> str | None:
        try:
            return str(by_slot(keyslot(key)).name)
        except Exception:  # no topology yet (or a slot without a node): not known
            return None

    return where


class _Health:
    """Counters, health and back-off: the state every layer of the cache reports to."""

    _stats: CacheStats
    _clock: Callable[[], float]
    _healthy: bool
    _skip_until: float  # on the cache's clock: the whole store is skipped until then
    _backoff: float
    _backoff_min: float
    _backoff_max: float

    def _init_health(self, config: CacheConfig, clock: Callable[[], float], redis: Any) -> None:
        self._stats = CacheStats()
        self._clock = clock
        self._healthy = True
        self._skip_until = 0.0
        self._backoff = 0.0
        self._backoff_min = config.backoff_min_s
        self._backoff_max = config.backoff_max_s
        self._where = _node_locator(redis)
        # node name -> [skip until, current back-off]: nodes backed off on their own
        self._sick: dict[str, list[float]] = {}
        # True while anything above is off its healthy value: the hit path reads this alone
        self._degraded = False

    def _skipped(self, key: str) -> bool:
        """True while the store, or the node serving ``key``, is backed off.

        Only needed while ``_degraded`` (the hit path checks that flag first).
        """
        now = self._clock()
        if now < self._skip_until:
            return True
        if self._sick and self._where is not None:
            entry = self._sick.get(self._where(key) or "")
            return entry is not None and now < entry[0]
        return False

    def _backend_failed(self, exc: CacheError, key: str | None = None) -> None:
        """Count ``exc``; back off the node serving ``key`` (or the store) if Redis failed."""
        st = self._stats
        if isinstance(exc, CacheValueError):  # what Redis holds is wrong, Redis is fine
            self._value_failed(key or "", exc)
            return
        if isinstance(exc, _WriteRefused):  # Redis is full: reads go on
            st.refused_writes += 1
            logger.debug("redis refused a write: %s", exc)
            return
        if isinstance(exc, _PoolExhausted):  # a burst, not a failure of Redis
            st.pool_timeouts += 1
            return
        if isinstance(exc, _Skipped):  # Redis failed while this one waited for a slot
            st.bypassed += 1
            return
        st.errors += 1
        st.backend_errors += 1
        if not getattr(exc, "backed_off", False):  # a batch backs off once, for all its keys
            self._back_off(exc, key)

    def _back_off(self, exc: CacheError, key: str | None = None) -> None:
        self._degraded = True
        node = self._where(key) if key is not None and self._where is not None else None
        if node is not None:
            entry = self._sick.setdefault(node, [0.0, 0.0])
            entry[1] = min(self._backoff_max, entry[1] * 2 or self._backoff_min)
            entry[0] = self._clock() + entry[1]
            if entry[1] == self._backoff_min:
                logger.warning(
                    "redis cache node %s unavailable (%s); its keys are misses, "
                    "retrying in the background",
                    node,
                    exc,
                )
            return
        self._backoff = min(self._backoff_max, self._backoff * 2 or self._backoff_min)
        self._skip_until = self._clock() + self._backoff
        if self._healthy:
            self._healthy = False
            logger.warning(
                "redis cache unavailable (%s); serving misses and retrying in the background",
                exc,
            )

    def _backend_ok(self, key: str | None = None) -> None:
        self._backoff = 0.0
        if not self._healthy:
            self._healthy = True
            logger.warning("redis cache recovered; serving hits again")
        if self._sick and key is not None and self._where is not None:
            node = self._where(key)
            if node is not None and self._sick.pop(node, None) is not None:
                logger.warning("redis cache node %s recovered", node)
        # (a back-off still running stays in force: it ends by its own clock)
        self._degraded = bool(self._sick) or self._clock() < self._skip_until

    def _value_failed(self, key: str, exc: CacheError) -> None:
        st = self._stats
        st.errors += 1
        st.value_errors += 1
        if isinstance(exc, ForeignValue):
            st.foreign += 1
        logger.debug("cache value error under %s: %s", key, exc)

    @property
    def healthy(self) -> bool:
        """False after a Redis failure (of the store, or of one node) until it succeeds again."""
        return self._healthy and not self._sick
