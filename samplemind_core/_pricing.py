"""The pricing catalog: default model, prices and context windows of every provider.

Data only (no I/O, no ``httpx``): the provider adapters and the router both
read it, so their figures cannot disagree. Prices are USD per million tokens
``(input, output)``, list prices as of 2025-09 (OpenAI standard tier without
cached-input discount; Anthropic without prompt-caching discounts; Gemini
paid tier, ``gemini-2.5-pro`` for prompts of at most 200k tokens, 2.50/15.00
above); override per model with ``ProviderConfig.prices``.

Ollama's windows are the *effective* ones: Ollama truncates prompts at its
``num_ctx`` (4096 tokens unless the server sets ``OLLAMA_CONTEXT_LENGTH``),
whatever the model was trained for. Local models cost nothing.

Estimates before a call use :func:`estimate_tokens` (prompt characters / 4,
rounded up; ``max_tokens`` or :data:`DEFAULT_OUTPUT_TOKENS` of output) and
:func:`cost_usd`, the one cost formula.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeVar

if TYPE_CHECKING:
    from ._models import ChatRequest

__all__ = [
    "CATALOG",
    "DEFAULT_OUTPUT_TOKENS",
    "OLLAMA_DEFAULT_NUM_CTX",
    "ProviderTables",
    "cost_usd",
    "estimate_tokens",
    "lookup",
]

_T = TypeVar("_T")

DEFAULT_OUTPUT_TOKENS: Final = 1024
"""Output tokens assumed when ``max_tokens`` is unset (also the Anthropic ``max_tokens`` default)."""

OLLAMA_DEFAULT_NUM_CTX: Final = 4096
"""Ollama's default ``num_ctx``: the effective context window of a local model."""


@dataclass(frozen=True, slots=True)
class ProviderTables:
    """One provider's entry of the catalog.

    ``default_context_window`` is what an adapter assumes for a model its
    table does not list (the router treats such a model as of unknown size).
    """

    default_model: str
    prices: Mapping[str, tuple[float, float]]
    context_windows: Mapping[str, int]
    default_context_window: int


_OLLAMA_PRICES: Final[dict[str, tuple[float, float]]] = {
    "llama3.2": (0.0, 0.0),
    "llama3.1": (0.0, 0.0),
    "qwen2.5": (0.0, 0.0),
    "mistral": (0.0, 0.0),
    "gemma3": (0.0, 0.0),
    "phi4": (0.0, 0.0),
}

_OPENAI_PRICES: Final[dict[str, tuple[float, float]]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o3": (2.00, 8.00),
    "o4-mini": (1.10, 4.40),
}

_ANTHROPIC_PRICES: Final[dict[str, tuple[float, float]]] = {
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-3-haiku": (0.25, 1.25),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}

_GEMINI_PRICES: Final[dict[str, tuple[float, float]]] = {
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.5-pro": (1.25, 10.00),
    "gemini-2.0-flash": (0.10, 0.40),
    "gemini-2.0-flash-lite": (0.075, 0.30),
}

CATALOG: Final[Mapping[str, ProviderTables]] = {
    "ollama": ProviderTables(
        "llama3.2",
        _OLLAMA_PRICES,
        dict.fromkeys(_OLLAMA_PRICES, OLLAMA_DEFAULT_NUM_CTX),
        OLLAMA_DEFAULT_NUM_CTX,
    ),
    "openai": ProviderTables(
        "gpt-4o-mini",
        _OPENAI_PRICES,
        {
            "gpt-4o-mini": 128_000,
            "gpt-4o": 128_000,
            "gpt-4.1": 1_047_576,
            "gpt-4.1-mini": 1_047_576,
            "gpt-4.1-nano": 1_047_576,
            "gpt-5": 400_000,
            "gpt-5-mini": 400_000,
            "gpt-5-nano": 400_000,
            "o3": 200_000,
            "o4-mini": 200_000,
        },
        128_000,
    ),
    "anthropic": ProviderTables(
        "claude-3-5-haiku-latest",
        _ANTHROPIC_PRICES,
        dict.fromkeys(_ANTHROPIC_PRICES, 200_000),
        200_000,
    ),
    "gemini": ProviderTables(
        "gemini-2.5-flash",
        _GEMINI_PRICES,
        dict.fromkeys(_GEMINI_PRICES, 1_048_576),
        1_048_576,
    ),
}
"""Provider name -> its tables (every name of :data:`~samplemind_core.PROVIDERS`)."""


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


def estimate_tokens(request: ChatRequest) -> tuple[int, int]:
    """``(input_tokens, output_tokens)`` estimated before the call.

    Input: prompt characters / 4, rounded up. Output: ``max_tokens`` or
    :data:`DEFAULT_OUTPUT_TOKENS`.

    >>> from samplemind_core import ChatRequest
    >>> estimate_tokens(ChatRequest(messages=[{"role": "user", "content": "x" * 10}], max_tokens=5))
    (3, 5)
    """
    chars = request.prompt_chars()
    return (chars + 3) // 4, request.max_tokens or DEFAULT_OUTPUT_TOKENS


def cost_usd(input_tokens: int, output_tokens: int, price: tuple[float, float]) -> float:
    """USD of the tokens at ``price`` (USD per million input tokens, per million output tokens).

    >>> cost_usd(2_000_000, 1_000_000, (2.5, 10.0))
    15.0
    """
    return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000
