"""Entries: keys, generations, the envelope, and the read/write path (``get``, ``set``).

Key layout (every command touches one key, so it also works on a cluster;
see ``samplemind_core._cache.keys``)::

    {prefix}:{namespace}:{G}.{P}:{provider or '_'}:{fingerprint}

The generations are cached in-process for ``CacheConfig.generation_ttl_s``
and reloaded by one ``HGETALL`` shared by every caller that finds them stale
(a new stream's lookup on one server reads them in its own lookup script
instead, and looks up again under new keys when they moved: decision 0920).
A reload that read the hash before a ``clear()`` of this process is not taken
after it (``_gens_epoch``).
A lookup checks the in-process L1 first, then Redis; a value that is not a
valid envelope, is over ``max_value_bytes`` or belongs to a cleared provider
is a counted miss and is removed.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable
from typing import Any, Final

from .._cache.envelope import ForeignValue, decode, encode
from .._cache.keys import Generations
from .._cache.l1 import L1, L1Entry, clone
from .._config import CacheConfig
from .._exceptions import CacheError, CacheValueError, ConfigError
from .._models import ChatRequest, ChatResponse
from ..fingerprint import Hasher, fingerprinter
from ._store import _StoreIO

__all__ = ["_Entries"]


_perf: Final = time.perf_counter


class _Entries(_StoreIO):
    """Keys, generations and the L1 over the store I/O; ``get`` and ``set``."""

    def _init_entries(self, config: CacheConfig, hasher: Hasher) -> None:
        self.config = config
        self.namespace = config.namespace
        self.serializer = config.serializer
        self._hasher = hasher
        self._fingerprint = fingerprinter(
            namespace=config.namespace, hasher=hasher, key=config.key_bytes()
        )
        self._ttl_s = config.ttl_s
        self._max_bytes = config.max_value_bytes
        self._keys = Generations(config.key_prefix, config.namespace)
        self._gen_ttl = config.generation_ttl_s
        self._gens_expiry = 0.0 if self._redis is not None else float("inf")
        self._gens_loading: asyncio.Future[None] | None = None  # the one reload in flight
        self._gens_loaded = False  # the generations were read from Redis at least once
        # moved by every clear() of this process: a reload sent before it is not taken after it
        self._gens_epoch = 0
        # the hash as the last lookup script brought it (decision 0920): equal -> not parsed
        self._gens_raw: list[Any] | None = None
        self._l1: L1 | None = (
            L1(config.l1_max_entries, config.l1_max_bytes, config.l1_ttl_s)
            if config.l1_max_entries > 0
            else None
        )

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
        self._gens_raw = None  # (set again by the caller that took ``gens`` from a script)
        if self._keys.replace(gens) and self._l1 is not None:
            self._l1.drop_cleared(gens)  # entries whose provider was cleared (elsewhere)

    async def _fresh_gens(self) -> None:
        """Reload the generations from Redis when the in-process copy is older than its TTL.

        Never raises: a failure is counted, and the cache backs off.
        """
        now = self._clock()
        if now < self._gens_expiry or self._redis is None or self._skipped(self._keys.gen_key):
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
        except CacheValueError as exc:  # another Redis type under the hash: keep what we know
            self._value_failed(self._keys.gen_key, exc)
            self._gens_expiry = self._clock() + self._gen_ttl
        except CacheError as exc:
            # its node alone backs off once generations are known; before, the whole store
            self._backend_failed(exc, self._keys.gen_key if self._gens_loaded else None)
        finally:
            self._gens_loading = None
            loading.set_result(None)  # never an exception: followers go on like the leader

    def _encode(self, response: ChatResponse, key: str = "", extra: Any = None) -> bytes:
        """The stored value of ``response`` under ``key``; :class:`CacheValueError` when it
        cannot be stored. It answers ``key``'s fingerprint (its last segment) only.
        ``extra`` (not None): the envelope's optional trailing field."""
        pgen = self._keys.gens.get(response.provider, 0)
        answers = key[key.rfind(":") + 1 :]
        if extra is None:
            return encode(response, pgen, self.serializer, answers)
        return encode(response, pgen, self.serializer, answers, extra)

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

    def _l1_hit(
        self, key: str, now: float, start: float, extra: list[Any] | None = None
    ) -> ChatResponse | None:
        """The one L1 hit path: a counted copy of ``key``'s live L1 entry, or None.
        ``extra``: the entry's trailing envelope field is appended to it on a hit."""
        assert self._l1 is not None
        entry = self._l1.hit(key, now)
        if entry is None:
            return None
        if extra is not None:
            extra.append(entry.extra)
        st = self._stats
        st.hits += 1
        st.l1_hits += 1
        st.latency_saved_ms += entry.latency_ms
        st.cost_saved_usd += entry.cost_usd
        return clone(entry.response, (_perf() - start) * 1000.0)

    async def _lookup(
        self,
        key: str,
        start: float,
        *,
        count_miss: bool = True,
        l1_checked: bool = False,
        extra: list[Any] | None = None,
    ) -> ChatResponse | None:
        """``key``'s hit or None; ``extra`` (a list): on a hit, the envelope's trailing
        field (None when absent) is appended to it."""
        if (
            not l1_checked
            and self._l1 is not None
            and (hit := self._l1_hit(key, self._clock(), start, extra)) is not None
        ):
            return hit
        st = self._stats
        if self._redis is None:
            st.misses += 1
            return None
        if self._degraded and self._skipped(key):
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
            self._backend_failed(exc, key)
            st.misses += 1
            return None
        if self._degraded:
            self._backend_ok(key)
        if raw is None:
            st.misses += count_miss
            return None
        hit = self._hit_of(key, raw, start, extra)
        if hit is None:
            await self._discard(key)
        return hit

    def _hit_of(
        self, key: str, raw: bytes, start: float, extra: list[Any] | None
    ) -> ChatResponse | None:
        """The hit that ``raw`` (the value read under ``key``) makes, counted (and put in the
        L1); None when it is no usable hit (not ours, over the limit, another request's, its
        provider cleared since): counted as a miss, the caller then discards ``key``."""
        st = self._stats
        st.bytes_read += len(raw)
        try:
            if len(raw) > self._max_bytes:
                raise CacheValueError(f"stored value of {len(raw)} bytes is over the limit")
            response, pgen, latency, cost, trailing = decode(raw, key[key.rfind(":") + 1 :])
        except CacheValueError as exc:  # not ours, not well-typed, or another request's
            self._value_failed(key, exc)
            st.misses += 1
            return None
        if self._keys.gens.get(response.provider, 0) != pgen:  # its provider was cleared since
            st.misses += 1
            return None
        st.hits += 1
        st.latency_saved_ms += latency
        st.cost_saved_usd += cost
        if extra is not None:
            extra.append(trailing)
        l1 = self._l1
        if l1 is not None:
            expires = self._clock() + l1.ttl_s
            l1.put(
                key,
                L1Entry(
                    response, response.provider, pgen, expires, len(raw), latency, cost, trailing
                ),
            )
            return clone(response, (_perf() - start) * 1000.0)
        response.latency_ms = (_perf() - start) * 1000.0
        return response

    async def _discard(self, key: str) -> None:
        try:
            await self._io_unlink(key)
        except CacheError as exc:
            self._backend_failed(exc, key)

    async def set(
        self, request: ChatRequest, response: ChatResponse, *, ttl_s: float | None = None
    ) -> bool:
        """Store ``response`` for ``request``; True when stored. Never raises Redis errors.

        Responses served from the cache (``cached=True``) are not stored again;
        values over ``max_value_bytes`` are skipped and counted.
        """
        self._ttl(ttl_s)  # bad input fails before any work
        if self._clock() >= self._gens_expiry:
            await self._fresh_gens()
        return await self._store(self.key_for(request), response, ttl_s)

    def _ttl(self, ttl_s: float | None) -> float:
        """``ttl_s`` (None: the configured TTL); :class:`ConfigError` unless finite and > 0."""
        if ttl_s is None:
            return self._ttl_s
        if not (isinstance(ttl_s, int | float) and 0 < ttl_s < math.inf):
            raise ConfigError(f"ttl_s must be a finite number of seconds > 0, got {ttl_s!r}")
        return float(ttl_s)

    async def _lookup_with_extra(self, key: str) -> tuple[ChatResponse, Any] | None:
        """``key``'s hit with the envelope's trailing field, ``(hit, extra)`` (``extra`` None
        when the value has none), or None; counted like :meth:`get` (the L1 first). ``key``
        is :meth:`key_for`'s under fresh generations (no fingerprint is computed here)."""
        start = _perf()
        box: list[Any] = []
        hit = await self._lookup(key, start, extra=box)
        return None if hit is None else (hit, box[0])

    async def _set_with_extra(
        self, request: ChatRequest, response: ChatResponse, extra: Any, key: str | None = None
    ) -> bool:
        """:meth:`set` with the envelope's trailing field ``extra`` (any serialisable value;
        it counts towards ``max_value_bytes``). ``key``: :meth:`key_for`'s of ``request``
        from earlier (its fingerprint is reused under the generations known now)."""
        if self._clock() >= self._gens_expiry:
            await self._fresh_gens()
        if key is None:
            key = self.key_for(request)
        else:  # the fingerprint is the key's last segment; the generations may have moved
            keys = self._keys
            seg = keys.segments.get(request.provider) or keys.segment(request.provider)
            key = seg + key[key.rindex(":") + 1 :]
        return await self._store(key, response, None, extra)

    async def _store(
        self, key: str, response: ChatResponse, ttl_s: float | None, extra: Any = None
    ) -> bool:
        ttl = self._ttl(ttl_s)
        if response.cached:
            return False
        st = self._stats
        try:
            data = self._encode(response, key, extra)
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
            template, pgen, latency, cost, trailing = decode(data)
            expires = self._clock() + min(ttl, l1.ttl_s)
            l1.put(
                key,
                L1Entry(
                    template, template.provider, pgen, expires, len(data), latency, cost, trailing
                ),
            )
            stored = True
        if self._redis is None:
            return stored
        if self._degraded and self._skipped(key):
            st.bypassed += 1
            return stored
        try:
            await self._io_set(key, data, max(1, int(ttl * 1000)))
        except CacheError as exc:
            self._backend_failed(exc, key)
            return stored
        self._backend_ok(key)
        st.sets += 1
        st.bytes_written += len(data)
        return True

    async def _fresh_gens_now(self) -> None:
        """Reload the generations now; raises CacheBackendError when Redis fails.

        The hash is read like input: a field whose value is not a decimal
        integer is ignored (its last known value is kept; a name that is not
        UTF-8 never matches a provider) and counted in ``stats().foreign``; a
        key of another Redis type raises :class:`CacheValueError`.
        """
        epoch = self._gens_epoch
        raw = await self._io_hgetall(self._keys.gen_key)
        self._take_gens(raw.items(), epoch)

    def _take_gens(self, raw: Iterable[tuple[Any, Any]], epoch: int) -> bool:
        """Take the generation hash's fields ``raw`` (name, value), read from Redis after
        :attr:`_gens_epoch` was ``epoch``, as the in-process copy for ``generation_ttl_s``;
        nothing (False) when a ``clear()`` of this process came since (its own generation is
        newer than what that read saw; the next use reloads)."""
        if epoch != self._gens_epoch:
            return False
        known = self._keys.gens
        gens: dict[str, int] = {}
        for k, v in raw:
            name = k.decode(errors="replace") if isinstance(k, bytes) else str(k)
            try:
                if not (isinstance(v, bytes | str) and 0 < len(v) <= 20):
                    raise ValueError("not a generation")
                gens[name] = int(v)
            except ValueError:
                self._value_failed(
                    self._keys.gen_key, ForeignValue(f"generation field {name!r} is not an integer")
                )
                if name in known:
                    gens[name] = known[name]
        self._set_gens(gens)
        self._gens_loaded = True
        self._gens_expiry = self._clock() + self._gen_ttl
        return True
