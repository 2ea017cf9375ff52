"""Request fingerprints: the cache key of a chat request.

A fingerprint is a keyed hash of a canonical, versioned encoding of the fields
that can change the answer:

* included: provider, model, messages, temperature, max_tokens, top_p, top_k,
  stop, seed, tools, tool_choice, response_format, and the namespace (tenant);
* excluded: API keys, request ids, timeouts, the stream flag, metadata, and
  any other field a plain-dict request carries.

Canonical means: dict key order does not matter (keys are sorted), how a
request was written as JSON does not matter (it is hashed by value, never by
text), and equivalent numbers give one key (``1``, ``1.0`` and ``1e0`` for a
float parameter; ``-0.0`` and ``0.0``). Message text is hashed verbatim: a
prompt with other whitespace is another prompt.

The default hasher is keyed BLAKE3 (the key comes from
:class:`~samplemind_core.CacheConfig`), so users of a shared cache cannot craft
colliding requests without the key. ``xxh3_128`` is offered for benchmarks
only: it is fast but not collision resistant, and :class:`ResponseCache`
refuses it.

>>> from samplemind_core import ChatRequest, fingerprint
>>> a = fingerprint({"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 1})
>>> b = fingerprint({"temperature": 1.0, "messages": [{"content": "hi", "role": "user"}], "model": "m"})
>>> a == b, a.startswith("v1.")
(True, True)
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import blake3
import orjson

from ._exceptions import ConfigError
from ._models import ChatRequest

__all__ = [
    "DEFAULT_FINGERPRINT_KEY",
    "FINGERPRINT_VERSION",
    "HASHERS",
    "Hasher",
    "canonical_bytes",
    "fingerprint",
    "fingerprinter",
    "get_hasher",
]

FINGERPRINT_VERSION: Final = 1
"""Bumped whenever the canonical encoding changes; old keys then simply miss."""

DEFAULT_FINGERPRINT_KEY: Final = blake3.blake3(
    b"samplemind default fingerprint key", derive_key_context="samplemind 2025 fingerprint v1"
).digest()
"""The built-in key. Fine for a single user; a cache shared between users must set its own."""

_PREFIX: Final = f"v{FINGERPRINT_VERSION}."
_SORT: Final = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps


@dataclass(frozen=True, slots=True)
class Hasher:
    """A keyed hash: ``fn(data, key) -> hex digest``; ``secure`` when collision resistant."""

    name: str
    fn: Callable[[bytes, bytes], str]
    secure: bool


_local = threading.local()


def _blake3(data: bytes, key: bytes) -> str:
    # One keyed hasher per thread and key, reset for each call (building a
    # hasher is a noticeable share of hashing a small request).
    try:
        h = _local.hashers[key]
    except AttributeError:
        _local.hashers = {}
        return _blake3(data, key)
    except KeyError:
        if len(_local.hashers) >= 8:
            _local.hashers.clear()
        h = _local.hashers[key] = blake3.blake3(key=key)
    h.reset()
    h.update(data)
    return h.digest().hex()  # type: ignore[no-any-return]


def _sha256(data: bytes, key: bytes) -> str:
    # Key as a prefix: SHA-256's collision resistance is what a cache key needs
    # (length extension is irrelevant: nothing here authenticates a message).
    h = hashlib.sha256(key)
    h.update(data)
    return h.hexdigest()


def _blake2b(data: bytes, key: bytes) -> str:
    return hashlib.blake2b(data, key=key, digest_size=32).hexdigest()


_xxh3_hexdigest: Callable[..., str] | None = None
"""``xxhash.xxh3_128_hexdigest`` once the first xxh3 fingerprint imported it."""


def _xxh3_128(data: bytes, key: bytes) -> str:
    global _xxh3_hexdigest
    digest = _xxh3_hexdigest
    if digest is None:  # first call: bound once, so no call pays an import statement
        try:
            import xxhash  # only the benchmarks use it: a dependency of the harness extra
        except ModuleNotFoundError as exc:
            raise ConfigError(
                "hasher 'xxh3_128' needs the xxhash package: pip install 'samplemind-core[harness]'"
            ) from exc
        digest = _xxh3_hexdigest = xxhash.xxh3_128_hexdigest
    return str(digest(data, seed=int.from_bytes(key[:8], "little")))


HASHERS: Final[Mapping[str, Hasher]] = {
    h.name: h
    for h in (
        Hasher("blake3", _blake3, secure=True),
        Hasher("sha256", _sha256, secure=True),
        Hasher("blake2b", _blake2b, secure=True),
        Hasher("xxh3_128", _xxh3_128, secure=False),
    )
}


def get_hasher(name: str | Hasher) -> Hasher:
    """Look a hasher up by name (``blake3``, ``sha256``, ``blake2b``, ``xxh3_128``)."""
    if isinstance(name, Hasher):
        return name
    try:
        return HASHERS[name]
    except KeyError:
        raise ConfigError(f"unknown hasher {name!r}; choose one of {sorted(HASHERS)}") from None


_JSON_INT_MIN: Final = float(-(1 << 63))
_JSON_INT_END: Final = float(1 << 64)  # orjson encodes ints in [-2**63, 2**64)


def _normalise(value: Any) -> Any:
    """Integral floats become ints inside nested structures (tools, response_format).

    Only where the int is one JSON can encode (64 bits): ``1.8446744073709552e19`` stays a float.
    """
    if isinstance(value, float):
        return (
            int(value) if value.is_integer() and _JSON_INT_MIN <= value < _JSON_INT_END else value
        )
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normalise(v) for v in value]
    return value


def _float(value: Any) -> float | None:
    if value is None or value.__class__ is float:
        return value if value != 0 else 0.0  # folds -0.0
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"expected a number, got {type(value).__name__}")
    try:
        return float(value) + 0.0
    except ValueError:
        raise ConfigError(f"expected a number, got {value!r}") from None


def _int(value: Any) -> int | None:
    if value is None or value.__class__ is int:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"expected an integer, got {type(value).__name__}")
    try:
        return int(float(value))
    except ValueError:
        raise ConfigError(f"expected an integer, got {value!r}") from None


def _canonical(request: ChatRequest | Mapping[str, Any] | str | bytes, namespace: str) -> list[Any]:
    """The v1 layout that is encoded and hashed; positional, so cheap to build and encode.

    ``[version, namespace, provider, model, messages, temperature, top_p,
    max_tokens, top_k, seed, stop, tool_choice, response_format, tools]``
    (message dicts are encoded with sorted keys). It runs on every request.
    """
    if isinstance(request, ChatRequest):
        r = request
        t, p, m, k, s = r.temperature, r.top_p, r.max_tokens, r.top_k, r.seed
        rf, tools = r.response_format, r.tools
        return [
            FINGERPRINT_VERSION,
            namespace,
            r.provider,
            r.model,
            r.messages,
            t if t.__class__ is float and t != 0 else _float(t),
            p if p.__class__ is float and p != 0 else _float(p),
            m if m is None or m.__class__ is int else _int(m),
            k if k is None or k.__class__ is int else _int(k),
            s if s is None or s.__class__ is int else _int(s),
            r.stop,
            r.tool_choice,
            _normalise(rf) if rf else None,
            _normalise(tools) if tools else None,
        ]
    if isinstance(request, str | bytes):
        try:
            request = orjson.loads(request)
        except orjson.JSONDecodeError as exc:
            raise ConfigError(f"request is not valid JSON: {exc}") from None
    if not isinstance(request, Mapping):
        raise ConfigError(f"cannot fingerprint a {type(request).__name__}")
    if "messages" not in request:
        raise ConfigError("a request needs 'messages'")
    get = request.get
    return [
        FINGERPRINT_VERSION,
        namespace,
        get("provider"),
        get("model"),
        get("messages"),
        _float(get("temperature")),
        _float(get("top_p")),
        _int(get("max_tokens")),
        _int(get("top_k")),
        _int(get("seed")),
        get("stop"),
        get("tool_choice"),
        _normalise(get("response_format")) or None,
        _normalise(get("tools")) or None,
    ]


def _not_json(exc: TypeError) -> ConfigError:
    return ConfigError(f"request holds a value that is not JSON: {exc}")


def canonical_bytes(
    request: ChatRequest | Mapping[str, Any] | str | bytes, namespace: str = "default"
) -> bytes:
    """The canonical, versioned encoding that :func:`fingerprint` hashes."""
    try:
        return _dumps(_canonical(request, namespace), option=_SORT)
    except TypeError as exc:
        raise _not_json(exc) from None


def fingerprint(
    request: ChatRequest | Mapping[str, Any] | str | bytes,
    *,
    namespace: str = "default",
    hasher: str | Hasher = "blake3",
    key: bytes | None = None,
) -> str:
    """The cache key of ``request``: ``"v1."`` followed by a 64-hex-char keyed hash.

    ``request`` is a :class:`ChatRequest`, or the same fields as a dict (or as
    JSON text). ``namespace`` separates tenants: two namespaces never share a
    key. ``key`` is the 32-byte hash key (default :data:`DEFAULT_FINGERPRINT_KEY`).
    """
    h = HASHERS.get(hasher) if isinstance(hasher, str) else hasher
    if h is None:
        h = get_hasher(hasher)
    try:
        data = _dumps(_canonical(request, namespace), option=_SORT)
    except TypeError as exc:
        raise _not_json(exc) from None
    return _PREFIX + h.fn(data, DEFAULT_FINGERPRINT_KEY if key is None else key)


def fingerprinter(
    *, namespace: str = "default", hasher: str | Hasher = "blake3", key: bytes | None = None
) -> Callable[[ChatRequest | Mapping[str, Any] | str | bytes], str]:
    """:func:`fingerprint` with its settings bound once (the cache's per-request path).

    >>> fp = fingerprinter(namespace="tenant-a")
    >>> fp({"messages": []}) == fingerprint({"messages": []}, namespace="tenant-a")
    True
    """
    fn = get_hasher(hasher).fn
    hash_key = DEFAULT_FINGERPRINT_KEY if key is None else key

    def bound(request: ChatRequest | Mapping[str, Any] | str | bytes) -> str:
        try:  # inlined rather than canonical_bytes(): this runs on every cache lookup
            data = _dumps(_canonical(request, namespace), option=_SORT)
        except TypeError as exc:
            raise _not_json(exc) from None
        return _PREFIX + fn(data, hash_key)

    return bound
