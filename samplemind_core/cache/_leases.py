"""Single-flight: one call per key in this process and, by lease, across processes.

In-process: the first caller of :meth:`get_or_call` for a key registers a
``_Flight`` in ``_inflight`` and looks the key up; concurrent callers of the
same key await the flight's future (shielded) and get a copy of its result.
After a miss the call (lease, ``fn()``, store) runs in a task of its own,
which the first caller then awaits like every other: it is not the caller's
call. The flight counts its waiters; a waiter that leaves (cancelled, a
``wait_for`` limit) only stops waiting, and the last one to leave cancels the
task (its lease released at once, nothing stored) and removes the flight, so
a later caller starts afresh. A call that completes after its first caller
left answers the others and is stored; an error reaches every waiter. Only
during the first lookup (no provider call yet) does the first caller's
cancellation hand the key over: a waiter looks it up again.

Across processes (``CacheConfig.lease_s`` set, a Redis client given), a
lease is a key ``{key}:lease`` written with ``SET NX PX lease_s``; its value is a
token of this claim (a random prefix per cache, and a counter), and it is given back by
compare-and-delete (a one-key Lua script, ``_io_cad``): only the holder of the token
deletes it. The API,
also for other paths of the cache (the stream path), on a ``ResponseCache``:

``await cache._take_lease(key) -> bool | None``
    True: this process now holds ``key``'s lease: it pays for the value and
    must call ``_release_lease(key)`` on every way out (``try``/``finally``).
    False: another holder has it: follow it (``_follow_lease``). None: Redis
    is failing or in back-off: go on without a lease. A ``SET`` whose reply
    was lost (a timeout, an error, the caller cancelled while it was out) may
    have set the key: a background compare-and-delete of this claim's token
    removes it if so (and nothing of another holder's); a cancellation is
    then re-raised.

``await cache._release_lease(key)``
    Idempotent, never raises a cache error, never holds a cancelled caller
    back: a caller whose task is being cancelled (or whose inline
    compare-and-delete failed or was cancelled) leaves the release to a background task that
    retries until it succeeds or the lease has expired by itself
    (``lease_s``). ``aclose()`` waits for those tasks (for up to 2 s).

``await cache._follow_lease(key, lookup) -> T | None``
    Waits for the holder's value: polls ``lookup()`` (10 ms doubling to
    200 ms) and tries to take the lease at every poll. Returns ``lookup()``'s
    first non-None result; or None once this process took the lease over
    (the holder released it without storing, or it expired: then this
    process holds it and must release it), once Redis fails, or after
    ``lease_s`` (the longest a lease can be honoured). The caller's own
    cancellation propagates at once (no await here absorbs it).

A holder never keeps a lease after it leaves: return, error, cancellation
(also while its ``SET NX`` is in flight), or Redis failing mid-call. A holder
that dies (the process killed) leaves its lease for at most ``lease_s``. A
holder whose call outlived ``lease_s`` never removes a successor's lease (the
token differs: decision 0440).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Final, TypeVar

from .._cache.keys import LEASE_SUFFIX
from .._cache.l1 import clone
from .._config import CacheConfig
from .._exceptions import CacheError
from .._models import ChatRequest, ChatResponse
from ._entries import _Entries
from ._errors import _WriteRefused

__all__ = ["_SingleFlight"]

_LEASE_POLL_MIN_S: Final = 0.01
_LEASE_POLL_MAX_S: Final = 0.2
_RELEASE_RETRY_MAX_S: Final = 0.5

_perf: Final = time.perf_counter
_T = TypeVar("_T")
logger = logging.getLogger("samplemind_core.cache")


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class _Flight:
    """One in-flight ``get_or_call`` of a key: its outcome, its waiters, its task."""

    __slots__ = ("done", "task", "waiters")

    def __init__(self, done: asyncio.Future[ChatResponse]) -> None:
        self.done = done
        self.waiters = 0
        # the call after a miss (None during the first lookup, run by its caller)
        self.task: asyncio.Task[None] | None = None


class _SingleFlight(_Entries):
    """``get_or_call`` with single-flight per key, and the cross-process lease."""

    def _init_single_flight(self, config: CacheConfig) -> None:
        self._inflight: dict[str, _Flight] = {}
        self._lease_s = config.lease_s
        # keys whose lease this cache holds (or may hold): the token of that claim
        self._leased: dict[str, bytes] = {}
        self._token_prefix = secrets.token_bytes(8)  # this cache's claims, in every process
        self._token_count = itertools.count()
        self._releases: set[asyncio.Task[None]] = set()  # background releases in flight
        self._flying: set[asyncio.Task[None]] = set()  # get_or_call's calls after a miss

    async def get_or_call(
        self,
        request: ChatRequest,
        fn: Callable[[], Awaitable[ChatResponse]],
        *,
        ttl_s: float | None = None,
    ) -> ChatResponse:
        """A hit, or ``await fn()`` stored in the cache, with single-flight per key.

        Concurrent calls for the same request in this process make one call of
        ``fn``; every caller awaiting it gets a copy of its response. That call
        runs in a task of its own, not in the caller that started it: it goes
        on while anyone still awaits it, so when the caller that started it
        leaves (cancelled, a ``wait_for`` limit), the others still get its
        response and it is stored; it is not restarted. It is cancelled (the
        lease released at once, nothing stored) only when nobody awaits it
        any more. A caller's own cancellation reaches that caller at once as
        ``CancelledError`` and no one else. When ``fn`` raises, every caller
        awaiting it gets that exception and nothing is cached. No error of
        Redis ever reaches the caller. With ``CacheConfig.lease_s`` set,
        processes sharing the Redis coalesce too (see the module docstring);
        the lease is released on every way out.
        """
        start = _perf()
        self._ttl(ttl_s)  # bad input fails before fn is called
        if self._clock() >= self._gens_expiry:
            await self._fresh_gens()
        key = self.key_for(request)
        counted = False
        while (flight := self._inflight.get(key)) is not None:
            if not counted:
                self._stats.coalesced += 1
                counted = True
            try:
                shared = await self._await_flight(key, flight)
            except asyncio.CancelledError:
                if not flight.done.cancelled() or _cancelling():
                    raise  # our own caller cancelled us
                continue  # its starter left during the lookup: look up again (or follow the next)
            return clone(shared, shared.latency_ms) if shared.cached else replace(shared)
        loop = asyncio.get_running_loop()
        flight = _Flight(loop.create_future())
        self._inflight[key] = flight
        try:
            result = await self._lookup(key, start)
        except BaseException:
            # (only the caller's cancellation: a lookup raises no cache error) the
            # waiters look up for themselves
            self._end_flight(key, flight)
            flight.done.cancel()
            raise
        if result is not None:
            self._end_flight(key, flight)
            flight.done.set_result(result)
            return result
        # a miss: the call runs in a task of its own, which outlives this caller while
        # anyone awaits it
        flight.task = task = loop.create_task(self._fly(key, flight, start, fn, ttl_s))
        self._flying.add(task)  # (a strong reference while it runs)
        task.add_done_callback(lambda t: self._landed(t, key, flight))
        shared = await self._await_flight(key, flight)
        return replace(shared)

    async def _await_flight(self, key: str, flight: _Flight) -> ChatResponse:
        """Await ``flight``'s response as one of its waiters; the last one to leave cancels it."""
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.done)
        finally:
            flight.waiters -= 1
            task = flight.task
            if flight.waiters == 0 and task is not None and not task.done():
                self._end_flight(key, flight)  # a new caller starts afresh
                task.cancel()  # nobody awaits it: stop paying, release the lease

    def _landed(self, task: asyncio.Task[None], key: str, flight: _Flight) -> None:
        self._flying.discard(task)
        self._end_flight(key, flight)
        if not flight.done.done():  # cancelled before it ran: nobody awaits it
            flight.done.cancel()

    def _end_flight(self, key: str, flight: _Flight) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]

    async def _fly(
        self,
        key: str,
        flight: _Flight,
        start: float,
        fn: Callable[[], Awaitable[ChatResponse]],
        ttl_s: float | None,
    ) -> None:
        """The one call of ``key`` after a miss: lease (or wait), ``fn()``, store; the
        outcome is set on ``flight.done`` for every waiter."""
        done = flight.done
        try:
            try:
                result = None
                if self._lease_s is not None and self._redis is not None:
                    result = await self._lease_or_wait(key, start)
                if result is None:
                    result = await fn()
                    await self._store(key, result, ttl_s)
            finally:
                if key in self._leased:
                    await self._release_lease(key)
        except asyncio.CancelledError:
            done.cancel()
            raise
        except BaseException as exc:  # handed to every waiter
            done.set_exception(exc)
            done.exception()  # retrieved: no "never retrieved" warning when nobody waits
        else:
            done.set_result(result)
        finally:
            self._end_flight(key, flight)

    async def _lease_or_wait(self, key: str, start: float) -> ChatResponse | None:
        """After a miss: None when this process should call (holding the lease, or without
        one when Redis fails); the response another process stored while it held the lease."""
        st = self._stats

        def lookup() -> Awaitable[ChatResponse | None]:
            return self._lookup(key, start, count_miss=False)

        taken = await self._take_lease(key)
        if taken:
            # another process may have stored the value and released its lease since
            # our first lookup: look once more before paying
            hit = await lookup()
        elif taken is None:
            return None
        else:
            hit = await self._follow_lease(key, lookup)
        if hit is not None:
            st.misses -= 1  # counted by the first lookup: this call was served from the cache
            st.lease_waits += 1
            await self._release_lease(key)  # (when this process took it over)
        return hit

    # ------------------------------------------------------------ leases

    def _new_token(self) -> bytes:
        """A value no other claim of any process holds (a lease's or a relay's)."""
        return self._token_prefix + next(self._token_count).to_bytes(8, "big")

    async def _take_lease(self, key: str) -> bool | None:
        """True: held by this process (release it); False: held elsewhere; None: no Redis."""
        if self._lease_s is None or self._redis is None or self._skipped(key):
            return None
        token = self._new_token()
        self._leased[key] = token
        lease_key = key + LEASE_SUFFIX
        try:
            taken = await self._io_set_nx(lease_key, token, max(1, int(self._lease_s * 1000)))
        except CacheError as exc:
            self._backend_failed(exc, key)
            self._forget_token(key, token)
            if not isinstance(exc, _WriteRefused):  # (refused: Redis is full, nothing was set)
                self._release_later(lease_key, token, lost=True)  # it may be set: do not leave it
            return None
        except BaseException:  # the caller cancelled while the SET was out: it may be set
            self._forget_token(key, token)
            self._release_later(lease_key, token, lost=True)
            raise
        if not taken:
            self._forget_token(key, token)
            return False
        self._stats.leases += 1
        return True

    def _forget_token(self, key: str, token: bytes) -> None:
        if self._leased.get(key) == token:
            del self._leased[key]

    async def _follow_lease(
        self, key: str, lookup: Callable[[], Awaitable[_T | None]]
    ) -> _T | None:
        """Wait for the holder's value (see the module docstring); None: pay yourself."""
        assert self._lease_s is not None
        give_up = self._clock() + self._lease_s
        delay = _LEASE_POLL_MIN_S
        while True:
            if self._clock() >= give_up:
                return None  # no lease lives longer: the holder is stuck
            await asyncio.sleep(min(delay, max(0.0, give_up - self._clock())))
            delay = min(delay * 2, _LEASE_POLL_MAX_S)
            found = await lookup()
            if found is not None:
                return found
            taken = await self._take_lease(key)
            if taken is None:
                return None  # Redis is failing: do not wait on it
            if taken:
                found = await lookup()  # stored just before the holder released it
                return found  # None: this process holds the lease now and pays

    async def _release_lease(self, key: str) -> None:
        """Release ``key``'s lease if this process holds it (see the module docstring)."""
        token = self._leased.pop(key, None)
        if token is not None:
            await self._give_back(key + LEASE_SUFFIX, token)

    async def _give_back(self, lease_key: str, token: bytes) -> None:
        """Compare-and-delete ``lease_key`` if it holds ``token``: at once, or in the
        background when this task is being cancelled or Redis failed (never raises a
        cache error; a cancellation while it is out is re-raised)."""
        if not _cancelling():
            try:
                await self._io_cad(lease_key, token)
                return
            except CacheError as exc:
                logger.debug(
                    "lease release of %s failed (%s): retrying in the background", lease_key, exc
                )
            except asyncio.CancelledError:
                self._release_later(lease_key, token)
                raise
        self._release_later(lease_key, token)

    def _release_later(self, lease_key: str, token: bytes, *, lost: bool = False) -> None:
        """A background compare-and-delete of ``lease_key``'s ``token`` (``aclose`` waits).

        ``lost``: the claim's ``SET NX`` was left without its reply (cancelled, failed): it
        may still land after a first compare-and-delete (e.g. sent on another connection,
        or still queued in a batch), so when that one deleted nothing, one more follows
        ``2 x op_timeout_s`` later (the longest our deadline lets the ``SET`` be out).
        """
        assert self._lease_s is not None
        task = asyncio.get_running_loop().create_task(
            self._release_until(lease_key, token, self._clock() + self._lease_s, lost)
        )
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release_until(
        self, lease_key: str, token: bytes, expires: float, lost: bool = False
    ) -> None:
        """Compare-and-delete, retried until it is answered or the lease expired by itself."""
        delay = _LEASE_POLL_MIN_S
        while True:
            try:
                if await self._io_cad(lease_key, token) or not lost:
                    return
                lost = False  # nothing deleted: the SET may still land; one more look
                await asyncio.sleep(2 * self._timeouts.timeout)
                continue
            except CacheError:
                if self._clock() + delay >= expires:
                    return  # it is gone by itself by then
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RELEASE_RETRY_MAX_S)
