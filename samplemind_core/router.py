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
never imports ``httpx``. Prices and context windows for :meth:`Router.plan`
come from the provider modules (``samplemind_core.providers.<name>``), read
lazily on the first call to ``plan``, or from a :class:`ModelCatalog` you
pass in (:meth:`ModelCatalog.from_settings` applies ``ProviderConfig.prices``
and ``default_model`` overrides).
"""

from __future__ import annotations

import importlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Final, NamedTuple

from ._config import PROVIDERS
from ._exceptions import ConfigError
from ._models import ChatRequest
from ._pricing import lookup as _lookup

if TYPE_CHECKING:
    from ._config import Settings

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


class Task(StrEnum):
    """What SampleMind asks the model to do (values are the lowercase names).

    * ``factual``: short factual questions about music, gear, theory ("what key
      is a Dorian mode built on?"); a small fast model is enough;
    * ``genre``: genre / mood / BPM / instrument tagging of a sample from its
      name, metadata and extracted features; short structured answers;
    * ``creative``: writing: sample-pack descriptions, track names, lyric ideas,
      production suggestions; quality matters most;
    * ``tools``: tool (function) calls that tag, rename or move files in the
      library; needs reliable tool calling and JSON arguments;
    * ``audio``: questions about audio features and analysis (spectral
      centroid, loudness, onset density, key detection results);
    * ``summarize``: summaries of long inputs (a session's notes, a folder's
      analysis report); needs a long context window;
    * ``chat``: the assistant's free conversation with the user.
    """

    FACTUAL = "factual"
    GENRE = "genre"
    CREATIVE = "creative"
    TOOLS = "tools"
    AUDIO = "audio"
    SUMMARIZE = "summarize"
    CHAT = "chat"


class Priority(StrEnum):
    """What the caller optimises for: ``speed`` (latency), ``quality`` or ``cost``."""

    SPEED = "speed"
    QUALITY = "quality"
    COST = "cost"


class BreakerState(StrEnum):
    """Circuit-breaker state of one provider."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


ANY: Final = "*"

# Enum attribute access costs ~0.2 µs on 3.11: the hot paths use these names.
_CLOSED: Final = BreakerState.CLOSED
_OPEN: Final = BreakerState.OPEN
_HALF_OPEN: Final = BreakerState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One row of the route table: ``task`` × ``priority`` → provider ``chain``.

    ``task`` / ``priority`` are a value or ``"*"``. ``chain`` lists providers
    best first; providers it omits are appended in ``PROVIDERS`` order.
    """

    task: str
    priority: str
    chain: tuple[str, ...]

    @property
    def specificity(self) -> int:
        """Higher wins: exact task counts 2, exact priority 1."""
        return (2 if self.task != ANY else 0) + (1 if self.priority != ANY else 0)


DEFAULT_ROUTES: Final[tuple[RouteRule, ...]] = (
    # Defaults by priority. Speed and cost: the local model first (no network
    # round trip to a cloud, no bill), then the cheapest fast cloud model.
    RouteRule(ANY, Priority.SPEED, ("ollama", "gemini", "openai", "anthropic")),
    RouteRule(ANY, Priority.COST, ("ollama", "gemini", "openai", "anthropic")),
    RouteRule(ANY, Priority.QUALITY, ("anthropic", "openai", "gemini", "ollama")),
    # Factual answers at quality: OpenAI first.
    RouteRule(Task.FACTUAL, Priority.QUALITY, ("openai", "anthropic", "gemini", "ollama")),
    # Creative writing: a fast cloud model beats a small local one on speed too.
    RouteRule(Task.CREATIVE, Priority.SPEED, ("gemini", "ollama", "openai", "anthropic")),
    # Tool calls: the most reliable tool calling first; small local models last.
    RouteRule(Task.TOOLS, ANY, ("openai", "anthropic", "gemini", "ollama")),
    RouteRule(Task.TOOLS, Priority.COST, ("gemini", "openai", "ollama", "anthropic")),
    # Audio analysis questions at quality: Gemini understands audio natively.
    RouteRule(Task.AUDIO, Priority.QUALITY, ("gemini", "anthropic", "openai", "ollama")),
    # Summaries: long context windows.
    RouteRule(Task.SUMMARIZE, Priority.SPEED, ("gemini", "ollama", "openai", "anthropic")),
    RouteRule(Task.SUMMARIZE, Priority.QUALITY, ("anthropic", "gemini", "openai", "ollama")),
)
"""The built-in route table (see :class:`Router` for the guaranteed routes)."""

DEFAULT_MODELS: Final[Mapping[tuple[str, str], str]] = {
    # Ollama: the provider default (llama3.2) for short answers; qwen2.5 calls
    # tools more reliably and writes better.
    ("ollama", Task.TOOLS): "qwen2.5",
    ("ollama", Task.CREATIVE): "qwen2.5",
    # Gemini: flash-lite is plenty for tagging; flash (the default) elsewhere.
    ("gemini", Task.GENRE): "gemini-2.5-flash-lite",
    # OpenAI: gpt-4o-mini (the default); gpt-4.1-mini for tools, writing and
    # long inputs (1M-token window).
    ("openai", Task.TOOLS): "gpt-4.1-mini",
    ("openai", Task.CREATIVE): "gpt-4.1-mini",
    ("openai", Task.SUMMARIZE): "gpt-4.1-mini",
    # Anthropic: haiku (the default); sonnet for writing and summaries.
    ("anthropic", Task.CREATIVE): "claude-sonnet-4-20250514",
    ("anthropic", Task.SUMMARIZE): "claude-sonnet-4-20250514",
}
"""Per ``(provider, task)`` model of the built-in table (``task`` may be ``"*"``).

A pair not listed uses the provider's default model (``ProviderConfig.default_model``
or the adapter's ``DEFAULT_MODEL``). :class:`~samplemind_core.AIManager` drops a
provider's entries when its ``ProviderConfig.default_model`` is set: a model the
user configured wins over these built-in choices.
"""

DEFAULT_OUTPUT_TOKENS: Final = 1024
"""Output tokens assumed when ``max_tokens`` is unset (the adapters' ``DEFAULT_MAX_OUTPUT_TOKENS``)."""


def estimate_tokens(request: ChatRequest) -> tuple[int, int]:
    """``(input_tokens, output_tokens)`` estimated before the call.

    Input: prompt characters / 4, rounded up. Output: ``max_tokens`` or
    :data:`DEFAULT_OUTPUT_TOKENS`.

    >>> estimate_tokens(ChatRequest(messages=[{"role": "user", "content": "x" * 10}], max_tokens=5))
    (3, 5)
    """
    chars = request.prompt_chars()
    return (chars + 3) // 4, request.max_tokens or DEFAULT_OUTPUT_TOKENS


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Circuit breaker and health-tracking settings.

    ``failure_threshold``: consecutive failures that open the breaker.
    ``window``: outcomes kept for the rolling success rate.
    ``failure_rate_threshold``: failure fraction over the window that opens the
    breaker (strictly above), once the window holds ``min_calls`` outcomes.
    ``cooldown_s``: how long an open breaker stays open before one trial.
    ``ewma_alpha``: weight of the newest latency sample in the EWMA.
    """

    failure_threshold: int = 5
    window: int = 20
    failure_rate_threshold: float = 0.5
    min_calls: int = 10
    cooldown_s: float = 30.0
    ewma_alpha: float = 0.2

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ConfigError(f"failure_threshold must be >= 1, got {self.failure_threshold}")
        if self.window < 1:
            raise ConfigError(f"window must be >= 1, got {self.window}")
        if not 0.0 <= self.failure_rate_threshold <= 1.0:
            raise ConfigError(
                f"failure_rate_threshold must be in [0, 1], got {self.failure_rate_threshold}"
            )
        if not 1 <= self.min_calls <= self.window:
            raise ConfigError(f"min_calls must be in [1, window], got {self.min_calls}")
        if self.cooldown_s < 0:
            raise ConfigError(f"cooldown_s must be >= 0, got {self.cooldown_s}")
        if not 0.0 < self.ewma_alpha <= 1.0:
            raise ConfigError(f"ewma_alpha must be in (0, 1], got {self.ewma_alpha}")


@dataclass(frozen=True, slots=True)
class ProviderHealth:
    """A snapshot of one provider's health (safe to keep; it does not change)."""

    provider: str
    state: BreakerState
    success_rate: float
    """Successes / outcomes over the rolling window (1.0 before any traffic)."""
    latency_ewma_ms: float | None
    """EWMA of successful calls' latency (``None`` before the first success)."""
    consecutive_failures: int
    window_calls: int
    successes: int
    """Total successes since the router was built."""
    failures: int
    """Total failures since the router was built."""
    opened_count: int
    """How many times the breaker opened."""
    retry_in_s: float
    """Seconds until an open breaker allows a trial (0 when not open)."""
    last_error: str | None


class RouteChoice(NamedTuple):
    """One step of a plan: call ``provider`` with ``model``.

    ``estimated_cost_usd`` is ``None`` when the model has no price.
    ``skip_reason`` is set only in ``plan(..., include_skipped=True)`` for a
    choice the router would not make (the prompt does not fit the model).
    A named tuple: immutable and about 5x cheaper to build than a frozen dataclass.
    """

    provider: str
    model: str
    estimated_cost_usd: float | None
    skip_reason: str | None = None


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
        """Read ``DEFAULT_MODEL``, ``PRICES``, ``CONTEXT_WINDOWS`` of each provider module."""
        tables = {}
        for name in PROVIDERS:
            module = importlib.import_module(f"samplemind_core.providers.{name}")
            tables[name] = (module.DEFAULT_MODEL, module.PRICES, module.CONTEXT_WINDOWS)
        return cls.from_tables(tables)

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
        return _lookup(self._get(provider).prices, model)

    def context_window(self, provider: str, model: str) -> int | None:
        """The context window of ``model`` in tokens (``None``: unknown model)."""
        return _lookup(self._get(provider).context_windows, model)

    def provider_of(self, model: str) -> str | None:
        """The provider whose tables know ``model`` (first in ``PROVIDERS`` order)."""
        for name, models in self.providers.items():
            if _lookup(models.prices, model) is not None:
                return name
            if _lookup(models.context_windows, model) is not None:
                return name
        return None

    def estimate_cost(self, provider: str, model: str, request: ChatRequest) -> float | None:
        """USD: input tokens (chars / 4) and output tokens (``max_tokens``) times the prices."""
        price = self.price(provider, model)
        if price is None:
            return None
        tokens_in, tokens_out = estimate_tokens(request)
        return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000


class _Health:
    """Mutable per-provider health record (internal)."""

    __slots__ = (
        "consecutive",
        "ewma",
        "failures",
        "last_error",
        "opened_at",
        "opened_count",
        "outcomes",
        "state",
        "successes",
        "trial_started",
        "window_failures",
    )

    def __init__(self, window: int) -> None:
        self.state = _CLOSED
        self.outcomes: deque[bool] = deque(maxlen=window)
        self.window_failures = 0
        self.consecutive = 0
        self.ewma: float | None = None
        self.successes = 0
        self.failures = 0
        self.opened_at = 0.0
        self.opened_count = 0
        self.trial_started: float | None = None
        self.last_error: str | None = None

    def push(self, ok: bool) -> None:
        if len(self.outcomes) == self.outcomes.maxlen and not self.outcomes[0]:
            self.window_failures -= 1
        self.outcomes.append(ok)
        if not ok:
            self.window_failures += 1


def _error_text(error: BaseException | str) -> str:
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
    return text[:200]


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
        self._chains = self._compile(self._rules)
        self._validate_models()
        self._health = {p: _Health(self._config.window) for p in self._providers}
        self._unhealthy = 0  # providers whose breaker is not CLOSED
        self._resolved: dict[tuple[str, str], str] = {}  # model_for() memo
        self._model_info: dict[tuple[str, str], tuple[tuple[float, float] | None, int | None]] = {}

    # -- table -------------------------------------------------------------

    def _compile(self, rules: tuple[RouteRule, ...]) -> dict[tuple[str, str], tuple[str, ...]]:
        tasks = {t.value for t in Task}
        priorities = {p.value for p in Priority}
        known = set(self._providers)
        for rule in rules:
            if not isinstance(rule, RouteRule):
                raise ConfigError(f"route table entries must be RouteRule, got {rule!r}")
            if rule.task != ANY and rule.task not in tasks:
                raise ConfigError(
                    f"unknown task {rule.task!r} in route table; known: {sorted(tasks)}"
                )
            if rule.priority != ANY and rule.priority not in priorities:
                raise ConfigError(
                    f"unknown priority {rule.priority!r} in route table; known: {sorted(priorities)}"
                )
            unknown = [p for p in rule.chain if p not in known]
            if unknown:
                raise ConfigError(
                    f"unknown provider(s) {unknown} in route table; known: {sorted(known)}"
                )
            if len(set(rule.chain)) != len(rule.chain):
                raise ConfigError(f"provider listed twice in route chain {rule.chain}")
        # Most specific first; among equals, the later rule wins (like dict updates).
        ordered = sorted(enumerate(rules), key=lambda ir: (-ir[1].specificity, -ir[0]))
        chains: dict[tuple[str, str], tuple[str, ...]] = {}
        for task in Task:
            for priority in Priority:
                for _, rule in ordered:
                    if rule.task in (ANY, task) and rule.priority in (ANY, priority):
                        head = rule.chain
                        break
                else:
                    head = ()
                chain = head + tuple(p for p in self._providers if p not in head)
                chains[(task.value, priority.value)] = chain
        return chains

    def _validate_models(self) -> None:
        tasks = {t.value for t in Task}
        for provider, task in self._models:
            if provider not in self._providers:
                raise ConfigError(f"unknown provider {provider!r} in model table")
            if task != ANY and task not in tasks:
                raise ConfigError(f"unknown task {task!r} in model table")

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
        state = self._state
        opened = [p for p in chain if health[p].state is _OPEN and state(health[p]) is _OPEN]
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
            cost = (
                None
                if price is None
                else (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000
            )
            choices.append(RouteChoice(provider, model, cost, skip))
        return choices

    # -- health --------------------------------------------------------------

    def _state(self, h: _Health) -> BreakerState:
        """The current state, moving OPEN to HALF_OPEN once the cooldown has passed."""
        if h.state is _OPEN and self._clock() - h.opened_at >= self._config.cooldown_s:
            h.state = _HALF_OPEN
            h.trial_started = None
        return h.state

    def _get(self, provider: str) -> _Health:
        try:
            return self._health[provider]
        except KeyError:
            raise ConfigError(
                f"unknown provider {provider!r}; known: {list(self._providers)}"
            ) from None

    def _open(self, h: _Health) -> None:
        if h.state is _CLOSED:
            self._unhealthy += 1
        h.state = _OPEN
        h.opened_at = self._clock()
        h.opened_count += 1
        h.trial_started = None

    def allow(self, provider: str) -> bool:
        """May a request go to ``provider`` now?

        Closed: yes. Open: no. Half-open: yes for exactly one trial request
        (until its outcome is recorded, or :meth:`release` gives the slot back;
        a trial that never reports back frees its slot after ``cooldown_s``).
        """
        h = self._get(provider)
        state = self._state(h)
        if state is _CLOSED:
            return True
        if state is _OPEN:
            return False
        now = self._clock()
        if h.trial_started is None or now - h.trial_started >= self._config.cooldown_s:
            h.trial_started = now
            return True
        return False

    def release(self, provider: str) -> None:
        """Give back a half-open trial slot without an outcome (the call was cancelled)."""
        self._get(provider).trial_started = None

    def record_success(self, provider: str, latency_ms: float) -> None:
        """A call to ``provider`` succeeded after ``latency_ms``."""
        h = self._get(provider)
        h.push(True)
        h.successes += 1
        h.consecutive = 0
        alpha = self._config.ewma_alpha
        h.ewma = latency_ms if h.ewma is None else alpha * latency_ms + (1 - alpha) * h.ewma
        if self._state(h) is _HALF_OPEN:
            h.state = _CLOSED
            h.trial_started = None
            h.outcomes.clear()
            h.window_failures = 0
            self._unhealthy -= 1

    def record_failure(self, provider: str, error: BaseException | str) -> None:
        """A call to ``provider`` failed (``error`` is kept, shortened, in the health snapshot)."""
        h = self._get(provider)
        h.push(False)
        h.failures += 1
        h.consecutive += 1
        h.last_error = _error_text(error)
        state = self._state(h)
        if state is _HALF_OPEN:
            self._open(h)
        elif state is _CLOSED:
            cfg = self._config
            calls = len(h.outcomes)
            if h.consecutive >= cfg.failure_threshold or (
                calls >= cfg.min_calls and h.window_failures / calls > cfg.failure_rate_threshold
            ):
                self._open(h)
        # OPEN: a late failure of a call started before the breaker opened; no change.

    def health(self, provider: str) -> ProviderHealth:
        """A snapshot of ``provider``'s health."""
        h = self._get(provider)
        state = self._state(h)
        calls = len(h.outcomes)
        retry_in = 0.0
        if state is _OPEN:
            retry_in = max(0.0, h.opened_at + self._config.cooldown_s - self._clock())
        return ProviderHealth(
            provider=provider,
            state=state,
            success_rate=(calls - h.window_failures) / calls if calls else 1.0,
            latency_ewma_ms=h.ewma,
            consecutive_failures=h.consecutive,
            window_calls=calls,
            successes=h.successes,
            failures=h.failures,
            opened_count=h.opened_count,
            retry_in_s=retry_in,
            last_error=h.last_error,
        )

    def reset(self, provider: str | None = None) -> None:
        """Forget the health of one provider (or all): breakers closed, stats cleared."""
        for name in [provider] if provider is not None else list(self._providers):
            h = self._get(name)
            if h.state is not _CLOSED:
                self._unhealthy -= 1
            self._health[name] = _Health(self._config.window)
