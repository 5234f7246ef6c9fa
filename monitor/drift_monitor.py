"""From predictions and joined labels to alerts: one :class:`VersionMonitor` per (model, version) and, when a
``slice_of`` callable is given, one more per (model, version, slice). Pure: the Kafka/Redis edge feeds it and
ships its alerts.

Incidents. One incident per dedup key ``model/version/kind/feature/slice``; several sources can feed it:

- *windowed statistics* (PSI, KS, JS, mean shift) each have their own :class:`AlertPolicy` state (policy key
  ``detector|dedup_key``, or ``detector|slice|dedup_key`` in a slice: thresholds, hysteresis, cooldown);
- *detector events* (ADWIN on scores or features, ADWIN and DDM on the error stream) go through an
  :class:`~monitor.incidents.IncidentBook` (open, update, escalate, resolve after ``resolve_after`` quiet events
  of their stream, re-arm) and, on the error stream, through the :class:`~monitor.concept.ConceptVerdict` (ADWIN
  increase → warning; DDM within ``confirm_within`` outcomes, or an open data/prediction drift incident on the
  version → critical; DDM alone never pages).

A trigger is sent when the incident's severity (the highest over its sources) rises, an update trigger (same
severity and dedup key, ``details.incident.detections`` counted) when a detector fires again while it is open,
a resolve when every source has resolved. The states of a detector incident::

    warming up ─► armed ──detection──► open: warning ──confirmation──► open: critical
                    ▲                     │ detection: update (no page)     │ detection: update
                    └───── resolve ◄──────┴── no detection for resolve_after events, or error back in its band

Inconclusive is never a verdict: a NaN statistic, too few samples, or no new traffic since the last evaluation
is fed to the policy as NaN (status "inconclusive", streaks untouched) and listed by :meth:`inconclusive`.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from models.prediction import Prediction
from monitor.alerts import Alert, dedup_key_for
from monitor.concept import ConceptVerdict
from monitor.incidents import RANK, IncidentBook, IncidentConfig, Transition
from monitor.policy import AlertPolicy, PolicyConfig, Thresholds
from monitor.reference import ReferenceProfile
from monitor.slices import SliceRegistry, policy_key
from monitor.version_monitor import MonitorConfig, Signal, VersionMonitor

log = logging.getLogger(__name__)

EVENT_SEVERITY = {"prediction_drift": "warning", "data_drift": "warning"}
BAND_MIN = 0.01
"""An error-stream incident is back in its band when the rolling error rate is at most the rate before the change
plus half the change, and at least this much (absolute)."""

KS_THRESHOLDS = Thresholds(0.15, 0.30)
"""KS distance D: warning 0.15, critical 0.30. With a 1000-value window against a 500-value reference sample,
the 99.9% null quantile of D is about 0.11, so a stationary stream stays below warning."""

JS_THRESHOLDS = Thresholds(0.02, 0.05)
"""Jensen-Shannon divergence (bits) on PSI's bins: warning 0.02, critical 0.05. For small shifts JS ~ PSI / 5.5,
so these sit just above PSI's 0.1 / 0.25 (JS is the slightly less eager, symmetric second opinion)."""


def default_policy(min_samples: int = 200) -> AlertPolicy:
    """PSI 0.1 / 0.25; mean score shift 3 / 10 points; KS D 0.15 / 0.30; JS 0.02 / 0.05 bits;
    ``trigger_after`` 3 evaluations, resolve after 3."""
    base = PolicyConfig(thresholds=Thresholds(0.1, 0.25), min_samples=min_samples)
    return AlertPolicy(base, per_key={
        "mean_shift|": PolicyConfig(thresholds=Thresholds(0.03, 0.10), min_samples=min_samples),
        "ks|": PolicyConfig(thresholds=KS_THRESHOLDS, min_samples=min_samples),
        "js|": PolicyConfig(thresholds=JS_THRESHOLDS, min_samples=min_samples),
    })


