"""Ollama: ``POST {OLLAMA_HOST}/api/chat`` with ``"stream": false``; ``GET /api/tags``.

No auth. Sampling goes into ``options`` (``temperature``, ``num_predict``,
``top_p``, ``top_k``, ``seed``, ``stop``); tools in OpenAI's form. Reply:
``message.{content, tool_calls[].function.{name, arguments}}`` (arguments as an
object), ``done_reason``, ``prompt_eval_count`` / ``eval_count``. Error body:
``{"error": "..."}`` (e.g. 404 for an unknown model).

Streaming: the same request with ``"stream": true``; the reply is NDJSON
(``application/x-ndjson``), one object a line with the next
``message.content`` (``message.tool_calls`` arrive whole), the last with
``done: true``, ``done_reason`` and the counts (the terminal line). An
``{"error": "..."}`` line is mapped by its text ("too many requests" →
``RateLimitError``, "server busy" → 503, anything else → 500, both
``ProviderServerError``).

``DEFAULT_MODEL``, ``PRICES`` and ``CONTEXT_WINDOWS`` are this provider's entry of the
pricing catalog (:mod:`samplemind_core._pricing`); override prices with
``ProviderConfig.prices``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Final

from .._models import ChatRequest, ChatResponse
from .._pricing import CATALOG
from ._stream import JSONLinesDecoder, StreamDecoder
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

    STREAM_CONTENT_TYPE = "ndjson"

    def build_stream_request(
        self, req: ChatRequest, model: str
    ) -> tuple[str, str, dict[str, str], dict[str, Any]]:
        method, url, headers, body = self.build_request(req, model)
        body["stream"] = True
        return method, url, headers, body

    def stream_decoder(self, model: str, max_line_bytes: int) -> StreamDecoder:
        return _OllamaStream(self, model, max_line_bytes)

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


def error_status(message: str) -> int:
    """An HTTP-like status for an Ollama error line met inside a stream."""
    text = message.lower()
    if "too many requests" in text or "rate limit" in text:
        return 429
    if "server busy" in text or "overloaded" in text:
        return 503
    return 500


class _OllamaStream(JSONLinesDecoder):
    """``/api/chat`` NDJSON lines; ended by the ``done: true`` line."""

    def line(self, obj: dict[str, Any], out: deque[str]) -> None:
        error = obj.get("error")
        if error is not None:
            text = str(error.get("message", error) if isinstance(error, dict) else error)
            raise self.provider.stream_error(error_status(text), "", text)
        message = obj.get("message") or {}
        content = message.get("content")
        if content:
            self.emit(content, out)
        for call in message.get("tool_calls") or ():
            fn = call["function"]
            self.tool_calls.append(
                self.provider.tool_call(fn["name"], fn.get("arguments"), call.get("id"), self.name)
            )
        if obj.get("model"):
            self.model = str(obj["model"])
        if obj.get("done"):
            self.finish_reason = obj.get("done_reason") or "stop"
            self.input_tokens = obj.get("prompt_eval_count") or 0
            self.output_tokens = obj.get("eval_count") or 0
            self.done = True
