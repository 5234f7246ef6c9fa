"""A circuit breaker per model version: closed → open on a high error rate → half-open probes → closed.

Pure and clock-injected. A *call* is one batch scored by the version; it fails when the model raises or
returns a non-finite score.

Example:
    >>> now = [0.0]
    >>> b = CircuitBreaker(error_rate=0.5, window=4, min_calls=2, open_s=10, clock=lambda: now[0])
    >>> b.record(False); b.record(False); b.state
    'open'
    >>> b.allow()
    False
    >>> now[0] = 11.0; b.allow(), b.state      # a half-open probe is let through
    (True, 'half_open')
    >>> b.record(True); b.state
    'closed'
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, *, error_rate: float = 0.5, window: int = 20, min_calls: int = 5, open_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.error_rate = error_rate
        self.min_calls = min_calls
        self.open_s = open_s
        self.clock = clock
        self.state: State = "closed"
        self.opened_at: float | None = None
        self.times_opened = 0
        self._calls: deque[bool] = deque(maxlen=window)

    def allow(self) -> bool:
        """May the next batch be scored by this version? Moves open → half-open after ``open_s``."""
        if self.state == "open" and self.opened_at is not None and self.clock() - self.opened_at >= self.open_s:
            self.state = "half_open"
        return self.state != "open"

    def record(self, success: bool) -> None:
        if self.state == "half_open":
            if success:
                self.state, self.opened_at = "closed", None
                self._calls.clear()
            else:
                self._open()
            return
        self._calls.append(success)
        failures = self._calls.count(False)
        if len(self._calls) >= self.min_calls and failures / len(self._calls) >= self.error_rate:
            self._open()

    @property
    def failure_rate(self) -> float:
        return self._calls.count(False) / len(self._calls) if self._calls else 0.0

    def _open(self) -> None:
        self.state, self.opened_at = "open", self.clock()
        self.times_opened += 1
        self._calls.clear()
