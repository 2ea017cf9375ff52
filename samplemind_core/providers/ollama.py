"""Ollama: ``POST {OLLAMA_HOST}/api/chat`` with ``"stream": false``; ``GET /api/tags``.

No auth. Sampling goes into ``options`` (``temperature``, ``num_predict``,
``top_p``, ``top_k``, ``seed``, ``stop``); tools in OpenAI's form. Reply:
``message.{content, tool_calls[].function.{name, arguments}}`` (arguments as an
object), ``done_reason``, ``prompt_eval_count`` / ``eval_count``. Error body:
``{"error": "..."}`` (e.g. 404 for an unknown model).

Local models cost nothing (prices 0/0). ``CONTEXT_WINDOWS`` holds the
*effective* window: Ollama truncates prompts at its ``num_ctx`` (default 4096
tokens unless the server sets ``OLLAMA_CONTEXT_LENGTH``), whatever the model
was trained for; override by listing the model in ``ProviderConfig``-driven
catalogs if your server runs with a larger ``num_ctx``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from .._models import ChatRequest, ChatResponse
from .base import Provider, tool_specs

if TYPE_CHECKING:
    from ..http import HttpClient

__all__ = ["CONTEXT_WINDOWS", "DEFAULT_MODEL", "PRICES", "OllamaProvider"]

DEFAULT_MODEL: Final = "llama3.2"

PRICES: Final[dict[str, tuple[float, float]]] = {
    "llama3.2": (0.0, 0.0),
    "llama3.1": (0.0, 0.0),
    "qwen2.5": (0.0, 0.0),
    "mistral": (0.0, 0.0),
    "gemma3": (0.0, 0.0),
    "phi4": (0.0, 0.0),
}

OLLAMA_DEFAULT_NUM_CTX: Final = 4096

CONTEXT_WINDOWS: Final[dict[str, int]] = dict.fromkeys(PRICES, OLLAMA_DEFAULT_NUM_CTX)


class OllamaProvider(Provider):
    """Adapter of a local Ollama server."""

    name = "ollama"
    DEFAULT_MODEL = DEFAULT_MODEL
    PRICES = PRICES
    CONTEXT_WINDOWS = CONTEXT_WINDOWS
    DEFAULT_CONTEXT_WINDOW = OLLAMA_DEFAULT_NUM_CTX
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
