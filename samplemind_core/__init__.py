"""SampleMind's AI performance layer.

A Redis response cache keyed by a BLAKE3 fingerprint of the request, a shared
pooled async HTTP client with retries, a router that picks a provider chain by
task and priority, and a manager that ties them together::

    from samplemind_core import AIManager, ChatRequest

    async with AIManager.from_env() as ai:
        resp = await ai.complete(ChatRequest(messages=[...]), task="genre", priority="speed")

The heavier parts (cache, HTTP client, router, manager) are imported on first
use, so ``import samplemind_core`` stays cheap for CLI tools.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._config import (
    PROVIDERS,
    BreakerConfig,
    CacheConfig,
    HttpConfig,
    ProviderConfig,
    RetryConfig,
    Secret,
    Settings,
    StreamConfig,
)
from ._exceptions import (
    AllProvidersFailedError,
    Attempt,
    AuthenticationError,
    BadRequestError,
    CacheBackendError,
    CacheError,
    CacheValueError,
    ClientStateError,
    ConfigError,
    ConnectError,
    MalformedResponseError,
    ProviderError,
    ProviderServerError,
    RateLimitError,
    RemoteProtocolError,
    RequestTimeout,
    SampleMindError,
    StreamInterrupted,
    TransportError,
)
from ._models import ChatRequest, ChatResponse, ToolCall, Usage
from ._streaming import ResponseStream, StreamChunk
from .fingerprint import fingerprint

if TYPE_CHECKING:
    from .cache import CacheStats, ResponseCache
    from .http import HttpClient
    from .manager import AIManager
    from .router import Priority, Router, Task

__version__ = "0.1.0"

_LAZY = {
    "ResponseCache": "cache",
    "CacheStats": "cache",
    "HttpClient": "http",
    "Router": "router",
    "Task": "router",
    "Priority": "router",
    "AIManager": "manager",
}

__all__ = [
    "PROVIDERS",
    "AIManager",
    "AllProvidersFailedError",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "BreakerConfig",
    "CacheBackendError",
    "CacheConfig",
    "CacheError",
    "CacheStats",
    "CacheValueError",
    "ChatRequest",
    "ChatResponse",
    "ClientStateError",
    "ConfigError",
    "ConnectError",
    "HttpClient",
    "HttpConfig",
    "MalformedResponseError",
    "Priority",
    "ProviderConfig",
    "ProviderError",
    "ProviderServerError",
    "RateLimitError",
    "RemoteProtocolError",
    "RequestTimeout",
    "ResponseCache",
    "ResponseStream",
    "RetryConfig",
    "Router",
    "SampleMindError",
    "Secret",
    "Settings",
    "StreamChunk",
    "StreamConfig",
    "StreamInterrupted",
    "Task",
    "ToolCall",
    "TransportError",
    "Usage",
    "__version__",
    "fingerprint",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'samplemind_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
