"""Kafka edge of the monitor: predictions and labels in; alerts (on the alerts topic), signed rollbacks and signed
``retrain_requested`` commands (on the control topic) out. The monitor never calls a receiver: the alert
delivery stage (``driftline run alerts``) reads the alerts topic and is the only thing talking to receivers."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Message, TopicPartition

from features.exceptions import RecordError
from models.abtest_report import ABReport, ABTracker
from models.prediction import Prediction
from monitor.alerts import Alert
from monitor.data_quality import DataQualityMonitor
from monitor.drift_monitor import DriftMonitor
from monitor.history import HistoryStore, SnapshotRecorder, ack_event, alert_event, command_event
from monitor.label_join import RedisLabelJoin
from monitor.report.focus import with_report_hint
from monitor.retrain import RetrainPolicy, RetrainRequest
from monitor.rollback import Decision, RollbackPolicy
from streams import codec
from streams.control.channel import Refused
from streams.control.keyring import Keyring
from streams.control.protocol import new_command, sign_command
from streams.exceptions import DriftlineError
from streams.metrics import Metrics
from streams.runtime.batch import BatchResult, Output, dead_letter, describe
from streams.runtime.dead_letters import dlq_topic
from streams.runtime.monitor_records import parse_label, parse_prediction
from streams.settings import Settings
from streams.timeline import Timeline

log = logging.getLogger(__name__)


class MonitorHandler:
    """Batch handler over the ``predictions`` and ``labels`` topics."""

    def __init__(self, settings: Settings, drift: DriftMonitor, join: RedisLabelJoin, rollback: RollbackPolicy,
                 *, registry: Any, control_key: bytes | Keyring,
                 timeline: Timeline | None = None, clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None, retrain: RetrainPolicy | None = None,
                 ab: ABTracker | None = None, history: HistoryStore | None = None,
                 history_interval_ms: int = 10_000,
                 quality: DataQualityMonitor | None = None) -> None:
        self.settings = settings
        self.drift = drift
        self.join = join
        self.rollback = rollback
        self.registry = registry
        self.control_key = control_key
        self.timeline = timeline or Timeline()
        self.clock = clock
        self.malformed = 0
        self.metrics = metrics or Metrics()
        self.alerts_sent = 0
        self.retrain = retrain
        self.ab = ab  # champion/challenger z-test on joined labels; None = off
        self.ab_reports: list[ABReport] = []
        self.quality = quality  # data_quality alerts from marked predictions; their quarantine
        self._ab_logged: dict[str, tuple[str, int, int, int]] = {}  # model -> (verdict, champ, chall, trials)
        self._swapped: dict[str, int | None] = {}  # model -> active version of applied acks since the last check
        self.history = history  # the report's bounded history (None = off)
        self.snapshots_due = SnapshotRecorder(history_interval_ms)

    def on_assign(self, partitions: Sequence[TopicPartition]) -> None:
        pass

    def on_revoke(self, partitions: Sequence[TopicPartition]) -> None:
        pass

    def process(self, messages: Sequence[Message]) -> BatchResult:
        now = int(self.clock() * 1000)
        predictions: list[Prediction] = []
        labels: list[dict[str, Any]] = []
        dead: list[Output] = []
        for m in messages:  # a bad record goes to <topic>.dlq (predictions.dlq, labels.dlq), never into a statistic
            try:
                if m.topic() == self.settings.topics.predictions:
                    predictions.append(parse_prediction(m.value()))
                else:
                    labels.append(parse_label(m.value()))
            except RecordError as err:
                self.malformed += 1
                topic = m.topic() or ""
                self.metrics.dead_letters.labels(topic, err.reason).inc()
                log.debug("monitor: dead letter %s: %s", describe(m), err)
                dead.append(dead_letter(m, dlq_topic(topic), err.reason, err.detail))
        outcomes = self.join.remember(predictions, self.drift.slice_of) + self.join.match(labels)
        served = [p for p in predictions if p.variant in ("champion", "challenger")]
        alerts: list[Alert] = []
        watched, watched_outcomes = served, outcomes
        if self.quality is not None:  # broken sensors: their own alert, and (quarantine) out of the drift statistics
            watched, alerts = self.quality.observe(served, now)
            if self.quality.config.quarantine:
                watched_outcomes = [o for o in outcomes if not o.suspect]
        alerts += self.drift.on_predictions(watched, now)
        alerts += self.drift.on_outcomes(((o.model, o.version, o.error, o.label, o.score, o.slice)
                                          for o in watched_outcomes), now)
        alerts = [with_report_hint(a) for a in alerts]
        if self.ab is not None:
            self._ab_test(served, outcomes, now)
        self._observe(messages, outcomes, alerts)
        outputs = dead + [Output(self.settings.topics.alerts, codec.encode(a.to_dict()), a.dedup_key) for a in alerts]
        records = self._history_records(alerts, now)
        # retrain first: it must see the production version that served when the alert fired
        retrains = self.retrain.on_alerts(alerts, now) if self.retrain is not None else []
        skip_rollback = self.retrain is not None and self.retrain.replaces_rollback
        for alert in alerts:
            self.timeline.record("alert", action=alert.action, severity=alert.severity, kind=alert.kind,
                                 version=alert.model_version, feature=alert.feature, summary=alert.summary)
            decision = None if skip_rollback else self.rollback.on_alert(alert, now)
            if decision is not None:
                outputs.append(self._command(decision, now, records))
        outputs += [self._retrain_command(r, now, records) for r in retrains]
        return BatchResult(outputs, finalize=lambda: self._after_delivery(alerts, records))

    def _history_records(self, alerts: list[Alert], now: int) -> dict[str, tuple[list, list]]:
        """Per model: (snapshots due now, events) for the report's history; empty when history is off."""
        if self.history is None:
            return {}
        records: dict[str, tuple[list, list]] = {}
        for snap in self.snapshots_due.due(self.drift.monitors.values(), now):
            records.setdefault(snap["model"], ([], []))[0].append(snap)
        for a in alerts:
            records.setdefault(a.model, ([], []))[1].append(alert_event(a.to_dict()))
        return records

    def write_history(self, records: dict[str, tuple[list, list]]) -> None:
        """Best effort: a failed write is logged and counted, never fails the batch (the report is a copy)."""
        if self.history is None:
            return
        for model, (snaps, events) in records.items():
            try:
                self.history.write(model, snaps, events)
                outcome = "ok"
            except Exception as exc:  # noqa: BLE001 - Redis down, a full disk: the alerts went out anyway
                outcome = "failed"
                log.warning("report history not written for %s: %s", model, exc)
            self.metrics.history.labels("snapshot", outcome).inc(len(snaps))
            self.metrics.history.labels("event", outcome).inc(len(events))

    def _observe(self, messages: Sequence[Message], outcomes: list, alerts: list[Alert]) -> None:
        for m in messages:
            self.metrics.consumed.labels("monitor", m.topic() or "").inc()
        if outcomes:
            self.metrics.labels_joined.inc(len(outcomes))
        for a in alerts:
            self.metrics.alerts.labels(a.kind, a.severity, a.action).inc()
            if a.detector in ("adwin", "ddm") and a.action == "trigger":
                self.metrics.detections.labels(a.model, str(a.model_version), a.detector).inc()
        for mon in self.drift.monitors.values():  # overall monitors only: slices would explode label cardinality
            version = str(mon.version)
            # with the window's fill, so rules can tell a filling window (PSI biased high) from a conclusive one
            for name, psi in [*mon.feature_psi.items(), ("__score__", mon.score_psi)]:
                self.metrics.psi.labels(mon.model, version, name).set(psi.value)
                self.metrics.psi_samples.labels(mon.model, version, name).set(psi.n)
                self.metrics.psi_window.labels(mon.model, version, name).set(psi.window)
            self.metrics.mean_shift.labels(mon.model, version).set(mon.mean_shift.value)
            self.metrics.accuracy.labels(mon.model, version).set(mon.accuracy)

    def _ab_test(self, served: list[Prediction], outcomes: list, now: int) -> None:
        """Champion/challenger verdict per model with a challenger in traffic: logged, exported, kept."""
        assert self.ab is not None
        self.ab.observe_roles(((p.model, p.model_version, p.variant) for p in served), now)
        self.ab.observe_outcomes((o.model, o.version, o.error, o.label) for o in outcomes)
        reports = self.ab.reports(now)
        live = {(r.model, str(r.champion), str(r.challenger)) for r in reports}
        for old in {(r.model, str(r.champion), str(r.challenger)) for r in self.ab_reports} - live:
            self.metrics.ab_z.remove(*old)  # a challenger out of traffic leaves no stale series
            self.metrics.ab_p_value.remove(*old)
        for r in reports:
            labels = (r.model, str(r.champion), str(r.challenger))
            self.metrics.ab_z.labels(*labels).set(r.z)
            self.metrics.ab_p_value.labels(*labels).set(r.p_value)
            trials = r.champion_n + r.challenger_n
            last = self._ab_logged.get(r.model)
            if (last is None or last[:3] != (r.verdict, r.champion, r.challenger)
                    or trials - last[3] >= self.drift.evaluate_every):
                self._ab_logged[r.model] = (r.verdict, r.champion, r.challenger, trials)
                log.info("%s", r.summary)
                if last is None or last[0] != r.verdict:
                    self.timeline.record("ab_test", model=r.model, champion=r.champion, challenger=r.challenger,
                                         verdict=r.verdict, p_value=r.p_value, summary=r.summary)
        self.ab_reports = reports

    def snapshots(self) -> list[dict[str, Any]]:
        """The drift monitor's snapshots; a challenger's overall snapshot carries its ``ab_test`` report."""
        by_challenger = {(r.model, r.challenger): r.to_dict() for r in self.ab_reports}
        out = []
        for snap in self.drift.snapshots():
            snap = dict(snap)
            if snap.get("slice") is None and (snap.get("model"), snap.get("version")) in by_challenger:
                snap["ab_test"] = by_challenger[(snap["model"], snap["version"])]
            out.append(snap)
        return out

    def _command(self, decision: Decision, now: int, records: dict[str, tuple[list, list]]) -> Output:
        """The signed command for ``decision``. The registry is not written here: the scorers record the
        decision as the model's desired state and the registry follows it (a rollback that arrives superseded
        changes nothing anywhere). ``from_version`` makes a rollback about a champion that is no longer
        desired a ``superseded`` no-op."""
        from_version = decision.from_version if decision.command == "rollback" else None
        cmd = sign_command(new_command(decision.command, model=decision.model, now_ms=now,
                                       to_version=decision.to_version, traffic=decision.traffic,
                                       reason=decision.reason[:500], issued_by="driftline-monitor",
                                       evidence=decision.evidence, from_version=from_version,
                                       scope=self._scope(decision.model)), self.control_key)
        self.rollback.issued(cmd["command_id"], decision, now)
        self.metrics.control.labels(decision.command, "issued").inc()
        self.timeline.record("rollback_command", command_id=cmd["command_id"], model=decision.model,
                             from_version=decision.from_version, to_version=decision.to_version)
        if self.history is not None:
            records.setdefault(decision.model, ([], []))[1].append(
                command_event(cmd, from_version=decision.from_version))
        return Output(self.settings.topics.control, codec.encode(cmd), decision.model)

    def _scope(self, model: str) -> str | None:
        """The registry's id for ``model`` (scorers of other registries ignore the command), if it has one."""
        uid = getattr(self.registry, "uid", None)
        if uid is None:
            return None
        try:
            return str(uid(model))
        except DriftlineError as exc:
            log.warning("control command for %s is not scoped to a registry: %s", model, exc)
            return None

    def _retrain_command(self, request: RetrainRequest, now: int,
                         records: dict[str, tuple[list, list]]) -> Output:
        cmd = sign_command(new_command("retrain_requested", model=request.model, now_ms=now, reason=request.reason,
                                       issued_by="driftline-monitor", evidence=request.evidence), self.control_key)
        self.metrics.control.labels("retrain_requested", "issued").inc()
        self.timeline.record("retrain_requested", command_id=cmd["command_id"], model=request.model,
                             version=request.version, alerts=len(request.evidence.get("alert_ids", [])))
        if self.history is not None:
            records.setdefault(request.model, ([], []))[1].append(command_event(cmd))
        return Output(self.settings.topics.control, codec.encode(cmd), request.model)

    def _after_delivery(self, alerts: list[Alert], records: dict[str, tuple[list, list]]) -> None:
        self.alerts_sent += len(alerts)  # on the alerts topic: the delivery stage takes them from there
        self.write_history(records)

    def on_control(self, item: object) -> None:
        """Acks (and refusals) read from the control topic."""
        if isinstance(item, Refused):
            return
        ack_for = getattr(item, "ack_for", None)
        if ack_for is None:
            return
        if item.status == "applied":  # type: ignore[attr-defined]
            self._swapped[getattr(item, "model", "")] = item.active_version  # type: ignore[attr-defined]
        pending = self.rollback.on_ack(ack_for, item.instance, item.status)  # type: ignore[attr-defined]
        self.metrics.control.labels("ack", item.status).inc()  # type: ignore[attr-defined]
        model = getattr(item, "model", "") or (pending.decision.model if pending is not None else "")
        if model and self.history is not None:
            at = getattr(item, "at", None) or int(self.clock() * 1000)
            self.write_history({model: ([], [ack_event(ack_for, item.instance, item.status,  # type: ignore[attr-defined]
                                                        item.active_version, at)])})  # type: ignore[attr-defined]
        if pending is not None:
            self.timeline.record("ack", ack_for=ack_for, instance=item.instance, status=item.status,  # type: ignore[attr-defined]
                                 active_version=item.active_version)  # type: ignore[attr-defined]

    def retire_stopped(self) -> list[Alert]:
        """Resolve, with reason ``version retired``, the open incidents of versions that stopped serving: after
        a scorer acked a swap away from them (rollback, promote) and the registry has them ``archived``. A
        version that only gets no traffic is not retired (missing data never resolves anything). The resolves
        go on the alerts topic like every alert; the version's PSI series are removed from /metrics."""
        swapped, self._swapped = self._swapped, {}
        if not swapped:
            return []
        now = int(self.clock() * 1000)
        alerts: list[Alert] = []
        watched = {(m.model, m.version) for m in self.drift.all_monitors()}
        for model, version in sorted(watched | self.drift.retired):
            if model not in swapped and "" not in swapped:
                continue
            try:
                stage = self.registry.get(model, version).stage
            except DriftlineError as exc:
                log.warning("monitor: cannot tell whether %s v%s still serves: %s", model, version, exc)
                continue
            if stage == "archived" and version != swapped.get(model) and (model, version) not in self.drift.retired:
                alerts += self.drift.retire_version(model, version, now)
                self._forget_series(model, version)
                self.timeline.record("version_retired", model=model, version=version)
            elif stage != "archived" and (model, version) in self.drift.retired:
                self.drift.reinstate(model, version)
        for a in alerts:
            self.metrics.alerts.labels(a.kind, a.severity, a.action).inc()
            self.timeline.record("alert", action=a.action, severity=a.severity, kind=a.kind, version=a.model_version,
                                 feature=a.feature, summary=a.summary)
        return alerts

    def _forget_series(self, model: str, version: int) -> None:
        """No stale gauges of a retired version (its last PSI would keep a Prometheus rule firing)."""
        for gauge in (self.metrics.psi, self.metrics.psi_samples, self.metrics.psi_window):
            for labels in [k for k in list(gauge._metrics) if k[:2] == (model, str(version))]:  # noqa: SLF001
                gauge.remove(*labels)
        for gauge in (self.metrics.mean_shift, self.metrics.accuracy):
            with contextlib.suppress(KeyError):
                gauge.remove(model, str(version))

    def overdue_alerts(self) -> list[Alert]:
        """Re-alerts for rollback commands nobody acknowledged in time."""
        now = int(self.clock() * 1000)
        out = []
        for p in self.rollback.overdue(now):
            out.append(Alert.build(
                action="trigger", severity="critical", kind="performance", model=p.decision.model,
                model_version=p.decision.from_version, feature=None, detector="rollback", statistic="acks",
                value=0.0, threshold=1.0, window=f"{self.rollback.ack_timeout_ms // 1000}s", ts=now,
                summary=f"rollback {p.command_id} of {p.decision.model} to v{p.decision.to_version} has no ack: "
                        "are the scorers running and reading the control topic?"))
        return out
