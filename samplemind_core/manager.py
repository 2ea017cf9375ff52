"""The AI manager: cache → router → provider, with fallback, health and cost.

::

    async with AIManager.from_env() as ai:          # REDIS_URL, or an injected cache/client
        resp = await ai.complete(req, task="genre", priority="speed")
        resp.text, resp.provider, resp.cached, resp.cost_usd, resp.latency_ms

One call of :meth:`AIManager.complete`:

1. the request's fingerprint is looked up in the :class:`~samplemind_core.ResponseCache`
   (L1, Redis; concurrent identical requests make one provider call: single-flight);
2. on a miss, :meth:`Router.plan <samplemind_core.router.Router.plan>` gives the
   chain of ``(provider, model, estimated cost)`` for the task and priority
   (``request.provider`` / ``.model`` pin the first choice; models whose
   context window cannot hold the prompt are skipped);
3. each choice is called in turn through its adapter
   on the shared HTTP client (which retries 429/502/503/504 and transport
   errors itself), behind the provider's rate limiter
   (``ProviderConfig.rate_limit_per_s``; ``None`` = unlimited);
4. the outcome feeds the router's health (``record_success`` / ``record_failure``);
5. the first success is stored in the cache and returned with its metadata.
   Only when every choice failed or was skipped does it raise one
   :class:`~samplemind_core.AllProvidersFailedError` listing each attempt.

Which failures fall back, and which count against a provider's health:

================================ =========== ========================================
error of one provider            fall back?  health
================================ =========== ========================================
transport error, timeout         yes         failure
5xx, 429 (after the client's     yes         failure
retries), malformed reply
401 / 403 (bad or missing key)   yes         failure (a wrong key should open the breaker)
other 4xx (``BadRequestError``)  yes         neutral: the server is up; another
                                             provider may accept what this one refused
``ConfigError`` (e.g. a bad      yes         neutral: nothing was sent
per-request setting)
no API key configured for a      yes         neutral: skipped before anything is
hosted provider                              sent (route step "skipped"); logged
                                             once per provider per manager
anything else (a bug)            no          neutral; the exception propagates
================================ =========== ========================================

Ollama needs no key. A request that is itself invalid never reaches a provider:
:class:`~samplemind_core.ChatRequest` refuses bad fields when it is built (a
``ConfigError``), so a caller's mistake never counts against a provider's health.

A provider whose circuit breaker is open moves to the end of the chain: it is
called only as a last resort, when every other choice has failed (so a burst
of faults on every provider does not turn into requests refused without a
single call). A request that *pins* a provider still falls back: the pin
chooses the first choice, not the only one (the answer says which provider
replied); a pinned provider whose breaker is open moves to the end like any other.

Reply metadata:

* ``provider`` / ``model``: who answered; ``cached``: no provider was called
  for *this* call (a cache hit, or a copy of a concurrent identical call's
  reply: then ``metadata["coalesced"]`` is ``True``);
* ``cost_usd``: what *this* call paid: the adapter's figure from the reply's
  usage and the price table, and ``0.0`` for a cached or coalesced reply (no
  provider was paid); the cost it saved is summed in
  ``ResponseCache.stats().cost_saved_usd`` and the original cost is under
  ``metadata["cache"]["cost_usd"]``;
* ``estimated_cost_usd``: the router's estimate before the call;
* ``attempts``: HTTP attempts (retries included) of the provider that
  answered, ``0`` for a cached or coalesced reply;
* ``latency_ms``: the whole call through the layer (cache lookup included);
* ``metadata["route"]``: every step of the chain that was tried or skipped,
  ``{"provider", "model", "outcome": "ok" | "error" | "skipped" | "last resort", "error",
  "latency_ms"}`` (a "last resort" step marks an open-breaker provider called after all
  others failed; its own outcome follows as another step).

API keys never appear in errors, logs, metadata or cached values: error
texts are built from our exception tree (which never includes keys) and are
scrubbed of every configured key as a second line of defence.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from ._config import Settings
from ._exceptions import (
    AllProvidersFailedError,
    Attempt,
    BadRequestError,
    ClientStateError,
    ConfigError,
    SampleMindError,
)
from ._models import ChatRequest, ChatResponse
from .router import DEFAULT_MODELS, ModelCatalog, Priority, RouteChoice, Router, Task

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

    from .cache import ResponseCache
    from .http import HttpClient
    from .providers.base import Provider

__all__ = ["AIManager"]

logger = logging.getLogger(__name__)

_REDACTED: Final = "**********"
_uncached_logged = False  # "running uncached" is said once per process


def _log_uncached_once() -> None:
    global _uncached_logged
    if not _uncached_logged:
        _uncached_logged = True
        logger.warning(
            "no Redis configured (REDIS_URL unset): AIManager runs uncached; "
            "set REDIS_URL or pass cache=ResponseCache(...) to cache responses"
        )


def _make_limiter(name: str, rate: float) -> AsyncLimiter:
    """A leaky-bucket limiter allowing ``rate`` requests per second (burst of max(1, rate))."""
    if not rate > 0:
        raise ConfigError(f"rate_limit_per_s of {name} must be > 0 or None, got {rate}")
    from aiolimiter import AsyncLimiter  # imported only when a limit is configured

    if rate >= 1:
        return AsyncLimiter(rate, 1.0)
    return AsyncLimiter(1, 1.0 / rate)


def _make_redis(settings: Settings) -> Any:
    """A ``redis.asyncio`` client (or ``RedisCluster``) for ``settings.redis_url``."""
    url = settings.redis_url
    assert url is not None
    try:
        if settings.redis_cluster:
            from redis.asyncio.cluster import RedisCluster  # only when a cluster is configured

            return RedisCluster.from_url(url, max_connections=settings.cache.max_connections)
        from redis.asyncio import Redis

        return Redis.from_url(url, max_connections=settings.cache.max_connections)
    except ValueError as exc:
        # The URL may hold a password: do not echo it.
        raise ConfigError(
            f"REDIS_URL is not a valid Redis URL ({type(exc).__name__}); "
            "expected redis://, rediss:// or unix://"
        ) from None


def _counts_against_health(exc: SampleMindError) -> bool:
    return not isinstance(exc, BadRequestError | ConfigError)


class AIManager:
    """Cached, routed, health-aware chat completions (see the module docstring).

    Everything can be injected; what is not is built from ``settings``
    (default ``Settings()``): the cache from ``settings.redis_url`` (none:
    uncached, logged once), a private :class:`HttpClient` from
    ``settings.http``, a :class:`Router` whose catalog applies the providers'
    price and model overrides. The manager closes what it created (HTTP
    client, Redis client, cache) and never what was injected.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        cache: ResponseCache | None = None,
        http: HttpClient | None = None,
        router: Router | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._owned: list[Any] = []
        self._redis: Any = None
        if cache is None and self.settings.redis_url:
            from .cache import ResponseCache

            self._redis = _make_redis(self.settings)
            cache = ResponseCache(self._redis, config=self.settings.cache)
            self._owned.append(cache)
        elif cache is None:
            _log_uncached_once()
        self._cache = cache
        if http is None:
            from .http import HttpClient

            http = HttpClient(self.settings.http)
            self._owned.append(http)
        self._http = http
        if router is None:
            # A default_model the user configured wins over the built-in per-task models.
            configured = {n for n, c in self.settings.providers.items() if c.default_model}
            models = {k: v for k, v in DEFAULT_MODELS.items() if k[0] not in configured}
            router = Router(
                breaker=self.settings.breaker,
                catalog=ModelCatalog.from_settings(self.settings),
                models=models,
            )
        self._router = router
        self._providers: dict[str, Provider] = {}
        self._limiters: dict[str, AsyncLimiter | None] = {}
        for name in self._router.providers:
            cfg = self.settings.providers.get(name)
            rate = cfg.rate_limit_per_s if cfg is not None else None
            self._limiters[name] = _make_limiter(name, rate) if rate is not None else None
        self._secrets = [
            cfg.api_key.get_secret_value()
            for cfg in self.settings.providers.values()
            if cfg.api_key is not None and cfg.api_key.get_secret_value()
        ]
        self._keyless: dict[str, str | None] = {}  # provider -> skip reason (None: has a key)
        self._closed = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AIManager:
        """A manager configured by :meth:`Settings.from_env` (``REDIS_URL``, provider URLs and keys)."""
        return cls(Settings.from_env(env))

    # -- accessors -----------------------------------------------------------

    @property
    def cache(self) -> ResponseCache | None:
        """The response cache (``None``: running uncached)."""
        return self._cache

    @property
    def http(self) -> HttpClient:
        return self._http

    @property
    def router(self) -> Router:
        return self._router

    def provider(self, name: str) -> Provider:
        """The adapter of provider ``name`` (built on first use)."""
        adapter = self._providers.get(name)
        if adapter is None:
            from .providers import get_provider

            adapter = get_provider(name, self.settings.provider(name))
            self._providers[name] = adapter
        return adapter

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> AIManager:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close what this manager created (idempotent); injected parts stay open."""
        if self._closed:
            return
        self._closed = True
        for part in reversed(self._owned):
            await part.aclose()
        if self._redis is not None:
            await self._redis.aclose()

    # -- the call --------------------------------------------------------------

    async def complete(
        self,
        request: ChatRequest,
        *,
        task: Task | str = "chat",
        priority: Priority | str = "speed",
    ) -> ChatResponse:
        """The reply to ``request``: from the cache, or the first provider of the chain that answers.

        Raises :class:`~samplemind_core.ConfigError` for an invalid request
        (see :meth:`ChatRequest.validate`), an unknown task, priority or pinned provider, and :class:`~samplemind_core.AllProvidersFailedError`
        when no provider of the chain answered.
        """
        if self._closed:
            raise ClientStateError("AIManager is closed: create a new one")
        start = time.perf_counter()
        request.validate()  # again: a field may have been changed since construction
        self._router.chain(task, priority)  # validate before any lookup
        called = False

        async def call() -> ChatResponse:
            nonlocal called
            called = True
            return await self._call_chain(request, task, priority)

        if self._cache is None:
            response = await call()
        else:
            response = await self._cache.get_or_call(request, call)
        latency_ms = (time.perf_counter() - start) * 1000.0
        if called:
            return replace(response, latency_ms=latency_ms)
        if response.cached:
            # A cache hit: get_or_call hands each caller an object (and metadata) of its own,
            # already cost_usd=0.0, so it is completed in place instead of copied again.
            response.attempts = 0
            response.latency_ms = latency_ms
            return response
        # A copy of a concurrent identical call's reply: nothing was paid here.
        metadata = dict(response.metadata)
        metadata["coalesced"] = True
        metadata.setdefault(
            "cache", {"latency_ms": response.latency_ms, "cost_usd": response.cost_usd}
        )
        return replace(
            response,
            cached=True,
            cost_usd=0.0,
            attempts=0,
            latency_ms=latency_ms,
            metadata=metadata,
        )

    def _missing_key(self, name: str) -> str | None:
        """Why ``name`` must be skipped for want of an API key (None: it can be called).

        Decided (and, when skipped, logged) once per provider per manager.
        """
        try:
            return self._keyless[name]
        except KeyError:
            pass
        try:
            adapter = self.provider(name)
        except ConfigError:
            return None  # an unknown provider: the call reports it
        reason = None
        if adapter.NEEDS_KEY and not adapter.config.api_key:
            reason = f"no API key configured (set {name.upper()}_API_KEY)"
            logger.warning("provider %s skipped: %s", name, reason)
        self._keyless[name] = reason
        return reason

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, _REDACTED)
        return text

    async def _call_chain(
        self, request: ChatRequest, task: Task | str, priority: Priority | str
    ) -> ChatResponse:
        start = time.perf_counter()
        router = self._router
        attempts: list[Attempt] = []
        route: list[dict[str, Any]] = []
        last_exc: BaseException | None = None

        def note(choice: RouteChoice, outcome: str, error: str | None, ms: float) -> None:
            route.append(
                {
                    "provider": choice.provider,
                    "model": choice.model,
                    "outcome": outcome,
                    "error": error,
                    "latency_ms": ms,
                }
            )
            if error is not None:
                attempts.append(Attempt(choice.provider, choice.model, error, ms))

        async def call(choice: RouteChoice) -> ChatResponse | None:
            nonlocal last_exc
            name = choice.provider
            limiter = self._limiters.get(name)
            t0 = time.perf_counter()
            try:
                adapter = self.provider(name)
                if limiter is not None:
                    await limiter.acquire()
                    t0 = time.perf_counter()  # waiting for the limiter is not provider latency
                reply = await adapter.complete(self._http, request, choice.model)
            except SampleMindError as exc:
                ms = (time.perf_counter() - t0) * 1000.0
                error = self._redact(f"{type(exc).__name__}: {exc}")
                if _counts_against_health(exc):
                    router.record_failure(name, error)
                else:
                    router.release(name)
                note(choice, "error", error, ms)
                last_exc = exc
                logger.warning(
                    "provider %s (model %s) failed with %s; falling back",
                    name,
                    choice.model,
                    type(exc).__name__,
                )
                logger.debug("provider %s failure detail: %s", name, error)
                return None
            except BaseException:
                router.release(name)  # cancelled or a bug: no verdict on the provider
                raise
            ms = (time.perf_counter() - t0) * 1000.0
            router.record_success(name, ms)
            note(choice, "ok", None, ms)
            metadata = dict(reply.metadata)
            metadata["route"] = route
            return replace(
                reply,
                estimated_cost_usd=choice.estimated_cost_usd,
                latency_ms=(time.perf_counter() - start) * 1000.0,
                cached=False,
                metadata=metadata,
            )

        # Providers whose breaker is open go to the end of the chain: they are
        # called only when every other choice has failed (a last resort).
        deferred: list[RouteChoice] = []
        for choice in router.plan(task, priority, request, include_skipped=True):
            if choice.skip_reason is not None:
                note(choice, "skipped", f"skipped: {choice.skip_reason}", 0.0)
            elif (keyless := self._missing_key(choice.provider)) is not None:
                note(choice, "skipped", f"skipped: {keyless}", 0.0)
            elif not router.allow(choice.provider):
                deferred.append(choice)
            elif (reply := await call(choice)) is not None:
                return reply
        for choice in deferred:
            note(choice, "last resort", None, 0.0)
            if (reply := await call(choice)) is not None:
                return reply
        if not attempts:
            raise AllProvidersFailedError(
                [Attempt("-", request.model or "-", "no provider in the chain")]
            )
        failed = AllProvidersFailedError(attempts)
        # Chain the last cause for debugging, unless its text holds a key (e.g. a
        # provider that echoes the credential in its error body).
        if last_exc is not None and self._redact(str(last_exc)) == str(last_exc):
            raise failed from last_exc
        raise failed from None
