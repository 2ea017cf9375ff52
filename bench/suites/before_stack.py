"""The "before" stack: the AI call path SampleMind started from, kept for the A/B pipeline suite.

What the original code did on every request (and what this reproduces):

* a **new** ``httpx.AsyncClient`` per request (no pool, a fresh TLS context and
  connection each time), no retries;
* **no cache**, but the request key computed the original way,
  ``sha256(json.dumps(request, sort_keys=True))`` (it was logged);
* a **fixed provider order** gemini → anthropic → openai (a provider the
  request pins goes first), falling through to the next one on any error;
  never Ollama (cloud providers only).

The wire formats are the provider adapters' (``build_request`` /
``parse_response``): the bytes on the wire are the APIs' own, only the
plumbing around them is the old one. Costs come from the same price tables,
so the dollars of both stacks are comparable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from typing import Any, Final

import httpx

from samplemind_core import (
    PROVIDERS,
    AllProvidersFailedError,
    Attempt,
    ChatRequest,
    ChatResponse,
    SampleMindError,
    Settings,
)

__all__ = ["BEFORE_ORDER", "BeforeStack"]

logger = logging.getLogger(__name__)

BEFORE_ORDER: Final = ("gemini", "anthropic", "openai")


class BeforeStack:
    """``await BeforeStack(settings).complete(req)``; counts its provider calls."""

    def __init__(self, settings: Settings, *, timeout_s: float = 30.0) -> None:
        from samplemind_core.providers import get_provider

        self.settings = settings
        self.timeout_s = timeout_s
        self.providers: dict[str, Any] = {
            name: get_provider(name, settings.provider(name)) for name in PROVIDERS
        }
        self.provider_calls = 0

    def _order(self, request: ChatRequest) -> list[str]:
        if request.provider in self.providers:
            return [request.provider, *(p for p in BEFORE_ORDER if p != request.provider)]
        return list(BEFORE_ORDER)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """One request the old way; raises :class:`AllProvidersFailedError` when all fail."""
        start = time.perf_counter()
        key = hashlib.sha256(
            json.dumps(dataclasses.asdict(request), sort_keys=True).encode()
        ).hexdigest()
        logger.debug("before-stack request %s", key[:12])
        attempts: list[Attempt] = []
        for name in self._order(request):
            provider = self.providers[name]
            model = (
                request.model
                if request.model and request.provider == name
                else provider.default_model
            )
            try:
                method, url, headers, body = provider.build_request(request, model)
                self.provider_calls += 1
                async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                    response = await client.request(method, url, headers=headers, json=body)
                    await response.aread()
                result: ChatResponse = provider.parse_response(response, model)
            except Exception as exc:  # the original caught everything and moved on
                attempts.append(_attempt(name, model, exc))
                continue
            result.cost_usd = provider.cost(model, result.usage)
            result.latency_ms = (time.perf_counter() - start) * 1000.0
            result.attempts = 1
            return result
        raise AllProvidersFailedError(attempts)


def _attempt(provider: str, model: str, exc: BaseException) -> Attempt:
    # our exception texts never hold keys; a foreign one is reduced to its type
    text = (
        f"{type(exc).__name__}: {exc}" if isinstance(exc, SampleMindError) else type(exc).__name__
    )
    return Attempt(provider=provider, model=model, error=text)
