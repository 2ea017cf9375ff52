"""Explicit configuration objects.

Every part of the layer takes a small typed config object in its constructor;
``Settings``                       bundles them. :meth:`Settings.from_env` is the **only** place in
the project that reads the process environment.

Variables read by :meth:`Settings.from_env`:

================================== ===========================================
``REDIS_URL``                      ``redis://``, ``rediss://`` (TLS; ``?ssl_ca_certs=PATH`` for
                                   a private CA), ``unix://`` (unset: run uncached)
``REDIS_CLUSTER``                  ``1`` when ``REDIS_URL`` names a Redis Cluster node
``SAMPLEMIND_FINGERPRINT_KEY``     64 hex chars (32 bytes): the keyed-BLAKE3 key of cache keys
``SAMPLEMIND_CACHE_NAMESPACE``     tenant namespace (default ``default``)
``SAMPLEMIND_CACHE_TTL``           seconds (default 7 days)
``SAMPLEMIND_HTTP2``               ``1`` to enable HTTP/2
``SAMPLEMIND_TRANSPORT``           ``auto`` (default: aiohttp, httpx for HTTP/2), ``httpx`` or ``aiohttp``
``SAMPLEMIND_STREAM_IDLE_TIMEOUT`` seconds between two chunks of a stream (default 30)
``OLLAMA_HOST``                    default ``http://localhost:11434``
``OPENAI_BASE_URL``                default ``https://api.openai.com/v1``
``ANTHROPIC_BASE_URL``             default ``https://api.anthropic.com``
``GEMINI_BASE_URL``                default ``https://generativelanguage.googleapis.com``
``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY``
``OLLAMA_MODEL``, ``OPENAI_MODEL``  a provider's default model (``ProviderConfig.default_model``),
``ANTHROPIC_MODEL``                asked for by every call without its own ``model``: e.g. the
``GEMINI_MODEL``                   one a local llama.cpp or Ollama serves (unset: the adapter's)
================================== ===========================================

Every value read is checked: a flag is one of ``1/0/true/false/yes/no/on/off``,
the TTL a finite number of seconds, a URL is printable ASCII with the expected
scheme and a host (and a numeric port), a key printable ASCII without spaces, a model
name printable text without spaces (``gemma3:270m``, ``/models/gemma-3-270m.gguf``). A bad value raises
:class:`~samplemind_core.ConfigError` naming the variable (never echoing a
password or a key); an empty or blank value counts as unset.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Final, Literal
from urllib.parse import urlsplit

from ._exceptions import ConfigError

__all__ = [
    "PROVIDERS",
    "BreakerConfig",
    "CacheConfig",
    "HttpConfig",
    "ProviderConfig",
    "RetryConfig",
    "Secret",
    "Settings",
    "StreamConfig",
]

PROVIDERS: Final = ("ollama", "gemini", "anthropic", "openai")
"""The four providers, in the order of the seed's plan (local first)."""

MIN_STREAM_LINE_BYTES: Final = 1 << 10
MAX_STREAM_LINE_BYTES: Final = 1 << 30
"""The range of ``HttpConfig.stream_max_line_bytes`` (1 KiB to 1 GiB)."""

MAX_TTL_S: Final = 100 * 365 * 86400.0
"""The longest cache TTL accepted (100 years; Redis refuses far larger expiries)."""


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or f-strings.

    >>> s = Secret("sk-123")
    >>> s
    Secret('**********')
    >>> s.get_secret_value()
    'sk-123'
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


_MASK: Final = "***"
_SECRET_QUERY_NAME: Final = re.compile(r"pass|pwd|secret|token|key|auth|sig|credential", re.I)


