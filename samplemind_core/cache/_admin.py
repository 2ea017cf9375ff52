"""Admin: ``clear``, ``purge``, ``info``, ``warm``, ``stats`` and closing (off the request path)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import fields, replace
from typing import Any, Literal

from .._cache.envelope import decode
from .._cache.keys import GLOBAL_FIELD, NO_PROVIDER
from .._config import PROVIDERS, CacheConfig
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

        With ``provider``: the entries of requests pinned to it, and those of requests that
        pinned none but were answered by it (their stored value names the provider and its
        generation: :meth:`info` counts them as stale, :meth:`purge` removes them).

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
        self._gens_epoch += 1  # a reload out now read the hash before this: not taken
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
        are told stale by their value (the answering provider's generation):
        once any provider has been cleared, their values are read (pipelined
        GETs of ``warm_batch`` keys) to find those whose provider was cleared.
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
                async for key, _provider, kind in self._entries("needed"):
                    if kind is True:
                        stale.append(key)
                    if len(stale) >= self._warm_batch:
                        removed += await self._io_unlink_many(stale)
                        stale = []
                if stale:
                    removed += await self._io_unlink_many(stale)
        self._stats.purged += removed
        return removed

    async def info(self) -> dict[str, Any]:
        """What Redis holds for this namespace: generations, current and stale entries.

        ``{"namespace", "generations" (the generation hash as stored: ``"*"`` the
        namespace's, one field per provider ever cleared), "namespace_generation",
        "entries" (current), "stale_entries" (under an older generation: hidden from
        lookups, not purged yet), "unreadable_entries" (values that are not an entry
        of this cache: a lookup drops them), "providers": {provider: {"generation",
        "entries", "stale_entries"}}}``. An entry counts for the provider that
        answered it (the key's, or the stored value's when the request pinned none),
        so after ``clear(provider)`` that provider's entries are 0 and what was not
        purged yet is stale. Without Redis (an L1 only), ``entries`` is the L1's
        size and the per-provider counts are None.

        Scans the namespace (``SCAN``; every primary of a cluster) and reads the
        value of every entry of a request that pinned no provider (pipelined
        GETs of ``warm_batch`` keys): an admin call, not for the request path.
        Raises :class:`~samplemind_core.CacheBackendError` when Redis cannot be reached.
        """
        current = stale = unreadable = 0
        gens = self._keys.gens
        counted = self._redis is not None
        if counted:
            await self._fresh_gens_now()
            gens = self._keys.gens
        names = list(PROVIDERS) + sorted(set(gens) - {GLOBAL_FIELD, *PROVIDERS})
        providers: dict[str, dict[str, int | None]] = {
            p: {
                "generation": gens.get(p, 0),
                "entries": 0 if counted else None,
                "stale_entries": 0 if counted else None,
            }
            for p in names
        }
        if counted:
            with _store_errors:
                async with asyncio.timeout(self._bulk_timeout * 10):
                    async for _key, provider, kind in self._entries("all"):
                        if kind is None:
                            unreadable += 1
                            continue
                        current += not kind
                        stale += kind
                        if provider is not None:
                            slot = providers.setdefault(
                                provider,
                                {"generation": gens.get(provider, 0), "entries": 0,
                                 "stale_entries": 0},
                            )  # fmt: skip
                            field = "stale_entries" if kind else "entries"
                            slot[field] = (slot[field] or 0) + 1
        elif self._l1 is not None:
            current = len(self._l1)
        return {
            "namespace": self.namespace,
            "generations": dict(gens),
            "namespace_generation": gens.get(GLOBAL_FIELD, 0),
            "entries": current,
            "stale_entries": stale,
            "unreadable_entries": unreadable,
            "providers": providers,
        }

    async def _entries(
        self, read: Literal["all", "needed"]
    ) -> AsyncIterator[tuple[str, str | None, bool | None]]:
        """Every entry key of the namespace as ``(key, provider, stale)``.

        ``provider``: the key's, or (for a request that pinned none) the stored
        value's; None when the value was not read. ``stale``: True under an older
        generation of the namespace or of the provider, None for a value that is
        not an entry of this cache. Values are read (pipelined GETs) for unpinned
        keys: all of them (``"all"``), or only where a provider's clear can have made
        a current key stale (``"needed"``: no value is read while no provider was
        ever cleared). Leases, relay keys and the generation hash are skipped.
        """
        keys = self._keys
        by_value = read == "all" or any(f != GLOBAL_FIELD and g != 0 for f, g in keys.gens.items())
        pending: list[str] = []

        async def resolve(batch: list[str]) -> list[tuple[str, str | None, bool | None]]:
            out: list[tuple[str, str | None, bool | None]] = []
            for key, raw in zip(batch, await self._io_get_many(batch), strict=True):
                if raw is None:
                    continue  # gone since the scan (expired, purged, cleared elsewhere)
                try:
                    if isinstance(raw, BaseException) or len(raw) > self._max_bytes:
                        raise TypeError
                    response, pgen, *_ = decode(raw, key[key.rfind(":") + 1 :])
                except (CacheError, TypeError):
                    out.append((key, None, None))
                    continue
                stale = bool(keys.classify(key)) or gens_of(response.provider) != pgen
                out.append((key, response.provider, stale))
            return out

        def gens_of(provider: str) -> int:
            return keys.gens.get(provider, 0)

        base = len(keys.base)
        async for key in self._io_scan(keys.base + "*"):
            kind = keys.classify(key)
            if kind is None:
                continue
            provider = key[base:].partition(":")[2].rpartition(":")[0]
            if provider != NO_PROVIDER:
                yield key, provider, kind
            elif read == "all" or (by_value and not kind):
                pending.append(key)
                if len(pending) >= self._warm_batch:
                    for item in await resolve(pending):
                        yield item
                    pending = []
            else:
                yield key, None, kind
        if pending:
            for item in await resolve(pending):
                yield item

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
