"""The provider interface and the helpers every adapter shares.

An adapter turns a provider-neutral :class:`~samplemind_core.ChatRequest` into
one provider's wire request (:meth:`Provider.build_request`), and its reply
into a :class:`~samplemind_core.ChatResponse` (:meth:`Provider.parse_response`).
:meth:`Provider.complete` does both around the shared
:class:`~samplemind_core.http.HttpClient` (which retries; the adapter maps the
final reply into the exception tree).

Error mapping (:meth:`Provider.error_for`): 429 → ``RateLimitError`` (with
``retry_after``), 401/403 → ``AuthenticationError``, other 4xx →
``BadRequestError``, 5xx (and Anthropic's 529) → ``ProviderServerError``; a 2xx
that is not JSON, not the promised shape, or has no choice →
``MalformedResponseError``. Every message is passed through :meth:`redact`:
provider error bodies can echo the API key.

Streaming (:meth:`Provider.open_stream`): the adapter sends its native
streaming request (:meth:`Provider.build_stream_request`) on
:meth:`HttpClient.open_stream <samplemind_core.http.HttpClient.open_stream>` and returns a
:class:`ProviderStream` reading the body with the adapter's decoder
(:meth:`Provider.stream_decoder`). An error event inside the stream is mapped
like an error reply (:meth:`Provider.stream_error`).

Tools in ``ChatRequest.tools`` may be given neutrally
(``{"name", "description", "parameters"}``) or in OpenAI's form
(``{"type": "function", "function": {...}}``).
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

import httpx
import orjson

from .._config import ProviderConfig, mask_url, mask_urls_in
from .._exceptions import (
    AuthenticationError,
    BadRequestError,
    MalformedResponseError,
    ProviderError,
    ProviderServerError,
    RateLimitError,
)
from .._models import ChatRequest, ChatResponse, ToolCall, Usage
from .._pricing import DEFAULT_OUTPUT_TOKENS, cost_usd, estimate_tokens, lookup
from ._stream import ProviderStream, StreamDecoder

if TYPE_CHECKING:
    from ..http import HttpClient, StreamResponse

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "Provider",
    "ProviderStream",
    "lookup",
    "redact",
    "tool_specs",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT_TOKENS: Final = DEFAULT_OUTPUT_TOKENS
"""Output tokens assumed when ``max_tokens`` is unset (the pricing catalog's ``DEFAULT_OUTPUT_TOKENS``)."""

_KEY_PATTERNS: Final = re.compile(
    r"(sk-[A-Za-z0-9_\-*]{6,}|AIza[0-9A-Za-z_\-]{10,}|Bearer\s+[A-Za-z0-9_\-*]{6,})"
)
_MAX_MESSAGE: Final = 500


def redact(text: str, secret: str | None) -> str:
    """``text`` without ``secret``, anything shaped like an API key, or a URL's password.

    >>> redact("Incorrect API key provided: sk-abc12*****wxyz. See docs.", None)
    'Incorrect API key provided: [REDACTED]. See docs.'
    >>> redact("upstream http://proxy:hunter2@10.0.0.7/v1 refused", None)
    'upstream http://proxy:***@10.0.0.7/v1 refused'
    """
    if secret:
        text = text.replace(secret, "[REDACTED]")
    return mask_urls_in(_KEY_PATTERNS.sub("[REDACTED]", text))


def tool_specs(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Neutral tool specs ``{"name", "description", "parameters"}`` from either accepted form."""
    specs: list[dict[str, Any]] = []
    for tool in tools or []:
        fn = tool.get("function") if tool.get("type") == "function" else tool
        if not isinstance(fn, dict) or not fn.get("name"):
            raise BadRequestError(f"tool spec without a name: keys {sorted(tool)}")
        specs.append(
            {
                "name": fn["name"],
                "description": fn.get("description", ""),
                "parameters": fn.get("parameters") or {"type": "object", "properties": {}},
            }
        )
    return specs


def parse_arguments(raw: Any, provider: str) -> dict[str, Any]:
    """Tool-call arguments as a dict: a JSON string (OpenAI) or an object (others)."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponseError(
                f"{provider}: tool call arguments are not valid JSON", provider=provider
            ) from exc
        if isinstance(value, dict):
            return value
    raise MalformedResponseError(
        f"{provider}: tool call arguments must be a JSON object", provider=provider
    )


class Provider(ABC):
    """One provider's wire format. Subclasses set the class variables and the two hooks."""

    name: ClassVar[str]
    DEFAULT_MODEL: ClassVar[str]
    PRICES: ClassVar[Mapping[str, tuple[float, float]]]
    CONTEXT_WINDOWS: ClassVar[Mapping[str, int]]
    DEFAULT_CONTEXT_WINDOW: ClassVar[int] = 8192
    LOCAL: ClassVar[bool] = False
    """True for a local provider (unknown models cost nothing)."""
    NEEDS_KEY: ClassVar[bool] = True
    """False for a provider that takes requests without an API key (local Ollama)."""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.base_url = config.base_url.rstrip("/")
        self.default_model = config.default_model or self.DEFAULT_MODEL
        self._prices: dict[str, tuple[float, float]] = {**self.PRICES, **config.prices}
        self._secret = config.api_key.get_secret_value() if config.api_key else None
        self._unpriced: set[str] = set()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={mask_url(self.base_url)!r}, "
            f"default_model={self.default_model!r})"
        )

    # -- wire format hooks -------------------------------------------------

    @abstractmethod
    def build_request(
        self, req: ChatRequest, model: str
    ) -> tuple[str, str, dict[str, str], dict[str, Any]]:
        """``(method, url, headers, json body)`` of the wire request."""

    @abstractmethod
    def parse_body(self, data: dict[str, Any], model: str) -> ChatResponse:
        """A 2xx JSON body into a ChatResponse (``KeyError``/``TypeError`` mean malformed)."""

    def error_details(self, data: Any) -> tuple[str, str]:
        """``(type, message)`` from an error body; overridden per wire format."""
        return "", ""

    # -- shared behaviour --------------------------------------------------

    def redact(self, text: str) -> str:
        return redact(text, self._secret)

    def parse_response(self, response: httpx.Response, model: str) -> ChatResponse:
        """The reply of a 2xx, or the mapped :class:`~samplemind_core.ProviderError`."""
        if response.status_code >= 400 or response.status_code < 200:
            raise self.error_for(response)
        content_type = response.headers.get("content-type", "")
        if content_type and "json" not in content_type.lower():
            raise MalformedResponseError(
                f"{self.name}: expected a JSON reply, got content type "
                f"{self.redact(content_type.split(';')[0])!r} (HTTP {response.status_code})",
                provider=self.name,
                status=response.status_code,
            )
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise MalformedResponseError(
                f"{self.name}: reply is not valid JSON (HTTP {response.status_code}, "
                f"{len(response.content)} bytes)",
                provider=self.name,
                status=response.status_code,
            ) from exc
        if not isinstance(data, dict):
            raise MalformedResponseError(
                f"{self.name}: reply is JSON but not an object", provider=self.name
            )
        try:
            parsed = self.parse_body(data, model)
        except ProviderError:
            raise
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise MalformedResponseError(
                f"{self.name}: reply does not follow the wire format "
                f"({type(exc).__name__}: {self.redact(str(exc))[:200]})",
                provider=self.name,
                status=response.status_code,
            ) from exc
        parsed.cost_usd = self.cost(parsed.model or model, parsed.usage)
        return parsed

    def error_for(self, response: httpx.Response | StreamResponse) -> ProviderError:
        """The exception for an error reply (status and error body)."""
        status = response.status_code
        kind, message = "", ""
        try:
            data = orjson.loads(response.content)
            kind, message = self.error_details(data)
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            pass
        if not message:
            message = response.text[:200].strip() or response.reason_phrase
        retry_after = None
        if status == 429:
            from ..http import parse_retry_after

            retry_after = parse_retry_after(response.headers)
        return self.stream_error(status, kind, message, retry_after=retry_after, where="HTTP")

    def stream_error(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        retry_after: float | None = None,
        where: str = "error event",
    ) -> ProviderError:
        """The exception for an error with an HTTP-like ``status`` (an error reply, or an
        error event inside a stream: the adapter derives ``status`` from the event)."""
        detail = self.redact(f"{kind}: {message}" if kind else message)[:_MAX_MESSAGE]
        text = f"{self.name}: {where} {status}: {detail}"
        if status == 429:
            return RateLimitError(text, provider=self.name, status=status, retry_after=retry_after)
        if status in (401, 403) or self.is_auth_error(kind, message):
            return AuthenticationError(text, provider=self.name, status=status)
        if status >= 500:
            return ProviderServerError(text, provider=self.name, status=status)
        if 400 <= status < 500:
            return BadRequestError(text, provider=self.name, status=status)
        return MalformedResponseError(text, provider=self.name, status=status)

    def is_auth_error(self, kind: str, message: str) -> bool:
        """Whether a non-401/403 error body means a bad key (Gemini answers 400 for one)."""
        return False

    async def complete(
        self, http: HttpClient, req: ChatRequest, model: str | None = None
    ) -> ChatResponse:
        """Send ``req`` to this provider (with the client's retries) and parse the reply."""
        model = model or req.model or self.default_model
        method, url, headers, body = self.build_request(req, model)
        start = time.perf_counter()
        response = await http.request(method, url, json=body, headers=headers, timeout=req.timeout)
        reply = self.parse_response(response, model)
        meta = response.extensions.get("samplemind", {})
        reply.latency_ms = (time.perf_counter() - start) * 1000.0
        reply.attempts = int(meta.get("attempts", 1))
        reply.metadata["retry_wait_s"] = float(meta.get("retry_wait_s", 0.0))
        return reply

    # -- streaming -------------------------------------------------------------

    STREAM_CONTENT_TYPE: ClassVar[str] = "text/event-stream"
    """What a 2xx streamed reply must be (a substring of its content type)."""

    def build_stream_request(
        self, req: ChatRequest, model: str
    ) -> tuple[str, str, dict[str, str], dict[str, Any]]:
        """``(method, url, headers, json body)`` of the native streaming request."""
        raise NotImplementedError(f"{self.name} does not stream")

    def stream_decoder(self, model: str, max_line_bytes: int) -> StreamDecoder:
        """A fresh decoder of this provider's streamed reply."""
        raise NotImplementedError(f"{self.name} does not stream")

    async def open_stream(
        self, http: HttpClient, req: ChatRequest, model: str | None = None
    ) -> ProviderStream:
        """Send the native streaming request; return once the status and headers are in.

        A non-2xx status raises the same mapped error as :meth:`complete` (429
        with ``retry_after``, 401/403, 4xx, 5xx); a 2xx that is not the
        promised stream type raises ``MalformedResponseError``; connect errors
        and timeouts to the headers (``req.timeout``) raise the client's
        errors, after its retries. The returned :class:`ProviderStream` owns the
        connection: iterate it, then close it (``async with``)."""
        model = model or req.model or self.default_model
        method, url, headers, body = self.build_stream_request(req, model)
        decoder = self.stream_decoder(model, http.config.stream_max_line_bytes)
        start = time.perf_counter()
        response = await http.open_stream(
            method, url, json=body, headers=headers, timeout=req.timeout
        )
        try:
            status = response.status_code
            if status >= 400 or status < 200:
                raise self.error_for(response)
            content_type = response.headers.get("content-type", "").lower()
            if content_type and self.STREAM_CONTENT_TYPE not in content_type:
                raise MalformedResponseError(
                    f"{self.name}: expected a {self.STREAM_CONTENT_TYPE} stream, got content "
                    f"type {self.redact(content_type.split(';')[0])!r} (HTTP {status})",
                    provider=self.name,
                    status=status,
                )
        except BaseException:
            await response.aclose()
            raise
        return ProviderStream(self, model, response, decoder, start)

    # -- prices and sizes ----------------------------------------------------

    def price(self, model: str) -> tuple[float, float]:
        """``(USD per million input tokens, USD per million output tokens)`` of ``model``."""
        found = lookup(self._prices, model)
        if found is not None:
            return (float(found[0]), float(found[1]))
        if not self.LOCAL and model not in self._unpriced:
            self._unpriced.add(model)
            logger.warning(
                "%s: no price for model %r; its cost counts as 0 "
                "(set ProviderConfig.prices to fix)",
                self.name,
                model,
            )
        return (0.0, 0.0)

    def cost(self, model: str, usage: Usage) -> float:
        """USD of ``usage`` at ``model``'s list price."""
        return cost_usd(usage.input_tokens, usage.output_tokens, self.price(model))

    def estimate_cost(self, req: ChatRequest, model: str) -> float:
        """USD before the call, from the catalog's ``estimate_tokens`` (what the router plans with)."""
        return cost_usd(*estimate_tokens(req), self.price(model))

    def context_window(self, model: str) -> int:
        """Tokens the model accepts (prompt + output); ``DEFAULT_CONTEXT_WINDOW`` for an unlisted model."""
        found = lookup(self.CONTEXT_WINDOWS, model)
        return int(found) if found is not None else self.DEFAULT_CONTEXT_WINDOW

    # -- helpers for subclasses ------------------------------------------------

    def malformed(self, what: str) -> MalformedResponseError:
        return MalformedResponseError(f"{self.name}: {what}", provider=self.name)

    @staticmethod
    def usage(input_tokens: Any, output_tokens: Any) -> Usage:
        return Usage(input_tokens=int(input_tokens or 0), output_tokens=int(output_tokens or 0))

    @staticmethod
    def tool_call(name: Any, arguments: Any, call_id: Any, provider: str) -> ToolCall:
        if not isinstance(name, str) or not name:
            raise MalformedResponseError(f"{provider}: tool call without a name", provider=provider)
        return ToolCall(
            name=name,
            arguments=parse_arguments(arguments, provider),
            id=str(call_id) if call_id else None,
        )