def mask_url(url: str) -> str:
    """``url`` with its secrets replaced by ``***``, for ``repr``, logs and messages.

    The password of the userinfo is masked (``redis://user:***@host``); a userinfo
    without a password is masked whole (``https://***@host``: a lone userinfo is
    often a token), and so is the value of every query parameter whose name looks
    like a secret (``password``, ``token``, ``key``, ``auth``, ``sig``, ...). The
    text is never parsed strictly, so a malformed URL is masked too.

    >>> mask_url("redis://app:hunter2@cache:6379/0")
    'redis://app:***@cache:6379/0'
    >>> mask_url("redis://:hunter2@cache:6379/0")
    'redis://:***@cache:6379/0'
    >>> mask_url("unix:///run/redis.sock?db=0&password=hunter2")
    'unix:///run/redis.sock?db=0&password=***'
    >>> mask_url("https://api.openai.com/v1")
    'https://api.openai.com/v1'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    end = len(rest)
    for stop in "/?#":
        at = rest.find(stop)
        if at != -1:
            end = min(end, at)
    netloc, tail = rest[:end], rest[end:]
    userinfo, at_sign, hostport = netloc.rpartition("@")
    if at_sign:
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{_MASK}@{hostport}" if colon else f"{_MASK}@{hostport}"
    path, qmark, query = tail.partition("?")
    if qmark:
        query, hash_sign, fragment = query.partition("#")
        pairs = []
        for pair in query.split("&"):
            name, eq, _value = pair.partition("=")
            pairs.append(f"{name}={_MASK}" if eq and _SECRET_QUERY_NAME.search(name) else pair)
        tail = f"{path}?{'&'.join(pairs)}{hash_sign}{fragment}"
    return f"{scheme}{sep}{netloc}{tail}"


_URL_PASSWORD: Final = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^\s/:@]*:)[^\s/@]+@", re.I)


def mask_urls_in(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it masked.

    For messages of other libraries and servers, which may quote a URL.

    >>> mask_urls_in("cannot reach redis://app:hunter2@cache:6379 (refused)")
    'cannot reach redis://app:***@cache:6379 (refused)'
    """
    return _URL_PASSWORD.sub(r"\1***@", text) if "@" in text else text


