"""From predictions and joined labels to alerts: one :class:`VersionMonitor` per (model, version), one
:class:`AlertPolicy` deciding triggers and resolves. Pure: the Kafka/Redis edge feeds it and ships its alerts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from models.prediction import Prediction
from monitor.alerts import Alert
from monitor.policy import AlertPolicy, PolicyConfig, Thresholds
from monitor.reference import ReferenceProfile
from monitor.version_monitor import MonitorConfig, Signal, VersionMonitor

log = logging.getLogger(__name__)

EVENT_SEVERITY = {"prediction_drift": "warning", "concept_drift": "critical"}


def default_policy(min_samples: int = 200) -> AlertPolicy:
    """PSI 0.1 / 0.25; mean score shift 3 / 10 points; ``trigger_after`` 3 evaluations, resolve after 3."""
    base = PolicyConfig(thresholds=Thresholds(0.1, 0.25), min_samples=min_samples)
    mean_shift = PolicyConfig(thresholds=Thresholds(0.03, 0.10), min_samples=min_samples)
    return AlertPolicy(base, per_key={"mean_shift|": mean_shift})


@dataclass
class DriftMonitor:
    """Routes observations to version monitors and evaluates them every ``evaluate_every`` predictions."""

    profiles: Callable[[str, int], ReferenceProfile]
    policy: AlertPolicy = field(default_factory=default_policy)
    config: MonitorConfig = field(default_factory=MonitorConfig)
    evaluate_every: int = 100
    monitors: dict[tuple[str, int], VersionMonitor] = field(default_factory=dict)
    _since_eval: int = 0

    def monitor_for(self, model: str, version: int) -> VersionMonitor:
        key = (model, version)
        if key not in self.monitors:
            self.monitors[key] = VersionMonitor(model, version, self.profiles(model, version), self.config)
        return self.monitors[key]

    def on_predictions(self, predictions: Iterable[Prediction], now_ms: int) -> list[Alert]:
        """Feed served predictions (shadow ones are monitored as their own version's stream too)."""
        for p in predictions:
            if p.score == p.score:
                self.monitor_for(p.model, p.model_version).observe(p.score, p.features)
                self._since_eval += 1
        if self._since_eval < self.evaluate_every:
            return []
        self._since_eval = 0
        return self.evaluate(now_ms)

    def on_outcomes(self, outcomes: Iterable[tuple[str, int, int]], now_ms: int) -> list[Alert]:
        """Feed joined labels as ``(model, version, error)``; detector events become alerts at once."""
        touched = set()
        for model, version, error in outcomes:
            self.monitor_for(model, version).observe_outcome(error)
            touched.add((model, version))
        alerts: list[Alert] = []
        for key in touched:
            mon = self.monitors[key]
            alerts += self._alerts(mon, [s for s in mon.evaluate() if s.event], now_ms)
        return alerts

    def evaluate(self, now_ms: int) -> list[Alert]:
        alerts: list[Alert] = []
        for mon in self.monitors.values():
            alerts += self._alerts(mon, mon.evaluate(), now_ms)
        return alerts

    def _alerts(self, mon: VersionMonitor, signals: list[Signal], now_ms: int) -> list[Alert]:
        ranked = mon.ranked_feature_psi()
        top = [{"feature": f, "psi": round(v, 4)} for f, v in ranked[:5] if v == v]
        alerts = []
        for s in signals:
            feature = s.feature or ("score" if s.detector in ("psi", "adwin") and s.kind == "prediction_drift"
                                    else "score_mean" if s.detector == "mean_shift" else None)
            probe = Alert.build(action="trigger", severity="info", kind=s.kind, model=mon.model,
                                model_version=mon.version, feature=feature, detector=s.detector,
                                statistic=s.statistic, value=s.value, threshold=None, window=s.window, ts=now_ms,
                                summary="")
            if s.event:
                severity = EVENT_SEVERITY.get(s.kind, "warning")
                verdict_action, threshold = "trigger", None
                # the policy records an event as +inf, i.e. status "critical": that means "already sent"
                if self.policy.status(f"{s.detector}|{probe.dedup_key}") in (severity, "critical"):
                    continue
                self.policy.observe(f"{s.detector}|{probe.dedup_key}", float("inf"), 10**9, now_ms)
            else:
                verdict = self.policy.observe(f"{s.detector}|{probe.dedup_key}", s.value, s.n, now_ms)
                if verdict is None:
                    continue
                severity, verdict_action, threshold = verdict.severity, verdict.action, verdict.threshold
            alerts.append(Alert.build(
                action=verdict_action, severity=severity, kind=s.kind, model=mon.model, model_version=mon.version,
                feature=feature, detector=s.detector, statistic=s.statistic, value=_round(s.value),
                threshold=threshold, window=s.window, ts=now_ms,
                summary=_summary(verdict_action, severity, s, mon, feature, threshold, top),
                details={"n": s.n, "top_drifted_features": top, "accuracy": _round(mon.accuracy),
                         "predictions": mon.predictions}))
        return alerts

    def snapshots(self) -> list[Mapping[str, object]]:
        return [m.snapshot() for m in self.monitors.values()]


def _round(x: float) -> float | None:
    return None if x != x else round(float(x), 5)


def _summary(action: str, severity: str, s: Signal, mon: VersionMonitor, feature: str | None,
             threshold: float | None, top: list[dict]) -> str:
    what = f"{s.kind.replace('_', ' ')} on {mon.model} v{mon.version}"
    stat = f"{s.detector} {s.statistic}={_round(s.value)}" + (f" (threshold {threshold})" if threshold else "")
    where = f" feature {feature}" if feature else ""
    tops = ", ".join(f"{t['feature']} {t['psi']}" for t in top[:3])
    text = f"[{severity.upper()}] {action}: {what}:{where} {stat}" + (f"; top drifted: {tops}" if tops else "")
    return text[:1024]
