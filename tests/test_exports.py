"""The public surface of ``samplemind_core`` is exactly the intended one, and every name resolves."""

from __future__ import annotations

import importlib

import pytest

import samplemind_core

INTENDED = {
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
}


def test_all_is_exactly_the_intended_list() -> None:
    exported = samplemind_core.__all__
    assert len(exported) == len(set(exported)), "duplicate names in __all__"
    assert set(exported) == INTENDED


@pytest.mark.parametrize("name", sorted(INTENDED))
def test_every_exported_name_resolves(name: str) -> None:
    value = getattr(samplemind_core, name)
    assert value is not None
    if isinstance(value, type):
        # Public classes come from a module of the package, re-exported here.
        assert value.__module__.startswith("samplemind_core.")


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        samplemind_core.Nope  # noqa: B018


@pytest.mark.parametrize("module", ["router", "manager", "http", "providers.base"])
def test_module_all_names_resolve(module: str) -> None:
    mod = importlib.import_module(f"samplemind_core.{module}")
    assert mod.__all__, f"{module} has no __all__"
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_lazy_names_are_the_module_objects() -> None:
    from samplemind_core.manager import AIManager
    from samplemind_core.router import Priority, Router, Task

    assert samplemind_core.AIManager is AIManager
    assert samplemind_core.Router is Router
    assert samplemind_core.Task is Task
    assert samplemind_core.Priority is Priority


def test_providers_surface() -> None:
    import samplemind_core.providers as providers

    assert set(providers.__all__) == {
        "PROVIDER_CLASSES",
        "AnthropicProvider",
        "GeminiProvider",
        "OllamaProvider",
        "OpenAIProvider",
        "Provider",
        "ProviderStream",
        "get_provider",
    }
    for name in providers.__all__:
        assert hasattr(providers, name), name
    assert providers.ProviderStream.__module__.startswith("samplemind_core.providers")


def test_http_surface() -> None:
    """``samplemind_core.http``'s names are deliberate: ``StreamResponse`` is what
    ``HttpClient.open_stream`` returns (decision 0520); ``ProviderStream.upstream`` holds one."""
    import samplemind_core.http as http

    assert set(http.__all__) == {
        "RETRY_STATUSES",
        "HttpClient",
        "StreamResponse",
        "backoff_wait",
        "build_transport",
        "iter_body",
        "parse_retry_after",
    }
    assert http.StreamResponse.__module__ == "samplemind_core.http"
    assert callable(http.HttpClient.open_stream)
    from samplemind_core.providers import ProviderStream

    assert isinstance(ProviderStream.upstream, property)
    assert isinstance(ProviderStream.http_response, property)
