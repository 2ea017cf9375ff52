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

:meth:`AIManager.stream` takes the same road with chunks (see its docstring and
:mod:`samplemind_core._streaming`): a stored answer is replayed chunk by chunk,
identical streams share one upstream, a failure before the first text chunk falls
back as above and one after it raises :class:`~samplemind_core.StreamInterrupted`.

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

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterator, Mapping
from dataclasses import replace
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal

from ._cache.keys import GensMoved
from ._config import Settings, StreamConfig
from ._exceptions import (
    AllProvidersFailedError,
    Attempt,
    BadRequestError,
    ClientStateError,
    ConfigError,
    RequestTimeout,
    SampleMindError,
    StreamInterrupted,
)
from ._models import ChatRequest, ChatResponse
from ._streaming import (
    CHUNKS_KEY,
    IdleWatch,
    ResponseStream,
    UpstreamFeed,
    chunk_boundaries,
)
from ._streaming import finalize_stream as _finalize_stream
from .router import DEFAULT_MODELS, ModelCatalog, Priority, RouteChoice, Router, Task

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

    from .cache import ResponseCache
    from .cache._relay import RelayWriter
    from .http import HttpClient
    from .providers.base import Provider, ProviderStream

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


class _RouteLog:
    """The steps of one call's chain (``metadata["route"]``), its failed attempts and last error."""

    __slots__ = ("attempts", "last_exc", "manager", "route")

    def __init__(self, manager: AIManager) -> None:
        self.manager = manager
        self.route: list[dict[str, Any]] = []
        self.attempts: list[Attempt] = []
        self.last_exc: BaseException | None = None

    def note(self, choice: RouteChoice, outcome: str, error: str | None, ms: float) -> None:
        self.route.append(
            {
                "provider": choice.provider,
                "model": choice.model,
                "outcome": outcome,
                "error": error,
                "latency_ms": ms,
            }
        )
        if error is not None:
            self.attempts.append(Attempt(choice.provider, choice.model, error, ms))

    def failed(
        self, choice: RouteChoice, exc: SampleMindError, ms: float, then: str = "falling back"
    ) -> str:
        """Record a provider's failure (health, route, log); returns the redacted error text."""
        manager = self.manager
        name = choice.provider
        error = manager._redact(f"{type(exc).__name__}: {exc}")
        if _counts_against_health(exc):
            manager._router.record_failure(name, error)
        else:
            manager._router.release(name)
        self.note(choice, "error", error, ms)
        self.last_exc = exc
        logger.warning(
            "provider %s (model %s) failed with %s; %s",
            name,
            choice.model,
            type(exc).__name__,
            then,
        )
        logger.debug("provider %s failure detail: %s", name, error)
        return error

    def all_failed(self, request: ChatRequest) -> AllProvidersFailedError:
        """The error of a chain where every choice failed (its cause chained when safe)."""
        if not self.attempts:
            return AllProvidersFailedError(
                [Attempt("-", request.model or "-", "no provider in the chain")]
            )
        failed = AllProvidersFailedError(self.attempts)
        # Chain the last cause for debugging, unless its text holds a key (e.g. a
        # provider that echoes the credential in its error body).
        last = self.last_exc
        if last is not None and self.manager._redact(str(last)) == str(last):
            failed.__cause__ = last
        else:
            failed.__suppress_context__ = True
        return failed


