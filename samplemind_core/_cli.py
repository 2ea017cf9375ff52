"""``samplemind-cache``: warm, inspect and clear the response cache from a shell.

::

    samplemind-cache warm FILE.jsonl [--redis-url URL] [--namespace NS] [--ttl SECONDS]
    samplemind-cache stats [--redis-url URL] [--namespace NS]
    samplemind-cache clear [--provider P] [--redis-url URL] [--namespace NS]

Each line of the JSONL file is ``{"request": {...ChatRequest fields...},
"response": {...ChatResponse fields...}}``, UTF-8. Every value is checked on
the way in (the request as :class:`ChatRequest` checks it; the response's
provider is one of the four, its token counts and cost are numbers >= 0, its
stored size within ``max_value_bytes``). Bad lines are reported as
``FILE:LINE: reason`` and skipped; the good ones are still written.

``stats`` prints JSON: the namespace, its generations (``"*"`` the namespace's,
one field per provider ever cleared), current, stale (invalidated by a clear, not
purged yet) and unreadable entries, and per provider its generation, current and
stale entries; an entry counts for the provider that answered it, also when the
request pinned none (its stored value is read), so after ``clear --provider P``,
P's current entries are 0 and its generation went up by one.

Exit status: 0 when every line was written; 2 for a usage or input error (a
bad option, no Redis URL, an unreadable file, or any rejected line: the other
lines are still written); 1 when Redis failed. The Redis URL defaults to
``REDIS_URL`` (through :meth:`Settings.from_env`), and ``REDIS_CLUSTER=1`` (or
``--cluster``) treats it as a Redis Cluster node. ``clear --provider`` takes
one of the four providers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import orjson

from ._config import MAX_TTL_S, PROVIDERS, Settings, check_redis_url
from ._exceptions import CacheError, ConfigError, SampleMindError
from ._models import ChatRequest, ChatResponse, ToolCall, Usage
from .cache import ResponseCache

__all__ = ["main", "parse_line"]

_REQUEST_FIELDS = frozenset(ChatRequest.__dataclass_fields__)
_RESPONSE_FIELDS = frozenset(ChatResponse.__dataclass_fields__) - {"cached"}


_INT64_MAX = (1 << 63) - 1
_TOOL_CALL_FIELDS = frozenset(("name", "arguments", "id"))
_USAGE_FIELDS = frozenset(("input_tokens", "output_tokens"))

Entry = tuple[int, ChatRequest, ChatResponse]
"""A parsed warm line: (line number, request, response)."""


class LineError(SampleMindError, ValueError):
    """A JSONL line that is not a valid warm entry (the message says why)."""


def _count(name: str, value: Any) -> int:
    if value.__class__ is not int or not 0 <= value <= _INT64_MAX:
        raise LineError(f'"response.{name}" must be an integer >= 0, got {value!r:.40}')
    return int(value)


def _amount(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise LineError(f'"response.{name}" must be a finite number >= 0, got {value!r:.40}')
    return float(value)


def _response(rs: dict[str, Any]) -> ChatResponse:
    for name in ("text", "provider", "model"):
        if not isinstance(rs.get(name), str):
            raise LineError(f'"response.{name}" must be a string')
    if rs["provider"] not in PROVIDERS:
        raise LineError(f'unknown "response.provider" {rs["provider"]!r:.40}; known: {PROVIDERS}')
    usage = rs.get("usage", {})
    if not isinstance(usage, dict) or not set(usage) <= _USAGE_FIELDS:
        raise LineError('"response.usage" must be {"input_tokens": int, "output_tokens": int}')
    calls = rs.get("tool_calls", [])
    if not isinstance(calls, list):
        raise LineError('"response.tool_calls" must be a list')
    tool_calls = []
    for call in calls:
        if (
            not isinstance(call, dict)
            or not set(call) <= _TOOL_CALL_FIELDS
            or not isinstance(call.get("name"), str)
            or not call["name"]
            or not isinstance(call.get("arguments", {}), dict)
            or not isinstance(call.get("id"), str | None)
        ):
            raise LineError(
                '"response.tool_calls" items must be {"name": str, "arguments": {...}, "id": str}'
            )
        tool_calls.append(ToolCall(call["name"], call.get("arguments", {}), call.get("id")))
    finish = rs.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise LineError('"response.finish_reason" must be a string or null')
    metadata = rs.get("metadata", {})
    if not isinstance(metadata, dict):
        raise LineError('"response.metadata" must be an object')
    estimated = rs.get("estimated_cost_usd")
    return ChatResponse(
        text=rs["text"],
        provider=rs["provider"],
        model=rs["model"],
        tool_calls=tool_calls,
        finish_reason=finish,
        usage=Usage(
            _count("usage.input_tokens", usage.get("input_tokens", 0)),
            _count("usage.output_tokens", usage.get("output_tokens", 0)),
        ),
        cost_usd=_amount("cost_usd", rs.get("cost_usd", 0.0)),
        estimated_cost_usd=None if estimated is None else _amount("estimated_cost_usd", estimated),
        latency_ms=_amount("latency_ms", rs.get("latency_ms", 0.0)),
        attempts=_count("attempts", rs.get("attempts", 1)),
        metadata=metadata,
    )


def parse_line(text: str | bytes) -> tuple[ChatRequest, ChatResponse]:
    """One warm entry from one JSONL line; raises :class:`LineError` with a short reason."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise LineError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict) or set(obj) != {"request", "response"}:
        raise LineError('expected an object with exactly "request" and "response"')
    rq, rs = obj["request"], obj["response"]
    if not isinstance(rq, dict) or not isinstance(rs, dict):
        raise LineError('"request" and "response" must be objects')
    if unknown := set(rq) - _REQUEST_FIELDS:
        raise LineError(f"unknown request field(s): {', '.join(sorted(unknown))}")
    if unknown := set(rs) - _RESPONSE_FIELDS:
        raise LineError(f"unknown response field(s): {', '.join(sorted(unknown))}")
    if "messages" not in rq:
        raise LineError('"request.messages" is missing')
    if rq.get("provider") is not None and rq["provider"] not in PROVIDERS:
        raise LineError(f'unknown "request.provider" {rq["provider"]!r:.40}; known: {PROVIDERS}')
    try:
        request = ChatRequest(**rq)
    except ConfigError as exc:
        raise LineError(str(exc)) from None
    return request, _response(rs)


