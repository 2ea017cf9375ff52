"""Bursts through AIManager on both transports, side by side (issue 23, item 2).

Measures, against the real emulator (``fixtures.servers.start_emulator``), no cache:

* ``clean``: N concurrent ``complete()`` calls (default 5,000) on a fault-free emulator,
  default timeouts, for each transport in turn (interleaved, ``--rounds`` times): how many
  were answered, the burst's wall time, and the ratio httpx / aiohttp of each round.
* ``faults``: ``--fault-calls`` (default 1,000, as in the issue) concurrent calls with a
  0.5 s request timeout, the first provider of the
  chain (ollama) on an emulator with ``--fault-rate`` (default 0.3) of
  ``disconnect,malformed,timeout``, the three others (healthy fallbacks) on a fault-free
  emulator; two waves per transport: the share of callers answered.

After each burst the httpx pool is inspected: connections left CONNECTING and gate slots
still held must both be 0. Exit status 1 when a goal is missed (all answered; ratio <= 2;
>= 99 % answered under faults; nothing left behind), else 0::

    PYTHONPATH=$PWD nice python studies/httpx_burst.py --calls 5000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import statistics
import sys
import time
from typing import Any

from fixtures.servers import start_emulator
from samplemind_core import AIManager, ChatRequest, HttpConfig, Settings

TRANSPORTS = ("aiohttp", "httpx")


def leftovers(ai: AIManager) -> dict[str, int]:
    """Pool state that must not outlive a burst (httpx transport; zeros for aiohttp)."""
    transport: Any = ai.http._transport
    gate = getattr(transport, "gate", None)
    pool = getattr(transport, "pool", None)
    connecting = 0
    if pool is not None:
        connecting = sum("CONNECTING" in repr(c) for c in pool.connections)
    return {
        "connecting": connecting,
        "slots_held": gate.in_use if gate is not None else 0,
        "queued": gate.waiting if gate is not None else 0,
    }


async def burst(settings: Settings, n: int, request_timeout: float | None) -> dict[str, Any]:
    async with AIManager(settings) as ai:

        async def one(i: int) -> Any:
            request = ChatRequest(
                messages=[{"role": "user", "content": f"burst {i}"}], timeout=request_timeout
            )
            return await ai.complete(request)

        await asyncio.gather(*(one(-i - 1) for i in range(10)))  # warm: imports, first connects
        t0 = time.perf_counter()
        results = await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True), 600
        )
        wall = time.perf_counter() - t0
        errors = [r for r in results if isinstance(r, BaseException)]
        kinds: dict[str, int] = {}
        for err in errors:
            kinds[type(err).__name__] = kinds.get(type(err).__name__, 0) + 1
        providers: dict[str, int] = {}
        for r in results:
            if not isinstance(r, BaseException):
                providers[r.provider] = providers.get(r.provider, 0) + 1
        return {
            "answered": n - len(errors),
            "wall_s": wall,
            "errors": kinds,
            "providers": providers,
            **leftovers(ai),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--fault-rate", type=float, default=0.3)
    p.add_argument("--fault-calls", type=int, default=1000, help="callers per faulty wave")
    p.add_argument("--fault-timeout", type=float, default=0.5, help="request timeout (s)")
    p.add_argument("--skip-faults", action="store_true")
    p.add_argument("--skip-clean", action="store_true")
    args = p.parse_args(argv)
    logging.disable(logging.WARNING)  # fallbacks log one warning per failed provider call
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally: stop emulators
    ok = True
    clean = start_emulator()
    faulty = start_emulator(
        fault_rate=args.fault_rate, faults=["disconnect", "malformed", "timeout"]
    )
    try:
        ratios = []
        for rnd in range(0 if args.skip_clean else args.rounds):
            walls = {}
            for kind in TRANSPORTS:
                s = dataclasses.replace(clean.settings(), http=HttpConfig(transport=kind))  # type: ignore[arg-type]
                r = asyncio.run(burst(s, args.calls, None))
                walls[kind] = r["wall_s"]
                print(
                    f"clean  round {rnd + 1} {kind:7} {r['answered']}/{args.calls} answered "
                    f"in {r['wall_s']:.2f} s errors={r['errors']} providers={r['providers']} "
                    f"left: connecting={r['connecting']} slots={r['slots_held']} queued={r['queued']}",
                    flush=True,
                )
                ok &= r["answered"] == args.calls and r["connecting"] == r["slots_held"] == 0
            ratios.append(walls["httpx"] / walls["aiohttp"])
            print(f"clean  round {rnd + 1} wall ratio httpx/aiohttp = {ratios[-1]:.2f}", flush=True)
        median = statistics.median(ratios) if ratios else 0.0
        print(
            f"clean  median wall ratio httpx/aiohttp over {args.rounds} rounds = {median:.2f} "
            f"(goal <= 2)"
        )
        ok &= median <= 2.0
        if not args.skip_faults:
            base = clean.settings()
            base = base.with_provider("ollama", base_url=faulty.url)
            for kind in TRANSPORTS:
                s = dataclasses.replace(base, http=HttpConfig(transport=kind))  # type: ignore[arg-type]
                for wave in (1, 2):
                    r = asyncio.run(burst(s, args.fault_calls, args.fault_timeout))
                    share = r["answered"] / args.fault_calls
                    print(
                        f"faults {kind:7} wave {wave} {r['answered']}/{args.fault_calls} answered "
                        f"({share:.1%}) in {r['wall_s']:.2f} s errors={r['errors']} "
                        f"providers={r['providers']} left: connecting={r['connecting']} "
                        f"slots={r['slots_held']}",
                        flush=True,
                    )
                    ok &= share >= 0.99 and r["connecting"] == r["slots_held"] == 0
    finally:
        clean.stop()
        faulty.stop()
    print("goals met" if ok else "GOALS MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
