"""A thread-safe record of what happened when, for the demo's readable timeline and its summary.

Example:
    >>> t = Timeline(clock=lambda: 10.0)
    >>> t.record("alert", severity="critical", kind="data_drift")
    >>> t.first("alert")["severity"], t.first("ack") is None
    ('critical', True)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class Timeline:
    def __init__(self, clock: Callable[[], float] = time.time, echo: Callable[[str], None] | None = None) -> None:
        self.clock = clock
        self.echo = echo
        self.start = clock()
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def record(self, event: str, /, **fields: Any) -> None:
        now = self.clock()
        entry = {**fields, "t": now, "elapsed_s": round(now - self.start, 3), "event": event}
        with self._lock:
            self.entries.append(entry)
        if self.echo is not None:
            text = " ".join(f"{k}={v}" for k, v in fields.items() if k != "summary")
            summary = f"  {fields['summary']}" if "summary" in fields else ""
            self.echo(f"[{entry['elapsed_s']:7.2f}s] {event:<18} {text}{summary}")

    def first(self, event: str, /, **match: Any) -> dict[str, Any] | None:
        with self._lock:
            for e in self.entries:
                if e["event"] == event and all(e.get(k) == v for k, v in match.items()):
                    return e
        return None

    def all(self, event: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.entries if e["event"] == event]
