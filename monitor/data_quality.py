"""``data_quality`` alerts from predictions marked by the sensor checks, and the quarantine of faulty entities.

The pipeline's :mod:`monitor.sensor_checks` mark each prediction of an entity whose sensors look broken
(``Prediction.quality = {field: stuck|dropout|spike}``). Per (model, version) and field, this module counts the
*distinct* entities marked in the last ``window`` predictions and feeds that count to an :class:`AlertPolicy`
(hysteresis: ``trigger_after`` evaluations at or above ``min_entities`` open a ``warning``, ``resolve_after``
evaluations below it resolve). The alert names the worst entities (the most marked predictions): at most ``top_k``
of them, plus the total count, so its size is bounded whatever the number of broken sensors. While it is open, an
update (a trigger with the same dedup key, which pages nobody again) goes out each time the count has doubled. A data-quality alert
never triggers a rollback (:data:`monitor.rollback.NEVER_ROLLS_BACK`): every model version reads the same sensors.

With ``quarantine`` (the default), :meth:`DataQualityMonitor.observe` returns only the unmarked predictions, so the
drift statistics (PSI, KS, ADWIN on scores, and the error stream through the label join) never see what a broken
sensor produced. Pure: no Kafka, Redis or Prometheus.

Example:
    >>> from models.prediction import Prediction
    >>> dq = DataQualityMonitor(QualityConfig(min_entities=2, trigger_after=1, evaluate_every=4))
    >>> preds = [Prediction(f"p{i}", f"e{i % 4}", i, "m", 2, "champion", 0.5, 0, 0,
    ...                     quality={"spo2": "stuck"} if i % 4 < 2 else None) for i in range(8)]
    >>> clean, alerts = dq.observe(preds, now_ms=0)
    >>> len(clean), [(a.kind, a.severity, a.feature, a.value) for a in alerts]
    (4, [('data_quality', 'warning', 'spo2', 2.0)])
    >>> [e["entity"] for e in alerts[0].details["entities"]], alerts[0].details["faulty_entities"]
    (['e0', 'e1'], 2)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from models.prediction import Prediction
from monitor.alerts import Alert
from monitor.exceptions import MonitorConfigError
from monitor.policy import AlertPolicy, PolicyConfig, Thresholds

KIND = "data_quality"
_NEVER_CRITICAL = 1e12


@dataclass(frozen=True)
class QualityConfig:
    """When faulty entities become an alert, and whether they are kept out of the drift statistics."""

    min_entities: int = 3        # distinct faulty entities of one field that make an alert
    window: int = 2_000          # predictions of the version in which a marked entity still counts
    evaluate_every: int = 100    # predictions between evaluations
    trigger_after: int = 2       # evaluations at or above min_entities to open the alert
    resolve_after: int = 5       # evaluations below min_entities to resolve it
    top_k: int = 10              # entities named in the alert
    max_tracked: int = 10_000    # marked entities remembered per (model, version), least recently marked out
    quarantine: bool = True      # keep marked predictions out of the drift statistics

    def __post_init__(self) -> None:
        if min(self.min_entities, self.window, self.evaluate_every, self.trigger_after, self.resolve_after,
               self.top_k, self.max_tracked) < 1:
            raise MonitorConfigError(f"data-quality settings must all be >= 1, got {self}")


@dataclass
class _Marked:
    last: int        # the version's prediction count when it was last marked
    count: int       # marked predictions seen
    faults: dict[str, str]


class DataQualityMonitor:
    """Per (model, version): marked entities, their count per field, and the alerts (module docstring)."""

    def __init__(self, config: QualityConfig = QualityConfig()) -> None:
        self.config = config
        self.policy = AlertPolicy(PolicyConfig(thresholds=Thresholds(config.min_entities, _NEVER_CRITICAL),
                                               min_samples=0, trigger_after=config.trigger_after,
                                               resolve_after=config.resolve_after, cooldown_ms=0))
        self._seen: dict[tuple[str, int], int] = {}
        self._marked: dict[tuple[str, int], dict[str, _Marked]] = {}
        self._since_eval = 0
        self._sent: dict[str, int] = {}  # open alert key -> faulty entities it last reported
        self.quarantined = 0

    def observe(self, predictions: Iterable[Prediction], now_ms: int) -> tuple[list[Prediction], list[Alert]]:
        """(the predictions for the drift statistics, data-quality alerts to send)."""
        clean: list[Prediction] = []
        cap = self.config.max_tracked
        for p in predictions:
            key = (p.model, p.model_version)
            n = self._seen[key] = self._seen.get(key, 0) + 1
            self._since_eval += 1
            if not p.quality:
                clean.append(p)
                continue
            marked = self._marked.setdefault(key, {})
            m = marked.pop(p.entity_id, None)  # re-inserted last: least recently marked first
            if m is None:
                m = _Marked(n, 0, {})
                if len(marked) >= cap:
                    del marked[next(iter(marked))]
            m.last, m.count, m.faults = n, m.count + 1, dict(p.quality)
            marked[p.entity_id] = m
            if self.config.quarantine:
                self.quarantined += 1
            else:
                clean.append(p)
        if self._since_eval < self.config.evaluate_every:
            return clean, []
        self._since_eval = 0
        return clean, self.evaluate(now_ms)

    def faulty(self, model: str, version: int) -> dict[str, dict[str, str]]:
        """Entities of (model, version) marked in the last ``window`` predictions, with their faults."""
        n = self._seen.get((model, version), 0)
        return {e: m.faults for e, m in self._marked.get((model, version), {}).items()
                if n - m.last < self.config.window}

    def evaluate(self, now_ms: int) -> list[Alert]:
        """Count faulty entities per (model, version, field) and turn the counts into triggers and resolves."""
        alerts = []
        for (model, version), marked in self._marked.items():
            n = self._seen.get((model, version), 0)
            live = [(e, m) for e, m in marked.items() if n - m.last < self.config.window]
            fields = {f for _, m in live for f in m.faults} | self._open_fields(model, version)
            for field in sorted(fields):
                hit = sorted(((e, m) for e, m in live if field in m.faults), key=lambda em: -em[1].count)
                key = self._key(model, version, field)
                verdict = self.policy.observe(key, float(len(hit)), n, now_ms)
                if verdict is not None:
                    alerts.append(self._alert(model, version, field, verdict.action, hit, now_ms))
                    if verdict.action == "trigger":
                        self._sent[key] = len(hit)
                    else:
                        self._sent.pop(key, None)
                elif key in self._sent and len(hit) >= 2 * self._sent[key]:
                    alerts.append(self._alert(model, version, field, "trigger", hit, now_ms, update=True))
                    self._sent[key] = len(hit)
        return alerts

    def _key(self, model: str, version: int, field: str) -> str:
        return f"{model}/{version}/{field}"

    def _open_fields(self, model: str, version: int) -> set[str]:
        prefix = f"{model}/{version}/"
        return {k[len(prefix):] for k in self.policy.open_incidents() if k.startswith(prefix)}

    def _alert(self, model: str, version: int, field: str, action: str, hit: list[tuple[str, _Marked]],
               now_ms: int, update: bool = False) -> Alert:
        cfg = self.config
        by_fault = Counter(m.faults[field] for _, m in hit)
        top = [{"entity": e, "fault": m.faults[field], "marked_predictions": m.count,
                "other_faults": {f: v for f, v in m.faults.items() if f != field}} for e, m in hit[:cfg.top_k]]
        kinds = ", ".join(f"{k} {v}" for k, v in by_fault.most_common())
        if action == "trigger":
            names = ", ".join(f"{t['entity']} ({t['fault']})" for t in top[:5])
            more = f" (+{len(hit) - 5} more)" if len(hit) > 5 else ""
            how = " (update: more entities, no new page)" if update else ""
            summary = (f"[WARNING] trigger{how}: data quality on {model} v{version}: {field} sensors look broken on "
                       f"{len(hit)} entities ({kinds}): {names}{more}; "
                       + ("kept out of the drift statistics" if cfg.quarantine else "still in the drift statistics")
                       + "; no rollback (every version reads the same sensors)")
        else:
            summary = (f"[WARNING] resolve: data quality on {model} v{version}: {field}: {len(hit)} faulty entities "
                       f"now (< {cfg.min_entities})")
        details: dict[str, Any] = {"faulty_entities": len(hit), "by_fault": dict(by_fault), "entities": top,
                                   "quarantine": cfg.quarantine, "predictions": self._seen.get((model, version), 0),
                                   "update": update}
        return Alert.build(action=action, severity="warning", kind=KIND, model=model, model_version=version,
                           feature=field, detector="sensor_checks", statistic="faulty_entities",
                           value=float(len(hit)), threshold=float(cfg.min_entities),
                           window=f"last {cfg.window} predictions", ts=now_ms, summary=summary[:1024],
                           details=details)
