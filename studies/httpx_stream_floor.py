"""Where a plain httpx read of 100 concurrent streams spends its time to first token.

Issue 20 section 2 (the layer-cost test's httpx cells, decision 0860): a plain
``httpx.AsyncClient`` with the layer's httpx settings reads the same stream slower than
both raw aiohttp and the layer on httpx. This study reads the same requests (keyed
latency: the same TTFT and token gaps per request) with one wave per side, each side alone,
the order reversed from one round to the next (``side_rounds``, ``alternating``), after
``--warmup`` rounds that open the connections, and prints per side the TTFT p50 and its
ratio to raw aiohttp (median over pairs), the process CPU per wave, and the pooled ITL p50/p99:

* ``raw_aiohttp``: the suite's raw aiohttp read;
* ``httpx``: plain ``httpx.AsyncClient``, the layer's httpx settings (the suite's raw httpx);
* ``httpx_keepalive_all``: the same with ``max_keepalive_connections`` = ``max_connections``
  (no connection closed between waves: what opening connections costs);
* ``httpx_guarded``: a plain ``httpx.AsyncClient`` on the layer's own httpx transport
  (``build_transport``: httpcore's pool with the layer's admission gate and linear
  assignment pass, :mod:`samplemind_core._pool_guard`): what the pool's bookkeeping costs;
* ``layer``: ``AIManager.stream()`` on the httpx transport, no cache;
* ``layer_keepalive_all`` (not in the default ``--sides``): the same with
  ``max_keepalive_connections`` = ``max_connections`` (whether the layer's default of 50
  idle connections costs it on httpx, where aiohttp keeps every connection).

    nice python studies/httpx_stream_floor.py --rounds 2 --scale 1.0
    nice python studies/httpx_stream_floor.py --sides raw_aiohttp,httpx_guarded,layer,layer_keepalive_all

``--sides``: which of them, in that order (``raw_aiohttp`` first: the ratios are to it).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import resource
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import httpx

from bench.harness.streams import paired_cost, summarize
from bench.suites.stream_engine import (
    StreamRead,
    raw_httpx_client,
    raw_httpx_stream,
    raw_openai_stream,
    side_rounds,
    stream_request,
    timed_stream,
)
from fixtures.servers import start_emulator
from samplemind_core import ChatRequest, HttpConfig, Settings
from samplemind_core.http import build_transport
from samplemind_core.manager import AIManager

SIDES = ("raw_aiohttp", "httpx", "httpx_keepalive_all", "httpx_guarded", "layer")
ALL_SIDES = (*SIDES, "layer_keepalive_all")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(read: Callable[[ChatRequest], Awaitable[StreamRead]], cpu: list[float]) -> Any:
    """``read`` whose wave's process CPU is added to ``cpu`` (one side runs alone)."""
    state: dict[str, float] = {"open": 0, "t0": 0.0}

    async def wrapped(request: ChatRequest) -> StreamRead:
        if state["open"] == 0:
            state["t0"] = _cpu()
        state["open"] += 1
        try:
            return await read(request)
        finally:
            state["open"] -= 1
            if state["open"] == 0:
                cpu.append(_cpu() - state["t0"])

    return wrapped


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    emulator = start_emulator(latency_scale=args.scale, keyed_latency=True)
    config = HttpConfig(transport="httpx")
    keep_all_config = replace(config, max_keepalive_connections=config.max_connections)
    sides: list[str] = args.sides
    cpu: dict[str, list[float]] = {s: [] for s in sides}
    try:
        settings = emulator.settings(Settings(http=config))
        guarded = build_transport(config)
        async with (
            AIManager(settings, cache=None) as ai,
            AIManager(emulator.settings(Settings(http=keep_all_config)), cache=None) as ai_keep_all,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session,
            raw_httpx_client(config) as plain,
            raw_httpx_client(keep_all_config) as keep_all,
            httpx.AsyncClient(
                transport=guarded, timeout=plain.timeout, trust_env=False
            ) as on_guard,
        ):
            provider = ai.provider("openai")
            reads = {
                "raw_aiohttp": functools.partial(raw_openai_stream, session, provider),
                "httpx": functools.partial(raw_httpx_stream, plain, provider),
                "httpx_keepalive_all": functools.partial(raw_httpx_stream, keep_all, provider),
                "httpx_guarded": functools.partial(raw_httpx_stream, on_guard, provider),
                "layer": functools.partial(timed_stream, ai),
                "layer_keepalive_all": functools.partial(timed_stream, ai_keep_all),
            }
            tag = uuid.uuid4().hex[:8]
            got = await side_rounds(
                [_timed(reads[s], cpu[s]) for s in sides],
                lambda r: [stream_request("openai", f"{tag}-{r}-{i}") for i in range(args.streams)],
                rounds=args.warmup + args.rounds,
                schedule="alternating",
            )
    finally:
        emulator.stop()
    skip = args.warmup * args.streams
    out: dict[str, Any] = {
        "scale": args.scale,
        "streams": args.streams,
        "rounds": args.rounds,
        "sides": {},
    }
    base = [x.timeline for x in got[0][skip:]]
    for s, side in zip(sides, got, strict=True):
        lines = [x.timeline for x in side[skip:]]
        st = summarize(lines)
        out["sides"][s] = {
            "ttft_p50_ms": st.ttft_ms["p50"],
            "paired_ttft_ratio_p50_vs_raw_aiohttp": paired_cost(base, lines).ttft_ratio_p50,
            "cpu_s_per_wave": sorted(cpu[s][args.warmup :]),
            "itl_p50_ms": st.itl_ms["p50"],
            "itl_p99_ms": st.itl_ms["p99"],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--streams", type=int, default=100)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--sides", default=",".join(SIDES), help=f"some of {', '.join(ALL_SIDES)}")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.streams < 1 or args.warmup < 0:
        p.error("--rounds and --streams must be >= 1, --warmup >= 0")
    args.sides = [x for x in args.sides.split(",") if x]
    unknown = [x for x in args.sides if x not in ALL_SIDES]
    if unknown or not args.sides or args.sides[0] != "raw_aiohttp":
        p.error(f"--sides: raw_aiohttp first, then some of {', '.join(ALL_SIDES[1:])}")
    t0 = time.perf_counter()
    result = asyncio.run(_run(args))
    result["wall_s"] = time.perf_counter() - t0
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
