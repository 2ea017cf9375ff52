"""What the wire side of streaming costs, side by side with a raw aiohttp read.

Starts the emulator (latency 0, so only the client's work is timed), then, interleaved
in one run: (a) a raw aiohttp read of an OpenAI SSE stream (time to the first
``data:`` line with a content delta, and to the end), against ``Provider.open_stream``
on ``HttpClient`` (aiohttp transport) reading the same stream; (b) the CPU time of a
failed stream (a 429 error event after the first chunk) against a complete one;
(c) the parser+decoder CPU per event in process, on a recorded body.

    nice python -m studies.stream_wire_cost [N]    # or: nox -s study -- stream_wire_cost [N]
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import statistics
import time
from collections import deque
from typing import Any

import aiohttp

from fixtures.servers import EMULATOR_API_KEY, start_emulator
from samplemind_core import ChatRequest, HttpConfig, ProviderConfig, RateLimitError, Secret
from samplemind_core.http import HttpClient
from samplemind_core.providers import get_provider

_TEXT = re.compile(rb'"content":"[^"]')


def provider(url: str, fault: str | None = None):  # type: ignore[no-untyped-def]
    p = get_provider(
        "openai",
        ProviderConfig(name="openai", base_url=url + "/v1", api_key=Secret(EMULATOR_API_KEY)),
    )
    if fault is not None:
        original = p.build_stream_request

        def build(req, model):  # type: ignore[no-untyped-def]
            m, u, h, b = original(req, model)
            return m, u, {**h, "x-emulator-fault": fault}, b

        p.build_stream_request = build  # type: ignore[method-assign]
    return p


async def raw_read(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[float, float]:
    t0 = time.perf_counter()
    ttft = 0.0
    headers = {"authorization": f"Bearer {EMULATOR_API_KEY}"}
    async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
        async for chunk in r.content.iter_any():
            if not ttft and _TEXT.search(chunk):
                ttft = time.perf_counter() - t0
    return ttft, time.perf_counter() - t0


async def layer_read(http: HttpClient, p, req: ChatRequest) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    ttft = 0.0
    async with await p.open_stream(http, req) as s:
        async for _ in s:
            if not ttft:
                ttft = time.perf_counter() - t0
    return ttft, time.perf_counter() - t0


async def main(n: int) -> None:
    server = start_emulator(latency_scale=0.0)
    try:
        p, p429 = provider(server.url), provider(server.url, "stream-429")
        req = ChatRequest(messages=[{"role": "user", "content": "describe kick_01.wav"}])
        body = dict(p.build_stream_request(req, p.default_model)[3])
        raw_t, layer_t = [], []
        cpu_ok, cpu_fail = [], []
        async with (
            aiohttp.ClientSession() as session,
            HttpClient(HttpConfig(transport="aiohttp")) as http,
        ):
            for _ in range(20):  # warm-up
                await raw_read(session, server.url, body)
                await layer_read(http, p, req)
            for i in range(n):
                if i % 2:
                    raw_t.append(await raw_read(session, server.url, body))
                    layer_t.append(await layer_read(http, p, req))
                else:
                    layer_t.append(await layer_read(http, p, req))
                    raw_t.append(await raw_read(session, server.url, body))
                c0 = time.process_time()
                await layer_read(http, p, req)
                c1 = time.process_time()
                with contextlib.suppress(RateLimitError):
                    await layer_read(http, p429, req)
                c2 = time.process_time()
                cpu_ok.append(c1 - c0)
                cpu_fail.append(c2 - c1)
        med = statistics.median
        print(f"n={n} interleaved pairs, emulator latency 0, one OpenAI SSE stream")
        print(
            f"TTFT  raw aiohttp {med(t[0] for t in raw_t) * 1e3:.3f} ms, layer "
            f"{med(t[0] for t in layer_t) * 1e3:.3f} ms, ratio "
            f"{med(t[0] for t in layer_t) / med(t[0] for t in raw_t):.2f}"
        )
        print(
            f"whole stream raw {med(t[1] for t in raw_t) * 1e3:.3f} ms, layer "
            f"{med(t[1] for t in layer_t) * 1e3:.3f} ms, ratio "
            f"{med(t[1] for t in layer_t) / med(t[1] for t in raw_t):.2f}"
        )
        print(
            f"CPU per stream: complete {med(cpu_ok) * 1e3:.3f} ms, failed (429 mid-stream) "
            f"{med(cpu_fail) * 1e3:.3f} ms (max {max(cpu_fail) * 1e3:.3f} ms), ratio "
            f"{med(cpu_fail) / med(cpu_ok):.2f}"
        )
        # (c) parser + decoder CPU per event, in process
        async with (
            HttpClient(HttpConfig(transport="aiohttp")) as http,
            http.stream(
                "POST",
                server.url + "/v1/chat/completions",
                json=body,
                headers={"authorization": f"Bearer {EMULATOR_API_KEY}"},
            ) as r,
        ):
            recorded = await r.aread()
        events = recorded.count(b"\n\n")
        reps = 200
        t0 = time.process_time()
        for _ in range(reps):
            d = p.stream_decoder(p.default_model, 1 << 20)
            d.feed(recorded, deque())
        per_event = (time.process_time() - t0) / reps / events
        print(f"parser+decoder: {per_event * 1e6:.2f} us CPU per SSE event ({events} events)")
    finally:
        server.stop()


def cli(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m studies.stream_wire_cost", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("n", nargs="?", type=int, default=200, help="streams per variant (200)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("n must be at least 1")
    asyncio.run(main(args.n))


if __name__ == "__main__":
    cli()
