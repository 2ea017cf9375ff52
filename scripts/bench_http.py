"""Quick HTTP client throughput comparison against a local ASGI server (a script, not a test).

Starts a minimal JSON ASGI app under uvicorn (HTTP/1.1, httptools) or hypercorn
(HTTP/1.1 + h2c) on 127.0.0.1 in a subprocess, then measures requests/s of:

* ``new-client``: a new ``httpx.AsyncClient`` per request (the naive baseline);
* ``httpx.AsyncClient``: one pooled plain httpx client (reference);
* ``HttpClient/httpx``: our client, httpx's own HTTP/1.1 pool;
* ``HttpClient/h2c``: our client, httpx HTTP/2 with prior knowledge (hypercorn only);
* ``HttpClient/aiohttp``: our client with ``httpx_aiohttp.AiohttpTransport``;
* ``raw aiohttp``: a bare ``aiohttp.ClientSession``;

at concurrency 1 and 50, and prints ratios. Absolute numbers on a shared
machine are noisy; compare ratios of one run::

    python scripts/bench_http.py --server uvicorn --requests 2000
    python scripts/bench_http.py --server hypercorn --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["app", "main"]

_REPLY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "A warm, dusty lo-fi groove. " * 8},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 42, "completion_tokens": 56, "total_tokens": 98},
    }
).encode()

_BODY = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Describe the genre of this sample. " * 6}],
    "temperature": 0.2,
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Minimal ASGI app: drain the request body, answer a fixed chat-completion JSON."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_REPLY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _REPLY})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _server(kind: str) -> Iterator[str]:
    port = _free_port()
    here = str(Path(__file__).resolve().parent)
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if kind == "uvicorn":
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench_http:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "hypercorn",
            "bench_http:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
        ]
    proc = subprocess.Popen(cmd, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{kind} did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


Call = Callable[[], Awaitable[None]]


async def _timed(call: Call, requests: int, concurrency: int) -> float:
    """Requests/s of ``requests`` calls spread over ``concurrency`` workers."""
    per_worker = max(1, requests // concurrency)

    async def worker() -> None:
        for _ in range(per_worker):
            await call()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return per_worker * concurrency / (time.perf_counter() - start)


async def _measure(
    base: str, server: str, requests: int, rounds: int
) -> dict[tuple[str, int], float]:
    """Median req/s per (variant, concurrency); variants interleaved round by round."""
    import statistics

    import aiohttp
    import httpx

    from samplemind_core import HttpConfig
    from samplemind_core.http import HttpClient, build_transport

    url = base + "/v1/chat/completions"
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=50)
    plain = httpx.AsyncClient(limits=limits)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
    ours: dict[str, HttpClient] = {
        "HttpClient/httpx": HttpClient(HttpConfig(transport="httpx")),
        "HttpClient/aiohttp": HttpClient(HttpConfig(transport="aiohttp")),
    }
    if server == "hypercorn":
        h2c = build_transport(HttpConfig(http2=True), http1=False)
        ours["HttpClient/h2c"] = HttpClient(transport=h2c)

    async def new_client() -> None:
        async with httpx.AsyncClient() as c:
            r = await c.post(url, json=_BODY)
            r.raise_for_status()

    async def plain_call() -> None:
        r = await plain.post(url, json=_BODY)
        r.raise_for_status()

    async def raw() -> None:
        async with session.post(url, json=_BODY) as r:
            await r.read()
            assert r.status == 200

    calls: dict[str, tuple[Call, int]] = {
        "new-client": (new_client, max(1, requests // 40)),
        "httpx.AsyncClient": (plain_call, requests),
    }
    for name, client in ours.items():

        async def call(client: HttpClient = client) -> None:
            r = await client.request("POST", url, json=_BODY)
            assert r.status_code == 200

        calls[name] = (call, requests)
    calls["raw aiohttp"] = (raw, requests)

    results: dict[tuple[str, int], float] = {}
    try:
        for conc in (1, 50):
            for call, _ in calls.values():  # warm-up: open the pools' connections
                await asyncio.gather(*(call() for _ in range(conc)))
            samples: dict[str, list[float]] = {name: [] for name in calls}
            for _ in range(rounds):
                for name, (call, n) in calls.items():
                    n = max(n // rounds, conc * 2)
                    samples[name].append(await _timed(call, n, conc))
            for name, values in samples.items():
                results[(name, conc)] = statistics.median(values)
    finally:
        await plain.aclose()
        await session.close()
        for client in ours.values():
            await client.aclose()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("uvicorn", "hypercorn"), default="uvicorn")
    parser.add_argument("--requests", type=int, default=2000, help="per variant and concurrency")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median)")
    args = parser.parse_args(argv)
    with _server(args.server) as base:
        results = asyncio.run(_measure(base, args.server, args.requests, args.rounds))
    print(f"server={args.server} requests={args.requests} rounds={args.rounds} (median req/s)")
    for conc in (1, 50):
        raw = results[("raw aiohttp", conc)]
        new = results[("new-client", conc)]
        print(f"\nconcurrency {conc}")
        print(f"  {'variant':<20} {'req/s':>8} {'x new-client':>13} {'x raw aiohttp':>14}")
        for (name, c), rps in results.items():
            if c == conc:
                print(f"  {name:<20} {rps:8.0f} {rps / new:13.1f} {rps / raw:14.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
