"""Single-flight: one call per key in this process, and (``CacheConfig.lease_s``) across processes.

In-process: the first caller of :meth:`get_or_call` for a key (the leader)
registers a future in ``_inflight``; concurrent callers of the same key
await it (shielded) and get a copy of its result. When the leader's own
caller is cancelled, its future is cancelled and a follower takes over.

Across processes, through a lease key ``{key}:lease`` (``SET NX PX``):

- ``_lease_or_wait(key, start)``: on a miss, take the lease (then this
  process pays: returns None and ``key`` is recorded in ``_leased``), or
  follow: poll the entry until it appears (returned as a hit) or until
  ``lease_s`` has passed (returns None: pay yourself).
- ``_drop_lease(key)``: release the lease (``UNLINK``), never raising.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Final

from .._cache.keys import LEASE_SUFFIX
from .._cache.l1 import clone
from .._config import CacheConfig
from .._exceptions import CacheError
from .._models import ChatRequest, ChatResponse
from ._entries import _Entries

__all__ = ["_SingleFlight"]

_LEASE_POLL_MIN_S: Final = 0.01
_LEASE_POLL_MAX_S: Final = 0.2

_perf: Final = time.perf_counter


class _SingleFlight(_Entries):
    """``get_or_call`` with single-flight per key, and the cross-process lease."""

    def _init_single_flight(self, config: CacheConfig) -> None:
        self._inflight: dict[str, asyncio.Future[ChatResponse]] = {}
        self._lease_s = config.lease_s
        self._leased: set[str] = set()  # keys whose cross-process lease this cache holds

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