def _client(url: str, cluster: bool) -> Any:
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url)
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url)


def _read_entries(path: Path, err: TextIO) -> tuple[list[Entry], int] | None:
    """Parse the JSONL file (before the event loop starts); None when unreadable.

    Lines are decoded one by one: a line that is not UTF-8 is rejected alone.
    """
    entries: list[Entry] = []
    rejected = 0
    try:
        with path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    try:
                        line = raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise LineError(
                            f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                        ) from None
                    entries.append((lineno, *parse_line(line)))
                except LineError as exc:
                    rejected += 1
                    print(f"{path}:{lineno}: {exc}", file=err)
    except OSError as exc:
        print(f"samplemind-cache: cannot read {path}: {exc}", file=err)
        return None
    return entries, rejected


def _storable(
    cache: ResponseCache, path: Path, entries: list[Entry], err: TextIO
) -> tuple[list[tuple[ChatRequest, ChatResponse]], int]:
    """The entries the cache can store; the others are reported as ``FILE:LINE: reason``."""
    ok: list[tuple[ChatRequest, ChatResponse]] = []
    rejected = 0
    limit = cache.config.max_value_bytes
    for lineno, request, response in entries:
        try:
            size = len(cache._encode(response, cache.key_for(request)))  # as stored
        except SampleMindError as exc:
            reason = str(exc)
        else:
            if size <= limit:
                ok.append((request, response))
                continue
            reason = f"response is {size} bytes when stored, over max_value_bytes={limit}"
        rejected += 1
        print(f"{path}:{lineno}: {reason}", file=err)
    return ok, rejected


async def _warm(
    cache: ResponseCache,
    path: Path,
    entries: list[Entry],
    rejected: int,
    out: TextIO,
    err: TextIO,
) -> int:
    storable, too_big = _storable(cache, path, entries, err)
    rejected += too_big
    written = await cache.warm(storable)
    total = len(storable) + rejected  # every non-blank line is an entry offered
    unwritten = len(storable) - written
    print(
        f"warmed {written} of {total} entries into namespace {cache.namespace!r}, "
        f"{rejected} rejected" + (f", {unwritten} not written (Redis failed)" if unwritten else ""),
        file=out,
    )
    skipped = cache.stats().value_errors  # none expected: _storable checked each value
    if written + skipped < len(storable):
        print("samplemind-cache: Redis failed during the warm-up (see the log)", file=err)
        return 1
    return 2 if rejected or skipped else 0


async def _run(
    args: argparse.Namespace,
    loaded: tuple[list[Entry], int] | None,
    out: TextIO,
    err: TextIO,
) -> int:
    settings = Settings.from_env()
    url = args.redis_url or settings.redis_url
    if not url:
        print("samplemind-cache: no Redis URL: pass --redis-url or set REDIS_URL", file=err)
        return 2
    config = settings.cache
    if args.namespace:
        config = replace(config, namespace=args.namespace)
    if getattr(args, "ttl", None) is not None:
        config = replace(config, ttl_s=args.ttl)
    config = replace(config, op_timeout_s=max(1.0, config.op_timeout_s))
    client = _client(url, args.cluster or settings.redis_cluster)
    try:
        cache = ResponseCache(client, config=config)
        if loaded is not None:
            return await _warm(cache, Path(args.file), *loaded, out, err)
        if args.command == "clear":
            before = await cache.info()
            await cache.clear(args.provider)
            await cache.purge()  # waits for the purge clear() started, then sweeps again
            after = await cache.info()
            field = args.provider or "*"
            what = f"provider {args.provider!r}" if args.provider else "all entries"
            if args.provider:  # pinned to it or answered by it: the stats count both
                gone = before["providers"][args.provider]["entries"]
            else:
                gone = before["entries"]
            print(
                f"cleared {what} in namespace {cache.namespace!r}: generation {field!r} "
                f"{before['generations'].get(field, 0)} -> {after['generations'].get(field, 0)}; "
                f"{gone} entries invalidated, {after['stale_entries']} still stale after the "
                f"purge; {after['entries']} current entries left "
                "(`samplemind-cache stats` shows the generations and entries per provider)",
                file=out,
            )
            return 0
        print(json.dumps(await cache.info(), indent=2, sort_keys=True), file=out)
        return 0
    except CacheError as exc:
        print(f"samplemind-cache: Redis failed: {exc}", file=err)
        return 1
    finally:
        await client.aclose()


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TTL_S:
        raise argparse.ArgumentTypeError(
            f"must be a finite number of seconds in (0, {MAX_TTL_S:.0f}], got {text!r}"
        )
    return value


