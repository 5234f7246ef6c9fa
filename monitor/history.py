"""The monitor's bounded history, as records: what a drift report needs later, and nothing per event.

Two kinds of record per model (plain JSON-able dicts; the edge stores them, see
``streams/runtime/history_store.py``):

- a **snapshot** of each (model, version) monitor at most every ``interval_ms`` while it receives traffic:
  PSI, KS and JS per feature and on the score, the counts of the current window in each reference bin, the
  predictions served since the previous snapshot, rolling accuracy / AUC. About 1-2 KB for 12 features.
- an **event**: an alert (trigger / resolve; ADWIN and DDM firings as ``detector``), a control command the
  monitor issued, an ack it read (the version a scorer serves after it).

Pure: no Redis or Kafka here.

Example:
    >>> from monitor.reference import ReferenceProfile
    >>> from monitor.version_monitor import MonitorConfig, VersionMonitor
    >>> rng = np.random.default_rng(0)
    >>> prof = ReferenceProfile.from_training(rng.normal(size=(500, 1)), ["x"], scores=rng.uniform(size=500))
    >>> vm = VersionMonitor("m", 1, prof, MonitorConfig(psi_window=200, psi_min_samples=100))
    >>> for v in rng.normal(size=150):
    ...     vm.observe(0.5, {"x": float(v)})
    >>> rec = SnapshotRecorder(interval_ms=1000)
    >>> [s["new"] for s in rec.due([vm], now_ms=5000)], rec.due([vm], now_ms=5500)  # throttled
    ([150], [])
    >>> snap = rec.due([vm], now_ms=7000) or snapshot_of(vm, 7000, new=0)
    >>> sum(snap["hist"]["x"]), snap["psi"]["x"] < 0.25
    (150, True)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from monitor.psi import RollingPSI
from monitor.stats import jensen_shannon
from monitor.version_monitor import VersionMonitor

__all__ = ["HistoryStore", "MemoryHistory", "SnapshotRecorder", "ack_event", "alert_event", "command_event",
           "snapshot_of"]

DETECTORS = frozenset({"adwin", "ddm"})


def _r(x: float | None, digits: int = 5) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def _counts(psi: RollingPSI) -> list[int]:
    return [round(p * psi.n) for p in psi.actual_proportions()]


def _js(psi: RollingPSI) -> float | None:
    return _r(jensen_shannon(psi.reference.proportions, psi.actual_proportions())) if psi.ready else None


def snapshot_of(mon: VersionMonitor, now_ms: int, *, new: int) -> dict[str, Any]:
    """One compact snapshot of ``mon`` (``new``: predictions it received since the previous snapshot)."""
    ks = mon.ks_statistics() if hasattr(mon, "ks_statistics") else {}
    perf = mon.performance()
    return {
        "ts": int(now_ms), "model": mon.model, "version": int(mon.version), "new": int(new),
        "predictions": int(mon.predictions), "outcomes": int(mon.outcomes),
        "psi": {name: _r(p.value) for name, p in mon.feature_psi.items()},
        "ks": {name: _r(d) for name, d in ks.items()},
        "js": {name: _js(p) for name, p in mon.feature_psi.items()},
        "n": {name: p.n for name, p in mon.feature_psi.items()},
        "hist": {name: _counts(p) for name, p in mon.feature_psi.items()},
        "score_psi": _r(mon.score_psi.value), "score_js": _js(mon.score_psi),
        "score_hist": _counts(mon.score_psi), "mean_shift": _r(mon.mean_shift.value),
        "rolling_accuracy": perf.get("rolling_accuracy"), "rolling_auc": perf.get("rolling_auc"),
    }


class SnapshotRecorder:
    """Decides when each monitor is due for a snapshot: every ``interval_ms``, and only with new traffic."""

    def __init__(self, interval_ms: int = 10_000) -> None:
        self.interval_ms = interval_ms
        self._last_at: dict[tuple[str, int, str | None], int] = {}
        self._last_n: dict[tuple[str, int, str | None], int] = {}

    def due(self, monitors: Iterable[VersionMonitor], now_ms: int) -> list[dict[str, Any]]:
        """Snapshots of the monitors (overall ones; slices are skipped) that are due at ``now_ms``."""
        out = []
        for mon in monitors:
            if getattr(mon, "slice_", None) is not None:
                continue
            key = (mon.model, mon.version, None)
            last_at = self._last_at.get(key)
            new = mon.predictions - self._last_n.get(key, 0)
            if new <= 0 or (last_at is not None and now_ms - last_at < self.interval_ms):
                continue
            self._last_at[key], self._last_n[key] = now_ms, mon.predictions
            out.append(snapshot_of(mon, now_ms, new=new))
        return out


def alert_event(alert: Mapping[str, Any]) -> dict[str, Any]:
    """An event record of an alert dict (the ``alerts`` topic contract); ADWIN / DDM firings are ``detector``."""
    details = alert.get("details") or {}
    return {
        "ts": int(alert.get("ts") or 0), "kind": "detector" if alert.get("detector") in DETECTORS else "alert",
        "action": str(alert.get("action") or ""), "severity": alert.get("severity"),
        "version": alert.get("model_version"), "feature": alert.get("feature"), "label": str(alert.get("summary") or ""),
        "alert_kind": alert.get("kind"), "detector": alert.get("detector"), "value": alert.get("value"),
        "dedup_key": alert.get("dedup_key"), "alert_id": alert.get("alert_id"),
        "report_first": details.get("report_first"),
    }


def command_event(command: Mapping[str, Any], *, from_version: int | None = None) -> dict[str, Any]:
    """An event record of a control command (a rollback is kind ``rollback``; its ``version`` is the target)."""
    name = str(command.get("command") or "")
    target = command.get("to_version")
    label = f"{name} v{from_version} → v{target}" if name == "rollback" and from_version else (
        f"{name} → v{target}" if target else name)
    return {"ts": int(command.get("issued_at") or 0), "kind": "rollback" if name == "rollback" else "command",
            "action": name, "severity": None, "version": target, "feature": None, "label": label,
            "command_id": command.get("command_id"), "reason": str(command.get("reason") or "")[:200]}


def ack_event(ack_for: str, instance: str, status: str, active_version: int | None, at_ms: int) -> dict[str, Any]:
    """An event record of an ack: ``version`` is the version the scorer serves after it."""
    return {"ts": int(at_ms), "kind": "ack", "action": status, "severity": None, "version": active_version,
            "feature": None, "label": f"{status} by {instance}: serving v{active_version}", "ack_for": ack_for}


def counts_to_proportions(counts: Iterable[int]) -> tuple[tuple[float, ...], int]:
    """``(shares, n)`` of bin counts.

    >>> counts_to_proportions([1, 3])
    ((0.25, 0.75), 4)
    """
    arr = np.asarray(list(counts), dtype=float)
    n = int(arr.sum())
    return (tuple((arr / n).tolist()) if n else tuple(0.0 for _ in arr), n)


class HistoryStore(Protocol):
    """Where the history lives: ``streams.runtime.history_store.RedisHistory``, or :class:`MemoryHistory`."""

    def write(self, model: str, snapshots: Sequence[Mapping[str, Any]] = (),
              events: Sequence[Mapping[str, Any]] = ()) -> None: ...

    def snapshots(self, model: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]: ...

    def events(self, model: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]: ...

    def models(self) -> list[str]: ...


class MemoryHistory:
    """The in-memory twin of the Redis history (tests, the sample run), with the same caps.

    >>> h = MemoryHistory(max_snapshots=2)
    >>> h.write("m", snapshots=[{"ts": t} for t in (1, 2, 3)], events=[{"ts": 2, "kind": "alert"}])
    >>> [s["ts"] for s in h.snapshots("m", 0, 10)], h.events("m", 3, 10), h.models()
    ([2, 3], [], ['m'])
    """

    def __init__(self, max_snapshots: int = 8640, max_events: int = 10_000) -> None:
        self._snaps: dict[str, deque[dict[str, Any]]] = {}
        self._events: dict[str, deque[dict[str, Any]]] = {}
        self.max_snapshots, self.max_events = max_snapshots, max_events

    def write(self, model: str, snapshots: Sequence[Mapping[str, Any]] = (),
              events: Sequence[Mapping[str, Any]] = ()) -> None:
        self._snaps.setdefault(model, deque(maxlen=self.max_snapshots)).extend(dict(s) for s in snapshots)
        self._events.setdefault(model, deque(maxlen=self.max_events)).extend(dict(e) for e in events)

    def snapshots(self, model: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        return [s for s in self._snaps.get(model, ()) if since_ms <= int(s.get("ts", 0)) <= until_ms]

    def events(self, model: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        return [e for e in self._events.get(model, ()) if since_ms <= int(e.get("ts", 0)) <= until_ms]

    def models(self) -> list[str]:
        return sorted(set(self._snaps) | set(self._events))
