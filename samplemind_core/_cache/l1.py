"""The in-process L1: an LRU of decoded responses, bounded in entries and bytes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._models import ChatResponse, Usage

__all__ = ["L1", "L1Entry", "clone"]


@dataclass(slots=True)
class L1Entry:
    response: ChatResponse  # the template, already cached=True and cost_usd=0.0
    provider: str
    provider_gen: int
    expires: float  # on the cache's clock
    size: int
    latency_ms: float  # original, for stats
    cost_usd: float
    extra: Any = None  # the envelope's optional trailing field (a stream's chunk boundaries)


def clone(t: ChatResponse, latency_ms: float) -> ChatResponse:
    """A cheap copy of an L1 template (top-level lists/dicts copied, not shared)."""
    return ChatResponse(
        t.text,
        t.provider,
        t.model,
        t.tool_calls.copy() if t.tool_calls else [],
        t.finish_reason,
        Usage(t.usage.input_tokens, t.usage.output_tokens),
        0.0,
        t.estimated_cost_usd,
        latency_ms,
        True,
        t.attempts,
        t.metadata.copy(),
    )


class L1:
    """At most ``max_entries`` entries and ``max_bytes`` encoded bytes; the least recently used go first."""

    __slots__ = ("_entries", "bytes", "max_bytes", "max_entries", "ttl_s")

    def __init__(self, max_entries: int, max_bytes: int, ttl_s: float) -> None:
        self._entries: OrderedDict[str, L1Entry] = OrderedDict()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def hit(self, key: str, now: float) -> L1Entry | None:
        """The live entry of ``key`` (now the most recent), or None; an expired one is dropped."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires > now:
            self._entries.move_to_end(key)
            return entry
        self.drop(key)
        return None

    def put(self, key: str, entry: L1Entry) -> None:
        """Store ``entry`` (not when it alone is over ``max_bytes``), evicting the oldest."""
        entries = self._entries
        if entry.size > self.max_bytes:
            return
        self.drop(key)
        entries[key] = entry
        self.bytes += entry.size
        while len(entries) > self.max_entries or self.bytes > self.max_bytes:
            _, old = entries.popitem(last=False)
            self.bytes -= old.size

    def drop(self, key: str) -> None:
        if (old := self._entries.pop(key, None)) is not None:
            self.bytes -= old.size

    def drop_cleared(self, gens: Mapping[str, int]) -> None:
        """Drop the entries whose provider's generation is no longer theirs."""
        for key in [
            k for k, e in self._entries.items() if gens.get(e.provider, 0) != e.provider_gen
        ]:
            self.drop(key)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
