"""Ollama: ``POST {OLLAMA_HOST}/api/chat`` with ``"stream": false``; ``GET /api/tags``.

No auth. Sampling goes into ``options`` (``temperature``, ``num_predict``,
``top_p``, ``top_k``, ``seed``, ``stop``); tools in OpenAI's form. Reply:
``message.{content, tool_calls[].function.{name, arguments}}`` (arguments as an
object), ``done_reason``, ``prompt_eval_count`` / ``eval_count``. Error body:
``{"error": "..."}`` (e.g. 404 for an unknown model).

``DEFAULT_MODEL``, ``PRICES`` and ``CONTEXT_WINDOWS`` are this provider's entry of the
pricing catalog (:mod:`samplemind_core._pricing`); override prices with
``ProviderConfig.prices``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .._models import ChatRequest, ChatResponse
from .._pricing import CATALOG
from .base import Provider, tool_specs

if TYPE_CHECKING:
    from ..http import HttpClient

__all__ = ["CONTEXT_WINDOWS", "DEFAULT_MODEL", "PRICES", "OllamaProvider"]

_TABLES: Final = CATALOG["ollama"]
DEFAULT_MODEL: Final = _TABLES.default_model
PRICES: Final = _TABLES.prices
CONTEXT_WINDOWS: Final = _TABLES.context_windows


class OllamaProvider(Provider):
    """Adapter of a local Ollama server."""

    name = "ollama"
    DEFAULT_MODEL = DEFAULT_MODEL
    PRICES = PRICES
    CONTEXT_WINDOWS = CONTEXT_WINDOWS
    DEFAULT_CONTEXT_WINDOW = _TABLES.default_context_window
    LOCAL = True
    NEEDS_KEY = False

    def build_request(
        self, req: ChatRequest, model: str
    ) -> tuple[str, str, dict[str, str], dict[str, Any]]:
        options: dict[str, Any] = {}
        if req.temperature is not None:
            options["temperature"] = req.temperature
        if req.max_tokens is not None:
            options["num_predict"] = req.max_tokens
        if req.top_p is not None:
            options["top_p"] = req.top_p
        if req.top_k is not None:
            options["top_k"] = req.top_k
        if req.seed is not None:
            options["seed"] = req.seed
        if req.stop:
            options["stop"] = list(req.stop)
        body: dict[str, Any] = {
            "model": model,
            "messages": [dict(m) for m in req.messages],
            "stream": False,
        }
        if options:
            body["options"] = options
        if req.tools:
            body["tools"] = [{"type": "function", "function": s} for s in tool_specs(req.tools)]
        fmt = (req.response_format or {}).get("type")
        if fmt == "json_object":
            body["format"] = "json"
        elif fmt == "json_schema":
            body["format"] = (
                (req.response_format or {}).get("json_schema", {}).get("schema", "json")
            )
        return "POST", f"{self.base_url}/api/chat", {}, body

    def parse_body(self, data: dict[str, Any], model: str) -> ChatResponse:
        message = data.get("message")
        if not isinstance(message, dict):
            raise self.malformed("reply has no message")
        content = message.get("content") or ""
        if not isinstance(content, str):
            raise self.malformed("message content is not a string")
        calls = [
            self.tool_call(
                call["function"]["name"],
                call["function"].get("arguments"),
                call.get("id"),
                self.name,
            )
            for call in message.get("tool_calls") or []
        ]
        return ChatResponse(
            text=content,
            provider=self.name,
            model=str(data.get("model") or model),
            tool_calls=calls,
            finish_reason=data.get("done_reason") or ("stop" if data.get("done") else None),
            usage=self.usage(data.get("prompt_eval_count"), data.get("eval_count")),
        )

    def error_details(self, data: Any) -> tuple[str, str]:
        error = data["error"]
        return "", str(error if isinstance(error, str) else error.get("message", ""))

    async def list_models(self, http: HttpClient) -> list[str]:
        """Names of the models the server has pulled (``GET /api/tags``)."""
        response = await http.request("GET", f"{self.base_url}/api/tags")
        if response.status_code >= 400:
            raise self.error_for(response)
        try:
            return [str(m["name"]) for m in response.json()["models"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise self.malformed("/api/tags reply does not list models") from exc
