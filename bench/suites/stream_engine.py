"""What the stream suite drives: timed reads through ``AIManager.stream()`` and a raw aiohttp read.

* :func:`timed_stream`: one request through the layer, as a
  :class:`~bench.harness.streams.Timeline` (send time, arrival and text of every chunk,
  the provider's output token count) plus the chunk texts and the final response.
* :func:`raw_openai_stream`: the same emulator stream read with plain aiohttp (the
  request the layer's OpenAI adapter builds, SSE lines parsed with orjson, no layer):
  the floor the layer's per-chunk cost is measured against.
* :func:`wave`: N coroutines started together (``asyncio.gather``), each returning its result.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson

from bench.harness.streams import Timeline
from samplemind_core import ChatRequest, ChatResponse
from samplemind_core.manager import AIManager
from samplemind_core.providers import Provider

__all__ = ["StreamRead", "raw_openai_stream", "timed_stream", "wave"]

T = TypeVar("T")
LIVENESS_S = 120.0
"""No stream of the suite may take longer (a hang fails instead of blocking the run)."""


@dataclass(frozen=True, slots=True)
class StreamRead:
    """One stream as a caller saw it."""

    timeline: Timeline
    chunks: tuple[str, ...]
    response: ChatResponse | None


async def timed_stream(
    ai: AIManager, request: ChatRequest, *, clock: Callable[[], float] = time.perf_counter
) -> StreamRead:
    """Read ``request`` through ``ai.stream()``, timing every chunk's arrival."""
    arrivals: list[tuple[float, str]] = []
    async with asyncio.timeout(LIVENESS_S):
        start = clock()
        async with ai.stream(request) as stream:
            async for chunk in stream:
                arrivals.append((clock(), chunk.text))
            response = stream.response
    tokens = response.usage.output_tokens or None
    return StreamRead(
        Timeline(start, tuple(arrivals), tokens), tuple(t for _, t in arrivals), response
    )


async def raw_openai_stream(
    session: aiohttp.ClientSession,
    provider: Provider,
    request: ChatRequest,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> StreamRead:
    """Read the OpenAI-format stream of ``request`` with plain aiohttp (no layer)."""
    method, url, headers, body = provider.build_stream_request(request, provider.default_model)
    arrivals: list[tuple[float, str]] = []
    tokens: int | None = None
    async with asyncio.timeout(LIVENESS_S):
        start = clock()
        async with session.request(method, url, headers=headers, data=orjson.dumps(body)) as r:
            r.raise_for_status()
            async for line in r.content:
                if not line.startswith(b"data: {"):
                    continue
                event: Any = orjson.loads(line[6:])
                choices = event.get("choices")
                if choices:
                    text = choices[0].get("delta", {}).get("content") or ""
                    arrivals.append((clock(), text))
                elif event.get("usage"):
                    tokens = int(event["usage"].get("completion_tokens") or 0) or None
    return StreamRead(
        Timeline(start, tuple(arrivals), tokens), tuple(t for _, t in arrivals if t), None
    )


async def wave(n: int, make: Callable[[int], Awaitable[T]]) -> list[T]:
    """``make(0)`` ... ``make(n - 1)`` started together; their results in order."""
    return list(await asyncio.gather(*(make(i) for i in range(n))))


def same_chunks(first: Sequence[StreamRead], second: Sequence[StreamRead]) -> float:
    """Share of pairs whose chunk lists are identical (1.0: every replay chunk-faithful)."""
    if not first:
        return 0.0
    same = sum(a.chunks == b.chunks for a, b in zip(first, second, strict=True))
    return same / len(first)