_WARM_FORMAT = """\
line format (one JSON object per line, UTF-8; blank lines are skipped):
  {"request": {"messages": [{"role": "user", "content": "BPM of kick_808.wav?"}],
               "provider": "openai", "model": "gpt-4o-mini", "temperature": 0},
   "response": {"text": "120 BPM", "provider": "openai", "model": "gpt-4o-mini",
                "usage": {"input_tokens": 12, "output_tokens": 3}, "cost_usd": 0.00001}}
  (shown on several lines here; in the file each entry is ONE line)

  request   the ChatRequest fields: messages (required: [{"role", "content"}, ...]),
            provider, model, temperature, max_tokens, top_p, top_k, stop, seed, tools,
            tool_choice, response_format (optional; they are part of the cache key),
            request_id, timeout, stream, metadata (optional; not part of the key)
  response  text, provider (one of ollama, gemini, anthropic, openai) and model (required);
            tool_calls [{"name", "arguments", "id"}], finish_reason,
            usage {"input_tokens", "output_tokens"} (integers >= 0), cost_usd,
            estimated_cost_usd, latency_ms (numbers >= 0), attempts, metadata (optional)

output: "warmed W of N entries into namespace 'NS', R rejected" (N: non-blank lines read)
"""


def _redis_url(text: str) -> str:
    try:
        return check_redis_url(text, "--redis-url")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url",
        type=_redis_url,
        metavar="URL",
        help="redis://, rediss:// or unix:// URL (default: $REDIS_URL)",
    )
    common.add_argument(
        "--namespace", help="cache namespace (default: $SAMPLEMIND_CACHE_NAMESPACE or 'default')"
    )
    common.add_argument(
        "--cluster",
        action="store_true",
        help="the URL names a Redis Cluster node (default: $REDIS_CLUSTER)",
    )
    parser = argparse.ArgumentParser(
        prog="samplemind-cache",
        description="Warm, inspect and clear the SampleMind response cache in Redis.",
        epilog="Exit status: 0 success, 1 Redis failed, 2 usage or input error.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    warm = sub.add_parser(
        "warm",
        parents=[common],
        help="bulk-load entries from a JSONL file",
        description="Bulk-load entries from a JSONL file; bad lines are reported as "
        "FILE:LINE: reason and the others are still written.",
        epilog=_WARM_FORMAT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    warm.add_argument(
        "file", help='UTF-8 JSONL, one {"request": ..., "response": ...} per line (see below)'
    )
    warm.add_argument(
        "--ttl",
        type=_seconds,
        metavar="SECONDS",
        help="time to live of the written entries (default: $SAMPLEMIND_CACHE_TTL or 7 days)",
    )
    sub.add_parser(
        "stats",
        parents=[common],
        help="entries, stale entries and generations, per provider (JSON)",
        description="Print the namespace's generations and its current, stale (invalidated by "
        "a clear, not purged yet) and unreadable entries, in total and per provider, as JSON. "
        "An entry counts for the provider that answered it, also when the request pinned none. "
        "Reads every key of the namespace (SCAN) and the value of each entry of a request that "
        "pinned no provider: an admin command.",
    )
    clear = sub.add_parser(
        "clear",
        parents=[common],
        help="invalidate entries (O(1)) and purge them",
        description="Invalidate the namespace's entries (or one provider's) and purge them.",
    )
    clear.add_argument(
        "--provider", choices=PROVIDERS, help="only the entries of this provider (default: all)"
    )
    return parser


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Entry point of the ``samplemind-cache`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    out, err = out or sys.stdout, err or sys.stderr
    loaded: tuple[list[Entry], int] | None = None
    if args.command == "warm":
        loaded = _read_entries(Path(args.file), err)
        if loaded is None:
            return 2
    try:
        return asyncio.run(_run(args, loaded, out, err))
    except SampleMindError as exc:  # e.g. a bad namespace or TTL
        print(f"samplemind-cache: {exc}", file=err)
        return 2


if __name__ == "__main__":
    sys.exit(main())
