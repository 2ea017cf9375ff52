"""Admin: ``clear``, ``purge``, ``info``, ``warm``, ``stats`` and closing (off the request path)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import fields, replace
from typing import Any

from .._cache.keys import GLOBAL_FIELD
from .._config import CacheConfig
from .._exceptions import CacheError, CacheValueError
from .._models import ChatRequest, ChatResponse
from ._errors import _store_errors
from ._health import logger
from ._leases import _SingleFlight
from ._stats import CacheStats

__all__ = ["_Admin"]


class _Admin(_SingleFlight):
    """Invalidation, background purges, bulk writes and counters."""

    def _init_admin(self, config: CacheConfig) -> None:
        self._warm_batch = config.warm_batch
        self._tasks: set[asyncio.Task[int]] = set()

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
                data = self._encode(response, key)
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
        """Stop background purges and let background lease releases finish (for up to 2 s).

        The Redis client is the caller's to close.
        """
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        releases = list(self._releases)
        if releases:  # leases given back in the background: let them finish
            _, late = await asyncio.wait(releases, timeout=min(2.0, self._bulk_timeout))
            for release in late:
                release.cancel()
            await asyncio.gather(*late, return_exceptions=True)