@dataclass
class DriftMonitor:
    """Routes observations to version (and slice) monitors and evaluates them every ``evaluate_every`` predictions.

    ``slice_of(prediction)`` names the prediction's slice (None: overall only); at most ``max_slices`` slices per
    (model, version) are monitored, further ones are counted in ``slices.dropped`` and ignored.
    ``incidents`` and ``confirm_within`` (outcomes) set the lifecycle of detector incidents (module docstring).
    """

    profiles: Callable[[str, int], ReferenceProfile]
    policy: AlertPolicy = field(default_factory=default_policy)
    config: MonitorConfig = field(default_factory=MonitorConfig)
    evaluate_every: int = 100
    slice_of: Callable[[Prediction], str | None] | None = None
    max_slices: int = 50
    monitors: dict[tuple[str, int], VersionMonitor] = field(default_factory=dict)
    slice_monitors: dict[tuple[str, int, str], VersionMonitor] = field(default_factory=dict)
    incidents: IncidentConfig = field(default_factory=IncidentConfig)
    confirm_within: int = 2_000
    _since_eval: int = 0

    def __post_init__(self) -> None:
        self.slices = SliceRegistry(self.max_slices)
        self.book = IncidentBook(self.incidents)
        self.verdict = ConceptVerdict(self.confirm_within)
        self._last_event: dict[str, Signal] = {}  # dedup key -> latest detector event (for its resolve)
        self._open: dict[str, str] = {}          # policy key -> open severity (windowed statistics)
        self._sent: dict[str, str] = {}          # dedup key -> severity sent for the incident
        self._inconclusive: dict[str, str] = {}  # policy key -> reason
        self._seen_at_eval: dict[int, int] = {}  # id(monitor) -> predictions at its last evaluation
        self._last_seen_ms: dict[int, int] = {}
        self.retired: set[tuple[str, int]] = set()  # versions that stopped serving: late traffic is ignored

    def monitor_for(self, model: str, version: int, slice_: str | None = None) -> VersionMonitor:
        """The monitor of (model, version) or of one of its slices, created on first use."""
        if slice_ is None:
            key = (model, version)
            if key not in self.monitors:
                self.monitors[key] = VersionMonitor(model, version, self.profiles(model, version), self.config)
            return self.monitors[key]
        skey = (model, version, slice_)
        if skey not in self.slice_monitors:
            self.slice_monitors[skey] = VersionMonitor(model, version, self.profiles(model, version), self.config,
                                                       slice_=slice_)
        return self.slice_monitors[skey]

    def _slice_monitor(self, model: str, version: int, slice_: str | None) -> VersionMonitor | None:
        if slice_ is None or not self.slices.admit(model, version, slice_):
            return None
        return self.monitor_for(model, version, slice_)

    def on_predictions(self, predictions: Iterable[Prediction], now_ms: int) -> list[Alert]:
        """Feed served predictions (shadow ones are monitored as their own version's stream too)."""
        slice_of = self.slice_of
        for p in predictions:
            if p.score == p.score and (p.model, p.model_version) not in self.retired:
                mon = self.monitor_for(p.model, p.model_version)
                mon.observe(p.score, p.features)
                self._last_seen_ms[id(mon)] = now_ms
                if slice_of is not None:
                    smon = self._slice_monitor(p.model, p.model_version, slice_of(p))
                    if smon is not None:
                        smon.observe(p.score, p.features)
                        self._last_seen_ms[id(smon)] = now_ms
                self._since_eval += 1
        if self._since_eval < self.evaluate_every:
            return []
        self._since_eval = 0
        return self.evaluate(now_ms)

    def on_outcomes(self, outcomes: Iterable[tuple[Any, ...]], now_ms: int) -> list[Alert]:
        """Feed joined labels as ``(model, version, error[, label, score[, slice]])``; detector events become
        alerts at once."""
        touched: dict[int, VersionMonitor] = {}
        for o in outcomes:
            model, version, error = o[0], o[1], int(o[2])
            if (model, version) in self.retired:
                continue
            label = o[3] if len(o) > 3 else None
            score = float(o[4]) if len(o) > 4 and o[4] is not None else math.nan
            mons = [self.monitor_for(model, version)]
            smon = self._slice_monitor(model, version, o[5] if len(o) > 5 else None)
            if smon is not None:
                mons.append(smon)
            for mon in mons:
                mon.observe_outcome(error, label, score)
                touched[id(mon)] = mon
        alerts: list[Alert] = []
        for mon in touched.values():
            alerts += self._alerts(mon, mon.take_events(), now_ms)
        return alerts

    def all_monitors(self) -> list[VersionMonitor]:
        """Every monitor: overall ones first, then slices."""
        return [*self.monitors.values(), *self.slice_monitors.values()]

    def evaluate(self, now_ms: int) -> list[Alert]:
        """Evaluate every monitor now (monitors without new traffic report inconclusive)."""
        alerts: list[Alert] = []
        for mon in self.all_monitors():
            fresh = mon.predictions > self._seen_at_eval.get(id(mon), 0)
            self._seen_at_eval[id(mon)] = mon.predictions
            alerts += self._alerts(mon, mon.evaluate(), now_ms, fresh=fresh)
        return alerts

    def retire_version(self, model: str, version: int, now_ms: int, reason: str = "version retired") -> list[Alert]:
        """``model`` v``version`` stopped serving (rolled back, archived): resolve each of its open incidents
        (windowed statistics and detector events, every slice) with ``reason``, drop its monitors, and ignore
        its late predictions and labels until :meth:`reinstate`. The only close without an evaluation;
        a version that merely gets no traffic stays inconclusive and keeps its incidents open."""
        prefix = f"{model}/{version}/"
        closing = {k: v for k, v in self._sent.items() if k.startswith(prefix)}
        for pkey in self.policy.retire(lambda k: f"|{prefix}" in k):
            self._open.pop(pkey, None)
            self._inconclusive.pop(pkey, None)
        for dkey in [k for k in self.book.open_incidents() if k.startswith(prefix)]:  # detector incidents
            inc = self.book.forget(dkey)
            if inc is not None:
                closing.setdefault(dkey, inc.severity)
        for dkey in [k for k in self._last_event if k.startswith(prefix)]:
            del self._last_event[dkey]
            self.verdict.forget(dkey)
        for dkey in closing:
            self._sent.pop(dkey, None)
        gone = [self.monitors.pop((model, version), None)]
        gone += [self.slice_monitors.pop(k) for k in [k for k in self.slice_monitors if k[:2] == (model, version)]]
        for mon in gone:
            if mon is not None:
                self._seen_at_eval.pop(id(mon), None)
                self._last_seen_ms.pop(id(mon), None)
        self.retired.add((model, version))
        return [_retired_alert(dkey, severity, model, version, now_ms, reason) for dkey, severity in closing.items()]

    def reinstate(self, model: str, version: int) -> None:
        """``model`` v``version`` serves again (promoted back): monitor it from scratch."""
        self.retired.discard((model, version))

    def inconclusive(self) -> dict[str, str]:
        """Policy keys whose latest evaluation was inconclusive, with the reason (not a verdict either way)."""
        return dict(self._inconclusive)

    def _reason(self, mon: VersionMonitor, s: Signal, key: str, fresh: bool) -> str | None:
        if not fresh:
            seen = self._last_seen_ms.get(id(mon))
            return "no traffic since last evaluation" + (f" (last prediction at {seen} ms)" if seen else "")
        min_n = max(self.policy.config_for(key).min_samples, 0)
        if s.n < min_n or (s.value != s.value and s.n < self.config.psi_min_samples):
            return f"too few samples ({s.n} < {max(min_n, self.config.psi_min_samples)})"
        if not math.isfinite(s.value):
            return "statistic is NaN"
        return None

    def _alerts(self, mon: VersionMonitor, signals: list[Signal], now_ms: int, *, fresh: bool = True) -> list[Alert]:
        ranked = mon.ranked_feature_psi()
        top = [{"feature": f, "psi": round(v, 4)} for f, v in ranked[:5] if v == v]
        alerts = []
        stats: dict[str, dict[str, float | None]] = {}
        for s in signals:
            if not s.event:
                stats.setdefault(_feature(s) or "-", {})[s.statistic] = _round(s.value)
                if s.detector == "ks":
                    stats[_feature(s) or "-"]["ks_p_value"] = s.details.get("p_value")
        changed: dict[str, tuple[Signal, float | None]] = {}
        events: dict[str, tuple[Signal, Transition]] = {}  # dedup key -> latest detector-incident transition
        for s in signals:
            feature = _feature(s)
            dkey = dedup_key_for(mon.model, mon.version, s.kind, feature, mon.slice_)
            if s.event:
                t = self._detection(mon, s, dkey, now_ms)
                if t is not None:
                    self._last_event[dkey] = s
                    events[dkey] = (s, t)
                continue
            pkey = policy_key(s.detector, dkey, mon.slice_)
            reason = self._reason(mon, s, pkey, fresh)
            if reason is not None:
                self._inconclusive[pkey] = reason
                self.policy.observe(pkey, math.nan, s.n, now_ms)
                continue
            self._inconclusive.pop(pkey, None)
            verdict = self.policy.observe(pkey, s.value, s.n, now_ms)
            if verdict is None:
                continue
            if verdict.action == "trigger":
                self._open[pkey] = verdict.severity
            else:
                self._open.pop(pkey, None)
            if dkey not in changed or verdict.action == "trigger":
                changed.setdefault(dkey, (s, verdict.threshold))
        events.update(self._quiet(mon, now_ms))
        for dkey in [*changed, *(k for k in events if k not in changed)]:
            windowed = max((sev for k, sev in self._open.items() if k.endswith("|" + dkey)),
                           key=lambda sev: RANK[sev], default=None)
            inc = self.book.get(dkey)
            combined = max(windowed, inc.severity if inc else None, key=lambda sev: RANK[sev])
            sent = self._sent.get(dkey)
            event = events.get(dkey)
            if RANK[combined] > RANK[sent]:
                self._sent[dkey] = combined  # type: ignore[assignment]
                if event is not None and event[1].severity == combined:
                    t = event[1] if sent is not None else replace(event[1], change="opened")  # first page
                    alerts.append(self._build_event(mon, event[0], t, now_ms, top, stats))
                else:
                    driver = self._driver(mon, signals, dkey, combined) or changed[dkey]
                    alerts.append(self._build(mon, driver[0], "trigger", combined, driver[1], now_ms, top, stats))
            elif combined is None and sent is not None:
                del self._sent[dkey]
                if event is not None and event[1].action == "resolve":
                    alerts.append(self._build_event(mon, event[0], event[1], now_ms, top, stats))
                else:
                    s, threshold = changed[dkey]
                    alerts.append(self._build(mon, s, "resolve", sent, threshold, now_ms, top, stats))
            elif event is not None and event[1].action == "trigger" and sent is not None:
                # a detection while the incident is open: same severity and dedup key, counted (no new page)
                t = event[1] if event[1].change != "opened" else replace(event[1], change="updated")
                alerts.append(self._build_event(mon, event[0], t, now_ms, top, stats, severity=sent))
        return alerts

    def _detection(self, mon: VersionMonitor, s: Signal, dkey: str, now_ms: int) -> Transition | None:
        """A detector event into its incident (None: not a detection to report, e.g. a falling error rate)."""
        baseline = band = None
        if s.kind == "concept_drift":
            severity = self.verdict.on_detection(dkey, s.detector, str(s.details.get("direction", "up")), s.n,
                                                 drift_open=self._drift_open(mon),
                                                 is_open=self.book.get(dkey) is not None)
            if severity is None:
                return None
            before, after = s.details.get("before"), s.details.get("after")
            if s.detector == "adwin" and before is not None and after is not None:
                baseline, band = before, before + max(BAND_MIN, (after - before) / 2)
        else:
            severity = EVENT_SEVERITY.get(s.kind, "warning")
        return self.book.detect(dkey, s.detector, s.n, now_ms, severity, baseline=baseline, band=band)

    def _drift_open(self, mon: VersionMonitor) -> bool:
        """A data or prediction drift incident is open on ``mon``'s version and slice."""
        prefix, suffix = f"{mon.model}/{mon.version}/", f"/{mon.slice_ or 'all'}"
        return any(k.startswith(prefix) and k.endswith(suffix)
                   and k[len(prefix):].split("/", 1)[0] in ("data_drift", "prediction_drift") for k in self._sent)

    def _quiet(self, mon: VersionMonitor, now_ms: int) -> dict[str, tuple[Signal, Transition]]:
        """Resolve ``mon``'s detector incidents whose stream went quiet (or, errors, came back in band)."""
        out: dict[str, tuple[Signal, Transition]] = {}
        prefix, suffix = f"{mon.model}/{mon.version}/", f"/{mon.slice_ or 'all'}"
        for dkey, inc in self.book.open_incidents().items():
            last = self._last_event.get(dkey)
            if last is None or not (dkey.startswith(prefix) and dkey.endswith(suffix)):
                continue
            concept = last.kind == "concept_drift"
            position = mon.outcomes if concept else mon.predictions
            in_band = False
            if concept and inc.band is not None and position - inc.last_detection >= mon.outcome_window.size:
                in_band = 1.0 - mon.outcome_window.accuracy <= inc.band
            t = self.book.quiet(dkey, position, now_ms, in_band=in_band)
            if t is not None:
                value = (1.0 - mon.outcome_window.accuracy) if concept else last.value
                out[dkey] = (Signal(last.kind, last.feature, last.detector, last.statistic, value, position,
                                    t.reason, event=True), t)
                del self._last_event[dkey]
                self.verdict.forget(dkey)
        return out

    def _driver(self, mon: VersionMonitor, signals: list[Signal], dkey: str,
                severity: str | None) -> tuple[Signal, float | None] | None:
        """The first (PSI before KS before JS) statistic whose incident is open at ``severity``."""
        for s in signals:
            if s.event or dedup_key_for(mon.model, mon.version, s.kind, _feature(s), mon.slice_) != dkey:
                continue
            pkey = policy_key(s.detector, dkey, mon.slice_)
            if self._open.get(pkey) == severity:
                th = self.policy.config_for(pkey).thresholds
                return s, th.critical if severity == "critical" else th.warning
        return None

    def _build_event(self, mon: VersionMonitor, s: Signal, t: Transition, now_ms: int, top: list[dict],
                     stats: Mapping[str, Mapping[str, float | None]], severity: str | None = None) -> Alert:
        """The alert of a detector-incident transition (its state and counts in ``details.incident``)."""
        alert = self._build(mon, s, t.action, severity or t.severity, None, now_ms, top, stats)
        incident = {**t.incident.to_dict(), "change": t.change, "reason": t.reason}
        how = {"opened": "", "escalated": " (escalated)",
               "updated": f" (update: {t.incident.detections} detections, no new page)"}.get(t.change, "")
        summary = alert.summary.replace(f" {t.action}:", f" {t.action}{how}:", 1)
        if t.action == "resolve":
            summary = f"{summary}; {t.reason} ({t.incident.detections} detections)"
        return Alert(**{**alert.to_dict(), "summary": summary[:1024],
                        "details": {**alert.details, "incident": incident}})

    def _build(self, mon: VersionMonitor, s: Signal, action: str, severity: str, threshold: float | None,
               now_ms: int, top: list[dict], stats: Mapping[str, Mapping[str, float | None]]) -> Alert:
        feature = _feature(s)
        details: dict[str, Any] = {"n": s.n, "top_drifted_features": top, "accuracy": _round(mon.accuracy),
                                   "predictions": mon.predictions, **mon.performance()}
        if feature in stats or (feature is None and "-" in stats):
            details["statistics"] = dict(stats[feature or "-"])
        if s.details:
            details.update(s.details)
        return Alert.build(
            action=action, severity=severity, kind=s.kind, model=mon.model, model_version=mon.version,
            feature=feature, detector=s.detector, statistic=s.statistic, value=_round(s.value),
            threshold=threshold, window=s.window, ts=now_ms, slice_=mon.slice_,
            summary=_summary(action, severity, s, mon, feature, threshold, top), details=details)

    def snapshots(self) -> list[Mapping[str, object]]:
        """One snapshot per monitor, each with its inconclusive keys and reasons and its open detector incidents."""
        out = []
        for m in self.all_monitors():
            snap = m.snapshot()
            part = f"|{m.model}/{m.version}/"
            tail = f"/{m.slice_ or 'all'}"
            snap["inconclusive"] = {k: r for k, r in self._inconclusive.items() if part in k and k.endswith(tail)}
            snap["incidents"] = {k: inc.to_dict() for k, inc in self.book.open_incidents().items()
                                 if k.startswith(part[1:]) and k.endswith(tail)}
            out.append(snap)
        return out


