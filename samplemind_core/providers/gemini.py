"""Google Gemini: ``POST {GEMINI_BASE_URL}/v1beta/models/{model}:generateContent``.

Header ``x-goog-api-key`` (never the ``?key=`` query, which would put the key
in URLs). ``contents`` with roles ``user`` / ``model``; system messages in
``systemInstruction``; ``generationConfig`` (``temperature``,
``maxOutputTokens``, ``topP``, ``topK``, ``stopSequences``, ``seed``,
``responseMimeType``); tools as ``[{"functionDeclarations": [...]}]``. Reply:
``candidates[0].content.parts`` (``text`` / ``functionCall.{name, args}``),
``finishReason``, ``usageMetadata.{promptTokenCount, candidatesTokenCount,
thoughtsTokenCount}`` (thinking tokens are billed as output). Error body
``{"error": {"code", "message", "status"}}``; a bad key is a 400 with
"API key not valid", mapped to ``AuthenticationError``.

Streaming: ``POST .../models/{model}:streamGenerateContent?alt=sse`` with the
same body; each SSE ``data:`` event is a whole ``GenerateContentResponse``
holding the next text parts (``functionCall`` parts arrive whole); the last one
has ``finishReason`` and the final ``usageMetadata``. The body ends after it
(there is no ``[DONE]``): a stream that ends before a ``finishReason`` is
malformed. An ``{"error": {"code", "status", "message"}}`` event is mapped by
its ``code`` (429 → ``RateLimitError``, 5xx → ``ProviderServerError``).

``DEFAULT_MODEL``, ``PRICES`` and ``CONTEXT_WINDOWS`` are this provider's entry of the
pricing catalog (:mod:`samplemind_core._pricing`); override prices with
``ProviderConfig.prices``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final
from urllib.parse import quote

from .._exceptions import BadRequestError
from .._models import ChatRequest, ChatResponse, ToolCall
from .._pricing import CATALOG
from ._stream import SSEDecoder, StreamDecoder
from .base import Provider, tool_specs

__all__ = ["CONTEXT_WINDOWS", "DEFAULT_MODEL", "PRICES", "GeminiProvider"]

_TABLES: Final = CATALOG["gemini"]
DEFAULT_MODEL: Final = _TABLES.default_model
PRICES: Final = _TABLES.prices
CONTEXT_WINDOWS: Final = _TABLES.context_windows


class GeminiProvider(Provider):
    """Adapter of the Gemini API (generateContent)."""

    name = "gemini"
    DEFAULT_MODEL = DEFAULT_MODEL
    PRICES = PRICES
    CONTEXT_WINDOWS = CONTEXT_WINDOWS
    DEFAULT_CONTEXT_WINDOW = _TABLES.default_context_window

    def build_request(
        self, req: ChatRequest, model: str
    ) -> tuple[str, str, dict[str, str], dict[str, Any]]:
        body: dict[str, Any] = {"contents": _contents(req)}
        if req.system:
            body["systemInstruction"] = {"parts": [{"text": req.system}]}
        gen: dict[str, Any] = {}
        if req.temperature is not None:
            gen["temperature"] = req.temperature
        if req.max_tokens is not None:
            gen["maxOutputTokens"] = req.max_tokens
        if req.top_p is not None:
            gen["topP"] = req.top_p
        if req.top_k is not None:
            gen["topK"] = req.top_k
        if req.stop:
            gen["stopSequences"] = list(req.stop)
        if req.seed is not None:
            gen["seed"] = req.seed
        if (req.response_format or {}).get("type") in ("json_object", "json_schema"):
            gen["responseMimeType"] = "application/json"
        if gen:
            body["generationConfig"] = gen
        if req.tools:
            body["tools"] = [{"functionDeclarations": tool_specs(req.tools)}]
            if req.tool_choice is not None:
                body["toolConfig"] = {"functionCallingConfig": _tool_choice(req.tool_choice)}
        headers = {"x-goog-api-key": self._secret} if self._secret else {}
        url = f"{self.base_url}/v1beta/models/{quote(model, safe='.-_')}:generateContent"
        return "POST", url, headers, body

    def build_stream_request(
        self, req: ChatRequest, model: str
    ) -> tuple[str, str, dict[str, str], dict[str, Any]]:
        method, url, headers, body = self.build_request(req, model)
        url = url[: -len(":generateContent")] + ":streamGenerateContent?alt=sse"
        return method, url, headers, body

    def stream_decoder(self, model: str, max_line_bytes: int) -> StreamDecoder:
        return _GeminiStream(self, model, max_line_bytes)

    def parse_body(self, data: dict[str, Any], model: str) -> ChatResponse:
        candidates = data.get("candidates")
        if not isinstance(candidates, list) or not candidates:
            reason = (data.get("promptFeedback") or {}).get("blockReason")
            if reason:
                raise BadRequestError(
                    f"{self.name}: prompt blocked ({reason})", provider=self.name, status=200
                )
            raise self.malformed("reply has no candidates")
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        texts: list[str] = []
        calls: list[ToolCall] = []
        for part in parts:
            if "functionCall" in part:
                fc = part["functionCall"]
                calls.append(self.tool_call(fc["name"], fc.get("args"), fc.get("id"), self.name))
            elif "text" in part and not part.get("thought"):
                texts.append(str(part["text"]))
        if not parts and not candidate.get("finishReason"):
            raise self.malformed("candidate has no parts and no finishReason")
        meta = data.get("usageMetadata") or {}
        output = int(meta.get("candidatesTokenCount") or 0) + int(
            meta.get("thoughtsTokenCount") or 0
        )
        return ChatResponse(
            text="".join(texts),
            provider=self.name,
            model=str(data.get("modelVersion") or model),
            tool_calls=calls,
            finish_reason=candidate.get("finishReason"),
            usage=self.usage(meta.get("promptTokenCount"), output),
        )

    def error_details(self, data: Any) -> tuple[str, str]:
        error = data["error"]
        return str(error.get("status") or ""), str(error.get("message") or "")

    def is_auth_error(self, kind: str, message: str) -> bool:
        return kind in ("UNAUTHENTICATED", "PERMISSION_DENIED") or "API key not valid" in message


def _contents(req: ChatRequest) -> list[dict[str, Any]]:
    """Neutral messages into Gemini ``contents`` (assistant → model, tool → functionResponse)."""
    out: list[dict[str, Any]] = []
    for m in req.messages:
        role = m.get("role")
        if role == "system":
            continue
        if role == "tool":
            response = {"name": m.get("name", ""), "response": {"content": m.get("content")}}
            out.append({"role": "user", "parts": [{"functionResponse": response}]})
        else:
            out.append(
                {
                    "role": "model" if role == "assistant" else "user",
                    "parts": [{"text": str(m.get("content") or "")}],
                }
            )
    return out


def _tool_choice(choice: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(choice, dict):
        name = choice.get("name") or choice.get("function", {}).get("name")
        return {"mode": "ANY", "allowedFunctionNames": [name]} if name else {"mode": "AUTO"}
    return {"mode": {"none": "NONE", "required": "ANY", "any": "ANY"}.get(choice, "AUTO")}


class _GeminiStream(SSEDecoder):
    """``GenerateContentResponse`` events; ended by the chunk with a ``finishReason``."""

    def __init__(self, provider: Provider, model: str, max_line_bytes: int) -> None:
        super().__init__(provider, model, max_line_bytes)
        self.saw_finish = False

    def ended(self) -> bool:
        return self.saw_finish

    def event(self, name: str, data: str, out: deque[str]) -> None:
        obj = self.json(data)
        error = obj.get("error")
        if error is not None:
            if not isinstance(error, dict):
                error = {"message": str(error)}
            code = error.get("code")
            status = code if isinstance(code, int) and 400 <= code < 600 else 500
            raise self.provider.stream_error(
                status, str(error.get("status") or ""), str(error.get("message") or "")
            )
        if obj.get("modelVersion"):
            self.model = str(obj["modelVersion"])
        meta = obj.get("usageMetadata")
        if meta:
            self.input_tokens = meta.get("promptTokenCount") or 0
            self.output_tokens = int(meta.get("candidatesTokenCount") or 0) + int(
                meta.get("thoughtsTokenCount") or 0
            )
        candidates = obj.get("candidates")
        if not candidates:
            reason = (obj.get("promptFeedback") or {}).get("blockReason")
            if reason:
                raise BadRequestError(
                    f"{self.name}: prompt blocked ({reason})", provider=self.name, status=200
                )
            return  # a usage-only chunk
        candidate = candidates[0]
        for part in (candidate.get("content") or {}).get("parts") or ():
            if "functionCall" in part:
                fc = part["functionCall"]
                self.tool_calls.append(
                    self.provider.tool_call(fc["name"], fc.get("args"), fc.get("id"), self.name)
                )
            elif "text" in part and not part.get("thought"):
                self.emit(part["text"], out)
        if candidate.get("finishReason"):
            self.finish_reason = candidate["finishReason"]
            self.saw_finish = True
