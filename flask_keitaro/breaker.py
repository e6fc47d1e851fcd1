"""A circuit breaker for a tracker that is down: stop calling it, and try again after a while.

Framework-free and thread-safe. After ``failures`` consecutive calls that say the tracker is
down or overloaded (see :func:`tracker_down`), the breaker opens: no call is made for
``cooldown`` seconds. Then one trial call goes through (half-open): success closes the
breaker, failure opens it again. ``failures=0`` turns it off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .errors import TrackerError, TrackerUnavailable

logger = logging.getLogger("flask_keitaro")

BreakerState = Literal["closed", "open", "half_open"]


def tracker_down(error: TrackerError) -> bool:
    """Whether ``error`` says the tracker is down or overloaded, which is what opens a breaker.

    Refused, reset or cut-off connections, TLS failures, timeouts, HTTP 5xx and 429 do.
    A rejected token, a disabled Click API, a 404 or an invalid answer do not: the tracker
    is up and the config is wrong.
    """
    if error.status is not None:
        return error.status == 429 or error.status >= 500
    return isinstance(error, TrackerUnavailable)


@dataclass(frozen=True)
class BreakerChange:
    """A change of a breaker's state, from ``previous`` to ``state``."""

    previous: BreakerState
    state: BreakerState


class CircuitBreaker:
    """Counts the consecutive failures of a tracker and stops calling it while it is down.

    Call :meth:`allow` before each call and :meth:`record` after it. Both return the
    :class:`~flask_keitaro.breaker.BreakerChange` they made, if any, for the caller to
    announce (a signal); the breaker logs one WARNING per change itself.
    """

    def __init__(
        self,
        failures: int = 5,
        cooldown: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 0 or cooldown <= 0:
            raise ValueError("failures must be >= 0 and cooldown > 0")
        self.failures = failures
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._state: BreakerState = "closed"
        self._count = 0
        self._since = 0.0  # when it opened, or when the half-open trial started

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._state} failures={self.failures} cooldown={self.cooldown}>"

    @property
    def enabled(self) -> bool:
        """False when ``failures`` is 0: every call is allowed."""
        return self.failures > 0

    @property
    def state(self) -> BreakerState:
        """``"closed"`` (calls go through), ``"open"`` (none do) or ``"half_open"`` (a trial)."""
        return self._state

    def allow(self) -> tuple[bool, BreakerChange | None]:
        """Whether a call may be made now, and the change this made (open to half-open).

        While half-open, only the trial call is allowed. A trial that never reported back
        (its thread died) is replaced by another after ``cooldown`` seconds.
        """
        if self._state == "closed":  # the common case, without the lock
            return True, None
        with self._lock:
            now, state = self._clock(), self.state
            if state == "closed":
                return True, None
            if now - self._since < self.cooldown:
                return False, None
            self._since = now
            if state == "half_open":
                return True, None
            change = self._move("half_open")
        self._announce(change, 0)
        return True, change

    def record(self, error: TrackerError | None) -> BreakerChange | None:
        """Report how a call ended (``error`` ``None``: it got an answer); return the change."""
        if not self.enabled:
            return None
        down = error is not None and tracker_down(error)
        with self._lock:
            if self._state == "open":
                return None  # a call from before it opened: only the trial decides
            if not down:
                self._count = 0
                if self._state == "closed":
                    return None
                change = self._move("closed")
            else:
                self._count += 1
                if self._state == "closed" and self._count < self.failures:
                    return None
                self._since = self._clock()
                change = self._move("open")
            count = self._count
        self._announce(change, count)
        return change

    def _move(self, state: BreakerState) -> BreakerChange:
        change = BreakerChange(self._state, state)
        self._state = state
        return change

    def _announce(self, change: BreakerChange, count: int) -> None:
        if change.state == "open" and change.previous == "closed":
            logger.warning(
                "Keitaro tracker failed %d times in a row: no calls for %g s (breaker open)",
                count,
                self.cooldown,
            )
        elif change.state == "open":
            logger.warning(
                "Keitaro tracker failed the trial call: no calls for %g s (breaker open)",
                self.cooldown,
            )
        elif change.state == "half_open":
            logger.warning("Keitaro breaker half-open: one trial call to the tracker")
        else:
            logger.warning("Keitaro tracker answered again: calls resume (breaker closed)")
