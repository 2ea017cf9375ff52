"""Provider routing: which provider (and model) to try first, second, ...

The router is *data*: a declarative table of :class:`RouteRule` entries
(task pattern, priority pattern, provider chain), like httpx's mounts. The
table is compiled **once** at construction into a dict from every
``(task, priority)`` to its complete chain, so :meth:`Router.route` is a dict
lookup plus a health adjustment. A rule may use ``"*"`` for the task or the
priority; the most specific matching rule wins (exact task and priority, then
exact task, then exact priority, then ``*``/``*``). A rule's chain may list only
the providers it cares about; the others are appended in
:data:`~samplemind_core.PROVIDERS` order, so every chain holds every provider
exactly once and the router can always fall back.

Health comes from real traffic only (no probe calls, which would be billed):
the manager reports each call with :meth:`Router.record_success` /
:meth:`Router.record_failure`. Per provider the router keeps a rolling
success rate over the last ``BreakerConfig.window`` outcomes, a latency EWMA
and a circuit breaker:

* **closed** (healthy): calls flow. Opens after ``failure_threshold``
  consecutive failures, or when the failure rate over the window exceeds
  ``failure_rate_threshold`` once the window holds ``min_calls`` outcomes;
* **open**: the provider moves to the end of every chain and
  :meth:`Router.allow` refuses it, until ``cooldown_s`` has passed;
* **half-open**: :meth:`Router.allow` grants exactly one trial request; its
  success closes the breaker (and clears the window), its failure re-opens it
  for another cooldown.

The router is meant for one event loop (no locks); it never does I/O and
never imports ``httpx`` (not even through the provider adapters). Prices and
context windows for :meth:`Router.plan` come from the pricing catalog
(:mod:`samplemind_core._pricing`, the tables the adapters bill with), or from a
:class:`ModelCatalog` you pass in (:meth:`ModelCatalog.from_settings` applies
``ProviderConfig.prices`` and ``default_model`` overrides).

Layout: the route table is ``samplemind_core._routing.routes``, the catalog
view ``samplemind_core._routing.catalog``, one provider's breaker
``samplemind_core._routing.breaker``; :class:`BreakerConfig` is part of
:class:`~samplemind_core.Settings` (``Settings.breaker``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Final, NamedTuple

from ._config import PROVIDERS, BreakerConfig
from ._exceptions import ConfigError
from ._models import ChatRequest
from ._pricing import DEFAULT_OUTPUT_TOKENS, cost_usd, estimate_tokens
from ._routing.breaker import OPEN, Breaker, BreakerState, ProviderHealth
from ._routing.catalog import ModelCatalog
from ._routing.routes import (
    ANY,
    DEFAULT_MODELS,
    DEFAULT_ROUTES,
    Priority,
    RouteRule,
    Task,
    compile_routes,
    validate_models,
)

__all__ = [
    "DEFAULT_MODELS",
    "DEFAULT_OUTPUT_TOKENS",
    "DEFAULT_ROUTES",
    "BreakerConfig",
    "BreakerState",
    "ModelCatalog",
    "Priority",
    "ProviderHealth",
    "RouteChoice",
    "RouteRule",
    "Router",
    "Task",
    "estimate_tokens",
]

_OPEN: Final = OPEN


class RouteChoice(NamedTuple):
    """One step of a plan: call ``provider`` with ``model``.

    ``estimated_cost_usd`` is ``None`` when the model has no price.
    ``skip_reason`` is set only in ``plan(..., include_skipped=True)`` for a
    choice the router would not make (the prompt does not fit the model).
    A named tuple (immutable and cheap to build).
    """

    provider: str
    model: str
    estimated_cost_usd: float | None
    skip_reason: str | None = None


class Router:
    """Ordered provider chains by task and priority, adjusted by live health.

    With every provider healthy:

    >>> r = Router()
    >>> r.route("factual", "speed")[0], r.route("creative", "quality")[0]
    ('ollama', 'anthropic')
    >>> r.route(Task.AUDIO, Priority.COST)[0], r.route("tools", "quality")[0]
    ('ollama', 'openai')
    >>> sorted(r.route("chat", "speed")) == sorted(PROVIDERS)
    True

    An open breaker moves its provider to the end of every chain:

    >>> now = [0.0]
    >>> r = Router(breaker=BreakerConfig(failure_threshold=2), clock=lambda: now[0])
    >>> r.record_failure("ollama", "timeout"); r.record_failure("ollama", "timeout")
    >>> r.health("ollama").state, r.route("factual", "speed")
    (<BreakerState.OPEN: 'open'>, ['gemini', 'openai', 'anthropic', 'ollama'])
    >>> now[0] = 31.0                    # after the cooldown: one trial request
    >>> r.allow("ollama"), r.allow("ollama")
    (True, False)
    >>> r.record_success("ollama", 12.0); r.health("ollama").state
    <BreakerState.CLOSED: 'closed'>

    A custom table (rules with ``"*"`` patterns; unknown names raise ``ConfigError``):

    >>> r = Router([RouteRule("*", "*", ("openai",))])
    >>> r.route("genre", "cost")
    ['openai', 'ollama', 'gemini', 'anthropic']
    """

    def __init__(
        self,
        routes: Iterable[RouteRule] | None = None,
        *,
        breaker: BreakerConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
        models: Mapping[tuple[str, str], str] | None = None,
        catalog: ModelCatalog | None = None,
        providers: Iterable[str] = PROVIDERS,
    ) -> None:
        self._providers: tuple[str, ...] = tuple(providers)
        if len(set(self._providers)) != len(self._providers) or not self._providers:
            raise ConfigError(f"providers must be unique and non-empty, got {self._providers}")
        self._config = breaker or BreakerConfig()
        self._clock = clock
        self._catalog = catalog
        self._models = dict(DEFAULT_MODELS if models is None else models)
        self._rules = tuple(DEFAULT_ROUTES if routes is None else routes)
        self._chains = compile_routes(self._rules, self._providers)
        validate_models(self._models, self._providers)
        self._health = {p: Breaker(p, self._config, clock) for p in self._providers}
        self._unhealthy = 0  # providers whose breaker is not CLOSED
        self._resolved: dict[tuple[str, str], str] = {}  # model_for() memo
        self._model_info: dict[tuple[str, str], tuple[tuple[float, float] | None, int | None]] = {}

    # -- table -------------------------------------------------------------

    @property
    def providers(self) -> tuple[str, ...]:
        return self._providers

    @property
    def catalog(self) -> ModelCatalog:
        """The model catalog (loaded from the provider modules on first use)."""
        if self._catalog is None:
            self._catalog = ModelCatalog.default()
        return self._catalog

    def chain(self, task: Task | str, priority: Priority | str) -> tuple[str, ...]:
        """The table's chain for ``task`` × ``priority``, ignoring health."""
        try:
            return self._chains[(task, priority)]
        except KeyError:
            raise self._unknown(task, priority) from None

    def _unknown(self, task: object, priority: object) -> ConfigError:
        if task not in {t.value for t in Task}:
            return ConfigError(f"unknown task {task!r}; known: {[t.value for t in Task]}")
        return ConfigError(f"unknown priority {priority!r}; known: {[p.value for p in Priority]}")

    def model_for(self, provider: str, task: Task | str) -> str:
        """The model ``provider`` uses for ``task`` (table override or the provider default)."""
        key = (provider, task)
        model = self._resolved.get(key)
        if model is None:
            model = self._models.get(key) or self._models.get((provider, ANY))
            model = model or self.catalog.default_model(provider)
            self._resolved[key] = model
        return model

    # -- routing -------------------------------------------------------------

    def route(self, task: Task | str, priority: Priority | str) -> list[str]:
        """The ordered fallback chain; providers with an open breaker move to the end."""
        try:
            chain = self._chains[(task, priority)]
        except KeyError:
            raise self._unknown(task, priority) from None
        if not self._unhealthy:
            return list(chain)
        health = self._health
        opened = [p for p in chain if health[p].state is _OPEN and health[p].current() is _OPEN]
        if not opened:
            return list(chain)
        return [p for p in chain if p not in opened] + opened

    def plan(
        self,
        task: Task | str,
        priority: Priority | str,
        request: ChatRequest,
        *,
        include_skipped: bool = False,
    ) -> list[RouteChoice]:
        """Provider, model and estimated cost of each step, best first.

        ``request.provider`` / ``request.model`` pin the first choice (a model
        without a provider pins the provider whose tables know the model). A
        model whose context window cannot hold the prompt (chars / 4) plus
        ``max_tokens`` is left out (with ``include_skipped=True`` it is kept
        with ``skip_reason`` set); a model with no known window is kept.
        """
        chain = self.route(task, priority)
        catalog = self.catalog
        pinned: tuple[str, str] | None = None
        if request.provider is not None or request.model is not None:
            provider = request.provider
            if provider is None:
                assert request.model is not None
                provider = catalog.provider_of(request.model)
                if provider is None:
                    raise ConfigError(
                        f"model {request.model!r} is in no provider's tables; "
                        "set ChatRequest.provider as well"
                    )
            if provider not in self._health:
                raise ConfigError(f"unknown provider {provider!r}; known: {list(self._providers)}")
            pinned = (provider, request.model or self.model_for(provider, task))
            chain.remove(provider)

        steps = [(p, self.model_for(p, task)) for p in chain]
        if pinned is not None:
            steps.insert(0, pinned)
        tokens_in, tokens_out = estimate_tokens(request)
        needed = tokens_in + tokens_out
        choices: list[RouteChoice] = []
        info = self._model_info
        for provider, model in steps:
            known = info.get((provider, model))
            if known is None:  # table lookups (prefix scans) once per model
                known = (catalog.price(provider, model), catalog.context_window(provider, model))
                info[(provider, model)] = known
            price, window = known
            skip = None
            if window is not None and needed > window:
                skip = f"prompt needs ~{needed} tokens, context window of {model} is {window}"
                if not include_skipped:
                    continue
            cost = None if price is None else cost_usd(tokens_in, tokens_out, price)
            choices.append(RouteChoice(provider, model, cost, skip))
        return choices

    # -- health --------------------------------------------------------------

    def _get(self, provider: str) -> Breaker:
        try:
            return self._health[provider]
        except KeyError:
            raise ConfigError(
                f"unknown provider {provider!r}; known: {list(self._providers)}"
            ) from None

    def allow(self, provider: str) -> bool:
        """May a request go to ``provider`` now?

        Closed: yes. Open: no. Half-open: yes for exactly one trial request
        (until its outcome is recorded, or :meth:`release` gives the slot back;
        a trial that never reports back frees its slot after ``cooldown_s``).
        """
        return self._get(provider).allow()

    def release(self, provider: str) -> None:
        """Give back a half-open trial slot without an outcome (the call was cancelled)."""
        self._get(provider).release()

    def record_success(self, provider: str, latency_ms: float) -> None:
        """A call to ``provider`` succeeded after ``latency_ms``."""
        if self._get(provider).record_success(latency_ms):
            self._unhealthy -= 1

    def record_failure(self, provider: str, error: BaseException | str) -> None:
        """A call to ``provider`` failed (``error`` is kept, shortened, in the health snapshot)."""
        if self._get(provider).record_failure(error):
            self._unhealthy += 1

    def health(self, provider: str) -> ProviderHealth:
        """A snapshot of ``provider``'s health."""
        return self._get(provider).snapshot()

    def reset(self, provider: str | None = None) -> None:
        """Forget the health of one provider (or all): breakers closed, stats cleared."""
        for name in [provider] if provider is not None else list(self._providers):
            if self._get(name).state is not BreakerState.CLOSED:
                self._unhealthy -= 1
            self._health[name] = Breaker(name, self._config, self._clock)
