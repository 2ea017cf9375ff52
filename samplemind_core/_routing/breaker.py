"""One provider's circuit breaker and health record (see :class:`~samplemind_core.Router`)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from .._config import BreakerConfig

__all__ = ["Breaker", "BreakerState", "ProviderHealth"]


class BreakerState(StrEnum):
    """Circuit-breaker state of one provider."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# The hot paths compare with these module constants, not enum attribute lookups.
CLOSED: Final = BreakerState.CLOSED
OPEN: Final = BreakerState.OPEN
HALF_OPEN: Final = BreakerState.HALF_OPEN


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


def _error_text(error: BaseException | str) -> str:
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else error
    return text[:200]


class Breaker:
    """The breaker and rolling health of one provider, on an injected ``clock``.

    ``record_failure`` returns True when the breaker left CLOSED, and
    ``record_success`` True when it closed again: the router counts the
    providers that are not CLOSED from these.
    """

    __slots__ = (
        "clock",
        "config",
        "consecutive",
        "ewma",
        "failures",
        "last_error",
        "opened_at",
        "opened_count",
        "outcomes",
        "provider",
        "state",
        "successes",
        "trial_started",
        "window_failures",
    )

    def __init__(self, provider: str, config: BreakerConfig, clock: Callable[[], float]) -> None:
        self.provider = provider
        self.config = config
        self.clock = clock
        self.state = CLOSED
        self.outcomes: deque[bool] = deque(maxlen=config.window)
        self.window_failures = 0
        self.consecutive = 0
        self.ewma: float | None = None
        self.successes = 0
        self.failures = 0
        self.opened_at = 0.0
        self.opened_count = 0
        self.trial_started: float | None = None
        self.last_error: str | None = None

    def _push(self, ok: bool) -> None:
        if len(self.outcomes) == self.outcomes.maxlen and not self.outcomes[0]:
            self.window_failures -= 1
        self.outcomes.append(ok)
        if not ok:
            self.window_failures += 1

    def current(self) -> BreakerState:
        """The current state, moving OPEN to HALF_OPEN once the cooldown has passed."""
        if self.state is OPEN and self.clock() - self.opened_at >= self.config.cooldown_s:
            self.state = HALF_OPEN
            self.trial_started = None
        return self.state

    def _open(self) -> bool:
        was_closed = self.state is CLOSED
        self.state = OPEN
        self.opened_at = self.clock()
        self.opened_count += 1
        self.trial_started = None
        return was_closed

    def allow(self) -> bool:
        """Closed: yes. Open: no. Half-open: one trial at a time (freed after ``cooldown_s``)."""
        state = self.current()
        if state is CLOSED:
            return True
        if state is OPEN:
            return False
        now = self.clock()
        if self.trial_started is None or now - self.trial_started >= self.config.cooldown_s:
            self.trial_started = now
            return True
        return False

    def release(self) -> None:
        """Give back a half-open trial slot without an outcome."""
        self.trial_started = None

    def record_success(self, latency_ms: float) -> bool:
        """Count a success; True when it closed a half-open breaker."""
        self._push(True)
        self.successes += 1
        self.consecutive = 0
        alpha = self.config.ewma_alpha
        ewma = self.ewma
        self.ewma = latency_ms if ewma is None else alpha * latency_ms + (1 - alpha) * ewma
        if self.current() is HALF_OPEN:
            self.state = CLOSED
            self.trial_started = None
            self.outcomes.clear()
            self.window_failures = 0
            return True
        return False

    def record_failure(self, error: BaseException | str) -> bool:
        """Count a failure; True when it opened a closed breaker."""
        self._push(False)
        self.failures += 1
        self.consecutive += 1
        self.last_error = _error_text(error)
        state = self.current()
        if state is HALF_OPEN:
            return self._open()
        if state is CLOSED:
            cfg = self.config
            calls = len(self.outcomes)
            if self.consecutive >= cfg.failure_threshold or (
                calls >= cfg.min_calls and self.window_failures / calls > cfg.failure_rate_threshold
            ):
                return self._open()
        # OPEN: a late failure of a call started before the breaker opened; no change.
        return False

    def snapshot(self) -> ProviderHealth:
        """This provider's health now."""
        state = self.current()
        calls = len(self.outcomes)
        retry_in = 0.0
        if state is OPEN:
            retry_in = max(0.0, self.opened_at + self.config.cooldown_s - self.clock())
        return ProviderHealth(
            provider=self.provider,
            state=state,
            success_rate=(calls - self.window_failures) / calls if calls else 1.0,
            latency_ewma_ms=self.ewma,
            consecutive_failures=self.consecutive,
            window_calls=calls,
            successes=self.successes,
            failures=self.failures,
            opened_count=self.opened_count,
            retry_in_s=retry_in,
            last_error=self.last_error,
        )
