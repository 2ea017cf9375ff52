"""Anthropic Messages: ``POST {ANTHROPIC_BASE_URL}/v1/messages``.

Headers ``x-api-key`` and ``anthropic-version: 2023-06-01``. System messages go
to the top-level ``system``; ``max_tokens`` is required (default 1024); tools as
``{"name", "description", "input_schema"}``; ``stop`` → ``stop_sequences``
(``seed`` is not supported and is dropped). Reply: ``content`` blocks ``text``
and ``tool_use`` (``id``, ``name``, ``input``), ``stop_reason``,
``usage.{input_tokens, output_tokens}``. Error body
``{"type": "error", "error": {"type", "message"}}``; 529 ``overloaded_error``
is a retryable server error.

Streaming: the same request with ``"stream": true``; the reply is SSE:
``message_start`` (model, input tokens), per content block
``content_block_start`` / ``content_block_delta`` (``text_delta``, or
``input_json_delta`` fragments of a ``tool_use`` block's input, joined) /
``content_block_stop``, ``message_delta`` (``stop_reason``, output tokens),
``message_stop`` (the terminal event); ``ping`` and unknown event types are
ignored. ``event: error`` is mapped by its ``error.type`` (``rate_limit_error`` →
``RateLimitError``, ``overloaded_error`` / ``api_error`` → ``ProviderServerError``).

``DEFAULT_MODEL``, ``PRICES`` and ``CONTEXT_WINDOWS`` are this provider's entry of the
pricing catalog (:mod:`samplemind_core._pricing`); override prices with
``ProviderConfig.prices``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from .._models import ChatRequest, ChatResponse, ToolCall
from .._pricing import CATALOG
from ._stream import SSEDecoder, StreamDecoder
from .base import DEFAULT_MAX_OUTPUT_TOKENS, Provider, tool_specs

__all__ = ["ANTHROPIC_VERSION", "CONTEXT_WINDOWS", "DEFAULT_MODEL", "PRICES", "AnthropicProvider"]

ANTHROPIC_VERSION: Final = "2023-06-01"

_TABLES: Final = CATALOG["anthropic"]
DEFAULT_MODEL: Final = _TABLES.default_model
PRICES: Final = _TABLES.prices
CONTEXT_WINDOWS: Final = _TABLES.context_windows


class AnthropicProvider(Provider):
    """Adapter of the Anthropic Messages API."""

    name = "anthropic"
    DEFAULT_MODEL = DEFAULT_MODEL
    PRICES = PRICES
    CONTEXT_WINDOWS = CONTEXT_WINDOWS
    DEFAULT_CONTEXT_WINDOW = _TABLES.default_context_window

    def build_request(
        self, req: ChatRequest, model: str
    ) -> tuple[str, str, dict[str, str], dict[str, Any]]:
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": req.max_tokens or DEFAULT_MAX_OUTPUT_TOKENS,
            "messages": _messages(req),
        }
        if req.system:
            body["system"] = req.system
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.top_k is not None:
            body["top_k"] = req.top_k
        if req.stop:
            body["stop_sequences"] = list(req.stop)
        if req.tools:
            body["tools"] = [
                {
                    "name": s["name"],
                    "description": s["description"],
                    "input_schema": s["parameters"],
                }
                for s in tool_specs(req.tools)
            ]
            if req.tool_choice is not None:
                body["tool_choice"] = _tool_choice(req.tool_choice)
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if self._secret:
            headers["x-api-key"] = self._secret
        return "POST", f"{self.base_url}/v1/messages", headers, body

    def build_stream_request(
        self, req: ChatRequest, model: str
    ) -> tuple[str, str, dict[str, str], dict[str, Any]]:
        method, url, headers, body = self.build_request(req, model)
        body["stream"] = True
        return method, url, headers, body

    def stream_decoder(self, model: str, max_line_bytes: int) -> StreamDecoder:
        return _AnthropicStream(self, model, max_line_bytes)

    def parse_body(self, data: dict[str, Any], model: str) -> ChatResponse:
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise self.malformed("reply has no content list")
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in blocks:
            kind = block["type"]
            if kind == "text":
                texts.append(str(block["text"]))
            elif kind == "tool_use":
                calls.append(
                    self.tool_call(block["name"], block.get("input"), block.get("id"), self.name)
                )
        if not blocks and data.get("stop_reason") is None:
            raise self.malformed("reply has no content and no stop_reason")
        usage = data.get("usage") or {}
        return ChatResponse(
            text="".join(texts),
            provider=self.name,
            model=str(data.get("model") or model),
            tool_calls=calls,
            finish_reason=data.get("stop_reason"),
            usage=self.usage(usage.get("input_tokens"), usage.get("output_tokens")),
        )

    def error_details(self, data: Any) -> tuple[str, str]:
        error = data["error"]
        return str(error.get("type") or ""), str(error.get("message") or "")


def _messages(req: ChatRequest) -> list[dict[str, Any]]:
    """Neutral (OpenAI-like) messages into Anthropic's: no system, tool results as user blocks."""
    out: list[dict[str, Any]] = []
    for m in req.messages:
        role = m.get("role")
        if role == "system":
            continue
        if role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": m.get("tool_call_id", ""),
                "content": str(m.get("content") or ""),
            }
            out.append({"role": "user", "content": [block]})
        elif role == "assistant" and m.get("tool_calls"):
            blocks: list[dict[str, Any]] = []
            if m.get("content"):
                blocks.append({"type": "text", "text": str(m["content"])})
            for call in m["tool_calls"]:
                fn = call.get("function", call)
                args = fn.get("arguments") or {}
                if isinstance(args, str):
                    import orjson

                    args = orjson.loads(args) if args else {}
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id", ""),
                        "name": fn["name"],
                        "input": args,
                    }
                )
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": role, "content": m.get("content")})
    return out