def _masked_repr(obj: object, url_fields: tuple[str, ...]) -> str:
    """The dataclass ``repr`` of ``obj`` with the URLs in ``url_fields`` passed through :func:`mask_url`."""
    shown = []
    for f in fields(obj):  # type: ignore[arg-type]
        if not f.repr:
            continue
        value = getattr(obj, f.name)
        if f.name in url_fields and isinstance(value, str):
            shown.append(f"{f.name}={mask_url(value)!r}")
        else:
            shown.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(shown)})"


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Retries of the shared HTTP client (exponential backoff with full jitter).

    ``attempts`` counts the first try: 3 means up to two retries.
    ``retry_after_cap_s`` bounds how long a 429's ``Retry-After`` is honoured.
    ``budget_s`` bounds the total time spent sleeping between attempts.
    """

    attempts: int = 3
    backoff_base_s: float = 0.1
    backoff_max_s: float = 5.0
    retry_after_cap_s: float = 30.0
    budget_s: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"RetryConfig.attempts must be >= 1, got {self.attempts}")


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """Pool, timeouts, protocol and transport of the shared HTTP client.

    ``transport="auto"`` (the default) is the aiohttp transport, or httpx's own
    when ``http2=True`` (aiohttp speaks HTTP/1.1 only). The measurements behind
    that default are in ``docs/measurements/2026-12-01-moved-from-core-docstrings.md``
    (``samplemind-bench run --live --suite client`` measures them again).

    ``stream_max_line_bytes`` bounds what a streamed reply may buffer: one
    line of an event stream or NDJSON body, and the data of one SSE event
    (default 1 MiB; an integer in [1 KiB, 1 GiB]). A longer one is a
    :class:`~samplemind_core.MalformedResponseError`, never an unbounded buffer.
    """

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    write_timeout_s: float = 30.0
    pool_timeout_s: float = 10.0
    max_connections: int = 100
    max_keepalive_connections: int = 50
    keepalive_expiry_s: float = 30.0
    http2: bool = False
    transport: Literal["auto", "httpx", "aiohttp"] = "auto"
    retry: RetryConfig = field(default_factory=RetryConfig)
    stream_max_line_bytes: int = 1 << 20

    def __post_init__(self) -> None:
        limit = self.stream_max_line_bytes
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not MIN_STREAM_LINE_BYTES <= limit <= MAX_STREAM_LINE_BYTES
        ):
            raise ConfigError(
                "HttpConfig.stream_max_line_bytes must be an integer in "
                f"[{MIN_STREAM_LINE_BYTES}, {MAX_STREAM_LINE_BYTES}], got {limit!r}"
            )

    @property
    def effective_transport(self) -> Literal["httpx", "aiohttp"]:
        """The transport ``"auto"`` resolves to (``"aiohttp"``, or ``"httpx"`` for HTTP/2)."""
        if self.transport == "auto":
            return "httpx" if self.http2 else "aiohttp"
        return self.transport


@dataclass(frozen=True, slots=True)
class CacheConfig:
    """The response cache.

    ``fingerprint_key`` is the 32-byte key of the keyed hash (``None``: the
    built-in default key, fine for one user, not for a cache shared between
    users). ``l1_max_entries = 0`` turns the in-process L1 off.

    ``op_timeout_s`` bounds each Redis operation *including* opening a connection
    when the pool has no idle one (TCP connect, TLS handshake, AUTH). The 50 ms
    default suits a Redis on the same host or LAN; for ``rediss://`` to a remote
    Redis, set it above 4 round trips, or the cache never gets a connection.
    The deadline is checked after the event loop has handled every reply that
    had arrived by then, so a busy event loop (a burst of thousands of calls)
    does not turn a fast reply into a timeout; whatever the load, an operation
    is given up after ``max(2 s, 8 x op_timeout_s)``.

    ``max_connections`` bounds how many Redis operations one cache runs at once
    (the size of the client's connection pool that :class:`~samplemind_core.AIManager`
    builds; the cache also never exceeds the pool of a client it is given).
    An operation that finds every slot taken waits for one, first come first
    served, for at most ``pool_timeout_s`` (a deadline of its own, before
    ``op_timeout_s`` starts); one that gets no slot in time is a counted miss
    (or a skipped write) in ``stats().pool_timeouts``, never a Redis error, and
    never marks Redis unhealthy.

    ``lease_s`` turns on cross-process single-flight for ``get_or_call``: on a
    miss, one process takes a short Redis lease (``SET NX PX`` on
    ``{key}:lease``) and calls the provider; the others poll the key (back-off
    from 10 ms to 200 ms) and are served its answer, or take the lease over
    as soon as its holder leaves without storing one (a holder releases its
    lease on every way out: return, error, cancellation, Redis failing), or
    call the provider themselves once ``lease_s`` has passed (a leaseholder
    whose process died holds nobody up for longer). Set it above a typical
    provider call. ``None`` turns it off.

    ``serializer`` is the format of stored values (``"msgpack"`` or
    ``"json"``; either is read back). ``allow_insecure_hasher`` lets
    benchmarks use a non-cryptographic ``hasher`` (``xxh3_128``); never set it
    for a cache shared between users. ``generation_ttl_s`` is how long the
    generations read from Redis are trusted in-process (a ``clear()`` in
    another process is seen within it). After a Redis failure the cache skips
    Redis for ``backoff_min_s``, doubling up to ``backoff_max_s``, per further
    failure. ``bulk_timeout_s`` bounds each pipeline of ``warm()`` and
    ``purge()`` (a whole purge or ``info()`` scan: ten times it);
    ``warm_batch`` is the number of keys per pipeline.

    ``batch_gets`` (default on) sends the lookups that callers start in the same
    event-loop iteration together: one non-transactional pipeline of ``GET`` commands
    per batch (on a cluster, a cluster pipeline, routed per key), at most
    ``get_batch_max`` keys each. A batch is one store operation: it takes one
    connection slot and runs under one ``op_timeout_s`` deadline, and its outcome
    is counted per key (a timed-out or failed batch is a counted miss and a backend
    error for every key in it; a caller's cancellation never cancels the others'
    lookups). The stream path's small commands join the same pipelines (a relay
    lease's ``SET NX`` and ``UNLINK``, the relay's ``XADD`` entries, a stored value's
    ``SET``; decision 0400), so that many concurrent streams cost a few pipelines
    instead of a few commands each. ``False`` sends one ``GET`` per lookup, and each
    of those commands on its own.
    """

    namespace: str = "default"
    ttl_s: float = 7 * 24 * 3600.0
    op_timeout_s: float = 0.05
    max_value_bytes: int = 1 << 20
    key_prefix: str = "sm"
    hasher: str = "blake3"
    fingerprint_key: Secret | None = None
    l1_max_entries: int = 0
    l1_max_bytes: int = 64 << 20
    l1_ttl_s: float = 60.0
    max_connections: int = 50
    pool_timeout_s: float = 5.0
    lease_s: float | None = 10.0
    serializer: Literal["msgpack", "json"] = "msgpack"
    allow_insecure_hasher: bool = False
    generation_ttl_s: float = 1.0
    backoff_min_s: float = 0.05
    backoff_max_s: float = 0.5
    bulk_timeout_s: float = 10.0
    warm_batch: int = 500
    batch_gets: bool = True
    get_batch_max: int = 128

    def __post_init__(self) -> None:
        if self.serializer not in ("msgpack", "json"):
            raise ConfigError(f"serializer must be 'msgpack' or 'json', got {self.serializer!r}")
        if self.warm_batch < 1:
            raise ConfigError(f"warm_batch must be >= 1, got {self.warm_batch}")
        if self.get_batch_max < 1:
            raise ConfigError(f"get_batch_max must be >= 1, got {self.get_batch_max}")
        if not self.namespace or ":" in self.namespace:
            raise ConfigError(
                f"cache namespace must be non-empty and without ':', got {self.namespace!r}"
            )
        if not _text_ok(self.namespace):
            raise ConfigError(f"cache namespace must be printable text, got {self.namespace!r}")
        if not 0 < self.ttl_s <= MAX_TTL_S:  # also refuses NaN
            raise ConfigError(
                f"cache ttl must be a finite number of seconds in (0, {MAX_TTL_S:.0f}], "
                f"got {self.ttl_s}"
            )
        if not 0 < self.op_timeout_s < math.inf:
            raise ConfigError(
                f"cache op_timeout_s must be a finite number > 0, got {self.op_timeout_s}"
            )
        if self.max_connections < 1:
            raise ConfigError(f"cache max_connections must be >= 1, got {self.max_connections}")
        if not 0 < self.pool_timeout_s < math.inf:
            raise ConfigError(
                f"cache pool_timeout_s must be a finite number > 0, got {self.pool_timeout_s}"
            )
        if self.lease_s is not None and not 0 < self.lease_s < math.inf:
            raise ConfigError(
                f"cache lease_s must be a finite number > 0 or None, got {self.lease_s}"
            )
        if self.fingerprint_key is not None:
            raw = self.fingerprint_key.get_secret_value()
            try:
                ok = len(bytes.fromhex(raw)) == 32
            except ValueError:
                ok = False
            if not ok:
                raise ConfigError("fingerprint key must be 64 hex characters (32 bytes)")

    def key_bytes(self) -> bytes | None:
        """The fingerprint key as bytes, or ``None`` for the built-in default."""
        if self.fingerprint_key is None:
            return None
        return bytes.fromhex(self.fingerprint_key.get_secret_value())


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
class StreamConfig:
    """Streams of :meth:`AIManager.stream <samplemind_core.AIManager.stream>` (each can be
    overridden per call).

    ``idle_timeout_s``: the longest gap allowed between two chunks of an upstream
    stream, the wait for its first chunk after the headers included; a longer gap
    ends the upstream: before any text a fallback to the next provider, after text
    :class:`~samplemind_core.StreamInterrupted`. ``on_interrupt``: ``"raise"``
    (default: :class:`~samplemind_core.StreamInterrupted`) or ``"restart"`` (a fresh
    stream from the next provider of the chain, its first chunk flagged
    ``restarted=True``). ``replay``: how a cached stream is replayed, ``"instant"``
    (default: every chunk at once) or ``"paced"`` (the recorded gaps between the
    original chunks, capped at ``max_replay_gap_s``; for tests of a UI). ``relay``:
    share a stream with other processes through Redis (needs a cache on Redis with
    ``CacheConfig.lease_s`` set): one process reads the provider and appends each
    chunk to a Redis Stream, the others read it as it arrives. It costs the leader
    one pipelined ``XADD`` per chunk (off its read path); ``False`` for a single
    process.
    """

    idle_timeout_s: float = 30.0
    on_interrupt: Literal["raise", "restart"] = "raise"
    replay: Literal["instant", "paced"] = "instant"
    max_replay_gap_s: float = 5.0
    relay: bool = True

    def __post_init__(self) -> None:
        for name in ("idle_timeout_s", "max_replay_gap_s"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 < value < math.inf
            ):
                raise ConfigError(f"stream {name} must be a finite number > 0, got {value!r}")
        if self.on_interrupt not in ("raise", "restart"):
            raise ConfigError(
                f"stream on_interrupt must be 'raise' or 'restart', got {self.on_interrupt!r}"
            )
        if self.relay.__class__ is not bool:
            raise ConfigError(f"stream relay must be a bool, got {self.relay!r}")
        if self.replay not in ("instant", "paced"):
            raise ConfigError(f"stream replay must be 'instant' or 'paced', got {self.replay!r}")


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """Where and how to reach one provider.

    ``prices`` overrides the adapter's price table: model -> (USD per million
    input tokens, USD per million output tokens). ``rate_limit_per_s`` feeds
    an ``aiolimiter`` limiter (``None``: unlimited).
    """

    name: str
    base_url: str
    api_key: Secret | None = None
    default_model: str | None = None
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    rate_limit_per_s: float | None = None

    def __repr__(self) -> str:
        """The fields, with the API key hidden and the URL's secrets masked (:func:`mask_url`)."""
        return _masked_repr(self, ("base_url",))


