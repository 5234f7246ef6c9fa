"""Retrain trigger: when a critical drift alert fires for a model's *production* version, ask for a retrain.

:class:`RetrainPolicy` is pure: it decides; the Kafka edge (``streams.runtime.monitor_handler``) signs the request as a
``retrain_requested`` control command and a training job consumes it. One request per incident: an incident is
(model, version) and lasts until every critical drift alert of that version has resolved; only then may a new
critical trigger ask again. Modes:

- ``after_rollback`` (default): the rollback policy still rolls back; the retrain request goes out with it;
- ``instead_of_rollback``: the edge skips the rollback and only requests a retrain;
- ``off``: never requests.

Example:
    >>> from types import SimpleNamespace as NS
    >>> class Reg:
    ...     def production(self, model): return NS(version=2)
    >>> pol = RetrainPolicy(Reg())
    >>> a = NS(action="trigger", severity="critical", kind="data_drift", model="m", model_version=2,
    ...        alert_id="a1", dedup_key="m/2/data_drift/hr/all", feature="hr", detector="psi", statistic="psi",
    ...        value=0.4, threshold=0.25, window="last 1000 predictions", slice=None,
    ...        details={"top_drifted_features": [{"feature": "hr", "psi": 0.4}]})
    >>> [r.model for r in pol.on_alerts([a], now_ms=0)], pol.on_alerts([a], now_ms=1)
    (['m'], [])
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from monitor.exceptions import MonitorConfigError

RetrainMode = Literal["off", "after_rollback", "instead_of_rollback"]
DRIFT_KINDS = frozenset({"data_drift", "prediction_drift", "concept_drift"})
MAX_EVIDENCE_ALERTS = 20


class _Registry(Protocol):
    def production(self, model: str) -> Any: ...


@dataclass(frozen=True)
class RetrainRequest:
    """What a training job needs to know: which model drifted, how, and the alerts that prove it."""

    model: str
    version: int
    reason: str
    evidence: dict[str, Any]


@dataclass
class _Incident:
    critical_keys: set[str] = field(default_factory=set)
    requested: bool = False


class RetrainPolicy:
    """Decides ``retrain_requested`` commands from alerts, at most once per incident."""

    def __init__(self, registry: _Registry, *, mode: RetrainMode = "after_rollback") -> None:
        if mode not in ("off", "after_rollback", "instead_of_rollback"):
            raise MonitorConfigError(f"retrain mode must be off, after_rollback or instead_of_rollback, got {mode!r}")
        self.registry = registry
        self.mode = mode
        self._incidents: dict[tuple[str, int], _Incident] = {}
        self.requests = 0

    @property
    def replaces_rollback(self) -> bool:
        """True when the edge should request a retrain instead of rolling back."""
        return self.mode == "instead_of_rollback"

    def on_alerts(self, alerts: Sequence[Any], now_ms: int) -> list[RetrainRequest]:
        """Requests for the critical drift triggers in ``alerts`` (one batch), at most one per incident.

        Call this *before* the rollback is applied: "production" is the version that served when the alert fired.
        """
        if self.mode == "off":
            return []
        out: list[RetrainRequest] = []
        by_incident: dict[tuple[str, int], list[Any]] = {}
        for a in alerts:
            if a.kind not in DRIFT_KINDS:
                continue
            key = (a.model, int(a.model_version))
            inc = self._incidents.get(key)
            if a.action == "resolve":
                if inc is not None:
                    inc.critical_keys.discard(a.dedup_key)
                    if not inc.critical_keys:
                        del self._incidents[key]
                continue
            if a.action == "trigger" and a.severity == "critical":
                by_incident.setdefault(key, []).append(a)
        for (model, version), triggers in by_incident.items():
            prod = self.registry.production(model)
            if prod is None or int(prod.version) != version:
                continue
            inc = self._incidents.setdefault((model, version), _Incident())
            inc.critical_keys.update(a.dedup_key for a in triggers)
            if inc.requested:
                continue
            inc.requested = True
            self.requests += 1
            out.append(RetrainRequest(model, version, _reason(triggers), evidence(triggers, now_ms)))
        return out

    def open_incidents(self) -> dict[str, list[str]]:
        """``model/version`` -> dedup keys of its open critical drift alerts."""
        return {f"{m}/{v}": sorted(inc.critical_keys) for (m, v), inc in self._incidents.items()}


def evidence(alerts: Iterable[Any], now_ms: int) -> dict[str, Any]:
    """JSON-able evidence for a training job: alert ids, statistics, window, top drifted features."""
    alerts = list(alerts)[:MAX_EVIDENCE_ALERTS]
    top: list[dict[str, Any]] = []
    for a in alerts:
        top = list((a.details or {}).get("top_drifted_features") or [])
        if top:
            break
    first = alerts[0]
    return {
        "model_version": int(first.model_version),
        "alert_ids": [a.alert_id for a in alerts],
        "dedup_keys": [a.dedup_key for a in alerts],
        "kinds": sorted({a.kind for a in alerts}),
        "statistics": [{"kind": a.kind, "feature": a.feature, "slice": getattr(a, "slice", None),
                        "detector": a.detector, "statistic": a.statistic, "value": a.value,
                        "threshold": a.threshold} for a in alerts],
        "window": first.window,
        "top_drifted_features": top[:5],
        "performance": {k: (first.details or {}).get(k) for k in ("rolling_accuracy", "rolling_auc")},
        "requested_at": now_ms,
    }


def _reason(alerts: Sequence[Any]) -> str:
    a = alerts[0]
    where = f" feature {a.feature}" if a.feature else ""
    return (f"critical {a.kind.replace('_', ' ')} on {a.model} v{a.model_version}{where}: "
            f"{a.detector} {a.statistic}={a.value}" + (f" (+{len(alerts) - 1} more)" if len(alerts) > 1 else ""))[:500]
