"""The Redis response cache (with an optional in-process L1): a package, one idea per module.

:class:`ResponseCache` receives a ready ``redis.asyncio`` client --
``redis.asyncio.Redis`` (``redis://``, ``rediss://``, ``unix://``, password),
``redis.asyncio.cluster.RedisCluster`` or ``fakeredis.FakeAsyncRedis`` -- and
runs the identical code path for all of them. The public methods do the work
that does not depend on the store once (keys, serialisation, TTL, per-operation
timeout, statistics, health); the store is touched only by the small private
``_io_*`` methods, and every error of the store is translated in one place
(``_errors``) into :class:`~samplemind_core.CacheBackendError` or
:class:`~samplemind_core.CacheValueError`.

What may reach a caller, exactly:

- ``get``, ``set``, ``get_or_call``, ``warm``: no error of the store (nor of a
  value read from it): the cache counts it and behaves as a miss (or skips the
  write). ``set`` and ``get_or_call`` raise
  :class:`~samplemind_core.ConfigError` for ``ttl_s <= 0`` (before any work);
  ``get_or_call`` raises whatever its ``fn`` raises.
- ``clear``, ``purge``, ``info`` (admin calls) raise
  :class:`~samplemind_core.CacheBackendError` when Redis cannot be reached: a
  clear that did not happen must not look like one that did.
- Cancellation: the caller's own cancellation propagates as ``CancelledError``,
  at once, also when the Redis client swallowed it or turned it into an error;
  the cancellations of the cache's own deadlines never leave it.

Key layout (every command touches one key, so it also works on a cluster;
see ``samplemind_core._cache.keys``)::

    {prefix}:{namespace}:{G}.{P}:{provider or '_'}:{fingerprint}

``G`` is the namespace's generation and ``P`` the generation of the request's
provider; both live in one Redis hash ``{prefix}:{namespace}:gen`` (fields
``*`` and the provider names) that is cached in-process for
``CacheConfig.generation_ttl_s``. :meth:`ResponseCache.clear` increments a generation
(one ``HINCRBY``: O(1)), so old entries stop matching at once in this process
and within ``generation_ttl_s`` in every other one; a background task then
removes them with ``SCAN`` + ``UNLINK`` (on a cluster, ``scan_iter`` visits
every primary). Entries of requests that did not pin a provider carry the
generation of the provider that answered inside the value, so
``clear("openai")`` also hides those.

Values are a small versioned envelope in msgpack (default) or JSON
(``CacheConfig.serializer``) -- never pickle (``samplemind_core._cache.envelope``)::

    ["smc/1", created_at, provider, model, latency_ms, cost_usd, provider_gen,
     [text, finish_reason, [[name, arguments, id], ...], input_tokens,
      output_tokens, estimated_cost_usd, attempts, metadata]]

A hit is returned with ``cached=True``, ``cost_usd=0.0`` (it cost nothing),
``latency_ms`` = the time of the lookup, and the original figures under
``metadata["cache"]`` (``created_at``, ``latency_ms``, ``cost_usd``); the
original latency and cost are also summed into ``stats().latency_saved_ms``
and ``stats().cost_saved_usd``.

When Redis fails (unreachable, killed, too slow for ``op_timeout_s``), the
cache logs one warning, then skips Redis for a short, growing interval
(``CacheConfig.backoff_min_s`` doubling up to ``backoff_max_s``) so that a dead server
does not cost a timeout on every request, and tries again; the first success
logs one "recovered" line.

Under a burst, at most ``CacheConfig.max_connections`` operations run at once;
the others wait their turn for up to ``pool_timeout_s`` (counted in
``stats().pool_waits``; a wait that runs out is a counted miss in
``pool_timeouts``, never a Redis failure). With ``CacheConfig.lease_s`` set,
``get_or_call`` also coalesces across processes through a short lease key
``{key}:lease`` (``SET NX PX``), released by its holder on every way out
(see ``_leases``).

Every ``ResponseCache`` setting is a :class:`~samplemind_core.CacheConfig`
field. TTLs, the L1, the back-off and the lease wait run on the injected
``clock`` (default ``time.monotonic``); per-operation deadlines and slot waits
run on the event loop's clock (``samplemind_core._cache.deadlines``). The one
wall-clock read, the envelope's ``created_at``, goes through the replaceable
``samplemind_core._cache.envelope.wall_clock``.

>>> import asyncio
>>> from samplemind_core import CacheConfig, ChatRequest, ChatResponse
>>> async def demo() -> tuple[bool, bool]:
...     cache = ResponseCache(None, config=CacheConfig(l1_max_entries=100))
...     req = ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m")
...     await cache.set(req, ChatResponse(text="hello", provider="ollama", model="m"))
...     hit = await cache.get(req)
...     return hit is not None and hit.cached, cache.stats().hits == 1
>>> asyncio.run(demo())
(True, True)

The package: ``_facade`` (:class:`ResponseCache`, assembling the layers),
``_store`` (the only Redis I/O: slots, deadlines, batched lookups),
``_errors`` (the error seam), ``_health`` (counters, health, back-off),
``_entries`` (keys, generations, ``get``/``set``), ``_leases``
(single-flight and cross-process leases, reused by the stream path),
``_admin`` (``clear``, ``purge``, ``info``, ``warm``, ``stats``), ``_stats``
(:class:`CacheStats`). The parts that touch no Redis (envelope, keys, L1,
deadlines) are in ``samplemind_core._cache``.
"""

from __future__ import annotations

from .._cache.envelope import ENVELOPE_VERSION
from ._facade import ResponseCache
from ._stats import CacheStats

__all__ = ["ENVELOPE_VERSION", "CacheStats", "ResponseCache"]
