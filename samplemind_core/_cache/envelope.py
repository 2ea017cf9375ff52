"""The stored value: a small versioned envelope in msgpack (default) or JSON, never pickle::

    ["smc/2", answers, created_at, provider, model, latency_ms, cost_usd, provider_gen,
     [text, finish_reason, [[name, arguments, id], ...], input_tokens,
      output_tokens, estimated_cost_usd, attempts, metadata]
     (, extra)]

``answers`` is what the value answers: the fingerprint of its request (the
last segment of its key). A reader that knows which fingerprint it looks up
passes it to :func:`decode`; a value that answers another request raises
:class:`ForeignValue` (a value is not trusted for where it lies). ``extra`` is
one optional trailing field of any serialisable type, stored and returned
as is (``None`` when absent). ``complete()``'s path does not write it; the
stream path stores a completed stream's chunk boundaries there
(``{"lengths": [...], "gaps_ms": [...]}``, decision 0221), carried by the
cache's ``_set_with_extra``/``_lookup_with_extra`` and its L1; ``get()`` and
the relay's terminal entry ignore it. Every field read is checked for
its type like input: anything else raises
:class:`~samplemind_core.CacheValueError`. Values of version ``smc/1`` (no
``answers``) read as foreign to this version: a miss.

>>> from samplemind_core import ChatResponse
>>> raw = encode(ChatResponse(text="hi", provider="ollama", model="m"), 3, "json", "fp1")
>>> response, provider_gen, latency_ms, cost_usd, extra = decode(raw, "fp1")
>>> response.text, response.cached, provider_gen, extra
('hi', True, 3, None)
>>> decode(raw, "fp2")
Traceback (most recent call last):
...
samplemind_core._cache.envelope.ForeignValue: the stored value answers another request
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final, Literal

import msgpack
import orjson

from .._exceptions import CacheValueError
from .._models import ChatResponse, ToolCall, Usage

__all__ = ["ENVELOPE_VERSION", "ForeignValue", "decode", "encode", "wall_clock"]

ENVELOPE_VERSION: Final = "smc/2"
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


class ForeignValue(CacheValueError):
    """A valid envelope that answers another request than the one looked up."""


_NO_EXTRA: Final = object()


def _envelope(response: ChatResponse, provider_gen: int, answers: str, extra: object) -> list[Any]:
    env = [
        ENVELOPE_VERSION,
        answers,
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
    if extra is not _NO_EXTRA:
        env.append(extra)
    return env


def encode(
    response: ChatResponse,
    provider_gen: int,
    serializer: Literal["msgpack", "json"],
    answers: str = "",
    extra: object = _NO_EXTRA,
) -> bytes:
    """The envelope of ``response`` answering ``answers`` (``created_at`` = now).

    ``extra``: the optional trailing field (left out when not given).
    :class:`CacheValueError` if unserialisable.
    """
    env = _envelope(response, provider_gen, answers, extra)
    if serializer == "json":
        try:
            return _jdumps(env)
        except TypeError as exc:
            raise CacheValueError(f"response is not serialisable: {exc}") from None
    try:
        return _packb(env)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise CacheValueError(f"response is not serialisable: {exc}") from None


_str = str
_int = int
_float = float
_list = list
_dict = dict


def decode(raw: bytes, answers: str | None = None) -> tuple[ChatResponse, int, float, float, Any]:
    """(response template with cached=True, provider generation, latency_ms, cost_usd, extra).

    Either serializer is read whatever the cache writes. ``answers``: the
    fingerprint the reader looks up; a value answering another one raises
    :class:`ForeignValue` (``None``: not checked, for tools). Anything that is
    not a well-typed ``smc/2`` envelope raises :class:`CacheValueError`. The
    template carries ``cost_usd=0.0`` and the original figures under
    ``metadata["cache"]``; ``extra`` is the optional trailing field (``None``
    when absent).
    """
    try:
        env = _jloads(raw) if raw[:1] == b"[" else _unpackb(raw)
        if len(env) == 9:
            version, fp, created, provider, model, latency, cost, pgen, body = env
            extra = None
        else:
            version, fp, created, provider, model, latency, cost, pgen, body, extra = env
        if version != ENVELOPE_VERSION:
            raise ValueError("unknown envelope")
        if fp != answers and answers is not None:
            raise ForeignValue("the stored value answers another request")
        text, finish, tcs, tin, tout, est, attempts, meta = body
        # every field checked like input (exact types: a bool is not a count)
        if (
            text.__class__ is not _str
            or provider.__class__ is not _str
            or model.__class__ is not _str
            or fp.__class__ is not _str
            or pgen.__class__ is not _int
            or tin.__class__ is not _int
            or tout.__class__ is not _int
            or attempts.__class__ is not _int
            or meta.__class__ is not _dict
            or tcs.__class__ is not _list
            or created.__class__ is not _float
            or latency.__class__ is not _float
            or cost.__class__ is not _float
            or (finish is not None and finish.__class__ is not _str)
            or (est is not None and est.__class__ is not _float and est.__class__ is not _int)
        ):
            raise ValueError("bad field types")
        if tcs:
            tool_calls = [ToolCall(n, a, i) for n, a, i in tcs]
            for t in tool_calls:
                if (
                    t.name.__class__ is not _str
                    or t.arguments.__class__ is not _dict
                    or (t.id is not None and t.id.__class__ is not _str)
                ):
                    raise ValueError("bad tool call")
        else:
            tool_calls = []
        response = ChatResponse(
            text,
            provider,
            model,
            tool_calls,
            finish,
            Usage(tin, tout),
            0.0,
            est,
            0.0,
            True,
            attempts,
            {**meta, "cache": {"created_at": created, "latency_ms": latency, "cost_usd": cost}},
        )
        return response, pgen, latency, cost, extra
    except ForeignValue:
        raise
    except Exception as exc:
        raise CacheValueError(f"not a samplemind cache value: {type(exc).__name__}") from None
