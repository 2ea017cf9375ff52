"""httpx's own transport, guarded against two httpcore 1.0.x pool defects under bursts.

:class:`GuardedHTTPTransport` is what :func:`samplemind_core.http.build_transport`
builds for ``transport="httpx"``. It is an ``httpx.AsyncHTTPTransport`` (same
pool, same limits, same timeouts extension) with three additions:

* **An admission gate** (:class:`PoolGate`): at most ``gate_size`` requests are
  inside httpcore's pool at once (``max_connections``, HTTP/2 included); the others
  wait in a FIFO queue of our own, whose cost per request is O(1), for at most
  the request's ``pool`` timeout (then ``httpx.PoolTimeout``, as httpcore would
  raise). httpcore's ``_assign_requests_to_connections`` scans every queued
  request against every connection on each request's entry and exit, so a
  burst of N callers costs O(N² x connections) in pure Python: 1,000 callers
  kept the event loop busy for minutes, long enough for pool and connect
  timeouts to fire in the middle of the pool's bookkeeping. With the gate a
  request entering the pool always finds a connection in its own pass.
  A slot is held until the response is closed (its body read, or a streamed
  body closed), and released on every way out: error, timeout, cancellation.
* **A linear assignment pass** (:class:`GuardedPool`, the same pool object with
  httpcore's ``_assign_requests_to_connections`` replaced): one pass over the
  connections and one over the requests; a connection handed to a request is
  never handed to a second one nor closed as idle before that request starts on
  it; the keep-alive limit counts idle connections; and a connection that nobody
  will ever connect is dropped. httpcore leaves one in ``CONNECTING`` for ever
  when the request it was created for is cancelled (or times out) before starting
  its connect: neither idle, closed, expired nor available, it holds a slot, and
  once ``max_connections`` of them pile up every request fails with
  ``PoolTimeout`` (encode/httpcore#1093, #550, #785).
* **One write per HTTP/1.1 request** (:class:`CoalescingBackend`, only for a pool
  without HTTP/2): httpcore sends a request's head and body in two writes; they
  are held and sent together before the response is read.

The first two are work-arounds for upstream defects (reported in
``docs/upstream/httpcore-burst-report.md``; reproduction in
``studies/httpx_burst_repro.py``). The pool's pass touches httpcore private state and
checks its shape first: with another httpcore layout the pool is left as it is (the
gate still applies).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Final

import httpcore
import httpx
from httpcore import AsyncHTTP11Connection

__all__ = [
    "CoalescingBackend",
    "CoalescingStream",
    "GuardedHTTPTransport",
    "GuardedPool",
    "PoolGate",
]

logger = logging.getLogger(__name__)


class PoolGate:
    """A FIFO counting gate: ``acquire`` waits (bounded) for one of ``size`` slots.

    Unlike ``asyncio.Semaphore`` it reports the time waited, and a slot handed to a
    waiter that leaves at the same moment (cancelled, timed out) is passed on, never
    lost.
    """

    __slots__ = ("_free", "_size", "_waiters")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"gate size must be >= 1, got {size}")
        self._size = size
        self._free = size
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def size(self) -> int:
        return self._size

    @property
    def in_use(self) -> int:
        """Slots held now."""
        return self._size - self._free

    @property
    def waiting(self) -> int:
        """Callers queued for a slot now."""
        return sum(1 for fut in self._waiters if not fut.done())

    async def acquire(self, timeout: float | None) -> float:  # noqa: ASYNC109 - pool timeout
        """Take a slot; return the seconds waited. ``TimeoutError`` after ``timeout``."""
        waiters = self._waiters
        while waiters and waiters[0].done():
            waiters.popleft()
        if self._free > 0 and not waiters:
            self._free -= 1
            return 0.0
        loop = asyncio.get_running_loop()
        start = loop.time()
        fut: asyncio.Future[None] = loop.create_future()
        waiters.append(fut)
        try:
            if timeout is None:
                await fut
            else:
                async with asyncio.timeout(timeout):
                    await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release()  # granted as we left: hand it on
            else:
                fut.cancel()  # skipped by release()
            raise
        return loop.time() - start

    def release(self) -> None:
        """Give a slot back: to the first live waiter, else to the free count."""
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        if self._free >= self._size:
            raise RuntimeError("PoolGate released more often than acquired")
        self._free += 1


def _forget_request(stream: Any) -> None:
    """Take out of httpcore's pool the request of a response whose close was cut short.

    httpcore's ``PoolByteStream.aclose`` runs its clean-up under an anyio shield that
    does not hold off an asyncio ``Task.cancel()``: a cancellation (or an error) landing
    inside it leaves the request in the pool's list, holding its connection ``ACTIVE``
    for ever. Removed here, the connection is no longer held by anyone and the next full
    pass of :class:`GuardedPool` closes it.
    """
    inner = getattr(stream, "_httpcore_stream", None)
    pool = getattr(inner, "_pool", None)
    pool_request = getattr(inner, "_pool_request", None)
    requests = getattr(pool, "_requests", None)
    if isinstance(requests, list) and pool_request in requests:
        requests.remove(pool_request)


class _SlotStream(httpx.AsyncByteStream):
    """A response body that gives its gate slot back when closed (once).

    If the close is cut short (the caller cancelled inside it, or an error), the pool's
    bookkeeping it skipped is done here (:func:`_forget_request`) before the slot is
    given back.
    """

    __slots__ = ("_release", "_stream")

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except BaseException:
            _forget_request(self._stream)
            raise
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


_SWEEP_S: Final = 1.0
"""How often every idle connection is probed for expiry (the one handed out always is)."""

_POOL_FIELDS = (
    "_connections",
    "_requests",
    "_max_connections",
    "_max_keepalive_connections",
    "_assign_requests_to_connections",
    "create_connection",
)


def _multiplexes(conn: Any) -> bool:
    """True for a connection that takes several requests at once (HTTP/2, or may become it)."""
    inner = getattr(conn, "_connection", None)
    if inner is None:  # still connecting: httpcore says "available" only if it may be HTTP/2
        return bool(conn.is_available())
    return inner.__class__ is not AsyncHTTP11Connection


def _key(origin: Any) -> tuple[bytes, bytes, int]:
    """``httpcore.Origin`` is not hashable: its fields are."""
    return (origin.scheme, origin.host, origin.port)


def _drop_orphan(conn: Any) -> bool:
    """For a connection no request holds: True (and mark it failed) if it never connected.

    Not connected and not failed: only a request holding it would ever connect it.
    """
    if (
        getattr(conn, "_connection", True) is None
        and getattr(conn, "_connect_failed", True) is False
    ):
        conn._connect_failed = True
        return True
    return False


class GuardedPool(httpcore.AsyncConnectionPool):
    """httpcore's pool with a linear, reservation-aware assignment pass.

    Replaces ``_assign_requests_to_connections`` (called on every request's entry
    and exit), keeping its contract: drop closed connections, close expired and
    surplus idle ones, hand queued requests (first come, first served) an
    available connection of their origin, a new one while below
    ``max_connections``, or a new one in place of an idle one of another origin.
    Differences, each an upstream defect:

    * one pass over the connections and one over the requests (upstream scans
      every connection for every queued request, and every connection again for
      every idle one);
    * a connection already handed to a request that has not started on it yet is
      *reserved*: never handed to a second request, never closed as idle
      (upstream re-hands it, the loser retries: several passes per request);
    * the keep-alive limit counts idle connections (upstream compares it with
      the number of all connections, closing every idle connection of a pool
      larger than ``max_keepalive_connections``: a new TCP connection per request
      in a burst);
    * a connection that nobody will connect (created for a request that left
      before connecting, encode/httpcore#1093) is dropped, and an HTTP/1.1
      connection that no request holds but is not idle (abandoned mid-request
      when a cancellation cut httpcore's own clean-up short) is closed.
    """

    _next_sweep: float = 0.0

    def _assign_requests_to_connections(self) -> list[httpcore.AsyncConnectionInterface]:
        # Probing an idle connection for expiry polls its socket: probe every idle one
        # at most once per _SWEEP_S, and always the one about to be handed out. A pass
        # with no request to assign (a response closed while others still run) and no
        # sweep due does nothing: closed, orphaned and surplus idle connections leave
        # at the next full pass, which is the next request's entry (before it is given
        # a connection), the next sweep, or the exit of the last request (the end of a
        # burst). So none of them ever holds a slot a request waits for.
        now = time.monotonic()
        sweep = now >= self._next_sweep
        requests = self._requests
        if not sweep and requests and all(r.connection is not None for r in requests):
            return []
        if sweep:
            self._next_sweep = now + _SWEEP_S
        reserved = {id(r.connection) for r in requests if r.connection is not None}
        closing: list[Any] = []
        connections: list[Any] = self._connections
        kept: list[Any] = []
        idle: dict[Any, list[Any]] = {}
        shared: dict[Any, list[Any]] = {}
        idle_count = 0
        for conn in connections:
            if id(conn) in reserved:  # its request finds out if it closed meanwhile
                kept.append(conn)
                if _multiplexes(conn):
                    shared.setdefault(_key(conn._origin), []).append(conn)
                continue
            if conn.is_closed():
                continue
            if _drop_orphan(conn):
                continue
            if conn.is_idle():
                if sweep and conn.has_expired():
                    closing.append(conn)
                    continue
                idle.setdefault(_key(conn._origin), []).append(conn)
                idle_count += 1
            elif conn.has_expired() or not _multiplexes(conn):
                # An HTTP/1.1 connection that no request holds and that is not idle
                # was abandoned mid-request (httpcore's reset on cancellation did not
                # run to its end): nobody will ever use or free it.
                closing.append(conn)
                continue
            else:
                shared.setdefault(_key(conn._origin), []).append(conn)
            kept.append(conn)
        for pool_request in self._requests:
            if pool_request.connection is not None:
                continue
            origin = pool_request.request.url.origin
            key = _key(origin)
            chosen: Any = None
            for conn in shared.get(key, ()):
                if conn.is_available():
                    chosen = conn
                    break
            candidates = idle.get(key)
            while chosen is None and candidates:
                conn = candidates.pop()  # the most recently used
                idle_count -= 1
                if conn.has_expired():
                    kept.remove(conn)
                    closing.append(conn)
                    continue
                chosen = conn
                if _multiplexes(chosen):
                    shared.setdefault(key, []).append(chosen)
            if chosen is None:
                if len(kept) >= self._max_connections:
                    victim = next((conns.pop(0) for conns in idle.values() if conns), None)
                    if victim is None:
                        continue  # wait for a connection to come back
                    idle_count -= 1
                    kept.remove(victim)
                    closing.append(victim)
                chosen = self.create_connection(origin)
                kept.append(chosen)
                if _multiplexes(chosen):
                    shared.setdefault(key, []).append(chosen)
            pool_request.assign_to_connection(chosen)
        surplus = idle_count - self._max_keepalive_connections
        for conns in idle.values():
            while conns and surplus > 0:
                victim = conns.pop(0)  # the least recently used
                kept.remove(victim)
                closing.append(victim)
                surplus -= 1
        self._connections = kept
        return closing


_COALESCE_MAX: Final = 64 * 1024
"""Bytes of request data held back before they are sent without waiting for the read."""


class CoalescingStream(httpcore.AsyncNetworkStream):
    """An HTTP/1.1 stream that sends a request's writes together, at its first read.

    httpcore writes the request head and body separately (two ``send`` calls, two
    wake-ups of the server per request). Over HTTP/1.1 a request's writes are always
    followed by a read of its response on the same connection, so they are held
    (up to :data:`_COALESCE_MAX` bytes) and sent as one buffer before that read. A
    failed send surfaces from the read as httpcore's ``WriteError`` (httpcore already
    ignores write errors of a request to read the server's response first). Never used
    for a pool that may speak HTTP/2 (there a reader waits while others write).
    """

    __slots__ = ("_pending", "_size", "_stream", "_timeout")

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._size = 0
        self._timeout: float | None = None

    async def _flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending = []
            self._size = 0
            await self._stream.write(data, self._timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if buffer:
            self._pending.append(buffer)
            self._size += len(buffer)
            self._timeout = timeout
            if self._size >= _COALESCE_MAX:
                await self._flush()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        await self._flush()
        return await self._stream.read(max_bytes, timeout)

    async def aclose(self) -> None:
        self._pending = []
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        await self._flush()
        tls = await self._stream.start_tls(ssl_context, server_hostname, timeout)
        return CoalescingStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class CoalescingBackend(httpcore.AsyncNetworkBackend):
    """Wraps a network backend so that its streams are :class:`CoalescingStream`."""

    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self.backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self.backend.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return CoalescingStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self.backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return CoalescingStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self.backend.sleep(seconds)


def _guard_pool(pool: Any) -> bool:
    """Make httpx's pool a :class:`GuardedPool` (same state); False if its shape is unknown."""
    if type(pool) is not httpcore.AsyncConnectionPool or not all(
        hasattr(pool, name) for name in _POOL_FIELDS
    ):
        logger.debug("httpcore pool of an unknown shape: assignment pass left as it is")
        return False
    pool.__class__ = GuardedPool
    backend = getattr(pool, "_network_backend", None)
    if not getattr(pool, "_http2", True) and isinstance(backend, httpcore.AsyncNetworkBackend):
        pool._network_backend = CoalescingBackend(backend)
    return True


class GuardedHTTPTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` with the admission gate and the guarded pool (module docstring).

    ``gate`` (:class:`PoolGate`) and ``pool`` (httpcore's pool) are there for
    inspection; ``pool_guarded`` says whether the assignment pass was replaced.
    """

    def __init__(self, *, gate_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = PoolGate(gate_size)
        self.pool_guarded = _guard_pool(self._pool)

    @property
    def pool(self) -> Any:
        """httpcore's connection pool (for inspection: ``.connections``)."""
        return self._pool

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout") or {}
        pool_timeout = timeouts.get("pool")
        try:
            waited = await self.gate.acquire(pool_timeout)
        except TimeoutError:
            raise httpx.PoolTimeout(
                f"no connection slot within the pool timeout ({pool_timeout} s): "
                f"{self.gate.size} requests in flight",
                request=request,
            ) from None
        try:
            if waited and pool_timeout is not None:  # the pool wait is one budget
                request.extensions = {
                    **request.extensions,
                    "timeout": {**timeouts, "pool": max(pool_timeout - waited, 0.0)},
                }
            response = await super().handle_async_request(request)
        except BaseException:
            self.gate.release()
            raise
        response.stream = _SlotStream(response.stream, self.gate.release)  # type: ignore[arg-type]
        return response
