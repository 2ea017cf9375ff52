"""Health of the store and the back-off after a failure (the base of :class:`ResponseCache`).

When Redis fails (unreachable, killed, too slow for ``op_timeout_s``), the
cache logs one warning, then skips Redis for a short, growing interval
(``CacheConfig.backoff_min_s`` doubling up to ``backoff_max_s``) and tries
again; the first success logs one "recovered" line. A slot wait that runs out
(:class:`_PoolExhausted`) or an operation skipped during a back-off
(:class:`_Skipped`) is counted, never a failure of Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .._cache.envelope import ForeignValue
from .._config import CacheConfig
from .._exceptions import CacheError, CacheValueError
from ._errors import _PoolExhausted, _Skipped
from ._stats import CacheStats

__all__ = ["_Health", "logger"]

logger = logging.getLogger("samplemind_core.cache")
"""The cache's one logger (its name predates the package split; filters rely on it)."""


class _Health:
    """Counters, health and back-off: the state every layer of the cache reports to."""

    _stats: CacheStats
    _clock: Callable[[], float]
    _healthy: bool
    _skip_until: float  # on the cache's clock: Redis is skipped until then
    _backoff: float
    _backoff_min: float
    _backoff_max: float

    def _init_health(self, config: CacheConfig, clock: Callable[[], float]) -> None:
        self._stats = CacheStats()
        self._clock = clock
        self._healthy = True
        self._skip_until = 0.0
        self._backoff = 0.0
        self._backoff_min = config.backoff_min_s
        self._backoff_max = config.backoff_max_s

    def _backend_failed(self, exc: CacheError) -> None:
        st = self._stats
        if isinstance(exc, CacheValueError):  # what Redis holds is wrong, Redis is fine
            self._value_failed("", exc)
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
            self._back_off(exc)

    def _back_off(self, exc: CacheError) -> None:
        self._backoff = min(self._backoff_max, self._backoff * 2 or self._backoff_min)
        self._skip_until = self._clock() + self._backoff
        if self._healthy:
            self._healthy = False
            logger.warning(
                "redis cache unavailable (%s); serving misses and retrying in the background",
                exc,
            )

    def _backend_ok(self) -> None:
        self._backoff = 0.0
        if not self._healthy:
            self._healthy = True
            logger.warning("redis cache recovered; serving hits again")

    def _value_failed(self, key: str, exc: CacheError) -> None:
        st = self._stats
        st.errors += 1
        st.value_errors += 1
        if isinstance(exc, ForeignValue):
            st.foreign += 1
        logger.debug("cache value error under %s: %s", key, exc)

    @property
    def healthy(self) -> bool:
        """False after a Redis failure until the next successful operation."""
        return self._healthy
