"""``samplemind-cache``: warm, inspect and clear the response cache from a shell.

::

    samplemind-cache warm FILE.jsonl [--redis-url URL] [--namespace NS] [--ttl SECONDS]
    samplemind-cache stats [--redis-url URL] [--namespace NS]
    samplemind-cache clear [--provider P] [--redis-url URL] [--namespace NS]

Each line of the JSONL file is ``{"request": {...ChatRequest fields...},
"response": {...ChatResponse fields...}}``. Bad lines are reported as
``FILE:LINE: reason`` and skipped; the good ones are still written. The exit
status is 0 when every line was written, 1 when a line was rejected or Redis
failed, 2 for a usage error (no Redis URL, unreadable file). The Redis URL
defaults to ``REDIS_URL`` (through :meth:`Settings.from_env`), and
``REDIS_CLUSTER=1`` (or ``--cluster``) treats it as a Redis Cluster node.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import orjson

from ._config import Settings
from ._exceptions import CacheError, SampleMindError
from ._models import ChatRequest, ChatResponse, ToolCall, Usage
from .cache import ResponseCache

__all__ = ["main", "parse_line"]

_REQUEST_FIELDS = frozenset(ChatRequest.__dataclass_fields__)
_RESPONSE_FIELDS = frozenset(ChatResponse.__dataclass_fields__) - {"cached"}


class LineError(ValueError):
    """A JSONL line that is not a valid warm entry (the message says why)."""


def parse_line(text: str) -> tuple[ChatRequest, ChatResponse]:
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
    messages = rq.get("messages")
    if (
        not isinstance(messages, list)
        or not messages
        or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
    ):
        raise LineError('"request.messages" must be a non-empty list of {"role", "content"}')
    for name in ("text", "provider", "model"):
        if not isinstance(rs.get(name), str):
            raise LineError(f'"response.{name}" must be a string')
    try:
        fields: dict[str, Any] = dict(rs)
        if "usage" in fields:
            fields["usage"] = Usage(**fields["usage"])
        if "tool_calls" in fields:
            fields["tool_calls"] = [ToolCall(**t) for t in fields["tool_calls"]]
        return ChatRequest(**rq), ChatResponse(**fields)
    except (TypeError, ValueError) as exc:
        raise LineError(f"bad field value ({exc})") from None


def _client(url: str, cluster: bool) -> Any:
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url)
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url)


def _read_entries(
    path: Path, err: TextIO
) -> tuple[list[tuple[ChatRequest, ChatResponse]], int] | None:
    """Parse the JSONL file (before the event loop starts); None when unreadable."""
    entries: list[tuple[ChatRequest, ChatResponse]] = []
    rejected = 0
    try:
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    entries.append(parse_line(line))
                except LineError as exc:
                    rejected += 1
                    print(f"{path}:{lineno}: {exc}", file=err)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"samplemind-cache: cannot read {path}: {exc}", file=err)
        return None
    return entries, rejected


async def _warm(
    cache: ResponseCache,
    entries: list[tuple[ChatRequest, ChatResponse]],
    rejected: int,
    out: TextIO,
    err: TextIO,
) -> int:
    written = await cache.warm(entries)
    skipped = cache.stats().value_errors
    print(
        f"warmed {written} of {len(entries)} entries into namespace {cache.namespace!r}; "
        f"{rejected} line(s) rejected"
        + (f"; {skipped} skipped (over the size limit or not serialisable)" if skipped else ""),
        file=out,
    )
    if written + skipped < len(entries):
        print("samplemind-cache: Redis failed during the warm-up (see the log)", file=err)
        return 1
    return 1 if rejected or skipped else 0


async def _run(
    args: argparse.Namespace,
    loaded: tuple[list[tuple[ChatRequest, ChatResponse]], int] | None,
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
    if getattr(args, "ttl", None):
        config = replace(config, ttl_s=args.ttl)
    client = _client(url, args.cluster or settings.redis_cluster)
    try:
        cache = ResponseCache(
            client, config=replace(config, op_timeout_s=max(1.0, config.op_timeout_s))
        )
        if loaded is not None:
            return await _warm(cache, *loaded, out, err)
        if args.command == "clear":
            await cache.clear(args.provider)
            await cache.purge()
            what = f"provider {args.provider!r}" if args.provider else "all entries"
            print(f"cleared {what} in namespace {cache.namespace!r}", file=out)
            return 0
        print(json.dumps(await cache.info(), indent=2, sort_keys=True), file=out)
        return 0
    except CacheError as exc:
        print(f"samplemind-cache: Redis failed: {exc}", file=err)
        return 1
    finally:
        await client.aclose()


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis-url", help="default: REDIS_URL")
    common.add_argument("--namespace", help="cache namespace (default: SAMPLEMIND_CACHE_NAMESPACE)")
    common.add_argument("--cluster", action="store_true", help="the URL names a Redis Cluster node")
    parser = argparse.ArgumentParser(prog="samplemind-cache", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    warm = sub.add_parser("warm", parents=[common], help="bulk-load entries from a JSONL file")
    warm.add_argument("file", help='JSONL, one {"request": ..., "response": ...} per line')
    warm.add_argument("--ttl", type=float, help="seconds (default: the configured TTL)")
    sub.add_parser("stats", parents=[common], help="entries and generations of the namespace")
    clear = sub.add_parser("clear", parents=[common], help="invalidate entries (O(1)) and purge")
    clear.add_argument("--provider", help="only the entries of this provider")
    return parser


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Entry point of the ``samplemind-cache`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    out, err = out or sys.stdout, err or sys.stderr
    loaded = None
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
