"""Lookups in per-model tables (prices, context windows), shared by the adapters and the router.

Kept apart from ``providers`` so that the router can use it without importing httpx.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = ["lookup"]

_T = TypeVar("_T")


def lookup(table: Mapping[str, _T], model: str) -> _T | None:
    """``table[model]``, else the entry of the longest key that prefixes ``model``.

    So ``gpt-4o-mini-2024-07-18`` finds ``gpt-4o-mini`` (not ``gpt-4o``) and
    ``llama3.2:3b`` finds ``llama3.2``.

    >>> lookup({"gpt-4o": 1, "gpt-4o-mini": 2}, "gpt-4o-mini-2024-07-18")
    2
    >>> lookup({"gpt-4o": 1}, "claude") is None
    True
    """
    if model in table:
        return table[model]
    best: str | None = None
    for key in table:
        if model.startswith(key) and (best is None or len(key) > len(best)):
            best = key
    return table[best] if best is not None else None
