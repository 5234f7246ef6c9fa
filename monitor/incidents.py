"""Incidents of detector events (ADWIN, DDM): open, update, escalate, resolve, re-arm.

A change detector reports a *moment* (``drift_detected`` is true on one update), not a level that can be compared
with thresholds evaluation after evaluation, so the windowed policy of :mod:`monitor.policy` does not fit it. An
:class:`IncidentBook` keeps one incident per dedup key and measures time in *events of the stream the detector
watches* (predictions for detectors on scores and features, joined outcomes for detectors on the error stream):

::

    warming up ──(warmup events)──► armed ──detection──► open: warning ──confirmation──► open: critical
                                      ▲                    │  ▲ detection: update          │  ▲ detection:
                                      │                    │  └─ (counted, no new page)    │  └─ update
                                      │                    ▼                               ▼
                                      └──────────── resolve: no detection for ``resolve_after`` events,
                                                    or (error stream) the rolling error back in its band

- **warming up**: the first ``detector_warmup`` events of a version's stream never alert (see
  :class:`~monitor.version_monitor.MonitorConfig`; the detectors restart when it ends);
- **open**: the first detection opens the incident (one trigger on the ``alerts`` topic). A detection while it is
  open *updates* it: same dedup key, ``detections`` counted, a trigger at the same severity that PagerDuty and
  Alertmanager fold into the open incident (no new page). A confirmation escalates warning → critical once;
- **resolve**: after ``resolve_after`` events with no new detection, or when the caller says the watched quantity
  is back in its band; the key re-arms at once, so the next change opens a new incident.

The book is bookkeeping only; :class:`~monitor.drift_monitor.DriftMonitor` turns its transitions into alerts, after
merging them with the windowed statistics that share the dedup key.

Example:
    >>> book = IncidentBook(IncidentConfig(resolve_after=100))
    >>> book.detect("k", "adwin", position=10, now_ms=0, severity="warning").change
    'opened'
    >>> t = book.detect("k", "ddm", position=30, now_ms=1, severity="critical")
    >>> t.change, t.severity, t.incident.detections
    ('escalated', 'critical', 2)
    >>> book.detect("k", "adwin", position=50, now_ms=2, severity="warning").change  # never de-escalates
    'updated'
    >>> book.quiet("k", position=149, now_ms=3) is None, book.quiet("k", position=150, now_ms=4).change
    (True, 'resolved')
    >>> book.get("k") is None, book.detect("k", "adwin", position=400, now_ms=5, severity="warning").change
    (True, 'opened')
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from monitor.exceptions import MonitorConfigError

Severity = Literal["info", "warning", "critical"]
Change = Literal["opened", "updated", "escalated", "resolved"]
RANK: dict[str | None, int] = {None: 0, "info": 1, "warning": 2, "critical": 3}


@dataclass(frozen=True)
class IncidentConfig:
    """How long an incident of detector events stays open.

    ``resolve_after``: events of the watched stream with no new detection before the incident resolves and the key
    re-arms. The default (5,000) is measured in ``bench.detection_bench``: with it, no change of the multi-change
    streams paged twice (the policy's repeats are 0 while bare ADWIN fires up to 27 more times inside the changes'
    windows), and every change, 25,000 events after the previous one, opened an incident of its own (the policy
    detects as many changes as bare ADWIN).
    """

    resolve_after: int = 5_000

    def __post_init__(self) -> None:
        if self.resolve_after < 1:
            raise MonitorConfigError(f"incident resolve_after must be >= 1 event, got {self.resolve_after}")


@dataclass
class Incident:
    """One open incident of detector events."""

    dedup_key: str
    severity: Severity
    opened_at_ms: int
    opened_at: int            # stream position (events seen) of the detection that opened it
    last_detection: int       # stream position of the latest detection
    detector: str             # detector of the latest detection
    detections: int = 1
    by_detector: dict[str, int] = field(default_factory=dict)
    baseline: float | None = None  # the watched quantity before the change (error stream: the error rate)
    band: float | None = None      # back at or below this: the change is over

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view for alert details and snapshots."""
        return {"severity": self.severity, "opened_at_ms": self.opened_at_ms, "opened_at_event": self.opened_at,
                "last_detection_at_event": self.last_detection, "detections": self.detections,
                "by_detector": dict(self.by_detector), "baseline": _round(self.baseline), "band": _round(self.band)}


@dataclass(frozen=True)
class Transition:
    """What changed: ``opened`` / ``escalated`` / ``updated`` are sent as triggers, ``resolved`` as a resolve."""

    change: Change
    severity: Severity
    incident: Incident
    reason: str

    @property
    def action(self) -> str:
        """``trigger`` or ``resolve`` (the ``alerts`` topic's action)."""
        return "resolve" if self.change == "resolved" else "trigger"


class IncidentBook:
    """Open incidents of detector events, one per dedup key (see the module docstring for the states)."""

    def __init__(self, config: IncidentConfig = IncidentConfig()) -> None:
        self.config = config
        self._open: dict[str, Incident] = {}
        self.resolved = 0

    def detect(self, key: str, detector: str, position: int, now_ms: int, severity: Severity, *,
               baseline: float | None = None, band: float | None = None) -> Transition:
        """A detection on ``key``'s stream at ``position``: opens, escalates or updates its incident."""
        inc = self._open.get(key)
        if inc is None:
            inc = Incident(key, severity, now_ms, position, position, detector, 1, {detector: 1}, baseline, band)
            self._open[key] = inc
            return Transition("opened", severity, _copy(inc), f"{detector} detected a change")
        inc.detections += 1
        inc.by_detector[detector] = inc.by_detector.get(detector, 0) + 1
        inc.last_detection = max(inc.last_detection, position)
        inc.detector = detector
        if band is not None and inc.band is None:
            inc.baseline, inc.band = baseline, band
        if RANK[severity] > RANK[inc.severity]:
            inc.severity = severity
            return Transition("escalated", severity, _copy(inc), f"{detector} confirmed the change")
        return Transition("updated", inc.severity, _copy(inc), f"{detector} detected again ({inc.detections})")

    def quiet(self, key: str, position: int, now_ms: int, *, in_band: bool = False) -> Transition | None:
        """Resolve ``key``'s incident if its stream saw ``resolve_after`` events without a detection (or, with
        ``in_band``, the watched quantity is back in its band); None while it stays open or when none is open."""
        inc = self._open.get(key)
        if inc is None:
            return None
        quiet_for = position - inc.last_detection
        if quiet_for >= self.config.resolve_after:
            reason = f"no new detection in {quiet_for} events"
        elif in_band and inc.band is not None:
            reason = f"back within its band (<= {_round(inc.band)})"
        else:
            return None
        del self._open[key]
        self.resolved += 1
        return Transition("resolved", inc.severity, inc, reason)

    def get(self, key: str) -> Incident | None:
        """The open incident of ``key`` (None when armed)."""
        return self._open.get(key)

    def open_incidents(self) -> dict[str, Incident]:
        """Every open incident by dedup key (a copy)."""
        return dict(self._open)

    def forget(self, key: str) -> Incident | None:
        """Drop ``key``'s incident without a transition (e.g. its version was retired); returns it."""
        return self._open.pop(key, None)


def _copy(inc: Incident) -> Incident:
    return replace(inc, by_detector=dict(inc.by_detector))


def _round(x: float | None) -> float | None:
    return None if x is None or x != x else round(float(x), 5)