class _ChainStep:
    """One step of reading a provider's stream into a feed: up to one non-empty text chunk,
    pushed (and relayed) in order; the body of :meth:`AIManager._read_chain`'s read loop,
    run by the producer task or, lent (:meth:`UpstreamFeed.lend`), by the only reader's.
    Returns False at the end of the stream, True after a chunk; raises the read's errors,
    the idle timeout as ``RequestTimeout``."""

    __slots__ = ("begin", "chunks", "feed", "fields", "name", "relay", "watch")

    def __init__(
        self,
        feed: UpstreamFeed,
        upstream: ProviderStream,
        watch: IdleWatch,
        relay: RelayWriter | None,
        choice: RouteChoice,
        begin: int,
        *,
        restart: bool,
    ) -> None:
        self.feed = feed
        self.chunks = upstream.__aiter__()
        self.watch = watch
        self.relay = relay
        self.begin = begin
        self.name = choice.provider
        first: dict[bytes, bytes] | None = None
        if relay is not None:
            first = {b"p": f"{choice.provider}/{choice.model}".encode()}
            if restart:
                first[b"restart"] = b"1"
        # The first chunk's relay fields, and whether it starts a replacement stream.
        self.fields: tuple[dict[bytes, bytes] | None, bool] | None = (first, restart)

    async def __call__(self) -> bool:
        chunks = self.chunks
        watch = self.watch
        while True:
            try:
                text = await chunks.__anext__()
            except StopAsyncIteration:
                return False
            except BaseException:
                if watch.expired():
                    raise RequestTimeout(
                        f"{self.name}: no chunk within idle_timeout_s={watch.idle_s:g} s"
                    ) from None
                raise
            finally:
                watch.touch()
            if text:
                break
        feed = self.feed
        relay = self.relay
        fields: dict[bytes, bytes] | None = None
        if self.fields is not None and len(feed.chunks) == self.begin:
            fields, restart = self.fields
            self.fields = None
            if restart:
                feed.restart()
        feed.push(text)
        if relay is not None:
            fields = fields or {}
            fields[b"t"] = text.encode()
            relay.put(fields)
        return True


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
        self._feeds: dict[str, UpstreamFeed] = {}  # cache key -> the upstream stream in flight
        self._stream_tasks: set[asyncio.Task[None]] = set()
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
        tasks = list(self._stream_tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks)
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
            response.metadata.pop(CHUNKS_KEY, None)  # a stored stream's boundaries
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

    def _choices(
        self,
        request: ChatRequest,
        task: Task | str,
        priority: Priority | str,
        log: _RouteLog,
    ) -> Iterator[RouteChoice]:
        """The choices to call, in order (skipped ones noted in ``log``).

        Providers whose breaker is open go to the end of the chain: they are called
        only when every other choice has failed (a last resort). Lazy: a breaker is
        asked just before its provider's turn.
        """
        router = self._router
        deferred: list[RouteChoice] = []
        for choice in router.plan(task, priority, request, include_skipped=True):
            if choice.skip_reason is not None:
                log.note(choice, "skipped", f"skipped: {choice.skip_reason}", 0.0)
            elif (keyless := self._missing_key(choice.provider)) is not None:
                log.note(choice, "skipped", f"skipped: {keyless}", 0.0)
            elif not router.allow(choice.provider):
                deferred.append(choice)
            else:
                yield choice
        for choice in deferred:
            log.note(choice, "last resort", None, 0.0)
            yield choice

    async def _call_chain(
        self, request: ChatRequest, task: Task | str, priority: Priority | str
    ) -> ChatResponse:
        start = time.perf_counter()
        router = self._router
        log = _RouteLog(self)

        async def call(choice: RouteChoice) -> ChatResponse | None:
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
                log.failed(choice, exc, (time.perf_counter() - t0) * 1000.0)
                return None
            except BaseException:
                router.release(name)  # cancelled or a bug: no verdict on the provider
                raise
            ms = (time.perf_counter() - t0) * 1000.0
            router.record_success(name, ms)
            log.note(choice, "ok", None, ms)
            metadata = dict(reply.metadata)
            metadata["route"] = log.route
            return replace(
                reply,
                estimated_cost_usd=choice.estimated_cost_usd,
                latency_ms=(time.perf_counter() - start) * 1000.0,
                cached=False,
                metadata=metadata,
            )

        for choice in self._choices(request, task, priority, log):
            if (reply := await call(choice)) is not None:
                return reply
        raise log.all_failed(request)

    # -- streams ---------------------------------------------------------------

    def stream(
        self,
        request: ChatRequest,
        *,
        task: Task | str = "chat",
        priority: Priority | str = "speed",
        idle_timeout_s: float | None = None,
        on_interrupt: Literal["raise", "restart"] | None = None,
        replay: Literal["instant", "paced"] | None = None,
    ) -> ResponseStream:
        """The answer to ``request`` as a stream of chunks (see :mod:`samplemind_core._streaming`).

        ::

            async with ai.stream(request, task="describe") as stream:
                async for chunk in stream:          # StreamChunk(text, index, restarted)
                    ui.write(chunk.text)
                resp = stream.response              # what complete() would have returned

        The road is complete()'s with chunks: a stored answer of the same request
        (streamed or not) is replayed from the cache; with a cache, concurrent
        identical streams share one upstream, in this process (a caller that joins
        late gets every chunk from the first, then the live tail) and, through Redis,
        across processes (:mod:`samplemind_core.cache._relay`); without a cache each
        call streams on its own. Otherwise the router's chain is tried in turn, each provider
        with its native stream on the shared client. A failure before the first
        text chunk falls back exactly as in complete(); one after it raises
        :class:`~samplemind_core.StreamInterrupted` (or, with
        ``on_interrupt="restart"``, starts a fresh stream from the next provider,
        whose first chunk has ``restarted=True``). A stream that completes is stored
        with its chunk boundaries; nothing of a failed one is.

        ``idle_timeout_s``, ``on_interrupt`` and ``replay`` override
        ``settings.stream`` (:class:`~samplemind_core.StreamConfig`) for this call.
        Calls that share an upstream share the idle timeout of the call that opened it
        (streams with ``on_interrupt="restart"`` never share one with the others).
        Bad arguments raise :class:`~samplemind_core.ConfigError` here, before
        anything is sent.
        """
        if self._closed:
            raise ClientStateError("AIManager is closed: create a new one")
        start = time.perf_counter()
        request.validate()
        self._router.chain(task, priority)  # validate before any lookup
        config = self.settings.stream
        if idle_timeout_s is not None or on_interrupt is not None or replay is not None:
            overrides = {
                name: value
                for name, value in (
                    ("idle_timeout_s", idle_timeout_s),
                    ("on_interrupt", on_interrupt),
                    ("replay", replay),
                )
                if value is not None
            }
            config = replace(config, **overrides)  # type: ignore[arg-type]

        return ResponseStream(
            partial(self._open_feed, request, task, priority, config),  # no coroutine of its own
            start=start,
            replay=config.replay,
            max_replay_gap_s=config.max_replay_gap_s,
            finalize=_finalize_stream,
        )

    async def _open_feed(
        self,
        request: ChatRequest,
        task: Task | str,
        priority: Priority | str,
        config: StreamConfig,
    ) -> tuple[UpstreamFeed, str]:
        """The feed a new stream reads and its role: a stored answer, a shared upstream, or a new one.

        With a cache, the request's fingerprint is computed once, here: the cache key
        serves the lookup, the feed (``|restart`` appended for ``on_interrupt="restart"``)
        and the relay. Identical streams share one feed from the start, so the lookup too
        is made once (2,000 callers -> one GET, not 2,000), and in the first caller's own
        task, like a ``complete()`` hit: a stored answer is ready when this returns (no
        producer task, no loop hop before the first chunk). On a miss a producer task reads
        the providers. When the first caller is cancelled during its lookup, the callers
        that joined meanwhile get a producer task that looks up again; nobody waits on a
        feed that no one fills.
        """
        if self._closed:
            raise ClientStateError("AIManager is closed: create a new one")
        cache = self._cache
        if cache is None:
            feed = UpstreamFeed()
            feed.attach()
            self._start_producer(feed, request, task, priority, config, None, looked_up=True)
            return feed, "leader"
        # The lookup without a helper coroutine between (each await level is re-entered at
        # every suspension of the lookup): as a hit does. The key is built under the
        # generations known in-process; when they are older than generation_ttl_s, their
        # reload travels in the lookup's own script where it can (one server, the relay on:
        # decision 0920), else it is made first, as before.
        gens = cache._clock() >= cache._gens_expiry
        if gens and not (config.relay and cache._gens_ride()):
            await cache._fresh_gens()  # the key below is under fresh generations
            gens = False
        cache_key = cache.key_for(request)
        key = cache_key if config.on_interrupt == "raise" else cache_key + "|restart"
        if (shared := self._feeds.get(key)) is not None:
            cache._stats.coalesced += 1
            shared.attach()
            return shared, "follower"
        feed = UpstreamFeed(key)
        feed.attach()
        self._feeds[key] = feed
        feed.on_idle = self._forget_feed
        box: list[Any] = []
        claim: bytes | bool | None = None
        try:
            if config.relay:  # on a miss, the relay claim in the same round trip (0880)
                try:
                    hit, claim = await cache._lookup_or_claim(
                        cache_key, key, time.perf_counter(), box, gens
                    )
                except GensMoved:  # the generations moved (now fresh): the key again
                    cache_key, key = self._rekey(feed, request, config)
                    hit, claim = await cache._lookup_or_claim(
                        cache_key, key, time.perf_counter(), box
                    )
            else:
                hit = await cache._lookup(cache_key, time.perf_counter(), extra=box)
        except BaseException:  # our caller's cancellation (a lookup raises no cache error)
            feed.detach()  # the last reader: the feed is forgotten
            if feed.readers > 0 and not feed.done:  # others joined meanwhile: serve them
                self._start_producer(feed, request, task, priority, config, cache_key)
            raise
        if hit is not None:
            self._forget_feed(feed)  # done: a later caller looks up for itself
            feed.source = "cache"
            feed.replay_stored(hit, box[0])  # the first chunk cut, the rest when read
            return feed, "leader"
        if self._closed:  # closed during the lookup: no new upstream
            if isinstance(claim, bytes):
                cache._relay_release_later(key, claim)
            self._forget_feed(feed)
            feed.fail(ClientStateError("the stream was closed: its AIManager was closed"))
            raise ClientStateError("AIManager is closed: create a new one")
        self._start_producer(
            feed, request, task, priority, config, cache_key, looked_up=True, claim=claim
        )
        return feed, "leader"

    def _rekey(
        self, feed: UpstreamFeed, request: ChatRequest, config: StreamConfig
    ) -> tuple[str, str]:
        """``request``'s cache key and feed key under the generations known now; ``feed``
        (and whoever joined it) moves to the new feed key (not shared under it when another
        feed already is: the relay claim then makes one of them follow the other)."""
        assert self._cache is not None
        cache_key = self._cache.key_for(request)
        key = cache_key if config.on_interrupt == "raise" else cache_key + "|restart"
        if key != feed.key:
            self._forget_feed(feed)
            feed.key = key
            self._feeds.setdefault(key, feed)
        return cache_key, key

    def _start_producer(
        self,
        feed: UpstreamFeed,
        request: ChatRequest,
        task: Task | str,
        priority: Priority | str,
        config: StreamConfig,
        cache_key: str | None,
        *,
        looked_up: bool = False,
        claim: bytes | bool | None = None,
    ) -> None:
        """Fill ``feed`` from a task of its own (:meth:`_produce`), held until it ends.
        ``claim``: the relay claim already made with the lookup (a token: the task owns the
        lease from now on, also when it is cancelled before it ever runs; False: another
        process leads); None: the task claims for itself."""
        handoff: list[bytes | bool] = [] if claim is None else [claim]
        task_ = asyncio.get_running_loop().create_task(
            self._produce(feed, request, task, priority, config, cache_key, looked_up, handoff)
        )
        feed.task = task_
        self._stream_tasks.add(task_)
        task_.add_done_callback(self._stream_tasks.discard)
        if isinstance(claim, bytes) and feed.key is not None and self._cache is not None:
            cache = self._cache
            key = feed.key

            def unclaimed(_: object) -> None:
                # A task cancelled before its first step never ran _produce's finally.
                if handoff:
                    cache._relay_release_later(key, handoff.pop())  # type: ignore[arg-type]

            task_.add_done_callback(unclaimed)

    def _forget_feed(self, feed: UpstreamFeed) -> None:
        if feed.key is not None and self._feeds.get(feed.key) is feed:
            del self._feeds[feed.key]

    async def _produce(
        self,
        feed: UpstreamFeed,
        request: ChatRequest,
        task: Task | str,
        priority: Priority | str,
        config: StreamConfig,
        cache_key: str | None,
        looked_up: bool,
        handoff: list[bytes | bool],
    ) -> None:
        """Fill ``feed`` (a task of its own; see :meth:`stream`): from another process's
        stream through the cache's relay, or from the chain's providers. ``cache_key``:
        the request's cache key (None without a cache); ``looked_up``: the stream's caller
        already missed it (see :meth:`_open_feed`), otherwise a stored answer is looked
        up first; ``handoff``: the relay claim made with that lookup (taken from the list
        at once: from then on this task gives the lease back), or empty."""
        cache = self._cache
        relay: str | None = None
        relay_token = b""
        writer: RelayWriter | None = None
        left = False  # cancelled: every reader left (or the manager closed)
        claimed = handoff.pop() if handoff else None  # (no await before the try below)
        if claimed:
            relay = feed.key
            relay_token = claimed  # type: ignore[assignment]
        try:
            if (
                cache is not None
                and cache_key is not None
                and not looked_up
                and cache._clock() >= cache._gens_expiry
            ):
                # (the key may be from an expired copy whose reload never came back)
                await cache._fresh_gens()
                cache_key, _ = self._rekey(feed, request, config)
            if (
                cache is not None
                and cache_key is not None
                and not looked_up
                and (found := await cache._lookup_with_extra(cache_key)) is not None
            ):
                feed.source = "cache"
                feed.replay_stored(*found)
                return
            if cache is not None and feed.key is not None and config.relay:
                box: list[Any] = []
                entry = cache_key
                assert entry is not None  # (with a cache, the feed's key is one)

                def recheck() -> Awaitable[ChatResponse | None]:
                    # Another process may have stored it and left since our lookup.
                    box.clear()
                    return cache._lookup(entry, time.perf_counter(), count_miss=False, extra=box)

                if claimed is None:
                    claim, again = await cache._relay_claim(feed.key, recheck, entry)
                else:  # claimed with the lookup, in one script: nothing stored then (0880)
                    claim, again = claimed, None
                if claim is False and again is None:
                    if await self._follow_relay(feed, feed.key, config):
                        return
                    # the other process failed or fell silent before any text
                    claim, again = await cache._relay_claim(feed.key, recheck, entry)
                if claim:
                    relay = feed.key
                    relay_token = claim if isinstance(claim, bytes) else b""
                if again is not None:  # stored meanwhile: a hit after all (lease or not)
                    cache._stats.misses -= 1  # counted by the first lookup
                    feed.source = "cache"
                    feed.replay_stored(again, box[0])
                    return
            writer = None if relay is None else cache._relay_writer(relay, relay_token)  # type: ignore[union-attr]
            await self._read_chain(feed, request, task, priority, config, writer, cache_key)
        except asyncio.CancelledError:
            left = True
            if not feed.done:  # the manager closed under its readers: they must not hang
                feed.fail(ClientStateError("the stream was closed: its AIManager was closed"))
            raise
        except BaseException as exc:  # a bug: every reader sees it
            if not feed.done:
                feed.fail(exc)
        finally:
            self._forget_feed(feed)
            if relay is not None and cache is not None:
                # At once, also when cancelled: followers elsewhere must not wait for us.
                if writer is not None and (not feed.done or feed.error is not None):
                    reason = (
                        "abandoned" if left or feed.error is None else type(feed.error).__name__
                    )
                    await writer.close(cache._relay_end_fields(None, reason))
                await cache._relay_release(relay, relay_token)

    async def _follow_relay(self, feed: UpstreamFeed, key: str, config: StreamConfig) -> bool:
        """Read another process's stream of ``key`` into ``feed``; False when nothing was
        delivered and this process should read the providers itself (the other one
        failed, left or fell silent for ``idle_timeout_s``, or Redis failed)."""
        cache = self._cache
        assert cache is not None
        feed.source = "relay"
        loop = asyncio.get_running_loop()
        idle = config.idle_timeout_s
        last = b"0-0"
        who = "-/-"
        begin = 0
        while True:
            got = await cache._relay_read(key, last, loop.time() + idle)
            entries: list[Any] = [("gone", None)] if got is None else got[1]
            if got is not None:
                last = got[0]
                if not entries:
                    entries = [("err", f"no chunk within idle_timeout_s={idle:g} s")]
            for kind, value in entries:
                if kind == "t":
                    feed.push(value)
                elif kind == "who":
                    who = value
                elif kind == "restart":
                    feed.restart()
                    begin = len(feed.chunks)
                elif kind == "ok":
                    feed.finish(value)
                    return True
                else:
                    if not feed.chunks:
                        feed.source = "upstream"
                        return False
                    provider, _, model = who.partition("/")
                    feed.fail(
                        StreamInterrupted(
                            partial_text="".join(feed.chunks[begin:]),
                            provider=provider,
                            model=model,
                            chunks=len(feed.chunks) - begin,
                            cause=f"the stream relayed from another process ended: {value or 'its leader left'}",
                        )
                    )
                    return True

    async def _read_chain(
        self,
        feed: UpstreamFeed,
        request: ChatRequest,
        task: Task | str,
        priority: Priority | str,
        config: StreamConfig,
        relay: RelayWriter | None,
        cache_key: str | None = None,
    ) -> None:
        """Read the chain's streams into ``feed`` (and, through ``relay``, into Redis);
        ``cache_key``: the request's cache key, as :meth:`_open_feed` computed it."""
        start = time.perf_counter()
        router = self._router
        cache = self._cache
        log = _RouteLog(self)
        idle = config.idle_timeout_s
        interrupted: StreamInterrupted | None = None
        interruptions: list[dict[str, Any]] = []
        for choice in self._choices(request, task, priority, log):
            name = choice.provider
            limiter = self._limiters.get(name)
            begin = len(feed.chunks)
            t0 = time.perf_counter()
            upstream: ProviderStream | None = None
            watch: IdleWatch | None = None
            try:
                adapter = self.provider(name)
                if limiter is not None:
                    await limiter.acquire()
                    t0 = time.perf_counter()
                upstream = await adapter.open_stream(self._http, request, choice.model)
                watch = IdleWatch(idle)  # the gap before each chunk, the first one included
                step = _ChainStep(
                    feed, upstream, watch, relay, choice, begin, restart=interrupted is not None
                )
                # Lent to a single reader's task where a cancelled read loses nothing
                # (decision 0800); read here otherwise.
                from .providers._stream import ProviderStream  # (imported with the adapter)

                lend = isinstance(upstream, ProviderStream) and upstream._allow_resume()
                await feed.drive(step, watch, lend=lend)
                watch.stop()
                reply = upstream.response
            except SampleMindError as exc:
                ms = (time.perf_counter() - t0) * 1000.0
                sent = len(feed.chunks) - begin
                if sent == 0:
                    log.failed(choice, exc, ms)
                    continue  # nothing shown yet: fall back as complete() does
                then = (
                    "restarting on the next provider"
                    if config.on_interrupt == "restart"
                    else "the stream is interrupted (text was already delivered)"
                )
                error = log.failed(choice, exc, ms, then)
                interrupted = StreamInterrupted(
                    partial_text="".join(feed.chunks[begin:]),
                    provider=name,
                    model=choice.model,
                    chunks=sent,
                    cause=error,
                    attempts=log.attempts,
                )
                if self._redact(str(exc)) == str(exc):
                    interrupted.__cause__ = exc
                interruptions.append(
                    {"provider": name, "model": choice.model, "chunks": sent, "error": error}
                )
                if config.on_interrupt == "restart":
                    continue
                feed.fail(interrupted)
                return
            except BaseException:
                router.release(name)  # cancelled or a bug: no verdict on the provider
                raise
            finally:
                if watch is not None:
                    watch.stop()
                if upstream is not None:
                    await upstream.aclose()
            ms = (time.perf_counter() - t0) * 1000.0
            router.record_success(name, ms)
            log.note(choice, "ok", None, ms)
            metadata = dict(reply.metadata)
            metadata["route"] = log.route
            if interruptions:
                metadata["interruptions"] = interruptions
            response = replace(
                reply,
                estimated_cost_usd=choice.estimated_cost_usd,
                latency_ms=(time.perf_counter() - start) * 1000.0,
                cached=False,
                metadata=metadata,
            )
            if cache is not None:
                # Stored before the readers see the end: a stream that a caller saw
                # complete is a hit for the next one (a SET, bounded by op_timeout_s).
                # Its chunk boundaries go in the envelope's trailing field.
                await cache._set_with_extra(request, response, chunk_boundaries(feed), cache_key)
                if relay is not None:
                    await relay.close(cache._relay_end_fields(response))
            feed.finish(response)
            return
        if interrupted is not None:
            interrupted.attempts = list(log.attempts)
            feed.fail(interrupted)
        else:
            feed.fail(log.all_failed(request))
