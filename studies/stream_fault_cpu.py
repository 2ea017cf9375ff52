"""CPU time of a stream that fails mid-way (429 or 5xx error event after the first chunk).

Starts the emulator (``latency_scale`` 0) and streams ``--streams`` requests through
``AIManager.stream`` for each case, interleaved: ``ok`` (a whole stream), ``429@1``
and ``error@1`` (the emulator's ``x-emulator-fault: stream-SPEC`` header: the
provider's rate-limit / server-error event after one content chunk, then the body
ends). Prints the process CPU time per stream (``time.process_time``) and wall
time per stream for each, and the ratio of each failed case to ``ok``: a failed
stream must cost no more than a whole one (no retry loop, no spin)::

    nice python studies/stream_fault_cpu.py --streams 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fixtures.servers import start_emulator, with_fault_header
from samplemind_core import AIManager, ChatRequest, HttpConfig, Settings, StreamInterrupted
from samplemind_core.providers import Provider


def faulted(ai: AIManager, name: str, spec: str) -> Provider:
    return with_fault_header(ai.provider(name), spec)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    logging.getLogger("samplemind_core").setLevel(logging.ERROR)  # one warning per failure
    emulator = start_emulator(latency_scale=0.0)
    try:
        settings = emulator.settings(Settings(http=HttpConfig(transport="aiohttp")))
        cases = {"ok": None, "429@1": "stream-429@1", "error@1": "stream-error@1"}
        managers = {}
        for case, spec in cases.items():
            ai = AIManager(settings)
            if spec is not None:
                ai._providers["openai"] = faulted(ai, "openai", spec)
            managers[case] = ai
        cpu = dict.fromkeys(cases, 0.0)
        wall = dict.fromkeys(cases, 0.0)
        outcomes: dict[str, dict[str, int]] = {c: {} for c in cases}
        for i in range(args.streams):
            for case, ai in managers.items():
                req = ChatRequest(
                    messages=[{"role": "user", "content": f"{case} {i}"}], provider="openai"
                )
                ai.router.reset()
                c0, w0 = time.process_time(), time.perf_counter()
                try:
                    async with ai.stream(req) as stream:
                        async for _ in stream:
                            pass
                    outcome = "ok"
                except StreamInterrupted as exc:
                    outcome = f"StreamInterrupted({exc.cause.split(':')[0]})"
                cpu[case] += time.process_time() - c0
                wall[case] += time.perf_counter() - w0
                outcomes[case][outcome] = outcomes[case].get(outcome, 0) + 1
        for ai in managers.values():
            await ai.aclose()
        n = args.streams
        return {
            case: {
                "cpu_ms_per_stream": round(cpu[case] / n * 1000, 3),
                "wall_ms_per_stream": round(wall[case] / n * 1000, 3),
                "cpu_ratio_to_ok": round(cpu[case] / cpu["ok"], 3),
                "outcomes": outcomes[case],
            }
            for case in cases
        }
    finally:
        emulator.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=200)
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