def _retired_alert(dkey: str, severity: str, model: str, version: int, now_ms: int, reason: str) -> Alert:
    """The resolve of incident ``dkey`` (``model/version/kind/feature/slice``) because its version retired."""
    kind, feature, slice_ = (dkey[len(f"{model}/{version}/"):].split("/", 2) + ["-", "all"])[:3]
    return Alert(alert_id=uuid.uuid4().hex, dedup_key=dkey, action="resolve", severity=severity, kind=kind,
                 model=model, model_version=version, feature=None if feature == "-" else feature,
                 detector="lifecycle", statistic="serving", value=None, threshold=None, window="-", ts=now_ms,
                 slice=None if slice_ == "all" else slice_,
                 summary=f"[RESOLVED] {kind.replace('_', ' ')} on {model} v{version}: {reason} "
                         f"(the version no longer serves)"[:1024], details={"reason": reason})


def _feature(s: Signal) -> str | None:
    if s.feature:
        return s.feature
    if s.detector == "mean_shift":
        return "score_mean"
    return "score" if s.kind == "prediction_drift" else None


def _round(x: float) -> float | None:
    return None if x != x else round(float(x), 5)


def _summary(action: str, severity: str, s: Signal, mon: VersionMonitor, feature: str | None,
             threshold: float | None, top: list[dict]) -> str:
    what = f"{s.kind.replace('_', ' ')} on {mon.model} v{mon.version}" + (f" slice {mon.slice_}" if mon.slice_ else "")
    stat = f"{s.detector} {s.statistic}={_round(s.value)}" + (f" (threshold {threshold})" if threshold else "")
    where = f" feature {feature}" if feature else ""
    tops = ", ".join(f"{t['feature']} {t['psi']}" for t in top[:3])
    text = f"[{severity.upper()}] {action}: {what}:{where} {stat}" + (f"; top drifted: {tops}" if tops else "")
    return text[:1024]