def _tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(choice, dict):
        name = choice.get("name") or choice.get("function", {}).get("name")
        return {"type": "tool", "name": name} if name else choice
    return {"auto": {"type": "auto"}, "required": {"type": "any"}, "any": {"type": "any"}}.get(
        choice, {"type": "none"} if choice == "none" else {"type": "auto"}
    )


ERROR_STATUS: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""The HTTP status Anthropic documents for each error type (used for error events)."""


class _AnthropicStream(SSEDecoder):
    """Messages stream events; ``tool_use`` inputs are joined from ``input_json_delta``."""

    def __init__(self, provider: Provider, model: str, max_line_bytes: int) -> None:
        super().__init__(provider, model, max_line_bytes)
        self.blocks: dict[int, dict[str, Any]] = {}

    def event(self, name: str, data: str, out: deque[str]) -> None:
        obj = self.json(data)
        kind = name or str(obj.get("type") or "")
        if kind == "content_block_delta":
            delta = obj["delta"]
            dtype = delta.get("type")
            if dtype == "text_delta":
                self.emit(delta["text"], out)
            elif dtype == "input_json_delta":
                self.blocks[int(obj["index"])]["json"].append(str(delta["partial_json"]))
        elif kind == "content_block_start":
            block = obj["content_block"]
            index = int(obj["index"])
            if block["type"] == "text":
                self.emit(block.get("text") or "", out)
            elif block["type"] == "tool_use":
                self.blocks[index] = {
                    "id": block.get("id"),
                    "name": block.get("name"),
                    "input": block.get("input") or {},
                    "json": [],
                }
        elif kind == "message_start":
            message = obj["message"]
            self.model = str(message.get("model") or self.model)
            usage = message.get("usage") or {}
            self.input_tokens = usage.get("input_tokens") or 0
            self.output_tokens = usage.get("output_tokens") or 0
        elif kind == "message_delta":
            stop = (obj.get("delta") or {}).get("stop_reason")
            if stop:
                self.finish_reason = stop
            usage = obj.get("usage") or {}
            if usage.get("output_tokens") is not None:
                self.output_tokens = usage["output_tokens"]
            if usage.get("input_tokens"):
                self.input_tokens = usage["input_tokens"]
        elif kind == "message_stop":
            self.tool_calls = [
                self.provider.tool_call(
                    b["name"], "".join(b["json"]) or b["input"], b["id"], self.name
                )
                for _, b in sorted(self.blocks.items())
            ]
            self.done = True
        elif kind == "error":
            error = obj.get("error") or {}
            etype = str(error.get("type") or "")
            raise self.provider.stream_error(
                ERROR_STATUS.get(etype, 500), etype, str(error.get("message") or "")
            )
        # ping, content_block_stop and event types added later carry no text
