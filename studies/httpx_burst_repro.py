"""Minimal reproduction of the two httpcore 1.0.x pool defects behind issue 23 item 2.

Pure httpx + the standard library (a tiny HTTP/1.1 server on 127.0.0.1 in a thread);
nothing of SampleMind is needed unless ``--guarded`` asks for our work-around::

    python studies/httpx_burst_repro.py              # plain httpx: both defects show
    PYTHONPATH=$PWD python studies/httpx_burst_repro.py --guarded   # our transport

1. *Orphaned connection* (deterministic): ``max_connections=1``; two requests start,
   both are cancelled one event-loop step later. The first is cancelled in its connect
   (httpcore marks that connection failed: fine); its cleanup creates a new connection
   for the second, still queued, request, which is then cancelled in
   ``wait_for_connection`` before it starts connecting. That connection stays in the
   pool in ``CONNECTING`` for ever (not idle, closed, expired nor available): the pool
   is full, and every later request fails with ``PoolTimeout``.
2. *Cost of the pool's bookkeeping* (timing): N concurrent requests through a pool of 100
   connections. Every entry and exit of a request runs ``_assign_requests_to_connections``,
   which scans every queued request against every connection, and closes every idle
   connection while the pool holds more than ``max_keepalive_connections`` (a new TCP
   connection per request). Compare the microseconds per request with ``--guarded``.
   Against this slow threaded server the server, not the pool, bounds the rate, so the
   growth with N is hidden; against the emulator (``studies/httpx_burst.py``, or the
   regression test ``tests/test_http_burst.py``) 1,000 callers answered 100 in 68 s.

Exit status 1 when the orphaned connection shows, else 0.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve() -> tuple[ThreadingHTTPServer, str]:
    ThreadingHTTPServer.request_queue_size = 1024
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def transport(guarded: bool, max_connections: int) -> httpx.AsyncHTTPTransport:
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    if guarded:
        from samplemind_core._pool_guard import GuardedHTTPTransport

        return GuardedHTTPTransport(gate_size=max_connections, limits=limits)
    return httpx.AsyncHTTPTransport(limits=limits)


async def orphan(url: str, guarded: bool) -> bool:
    """True when the defect shows (a connection left CONNECTING, the next request refused)."""
    async with httpx.AsyncClient(transport=transport(guarded, 1)) as client:
        tasks = [asyncio.create_task(client.get(url)) for _ in range(2)]
        await asyncio.sleep(0)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        pool = client._transport._pool  # type: ignore[attr-defined]
        print(f"  after two cancelled requests: {pool!r} {pool.connections}")
        try:
            response = await client.get(url, timeout=httpx.Timeout(2.0, pool=1.0))
        except httpx.PoolTimeout:
            print("  next request: PoolTimeout (the pool is full of a connection nobody owns)")
            return True
        print(f"  next request: HTTP {response.status_code}")
        return False


async def burst(url: str, n: int, guarded: bool) -> float:
    """Microseconds of wall time per request for a burst of ``n``."""
    timeout = httpx.Timeout(60.0)
    async with httpx.AsyncClient(transport=transport(guarded, 100), timeout=timeout) as client:
        await asyncio.gather(*(client.get(url) for _ in range(100)))  # open the connections
        t0 = time.perf_counter()
        await asyncio.gather(*(client.get(url) for _ in range(n)))
        return (time.perf_counter() - t0) / n * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--guarded", action="store_true", help="use SampleMind's GuardedHTTPTransport")
    p.add_argument("--sizes", default="200,400,800", help="burst sizes for part 2")
    args = p.parse_args(argv)
    import httpcore

    print(
        f"httpx {httpx.__version__}, httpcore {httpcore.__version__}, "
        f"{'guarded' if args.guarded else 'plain'} transport, Python {sys.version.split()[0]}"
    )
    server, url = serve()
    try:
        print("1. orphaned connection after cancellation")
        leaked = asyncio.run(orphan(url, args.guarded))
        print("2. cost per request of a burst through 100 connections")
        costs = {}
        for n in (int(x) for x in args.sizes.split(",")):
            costs[n] = asyncio.run(burst(url, n, args.guarded))
            print(f"  {n:5d} concurrent: {costs[n]:8.0f} us per request")
        sizes = sorted(costs)
        growth = costs[sizes[-1]] / costs[sizes[0]]
        print(
            f"  per-request cost x{growth:.1f} from {sizes[0]} to {sizes[-1]} concurrent "
            f"(flat ~ x1 when linear)"
        )
    finally:
        server.shutdown()
    return 1 if leaked else 0


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
