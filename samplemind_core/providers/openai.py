"""OpenAI Chat Completions: ``POST {OPENAI_BASE_URL}/chat/completions``.

``OPENAI_BASE_URL`` already ends in ``/v1`` (default ``https://api.openai.com/v1``).
Auth: ``Authorization: Bearer <key>``. Reply: ``choices[0].message`` (``content``,
``tool_calls[].function.{name, arguments}`` with arguments as a JSON string),
``finish_reason``, ``usage.{prompt_tokens, completion_tokens}``. Error body:
``{"error": {"message", "type", "code"}}``.

``DEFAULT_MODEL``, ``PRICES`` and ``CONTEXT_WINDOWS`` are this provider's entry of the
pricing catalog (:mod:`samplemind_core._pricing`); override prices with
``ProviderConfig.prices``.
"""

from __future__ import annotations

from typing import Any, Final

from .._models import ChatRequest, ChatResponse
from .._pricing import CATALOG
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
