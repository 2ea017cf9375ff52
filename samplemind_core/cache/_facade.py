"""The facade: :class:`ResponseCache`, assembled from one layer per idea.

Each layer builds on the one before it (a chain, so every layer sees the
state of the layers below)::

    _Health      (_health)   counters, health, back-off
    _StoreIO     (_store)    the only Redis I/O: slots, deadlines, batched lookups
    _Entries     (_entries)  keys, generations, envelope, L1; get and set
    _SingleFlight (_leases)  get_or_call: single-flight in-process and by lease
    _StreamRelay (_relay)    a stream's chunks to followers in other processes (Redis Stream)
    _Admin       (_admin)    clear, purge, info, warm, stats, aclose
    ResponseCache            validates the settings and initialises each layer
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from .._config import CacheConfig
from .._exceptions import ConfigError
from ..fingerprint import get_hasher
from ._admin import _Admin
from ._relay import _StreamRelay

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["ResponseCache"]


class ResponseCache(_Admin, _StreamRelay):
    """A response cache on a ready ``redis.asyncio`` client (see the module docstring).

    ``redis=None`` runs without Redis: only the L1 (``config.l1_max_entries >
    0``) stores anything, otherwise every lookup misses. ``namespace``
    overrides ``config.namespace``; tenants never share entries. Every other
    setting is a :class:`~samplemind_core.CacheConfig` field
    (``allow_insecure_hasher`` lets benchmarks use ``xxh3_128``; never set it
    for a cache shared between users). ``clock`` (seconds, monotonic) drives
    TTLs, the L1, the back-off and the lease wait. The cache does not own the
    client: close it yourself; :meth:`aclose` only stops the background purge.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster | None,
        *,
        namespace: str | None = None,
        config: CacheConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = config or CacheConfig()
        if namespace is not None and namespace != config.namespace:
            config = replace(config, namespace=namespace)  # validates it
        hasher = get_hasher(config.hasher)
        if not hasher.secure and not config.allow_insecure_hasher:
            raise ConfigError(
                f"hasher {hasher.name!r} is not collision resistant: a shared cache could be "
                "poisoned; use blake3, sha256 or blake2b"
            )
        get_encoder = getattr(redis, "get_encoder", None)
        if get_encoder is not None and getattr(get_encoder(), "decode_responses", False):
            raise ConfigError("the redis client must be created with decode_responses=False")

        self._init_health(config, clock, redis)
        self._init_store(redis, config)
        self._init_entries(config, hasher)
        self._init_single_flight(config)
        self._init_admin(config)

    async def __aenter__(self) -> ResponseCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
