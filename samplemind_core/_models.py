"""Request and response types shared by every part of the layer.

Plain slotted dataclasses: cheap to build, cheap to import, no validation
framework on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ChatRequest", "ChatResponse", "Message", "ToolCall", "Usage"]

Message = dict[str, Any]
"""One chat message: ``{"role": "user" | "system" | "assistant" | "tool", "content": str, ...}``."""


@dataclass(slots=True)
class ChatRequest:
    """A chat completion request, provider-neutral.

    ``provider`` and ``model`` are optional: when absent the router picks the
    chain and each provider's default model; when given they pin the first choice.

    Fields that change the answer (provider, model, messages, sampling
    parameters, tools) are part of the cache key; ``request_id``, ``timeout``,
    ``stream`` and ``metadata`` are not.
    """

    messages: list[Message]
    provider: str | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    # Not part of the fingerprint:
    stream: bool = False
    timeout: float | None = None
    request_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def system(self) -> str:
        """The concatenated text of the system messages ('' when none)."""
        return "\n".join(
            str(m.get("content", "")) for m in self.messages if m.get("role") == "system"
        )

    def prompt_chars(self) -> int:
        """Characters of text in the prompt (used for token estimates)."""
        return sum(len(str(m.get("content") or "")) for m in self.messages)


@dataclass(slots=True)
class Usage:
    """Token usage as reported by the provider (0 when it did not say)."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(slots=True)
class ToolCall:
    """A tool (function) call requested by the model; ``arguments`` is parsed JSON."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(slots=True)
class ChatResponse:
    """A provider's reply plus the layer's metadata.

    ``cached`` says whether it came from the cache, ``attempts`` how many HTTP
    attempts the reply took (retries included), ``latency_ms`` the time the
    layer spent, ``cost_usd`` the actual cost from the reply's usage and the
    price table, ``estimated_cost_usd`` the router's estimate before the call.
    """

    text: str
    provider: str
    model: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    estimated_cost_usd: float | None = None
    latency_ms: float = 0.0
    cached: bool = False
    attempts: int = 1
    metadata: dict[str, Any] = field(default_factory=dict)
