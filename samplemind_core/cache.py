"""The Redis response cache (with an optional in-process L1).

:class:`ResponseCache` receives a ready ``redis.asyncio`` client --
``redis.asyncio.Redis`` (``redis://``, ``rediss://``, ``unix://``, password),
``redis.asyncio.cluster.RedisCluster`` or ``fakeredis.FakeAsyncRedis`` -- and
runs the identical code path for all of them. The public methods do the work
that does not depend on the store once (keys, serialisation, TTL, per-operation
timeout, statistics, health); the store is touched only by the small private
``_io_*`` methods, and every error of the store is translated in one place
(:class:`_StoreErrors`) into :class:`~samplemind_core.CacheBackendError` or
:class:`~samplemind_core.CacheValueError`. Those never escape ``get``, ``set``,
``get_or_call`` or ``warm``: the cache counts them and behaves as a miss (or
skips the write).

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
``{key}:lease`` (``SET NX PX``). No exception of the cache reaches a caller,
``CancelledError`` from its own deadlines included; a caller's own
cancellation still propagates.

Every ``ResponseCache`` setting is a :class:`~samplemind_core.CacheConfig`
field. TTLs, the L1, the back-off and the lease wait run on the injected
``clock`` (default ``time.monotonic``); per-operation deadlines and slot waits
run on the event loop's clock (``samplemind_core._cache.deadlines``). The one
wall-clock read, the envelope's ``created_at``, goes through the replaceable
``samplemind_core._cache.envelope.wall_clock``.

>>> import asyncio
>>> from samplemind_core import ChatRequest, ChatResponse
>>> async def demo() -> tuple[bool, bool]:
...     cache = ResponseCache(None, config=CacheConfig(l1_max_entries=100))
...     req = ChatRequest(messages=[{"role": "user", "content": "hi"}], model="m")
...     await cache.set(req, ChatResponse(text="hello", provider="ollama", model="m"))
...     hit = await cache.get(req)
...     return hit is not None and hit.cached, cache.stats().hits == 1
>>> asyncio.run(demo())
(True, True)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

import redis.exceptions

from ._cache.deadlines import _OpTimeouts, _Slots
from ._cache.envelope import ENVELOPE_VERSION, decode, encode
from ._cache.keys import GLOBAL_FIELD, LEASE_SUFFIX, Generations
from ._cache.l1 import L1, L1Entry, clone
from ._config import CacheConfig
from ._exceptions import CacheBackendError, CacheError, CacheValueError, ConfigError
from ._models import ChatRequest, ChatResponse
from .fingerprint import fingerprinter, get_hasher

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["ENVELOPE_VERSION", "CacheStats", "ResponseCache"]

logger = logging.getLogger(__name__)

_STORE_ERRORS: Final = (
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,
    OSError,
    TimeoutError,  # asyncio.timeout (the per-operation timeout) raises this
)
# Anything else a client raises mid-command (e.g. an AttributeError from a
# half-initialised connection) is also a backend failure: callers never see it.

_LEASE_POLL_MIN_S: Final = 0.01
_LEASE_POLL_MAX_S: Final = 0.2

_perf = time.perf_counter


@dataclass(slots=True)
class CacheStats:
    """Counters of one :class:`ResponseCache` (a snapshot when returned by ``stats()``).

    ``hits`` includes ``l1_hits``. ``errors`` = ``backend_errors`` (Redis
    failed or timed out) + ``value_errors`` (corrupt, foreign or oversized
    values). ``bypassed`` counts operations not sent to Redis during a back-off
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
    skipped_writes: int = 0
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


