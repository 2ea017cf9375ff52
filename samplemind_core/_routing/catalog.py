"""The router's view of the pricing catalog: default model, prices and windows per provider."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._config import PROVIDERS
from .._exceptions import ConfigError
from .._pricing import CATALOG, cost_usd, estimate_tokens, lookup

if TYPE_CHECKING:
    from .._config import Settings
    from .._models import ChatRequest

__all__ = ["ModelCatalog"]


@dataclass(frozen=True, slots=True)
class _ProviderModels:
    default_model: str
    prices: Mapping[str, tuple[float, float]]
    context_windows: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class ModelCatalog:
    """Default model, price table and context windows of each provider.

    ``prices``: model -> (USD per million input tokens, USD per million output tokens).
    """

    providers: Mapping[str, _ProviderModels]

    @classmethod
    def from_tables(
        cls,
        tables: Mapping[str, tuple[str, Mapping[str, tuple[float, float]], Mapping[str, int]]],
    ) -> ModelCatalog:
        """Build from ``{provider: (default_model, prices, context_windows)}``."""
        return cls(
            {
                name: _ProviderModels(default, dict(prices), dict(windows))
                for name, (default, prices, windows) in tables.items()
            }
        )

    @classmethod
    def default(cls) -> ModelCatalog:
        """The pricing catalog's tables of every provider (the adapters use the same)."""
        return cls.from_tables(
            {
                name: (
                    CATALOG[name].default_model,
                    CATALOG[name].prices,
                    CATALOG[name].context_windows,
                )
                for name in PROVIDERS
            }
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelCatalog:
        """The default catalog with each ``ProviderConfig``'s price and model overrides."""
        base = cls.default()
        merged: dict[str, _ProviderModels] = {}
        for name, models in base.providers.items():
            cfg = settings.providers.get(name)
            if cfg is None:
                merged[name] = models
                continue
            merged[name] = _ProviderModels(
                cfg.default_model or models.default_model,
                {**models.prices, **cfg.prices},
                models.context_windows,
            )
        return cls(merged)

    def _get(self, provider: str) -> _ProviderModels:
        try:
            return self.providers[provider]
        except KeyError:
            raise ConfigError(f"no model catalog for provider {provider!r}") from None

    def default_model(self, provider: str) -> str:
        return self._get(provider).default_model

    def price(self, provider: str, model: str) -> tuple[float, float] | None:
        """The price of ``model`` (exact name, else the longest table key prefixing it)."""
        return lookup(self._get(provider).prices, model)

    def context_window(self, provider: str, model: str) -> int | None:
        """The context window of ``model`` in tokens (``None``: unknown model)."""
        return lookup(self._get(provider).context_windows, model)

    def provider_of(self, model: str) -> str | None:
        """The provider whose tables know ``model`` (first in ``PROVIDERS`` order)."""
        for name, models in self.providers.items():
            if lookup(models.prices, model) is not None:
                return name
            if lookup(models.context_windows, model) is not None:
                return name
        return None

    def estimate_cost(self, provider: str, model: str, request: ChatRequest) -> float | None:
        """USD: input tokens (chars / 4) and output tokens (``max_tokens``) times the prices."""
        price = self.price(provider, model)
        if price is None:
            return None
        return cost_usd(*estimate_tokens(request), price)
