"""Provider adapters: one module per wire format, and a factory.

>>> from samplemind_core import Settings
>>> from samplemind_core.providers import get_provider
>>> get_provider("openai", Settings().provider("openai")).default_model
'gpt-4o-mini'
"""

from __future__ import annotations

from typing import Final

from .._config import ProviderConfig
from .._exceptions import ConfigError
from .anthropic import AnthropicProvider
from .base import Provider, ProviderStream
from .gemini import GeminiProvider
from .ollama import OllamaProvider
from .openai import OpenAIProvider

__all__ = [
    "PROVIDER_CLASSES",
    "AnthropicProvider",
    "GeminiProvider",
    "OllamaProvider",
    "OpenAIProvider",
    "Provider",
    "ProviderStream",
    "get_provider",
]

PROVIDER_CLASSES: Final[dict[str, type[Provider]]] = {
    "ollama": OllamaProvider,
    "openai": OpenAIProvider,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
}


def get_provider(name: str, config: ProviderConfig) -> Provider:
    """The adapter of provider ``name`` configured by ``config``."""
    try:
        cls = PROVIDER_CLASSES[name]
    except KeyError:
        raise ConfigError(f"unknown provider {name!r}; known: {sorted(PROVIDER_CLASSES)}") from None
    return cls(config)