def _as_cache_error(exc: Exception) -> CacheError:
    """``exc`` of the store as our error (its ``__cause__`` set by the caller)."""
    if isinstance(exc, redis.exceptions.MaxConnectionsError):
        return _PoolExhausted("the redis client's connection pool is exhausted")
    if isinstance(exc, redis.exceptions.ResponseError) and "WRONGTYPE" in str(exc):
        return CacheValueError("a value of another Redis type is stored under the key")
    if isinstance(exc, TimeoutError) and not isinstance(exc, redis.exceptions.RedisError):
        return CacheBackendError("redis operation timed out")
    if isinstance(exc, _STORE_ERRORS):
        return CacheBackendError(f"redis failed: {type(exc).__name__}: {exc}")
    return CacheBackendError(f"redis client failed unexpectedly: {type(exc).__name__}")


class _StoreErrors:
    """The one seam where errors of the store become ours (``raise ... from exc``)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, CacheError):
            return  # CancelledError, KeyboardInterrupt and our own errors pass through
        raise _as_cache_error(exc) from exc


_store_errors: Final = _StoreErrors()


def _store_error(exc: Exception) -> CacheError:
    """``exc`` of the store (one key's reply in a batch) as our error."""
    if isinstance(exc, CacheError):
        return exc
    err = _as_cache_error(exc)
    err.__cause__ = exc
    return err


def _per_key(exc: BaseException, *, backed_off: bool) -> CacheError:
    """A copy of a batch's failure for one of its keys (each caller raises its own instance).

    ``backed_off``: the batch already stepped the back-off (once per failed
    operation); the key's caller only counts it.
    """
    if isinstance(exc, CacheError):
        err = type(exc)(*exc.args)
        err.__cause__ = exc.__cause__
    else:
        err = CacheBackendError(f"redis lookup stopped: {type(exc).__name__}")
    err.backed_off = backed_off  # type: ignore[attr-defined]
    return err


class _PoolExhausted(CacheBackendError):
    """No connection slot in time: a counted miss, not a failure of Redis."""


class _Skipped(CacheBackendError):
    """Redis failed while this operation waited for a slot: bypassed, not sent."""


class ResponseCache:
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

        self.config = config
        self.namespace = config.namespace
        self.serializer = config.serializer
        self._redis: Any = redis
        self._clock = clock
        self._hasher = hasher
        self._fingerprint = fingerprinter(
            namespace=config.namespace, hasher=hasher, key=config.key_bytes()
        )
        self._timeouts = _OpTimeouts(config.op_timeout_s)
        pool_size = getattr(getattr(redis, "connection_pool", None), "max_connections", None)
        slots = config.max_connections
        if isinstance(pool_size, int) and 0 < pool_size < slots:
            slots = pool_size  # never more operations at once than the client has connections
        self._slots = _Slots(slots, config.pool_timeout_s, self._timeouts)
        self._ttl_s = config.ttl_s
        self._max_bytes = config.max_value_bytes
        self._stats = CacheStats()

        self._keys = Generations(config.key_prefix, config.namespace)
        self._gen_ttl = config.generation_ttl_s
        self._gens_expiry = 0.0 if redis is not None else float("inf")
        self._gens_loading: asyncio.Future[None] | None = None  # the one reload in flight

        # health and back-off
        self._healthy = True
        self._skip_until = 0.0
        self._backoff = 0.0
        self._backoff_min = config.backoff_min_s
        self._backoff_max = config.backoff_max_s
        self._bulk_timeout = config.bulk_timeout_s
        self._warm_batch = config.warm_batch

        self._l1: L1 | None = (
            L1(config.l1_max_entries, config.l1_max_bytes, config.l1_ttl_s)
            if config.l1_max_entries > 0
            else None
        )

        self._inflight: dict[str, asyncio.Future[ChatResponse]] = {}
        self._lease_s = config.lease_s
        self._leased: set[str] = set()  # keys whose cross-process lease this cache holds
        self._tasks: set[asyncio.Task[int]] = set()

        # lookups started in one event-loop iteration go out together (CacheConfig.batch_gets)
        self._batch_gets = config.batch_gets
        self._batch_max = config.get_batch_max
        self._get_queue: list[tuple[str, asyncio.Future[Any]]] = []
        self._queue_loop: asyncio.AbstractEventLoop | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._gets_in_flight = 0  # GET operations sent and not answered yet (single or batch)

    # ------------------------------------------------------------------ keys

    def key_for(self, request: ChatRequest) -> str:
        """The Redis key of ``request`` under the generations currently known in-process.

        ``{prefix}:{namespace}:{G}.{P}:{provider or '_'}:{fingerprint}`` where the
        fingerprint equals ``fingerprint(request, namespace=..., hasher=..., key=...)``
        (bound once with :func:`~samplemind_core.fingerprint.fingerprinter`).
        """
        keys = self._keys
        seg = keys.segments.get(request.provider) or keys.segment(request.provider)
        return seg + self._fingerprint(request)

    def _set_gens(self, gens: dict[str, int]) -> None:
        if self._keys.replace(gens) and self._l1 is not None:
            self._l1.drop_cleared(gens)  # entries whose provider was cleared (elsewhere)

    async def _fresh_gens(self) -> None:
        """Reload the generations from Redis when the in-process copy is older than its TTL.

        Never raises: a failure is counted, and the cache backs off.
        """
        now = self._clock()
        if now < self._gens_expiry or now < self._skip_until or self._redis is None:
            return
        loading = self._gens_loading
        if (
            loading is not None
            and not loading.done()
            and loading.get_loop() is asyncio.get_running_loop()
        ):
            # Single-flight: concurrent first requests share one HGETALL, and all of
            # them resume together, so get_or_call's coalescing sees every follower.
            await asyncio.shield(loading)
            return
        loading = self._gens_loading = asyncio.get_running_loop().create_future()
        try:
            await self._fresh_gens_now()
        except CacheError as exc:
            self._backend_failed(exc)
        finally:
            self._gens_loading = None
            loading.set_result(None)  # never an exception: followers go on like the leader

    # --------------------------------------------------------------- health

    def _backend_failed(self, exc: CacheError) -> None:
        st = self._stats
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
        logger.debug("cache value error under %s: %s", key, exc)

    @property
    def healthy(self) -> bool:
        """False after a Redis failure until the next successful operation."""
        return self._healthy

    # ------------------------------------------------------------ encoding

    def _encode(self, response: ChatResponse) -> bytes:
        """The stored value of ``response``; :class:`CacheValueError` when it cannot be stored."""
        return encode(response, self._keys.gens.get(response.provider, 0), self.serializer)

    # -------------------------------------------------------------- public

    async def get(self, request: ChatRequest) -> ChatResponse | None:
        """The cached response of ``request`` (``cached=True``) or ``None``. Never raises Redis errors."""
        start = _perf()
        now = self._clock()
        if now >= self._gens_expiry:
            await self._fresh_gens()
        # key_for(), inlined: the L1 hit path is kept short
        keys = self._keys
        key = (keys.segments.get(request.provider) or keys.segment(request.provider)) + (
            self._fingerprint(request)
        )
        if self._l1 is not None and (hit := self._l1_hit(key, now, start)) is not None:
            return hit
        return await self._lookup(key, start, l1_checked=True)

    def _l1_hit(self, key: str, now: float, start: float) -> ChatResponse | None:
        """The one L1 hit path: a counted copy of ``key``'s live L1 entry, or None."""
        assert self._l1 is not None
        entry = self._l1.hit(key, now)
        if entry is None:
            return None
        st = self._stats
        st.hits += 1
        st.l1_hits += 1
        st.latency_saved_ms += entry.latency_ms
        st.cost_saved_usd += entry.cost_usd
        return clone(entry.response, (_perf() - start) * 1000.0)

    async def _lookup(
        self, key: str, start: float, *, count_miss: bool = True, l1_checked: bool = False
    ) -> ChatResponse | None:
        if (
            not l1_checked
            and self._l1 is not None
            and (hit := self._l1_hit(key, self._clock(), start)) is not None
        ):
            return hit
        st = self._stats
        if self._redis is None:
            st.misses += 1
            return None
        if self._clock() < self._skip_until:
            st.misses += 1
            st.bypassed += 1
            return None
        try:
            raw = await self._io_get(key)
        except CacheValueError as exc:  # another Redis type under our key
            self._value_failed(key, exc)
            st.misses += 1
            await self._discard(key)
            return None
        except CacheError as exc:
            self._backend_failed(exc)
            st.misses += 1
            return None
        if not self._healthy or self._backoff:
            self._backend_ok()
        if raw is None:
            st.misses += count_miss
            return None
        st.bytes_read += len(raw)
        try:
            if len(raw) > self._max_bytes:
                raise CacheValueError(f"stored value of {len(raw)} bytes is over the limit")
            response, pgen, latency, cost = decode(raw)
        except CacheValueError as exc:
            self._value_failed(key, exc)
            st.misses += 1
            await self._discard(key)
            return None
        if self._keys.gens.get(response.provider, 0) != pgen:  # its provider was cleared since
            st.misses += 1
            await self._discard(key)
            return None
        st.hits += 1
        st.latency_saved_ms += latency
        st.cost_saved_usd += cost
        l1 = self._l1
        if l1 is not None:
            expires = self._clock() + l1.ttl_s
            l1.put(
                key, L1Entry(response, response.provider, pgen, expires, len(raw), latency, cost)
            )
            return clone(response, (_perf() - start) * 1000.0)
        response.latency_ms = (_perf() - start) * 1000.0
        return response

    async def _discard(self, key: str) -> None:
        try:
            await self._io_unlink(key)
        except CacheError as exc:
            self._backend_failed(exc)

    async def set(
        self, request: ChatRequest, response: ChatResponse, *, ttl_s: float | None = None
    ) -> bool:
        """Store ``response`` for ``request``; True when stored. Never raises Redis errors.

        Responses served from the cache (``cached=True``) are not stored again;
        values over ``max_value_bytes`` are skipped and counted.
        """
        if self._clock() >= self._gens_expiry:
            await self._fresh_gens()
        return await self._store(self.key_for(request), response, ttl_s)

    async def _store(self, key: str, response: ChatResponse, ttl_s: float | None) -> bool:
        ttl = self._ttl_s if ttl_s is None else ttl_s
        if ttl <= 0:
            raise ConfigError(f"ttl_s must be > 0 seconds, got {ttl}")
        if response.cached:
            return False
        st = self._stats
        try:
            data = self._encode(response)
            if len(data) > self._max_bytes:
                st.skipped_writes += 1
                raise CacheValueError(
                    f"value of {len(data)} bytes is over max_value_bytes={self._max_bytes}"
                )
        except CacheValueError as exc:
            self._value_failed(key, exc)
            return False
        stored = False
        l1 = self._l1
        if l1 is not None:
            template, pgen, latency, cost = decode(data)
            expires = self._clock() + min(ttl, l1.ttl_s)
            l1.put(
                key, L1Entry(template, template.provider, pgen, expires, len(data), latency, cost)
            )
            stored = True
        if self._redis is None:
            return stored
        if self._clock() < self._skip_until:
            st.bypassed += 1
            return stored
        try:
            await self._io_set(key, data, max(1, int(ttl * 1000)))
        except CacheError as exc:
            self._backend_failed(exc)
            return stored
        self._backend_ok()
        st.sets += 1
        st.bytes_written += len(data)
        return True

    async def get_or_call(
        self,
        request: ChatRequest,
        fn: Callable[[], Awaitable[ChatResponse]],
        *,
        ttl_s: float | None = None,
    ) -> ChatResponse:
        """A hit, or ``await fn()`` stored in the cache, with single-flight per key.

        Concurrent calls for the same request in this process make one call of
        ``fn``; the others await it and get a copy of its response. When ``fn``
        raises, every waiter gets that exception and nothing is cached. When
        the caller of that one call is cancelled, only that caller gets
        ``CancelledError``: a waiter takes over and calls ``fn`` itself. No
        error of Redis ever reaches the caller.
        """
        start = _perf()
        if self._clock() >= self._gens_expiry:
            await self._fresh_gens()
        key = self.key_for(request)
        counted = False
        while (pending := self._inflight.get(key)) is not None:
            if not counted:
                self._stats.coalesced += 1
                counted = True
            try:
                shared = await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise  # our own caller cancelled us
                continue  # the leader's caller cancelled it: take over (or follow the next)
            return clone(shared, shared.latency_ms) if shared.cached else replace(shared)
        fut: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            result = await self._lookup(key, start)
            if result is None and self._lease_s is not None and self._redis is not None:
                result = await self._lease_or_wait(key, start)
            if result is None:
                try:
                    result = await fn()
                    await self._store(key, result, ttl_s)
                finally:
                    if key in self._leased:
                        self._leased.discard(key)
                        await self._drop_lease(key)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            if self._inflight.get(key) is fut:
                del self._inflight[key]

    async def _lease_or_wait(self, key: str, start: float) -> ChatResponse | None:
        """Cross-process single-flight: None when this process should call (it holds the lease,
        or the wait ran out); the response another process stored while it held the lease."""
        assert self._lease_s is not None
        st = self._stats
        lease_ms = max(1, int(self._lease_s * 1000))
        give_up = self._clock() + self._lease_s
        delay = _LEASE_POLL_MIN_S
        while True:
            if self._clock() < self._skip_until:
                return None  # Redis is failing: do not wait on it
            try:
                taken = await self._io_set_nx(key + LEASE_SUFFIX, lease_ms)
            except CacheError as exc:
                self._backend_failed(exc)
                return None
            if taken:
                st.leases += 1
                # another process may have stored the value and released its lease
                # since our first lookup: look once more before paying
                hit = await self._lookup(key, start, count_miss=False)
                if hit is None:
                    self._leased.add(key)
                    return None
                await self._drop_lease(key)
                st.misses -= 1
                st.lease_waits += 1
                return hit
            if self._clock() >= give_up:
                return None  # the holder is slow or dead: pay for it ourselves
            await asyncio.sleep(min(delay, max(0.0, give_up - self._clock())))
            delay = min(delay * 2, _LEASE_POLL_MAX_S)
            hit = await self._lookup(key, start, count_miss=False)
            if hit is not None:
                st.misses -= 1  # counted by the first lookup: this call was served from the cache
                st.lease_waits += 1
                return hit

    async def _drop_lease(self, key: str) -> None:
        try:
            await self._io_unlink(key + LEASE_SUFFIX)
        except CacheError as exc:
            self._backend_failed(exc)

    async def clear(self, provider: str | None = None) -> None:
        """Invalidate every entry (or those of ``provider``) in O(1); purge them in the background.

        Raises :class:`~samplemind_core.CacheBackendError` when Redis cannot be
        reached: a clear that did not happen must not look like one that did.
        """
        field = provider or GLOBAL_FIELD
        if self._l1 is not None:
            self._l1.clear()
        if self._redis is None:
            gens = dict(self._keys.gens)
            gens[field] = gens.get(field, 0) + 1
            self._set_gens(gens)
            return
        try:
            value = await self._io_hincrby(self._keys.gen_key, field)
        except CacheError as exc:
            self._backend_failed(exc)
            raise
        self._backend_ok()
        gens = dict(self._keys.gens)
        gens[field] = value
        self._set_gens(gens)
        self._gens_expiry = 0.0  # reload the others next time
        task = asyncio.get_running_loop().create_task(self._purge_quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _purge_quietly(self) -> int:
        try:
            return await self.purge()
        except CacheError as exc:
            logger.info("background purge of old cache generations stopped: %s", exc)
            return 0

    async def purge(self) -> int:
        """Remove entries of old generations now (SCAN + UNLINK); returns how many.

        ``clear()`` runs this in the background; calling it first waits for
        those background runs. Entries of requests without a pinned provider
        whose answering provider was cleared are removed on their next lookup
        or by their TTL.
        """
        if self._redis is None:
            return 0
        others = [t for t in self._tasks if t is not asyncio.current_task()]
        if others:
            await asyncio.gather(*others, return_exceptions=True)
        await self._fresh_gens_now()
        stale: list[str] = []
        removed = 0
        with _store_errors:
            async with asyncio.timeout(self._bulk_timeout * 10):
                async for key in self._io_scan(self._keys.base + "*"):
                    if self._keys.classify(key) is True:
                        stale.append(key)
                    if len(stale) >= self._warm_batch:
                        removed += await self._io_unlink_many(stale)
                        stale = []
                if stale:
                    removed += await self._io_unlink_many(stale)
        self._stats.purged += removed
        return removed

    async def info(self) -> dict[str, Any]:
        """What Redis holds for this namespace: generations, current and stale entry counts.

        Scans the namespace (``SCAN``; every primary of a cluster): an admin
        call, not for the request path. Raises
        :class:`~samplemind_core.CacheBackendError` when Redis cannot be reached.
        """
        current = stale = 0
        if self._redis is not None:
            await self._fresh_gens_now()
            with _store_errors:
                async with asyncio.timeout(self._bulk_timeout * 10):
                    async for key in self._io_scan(self._keys.base + "*"):
                        kind = self._keys.classify(key)
                        current += kind is False
                        stale += kind is True
        elif self._l1 is not None:
            current = len(self._l1)
        return {
            "namespace": self.namespace,
            "generations": dict(self._keys.gens),
            "entries": current,
            "stale_entries": stale,
        }

    async def _fresh_gens_now(self) -> None:
        """Reload the generations now; raises CacheBackendError when Redis fails."""
        raw = await self._io_hgetall(self._keys.gen_key)
        self._set_gens(
            {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}
        )
        self._gens_expiry = self._clock() + self._gen_ttl

    async def warm(self, entries: Iterable[tuple[ChatRequest, ChatResponse]]) -> int:
        """Bulk-write ``(request, response)`` pairs with pipelines; returns how many were written.

        Never raises Redis errors: on a failure it stops and returns the count so far.
        """
        if self._redis is None:
            n = 0
            for request, response in entries:
                n += await self._store(self.key_for(request), response, None)
            return n
        st = self._stats
        try:
            await self._fresh_gens_now()
        except CacheError as exc:
            self._backend_failed(exc)
            return 0
        ttl_ms = max(1, int(self._ttl_s * 1000))
        written = 0
        batch: list[tuple[str, bytes]] = []

        async def flush() -> bool:
            nonlocal written
            try:
                await self._io_set_many(batch, ttl_ms)
            except CacheError as exc:
                self._backend_failed(exc)
                return False
            self._backend_ok()
            written += len(batch)
            st.sets += len(batch)
            st.bytes_written += sum(len(v) for _, v in batch)
            batch.clear()
            return True

        for request, response in entries:
            key = self.key_for(request)
            try:
                data = self._encode(response)
                if len(data) > self._max_bytes:
                    st.skipped_writes += 1
                    raise CacheValueError(f"value of {len(data)} bytes is over the limit")
            except CacheValueError as exc:
                self._value_failed(key, exc)
                continue
            batch.append((key, data))
            if len(batch) >= self._warm_batch and not await flush():
                return written
        if batch:
            await flush()
        return written

    def stats(self) -> CacheStats:
        """A snapshot of the counters."""
        return replace(self._stats)

    def reset_stats(self) -> None:
        """Zero every counter."""
        for f in fields(CacheStats):
            setattr(self._stats, f.name, f.default)

    async def aclose(self) -> None:
        """Stop background purges (the Redis client is the caller's to close)."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> ResponseCache:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # ------------------------------------------------- store I/O (the seam)

    async def _wait_slot(self) -> None:
        """Wait for a connection slot (counted); :class:`_PoolExhausted` when none comes in time."""
        self._stats.pool_waits += 1
        if not await self._slots.wait():
            raise _PoolExhausted(
                f"no redis connection slot within {self._slots.timeout * 1000:.0f} ms"
            )

    async def _bounded(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """``await fn(*args, **kwargs)`` holding a connection slot, under ``op_timeout_s``.

        The slot wait has its own deadline (``pool_timeout_s``, see
        :class:`_Slots`); the operation's deadline (:class:`_OpTimeouts`) starts
        once a slot is held. A cancellation made by that deadline becomes
        :class:`CacheBackendError` and is undone (``Task.uncancel``), whatever
        the client turned it into; any other cancellation (the caller's own)
        propagates.
        """
        slots = self._slots
        if not slots.take():
            await self._wait_slot()
            if self._clock() < self._skip_until:
                slots.release()
                raise _Skipped("redis failed while this operation waited for a slot")
        timeouts = self._timeouts
        try:
            task = timeouts.enter()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                if not timeouts.exit(task):
                    raise  # the caller's own cancellation, or an error of the store
                if task.uncancel() == 0:
                    raise CacheBackendError(
                        f"redis operation timed out after {timeouts.timeout * 1000:.0f} ms"
                    ) from None
                if isinstance(exc, asyncio.CancelledError):
                    raise
                raise asyncio.CancelledError from None  # the caller cancelled too
            if timeouts.exit(task):  # the client swallowed our cancellation: undo it
                task.uncancel()
            return result
        finally:
            slots.release()

    async def _io_get(self, key: str) -> bytes | None:
        if not self._batch_gets or not (self._gets_in_flight or self._get_queue):
            # Alone (no other lookup in flight): sent at once, as one GET; batching would
            # only add a loop iteration. Lookups that come while it is out are batched.
            self._gets_in_flight += 1
            try:
                with _store_errors:
                    return await self._bounded(self._get_one, key)  # type: ignore[no-any-return]
            finally:
                self._gets_in_flight -= 1
        # Queue the key; one callback at the end of this loop iteration sends the queue.
        # Each caller awaits a future of its own: its cancellation touches nobody else's.
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        queue = self._get_queue
        if not queue or self._queue_loop is not loop:
            queue = self._get_queue = []  # (a queue left on a closed loop is dropped)
            self._queue_loop = loop
            loop.call_soon(self._flush_gets, queue)
        queue.append((key, fut))
        return await fut  # type: ignore[no-any-return]

    def _flush_gets(self, queue: list[tuple[str, asyncio.Future[Any]]]) -> None:
        if self._get_queue is queue:
            self._get_queue = []
        loop = asyncio.get_running_loop()
        size = self._batch_max
        for i in range(0, len(queue), size):
            task = loop.create_task(self._get_batch(queue[i : i + size]))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _get_batch(self, batch: list[tuple[str, asyncio.Future[Any]]]) -> None:
        """One store operation for the keys of ``batch``; every caller's future gets its outcome."""
        live = [(key, fut) for key, fut in batch if not fut.done()]  # not cancelled meanwhile
        if not live:
            return
        task = asyncio.current_task()
        assert task is not None
        waiting = len(live)

        def left(fut: asyncio.Future[Any]) -> None:
            nonlocal waiting
            if fut.cancelled():
                waiting -= 1
                if waiting == 0:
                    task.cancel()  # every caller left: stop, and give the slot back

        for _, fut in live:
            fut.add_done_callback(left)
        self._gets_in_flight += 1
        try:
            with _store_errors:
                if len(live) == 1:
                    results = [await self._bounded(self._get_one, live[0][0])]
                else:
                    results = await self._bounded(self._get_many, [key for key, _ in live])
        except BaseException as exc:
            # Back off now, before a waiter handed our slot sends its batch (as an unbatched
            # lookup's own caller does); each caller then counts its key's miss and error.
            backed_off = False
            if isinstance(exc, CacheBackendError) and not isinstance(
                exc, _PoolExhausted | _Skipped
            ):
                self._back_off(exc)
                backed_off = True
            for _, fut in live:
                if not fut.done():
                    fut.set_exception(_per_key(exc, backed_off=backed_off))
            if not isinstance(exc, Exception):
                raise  # this task itself was cancelled (the loop is closing)
            return
        finally:
            self._gets_in_flight -= 1
        for (_, fut), result in zip(live, results, strict=True):
            if not fut.done():
                if isinstance(result, Exception):
                    fut.set_exception(_store_error(result))
                else:
                    fut.set_result(result)

    async def _get_one(self, key: str) -> Any:
        return await self._fresh_retry(lambda: self._redis.get(key))

    async def _get_many(self, keys: list[str]) -> list[Any]:
        def send() -> Awaitable[list[Any]]:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            return pipe.execute(raise_on_error=False)  # type: ignore[no-any-return]

        replies: list[Any] = await self._fresh_retry(send)
        return replies

    async def _fresh_retry(self, send: Callable[[], Awaitable[Any]]) -> Any:
        """``await send()`` (reads only), tried once more after a connection error.

        A connection left in the client's pool from before a Redis restart fails the
        first command sent on it (redis-py does not retry a pipeline, nor always a
        single command): the idle connections (as stale, likely) are dropped and the
        read is sent once more on a fresh one. Not after our own deadline fired.
        """
        try:
            return await send()
        except redis.exceptions.ConnectionError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the deadline (or the caller) cancelled it: no second try
            pool = getattr(self._redis, "connection_pool", None)
            disconnect = getattr(pool, "disconnect", None)
            if disconnect is not None:
                await disconnect(inuse_connections=False)
            return await send()

    async def _io_set(self, key: str, data: bytes, ttl_ms: int) -> None:
        with _store_errors:
            await self._bounded(self._redis.set, key, data, px=ttl_ms)

    async def _io_set_nx(self, key: str, ttl_ms: int) -> bool:
        with _store_errors:
            return bool(await self._bounded(self._redis.set, key, b"1", nx=True, px=ttl_ms))

    async def _io_unlink(self, key: str) -> None:
        with _store_errors:
            await self._bounded(self._redis.unlink, key)

    async def _io_hgetall(self, key: str) -> dict[Any, Any]:
        with _store_errors:
            return await self._bounded(self._redis.hgetall, key)  # type: ignore[no-any-return]

    async def _io_hincrby(self, key: str, field: str) -> int:
        with _store_errors:
            return int(await self._bounded(self._redis.hincrby, key, field, 1))

    async def _io_set_many(self, items: list[tuple[str, bytes]], ttl_ms: int) -> None:
        if not self._slots.take():
            await self._wait_slot()
        try:
            with _store_errors:
                async with asyncio.timeout(self._bulk_timeout):
                    pipe = self._redis.pipeline(transaction=False)
                    for key, data in items:
                        pipe.set(key, data, px=ttl_ms)
                    await pipe.execute()
        finally:
            self._slots.release()

    async def _io_unlink_many(self, keys: list[str]) -> int:
        if not self._slots.take():
            await self._wait_slot()
        try:
            with _store_errors:
                async with asyncio.timeout(self._bulk_timeout):
                    pipe = self._redis.pipeline(transaction=False)
                    for key in keys:
                        # one key per command: routed by slot on a cluster
                        pipe.execute_command("UNLINK", key)
                    return sum(int(n) for n in await pipe.execute())
        finally:
            self._slots.release()

    async def _io_scan(self, pattern: str) -> AsyncIterator[str]:
        # No slot held across the scan: the client takes a connection per SCAN call,
        # and purge() needs a slot for its UNLINK batches meanwhile (admin path).
        with _store_errors:
            async for key in self._redis.scan_iter(match=pattern, count=1000):
                yield key.decode() if isinstance(key, bytes) else str(key)
