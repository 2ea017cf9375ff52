"""The stored value: a small versioned envelope in msgpack (default) or JSON, never pickle::

    ["smc/1", created_at, provider, model, latency_ms, cost_usd, provider_gen,
     [text, finish_reason, [[name, arguments, id], ...], input_tokens,
      output_tokens, estimated_cost_usd, attempts, metadata]]

>>> from samplemind_core import ChatResponse
>>> raw = encode(ChatResponse(text="hi", provider="ollama", model="m"), 3, "json")
>>> response, provider_gen, latency_ms, cost_usd = decode(raw)
>>> response.text, response.cached, provider_gen
('hi', True, 3)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final, Literal

import msgpack
import orjson

from .._exceptions import CacheValueError
from .._models import ChatResponse, ToolCall, Usage

__all__ = ["ENVELOPE_VERSION", "decode", "encode", "wall_clock"]

ENVELOPE_VERSION: Final = "smc/1"
"""First element of every stored value; anything else under our key is foreign."""

wall_clock: Callable[[], float] = time.time
"""Where ``created_at`` comes from (seconds since the epoch): read at every encode.

The cache's only read of the wall clock (its TTLs, L1 and back-off run on the
monotonic ``clock`` given to :class:`~samplemind_core.cache.ResponseCache`). It is
looked up as a module attribute on each call, so a process that must not depend
on the wall clock (the benchmark harness's instruction-counting process) can
assign a constant function here before it encodes."""
_packb = msgpack.packb
_unpackb = msgpack.unpackb
_jdumps = orjson.dumps
_jloads = orjson.loads


def _envelope(response: ChatResponse, provider_gen: int) -> list[Any]:
    return [
        ENVELOPE_VERSION,
        wall_clock(),
        response.provider,
        response.model,
        float(response.latency_ms),
        float(response.cost_usd),
        provider_gen,
        [
            response.text,
            response.finish_reason,
            [[t.name, t.arguments, t.id] for t in response.tool_calls],
            response.usage.input_tokens,
            response.usage.output_tokens,
            response.estimated_cost_usd,
            response.attempts,
            response.metadata,
        ],
    ]


def encode(
    response: ChatResponse, provider_gen: int, serializer: Literal["msgpack", "json"]
) -> bytes:
    """The envelope of ``response`` (``created_at`` = now); :class:`CacheValueError` if unserialisable."""
    if serializer == "json":
        try:
            return _jdumps(_envelope(response, provider_gen))
        except TypeError as exc:
            raise CacheValueError(f"response is not serialisable: {exc}") from None
    try:
        return _packb(_envelope(response, provider_gen))  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise CacheValueError(f"response is not serialisable: {exc}") from None


def decode(raw: bytes) -> tuple[ChatResponse, int, float, float]:
    """(response template with cached=True, provider generation, latency_ms, cost_usd).

    Either serializer is read whatever the cache writes; anything that is not
    an ``smc/1`` envelope raises :class:`CacheValueError`. The template carries
    ``cost_usd=0.0`` and the original figures under ``metadata["cache"]``.
    """
    try:
        env = _jloads(raw) if raw[:1] == b"[" else _unpackb(raw)
        version, created, provider, model, latency, cost, pgen, body = env
        if version != ENVELOPE_VERSION:
            raise ValueError("unknown envelope")
        text, finish, tcs, tin, tout, est, attempts, meta = body
        response = ChatResponse(
            text,
            provider,
            model,
            [ToolCall(n, a, i) for n, a, i in tcs] if tcs else [],
            finish,
            Usage(tin, tout),
            0.0,
            est,
            0.0,
            True,
            attempts,
            {**meta, "cache": {"created_at": created, "latency_ms": latency, "cost_usd": cost}},
        )
        if not (text.__class__ is str and provider.__class__ is str and pgen.__class__ is int):
            raise ValueError("bad field types")
        return response, pgen, float(latency), float(cost)
    except Exception as exc:
        raise CacheValueError(f"not a samplemind cache value: {type(exc).__name__}") from None
