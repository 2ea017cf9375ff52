"""The one seam where errors of the store become ours (``raise ... from exc``).

Every ``redis.*`` error, ``OSError``, a timeout, or anything else a client
raises mid-command becomes :class:`~samplemind_core.CacheBackendError` (or
:class:`~samplemind_core.CacheValueError` for a value of another Redis type);
``CancelledError`` and our own errors pass through unchanged.
"""

from __future__ import annotations

from types import TracebackType
from typing import Final

import redis.exceptions

from .._exceptions import CacheBackendError, CacheError, CacheValueError

__all__ = [
    "_PoolExhausted",
    "_Skipped",
    "_WriteRefused",
    "_per_key",
    "_store_error",
    "_store_errors",
]

_STORE_ERRORS: Final = (
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,
    OSError,
    TimeoutError,  # asyncio.timeout (the per-operation timeout) raises this
)
# Anything else a client raises mid-command (e.g. an AttributeError from a
# half-initialised connection) is also a backend failure: callers never see it.


def _as_cache_error(exc: Exception) -> CacheError:
    """``exc`` of the store as our error (its ``__cause__`` set by the caller)."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return _WriteRefused("redis refused the write: maxmemory reached")
    if isinstance(exc, redis.exceptions.MaxConnectionsError):
        return _PoolExhausted("the redis client's connection pool is exhausted")
    if isinstance(exc, redis.exceptions.ResponseError) and "WRONGTYPE" in str(exc):
        return CacheValueError("a value of another Redis type is stored under the key")
    if isinstance(exc, TimeoutError) and not isinstance(exc, redis.exceptions.RedisError):
        return CacheBackendError("redis operation timed out")
    if isinstance(exc, _STORE_ERRORS):
        return CacheBackendError(f"redis failed: {type(exc).__name__}: {exc}")
    return CacheBackendError(f"redis client failed unexpectedly: {type(exc).__name__}")


class _StoreErrors:
    """The one seam where errors of the store become ours (``raise ... from exc``)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or not isinstance(exc, Exception) or isinstance(exc, CacheError):
            return  # CancelledError, KeyboardInterrupt and our own errors pass through
        raise _as_cache_error(exc) from exc


_store_errors: Final = _StoreErrors()


def _store_error(exc: Exception) -> CacheError:
    """``exc`` of the store (one key's reply in a batch) as our error."""
    if isinstance(exc, CacheError):
        return exc
    err = _as_cache_error(exc)
    err.__cause__ = exc
    return err


def _per_key(exc: BaseException, *, backed_off: bool) -> CacheError:
    """A copy of a batch's failure for one of its keys (each caller raises its own instance).

    ``backed_off``: the batch already stepped the back-off (once per failed
    operation); the key's caller only counts it.
    """
    if isinstance(exc, CacheError):
        err = type(exc)(*exc.args)
        err.__cause__ = exc.__cause__
    else:
        err = CacheBackendError(f"redis lookup stopped: {type(exc).__name__}")
    err.backed_off = backed_off  # type: ignore[attr-defined]
    return err


class _PoolExhausted(CacheBackendError):
    """No connection slot in time: a counted miss, not a failure of Redis."""


class _WriteRefused(CacheBackendError):
    """Redis is full (``OOM``): a write refused, counted; reads go on."""


class _Skipped(CacheBackendError):
    """Redis failed while this operation waited for a slot: bypassed, not sent."""