_DEFAULT_BASE_URLS: Final = {
    "ollama": "http://localhost:11434",
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}


def _default_providers() -> dict[str, ProviderConfig]:
    return {
        name: ProviderConfig(name=name, base_url=url) for name, url in _DEFAULT_BASE_URLS.items()
    }


def _normalise_ollama_host(value: str) -> str:
    value = value.strip().rstrip("/")
    if "://" not in value:
        value = "http://" + value
    scheme, _, rest = value.partition("://")
    host, _, port = rest.partition(":")
    if host in ("", "0.0.0.0"):
        host = "localhost"
    return f"{scheme}://{host}:{port or '11434'}"


def _text_ok(value: str) -> bool:
    """Printable and encodable as UTF-8 (no lone surrogates from a mis-decoded environment)."""
    if not value.isprintable():
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


_TRUE: Final = frozenset(("1", "true", "yes", "on"))
_FALSE: Final = frozenset(("0", "false", "no", "off"))


def _flag(name: str, value: str | None) -> bool:
    if value is None:
        return False
    word = value.lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of 1/0/true/false/yes/no/on/off, got {value!r}")


def _http_url(name: str, value: str, *, shown: str | None = None) -> str:
    """``value`` when it is an ASCII ``http(s)://host[:port][/path]`` URL, else a ConfigError.

    (An internationalised host name is given in its ``xn--`` form.)
    """
    ok = value.isascii() and value.isprintable() and " " not in value
    if ok:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            ok = False
        else:
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    if not ok:
        raise ConfigError(
            f"{name} must be an http:// or https:// URL with a host, "
            f"got {mask_url(shown or value)!r}"
        )
    return value


