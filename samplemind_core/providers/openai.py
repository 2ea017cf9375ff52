"""OpenAI Chat Completions: ``POST {OPENAI_BASE_URL}/chat/completions``.

``OPENAI_BASE_URL`` already ends in ``/v1`` (default ``https://api.openai.com/v1``).
Auth: ``Authorization: Bearer <key>``. Reply: ``choices[0].message`` (``content``,
``tool_calls[].function.{name, arguments}`` with arguments as a JSON string),
``finish_reason``, ``usage.{prompt_tokens, completion_tokens}``. Error body:
``{"error": {"message", "type", "code"}}``.

Streaming: the same request with ``"stream": true`` and
``"stream_options": {"include_usage": true}``; the reply is SSE, one
``chat.completion.chunk`` per ``data:`` event (a first role chunk, ``delta.content``
fragments, ``delta.tool_calls[]`` fragments keyed by ``index`` whose
``function.arguments`` are joined, a chunk with ``finish_reason``), then a last
chunk with ``choices: []`` and the ``usage``, then ``data: [DONE]`` (the terminal
event). An ``{"error": {...}}`` event is mapped by its ``type``/``code``
(``rate_limit_exceeded`` → ``RateLimitError``, ``server_error`` → ``ProviderServerError``).

``DEFAULT_MODEL``, ``PRICES`` and ``CONTEXT_WINDOWS`` are this provider's entry of the
pricing catalog (:mod:`samplemind_core._pricing`); override prices with
``ProviderConfig.prices``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

from .._models import ChatRequest, ChatResponse
from .._pricing import CATALOG
from ._stream import SSEDecoder, StreamDecoder
from .base import Provider, tool_specs

__all__ = ["CONTEXT_WINDOWS", "DEFAULT_MODEL", "PRICES", "OpenAIProvider"]

_TABLES: Final = CATALOG["openai"]
DEFAULT_MODEL: Final = _TABLES.default_model
PRICES: Final = _TABLES.prices
CONTEXT_WINDOWS: Final = _TABLES.context_windows


def _reasoning_model(model: str) -> bool:
    """o-series and gpt-5 models take ``max_completion_tokens`` and reject ``max_tokens``."""
    return model.startswith(("o1", "o3", "o4", "gpt-5"))


class OpenAIProvider(Provider):
    """Adapter of the OpenAI Chat Completions API (and compatible servers)."""

    name = "openai"
    DEFAULT_MODEL = DEFAULT_MODEL
    PRICES = PRICES
    CONTEXT_WINDOWS = CONTEXT_WINDOWS
    DEFAULT_CONTEXT_WINDOW = _TABLES.default_context_window

    def build_request(
        self, req: ChatRequest, model: str
    ) -> tuple[str, str, dict[str, str], dict[str, Any]]:
        body: dict[str, Any] = {"model": model, "messages": [dict(m) for m in req.messages]}
        if req.temperature is not None:
            body["temperature"] = req.temperature
        if req.max_tokens is not None:
            key = "max_completion_tokens" if _reasoning_model(model) else "max_tokens"
            body[key] = req.max_tokens
        if req.top_p is not None:
            body["top_p"] = req.top_p
        if req.stop:
            body["stop"] = list(req.stop)
        if req.seed is not None:
            body["seed"] = req.seed
        if req.tools:
            body["tools"] = [{"type": "function", "function": s} for s in tool_specs(req.tools)]
            if req.tool_choice is not None:
                body["tool_choice"] = _tool_choice(req.tool_choice)
        if req.response_format is not None:
            body["response_format"] = req.response_format
        headers = {"authorization": f"Bearer {self._secret}"} if self._secret else {}
        return "POST", f"{self.base_url}/chat/completions", headers, body

    def build_stream_request(
        self, req: ChatRequest, model: str
    ) -> tuple[str, str, dict[str, str], dict[str, Any]]:
        method, url, headers, body = self.build_request(req, model)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        return method, url, headers, body

    def stream_decoder(self, model: str, max_line_bytes: int) -> StreamDecoder:
        return _OpenAIStream(self, model, max_line_bytes)

    def parse_body(self, data: dict[str, Any], model: str) -> ChatResponse:
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices:
            raise self.malformed("reply has no choices")
        choice = choices[0]
        message = choice["message"]
        calls = [
            self.tool_call(
                call["function"]["name"],
                call["function"].get("arguments"),
                call.get("id"),
                self.name,
            )
            for call in message.get("tool_calls") or []
        ]
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise self.malformed("message content is not a string")
        usage = data.get("usage") or {}
        return ChatResponse(
            text=content or "",
            provider=self.name,
            model=str(data.get("model") or model),
            tool_calls=calls,
            finish_reason=choice.get("finish_reason"),
            usage=self.usage(usage.get("prompt_tokens"), usage.get("completion_tokens")),
        )

    def error_details(self, data: Any) -> tuple[str, str]:
        error = data["error"]
        if isinstance(error, str):
            return "", error
        return str(error.get("type") or error.get("code") or ""), str(error.get("message") or "")


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice  # "auto" | "none" | "required"
    if "name" in choice and "type" not in choice:
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


_RATE_LIMIT_KINDS: Final = frozenset(
    {"rate_limit_exceeded", "requests", "tokens", "rate_limit_error", "insufficient_quota"}
)
_CLIENT_KINDS: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "context_length_exceeded": 400,
}


def error_status(error: Any) -> int:
    """An HTTP-like status for an OpenAI error object met inside a stream."""
    if not isinstance(error, dict):
        return 500
    code, kind = str(error.get("code") or ""), str(error.get("type") or "")
    status = error.get("status")
    if isinstance(status, int) and 400 <= status < 600:
        return int(status)
    if code in _RATE_LIMIT_KINDS or kind in _RATE_LIMIT_KINDS:
        return 429
    for name in (code, kind):
        if name in _CLIENT_KINDS:
            return _CLIENT_KINDS[name]
    if code.isdigit() and 400 <= int(code) < 600:
        return int(code)
    return 500


class _OpenAIStream(SSEDecoder):
    """Chat completion chunks; tool-call fragments are joined by index."""

    def __init__(self, provider: Provider, model: str, max_line_bytes: int) -> None:
        super().__init__(provider, model, max_line_bytes)
        self.calls: dict[int, dict[str, Any]] = {}

    def event(self, name: str, data: str, out: deque[str]) -> None:
        if data == "[DONE]":
            if self.finish_reason is None:
                # OpenAI ends every finished choice with a finish_reason; a server that
                # stops a reply early (llama.cpp's interrupted requests) sends [DONE]
                # without one. That reply is cut, not complete: never a stored answer.
                raise self.provider.malformed("the stream ended ([DONE]) without a finish_reason")
            self.done = True
            self.assemble()
            return
        obj = self.json(data)
        error = obj.get("error")
        if error is not None or name == "error":
            kind, message = self.provider.error_details(obj) if error is not None else ("", data)
            raise self.provider.stream_error(error_status(error), kind, message)
        if obj.get("model"):
            self.model = str(obj["model"])
        usage = obj.get("usage")
        if usage:
            self.input_tokens = usage.get("prompt_tokens") or 0
            self.output_tokens = usage.get("completion_tokens") or 0
        choices = obj.get("choices")
        if not isinstance(choices, list):
            raise self.provider.malformed("a stream chunk has no choices list")
        for choice in choices:
            if choice.get("index", 0) != 0:
                continue  # n > 1 is not requested: only the first choice counts
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                self.emit(content, out)
            for call in delta.get("tool_calls") or ():
                slot = self.calls.setdefault(
                    int(call.get("index", len(self.calls))), {"id": None, "name": "", "args": []}
                )
                if call.get("id"):
                    slot["id"] = call["id"]
                fn = call.get("function") or {}
                if fn.get("name"):
                    slot["name"] = fn["name"]
                if fn.get("arguments"):
                    slot["args"].append(str(fn["arguments"]))
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def assemble(self) -> None:
        self.tool_calls = [
            self.provider.tool_call(c["name"], "".join(c["args"]), c["id"], self.name)
            for _, c in sorted(self.calls.items())
        ]