def check_redis_url(url: str, name: str = "REDIS_URL") -> str:
    """``url`` when it is a ``redis://``, ``rediss://`` or ``unix://`` URL, else a ConfigError.

    The message names the scheme only: the URL may hold a password.
    """
    ok = _text_ok(url) and " " not in url
    scheme = ""
    if ok:
        try:
            parts = urlsplit(url)
            scheme = parts.scheme
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            ok = False
        else:
            ok = (scheme == "unix" and bool(parts.path)) or scheme in ("redis", "rediss")
    if not ok:
        shown = f"scheme {scheme!r}" if scheme else "no scheme"
        raise ConfigError(
            f"{name} is not a valid Redis URL ({shown}); "
            "expected redis://HOST:PORT, rediss://HOST:PORT or unix:///PATH"
        )
    return url


def _model(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not _text_ok(value) or any(c.isspace() for c in value):
        raise ConfigError(f"{name} must be a model name without spaces, got {value!r}")
    return value


def _api_key(name: str, value: str | None) -> Secret | None:
    if value is None:
        return None
    if not (value.isascii() and value.isprintable()) or " " in value:
        raise ConfigError(f"{name} must be printable ASCII without spaces (value not shown)")
    return Secret(value)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the layer needs, explicitly. Build by hand or with :meth:`from_env`.

    ``repr`` and ``str`` never show a secret: keys are :class:`Secret` and the
    passwords of ``redis_url`` and of the providers' URLs are masked (:func:`mask_url`).

    ``breaker`` configures the router's circuit breakers (:class:`~samplemind_core.AIManager`
    passes it to the :class:`~samplemind_core.Router` it builds).
    """

    redis_url: str | None = None
    redis_cluster: bool = False
    cache: CacheConfig = field(default_factory=CacheConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    providers: Mapping[str, ProviderConfig] = field(default_factory=_default_providers)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)

    def provider(self, name: str) -> ProviderConfig:
        try:
            return self.providers[name]
        except KeyError:
            raise ConfigError(
                f"unknown provider {name!r}; known: {sorted(self.providers)}"
            ) from None

    def with_provider(self, name: str, **changes: object) -> Settings:
        """A copy with one provider's config changed (``base_url=...``, ``api_key=...``)."""
        providers = dict(self.providers)
        providers[name] = replace(self.provider(name), **changes)  # type: ignore[arg-type]
        return replace(self, providers=providers)

    def __repr__(self) -> str:
        """The fields, with every key hidden and every URL's secrets masked (:func:`mask_url`)."""
        return _masked_repr(self, ("redis_url",))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the variables listed in the module docstring (``env`` defaults to ``os.environ``)."""
        env = os.environ if env is None else env

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value and value.strip() else None

        cache_kwargs: dict[str, object] = {}
        if (key := get("SAMPLEMIND_FINGERPRINT_KEY")) is not None:
            cache_kwargs["fingerprint_key"] = Secret(key)
        if (ns := get("SAMPLEMIND_CACHE_NAMESPACE")) is not None:
            cache_kwargs["namespace"] = ns
        if (ttl := get("SAMPLEMIND_CACHE_TTL")) is not None:
            try:
                ttl_s = float(ttl)
            except ValueError:
                ttl_s = math.nan
            if not 0 < ttl_s <= MAX_TTL_S:
                raise ConfigError(
                    "SAMPLEMIND_CACHE_TTL must be a finite number of seconds in "
                    f"(0, {MAX_TTL_S:.0f}], got {ttl!r}"
                )
            cache_kwargs["ttl_s"] = ttl_s

        transport = get("SAMPLEMIND_TRANSPORT") or "auto"
        if transport not in ("auto", "httpx", "aiohttp"):
            raise ConfigError(
                f"SAMPLEMIND_TRANSPORT must be 'auto', 'httpx' or 'aiohttp', got {transport!r}"
            )
        http2 = _flag("SAMPLEMIND_HTTP2", get("SAMPLEMIND_HTTP2"))
        http = HttpConfig(http2=http2, transport=transport)  # type: ignore[arg-type]

        ollama_host = get("OLLAMA_HOST") or _DEFAULT_BASE_URLS["ollama"]
        base_urls = {
            "ollama": _http_url(
                "OLLAMA_HOST", _normalise_ollama_host(ollama_host), shown=ollama_host
            )
        }
        for name in ("openai", "anthropic", "gemini"):
            var = f"{name.upper()}_BASE_URL"
            base_urls[name] = _http_url(var, get(var) or _DEFAULT_BASE_URLS[name]).rstrip("/")
        providers = {
            name: ProviderConfig(
                name=name,
                base_url=base_urls[name],
                api_key=None
                if name == "ollama"
                else _api_key(f"{name.upper()}_API_KEY", get(f"{name.upper()}_API_KEY")),
                default_model=_model(f"{name.upper()}_MODEL", get(f"{name.upper()}_MODEL")),
            )
            for name in PROVIDERS
        }
        stream = StreamConfig()
        if (idle := get("SAMPLEMIND_STREAM_IDLE_TIMEOUT")) is not None:
            try:
                idle_s = float(idle)
            except ValueError:
                idle_s = math.nan
            if not 0 < idle_s < math.inf:
                raise ConfigError(
                    "SAMPLEMIND_STREAM_IDLE_TIMEOUT must be a finite number of seconds > 0, "
                    f"got {idle!r}"
                )
            stream = StreamConfig(idle_timeout_s=idle_s)
        redis_url = get("REDIS_URL")
        return cls(
            redis_url=None if redis_url is None else check_redis_url(redis_url),
            redis_cluster=_flag("REDIS_CLUSTER", get("REDIS_CLUSTER")),
            cache=CacheConfig(**cache_kwargs),  # type: ignore[arg-type]
            http=http,
            providers=providers,
            stream=stream,
        )
