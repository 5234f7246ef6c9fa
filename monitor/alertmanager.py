"""Prometheus Alertmanager as an alert sink: ``PostableAlerts`` (a JSON **list**) to ``/api/v2/alerts``.

An alert is identified in Alertmanager by its label set, so the labels are exactly the incident's identity:
``alertname`` (``Driftline`` + the kind in CamelCase), ``severity``, ``model``, ``version``, ``kind``,
``feature``, ``slice`` (the parts of the dedup key) and ``service="driftline"``. Everything else (summary,
detector, value, threshold, window, dedup key, alert id, a resolve's reason) goes into annotations.

- A trigger is posted with ``startsAt`` = the incident's first trigger time and ``endsAt`` = now + ``ttl_s``;
  while it stays open, :meth:`AlertmanagerSink.resend` posts it again every ``resend_interval_s`` (well before
  ``ttl_s``), the way Prometheus keeps its own alerts alive. Alertmanager's ``resolve_timeout`` applies only
  to alerts posted without ``endsAt``, so it does not matter here; if driftline's delivery stage is gone for
  longer than ``ttl_s``, Alertmanager shows the alert resolved (as it does when Prometheus is gone).
- A resolve posts the same labels with ``endsAt`` = the resolve time.
- An escalation (warning -> critical) changes the ``severity`` label, i.e. it is a new Alertmanager alert:
  the warning one is resolved in the same request.
- Redelivery is harmless: re-posting an alert with the same labels updates the same Alertmanager alert.

The open alerts live in memory; after a restart the delivery stage rebuilds them with :meth:`prime` from the
alerts topic's already-delivered records, so a restart neither forgets to re-send nor lets them expire.

Example (pure part):
    >>> from monitor.alerts import Alert
    >>> a = Alert.build(action="trigger", severity="critical", kind="data_drift", model="m", model_version=2,
    ...                 feature="hr", detector="psi", statistic="psi", value=0.3, threshold=0.25,
    ...                 window="last 1000", ts=1_000, summary="PSI 0.3 on hr")
    >>> labels(a)
    {'alertname': 'DriftlineDataDrift', 'severity': 'critical', 'model': 'm', 'version': '2', 'kind': 'data_drift', 'service': 'driftline', 'feature': 'hr'}
    >>> p = postable(a, labels(a), starts_ms=1_000, ends_ms=61_000, generator_url="http://grafana/d/x")
    >>> p["startsAt"], p["endsAt"], p["annotations"]["summary"]
    ('1970-01-01T00:00:01.000Z', '1970-01-01T00:01:01.000Z', 'PSI 0.3 on hr')
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitor.alerts import Alert
from monitor.exceptions import MonitorConfigError
from monitor.http_post import Attempt, check_url, post_json, redact
from monitor.sinks import _json_safe, rfc3339

API_PATH = "/api/v2/alerts"
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def alertname(kind: str) -> str:
    """``Driftline`` + ``kind`` in CamelCase (only letters, digits and underscores survive).

    >>> alertname("schema_drift"), alertname("performance"), alertname("we!rd kind")
    ('DriftlineSchemaDrift', 'DriftlinePerformance', 'DriftlineWerdkind')
    """
    return "Driftline" + "".join(p[:1].upper() + p[1:] for p in _NOT_NAME.sub("", kind.replace(" ", "")).split("_"))


def labels(alert: Alert) -> dict[str, str]:
    """The label set that identifies ``alert``'s incident in Alertmanager (no empty values)."""
    out = {"alertname": alertname(alert.kind), "severity": str(alert.severity), "model": str(alert.model),
           "version": str(alert.model_version), "kind": str(alert.kind), "service": "driftline"}
    if alert.feature:
        out["feature"] = str(alert.feature)
    if alert.slice:
        out["slice"] = str(alert.slice)
    return out


def annotations(alert: Alert) -> dict[str, str]:
    """Everything a person reading the alert needs, as strings (Alertmanager annotations are strings)."""
    out = {"summary": alert.summary or f"{alert.kind} on {alert.model} v{alert.model_version}",
           "description": (f"{alert.detector} {alert.statistic}={alert.value} (threshold {alert.threshold}) "
                           f"over {alert.window}"),
           "dedup_key": alert.dedup_key, "alert_id": alert.alert_id, "detector": str(alert.detector),
           "statistic": str(alert.statistic), "value": json.dumps(_json_safe(alert.value)),
           "threshold": json.dumps(_json_safe(alert.threshold)), "window": str(alert.window)}
    reason = (alert.details or {}).get("reason")
    if reason:
        out["reason"] = str(reason)
    return out


def postable(alert: Alert, label_set: dict[str, str], *, starts_ms: int, ends_ms: int,
             generator_url: str = "") -> dict[str, Any]:
    """One ``PostableAlert``: labels, annotations, ``startsAt``, ``endsAt`` and ``generatorURL``."""
    body: dict[str, Any] = {"labels": dict(label_set), "annotations": annotations(alert),
                            "startsAt": rfc3339(starts_ms), "endsAt": rfc3339(max(ends_ms, starts_ms))}
    if generator_url:
        body["generatorURL"] = generator_url
    return body


@dataclass(frozen=True)
class _Open:
    alert: Alert
    labels: dict[str, str]
    starts_ms: int


class AlertmanagerSink:
    """Posts alerts to Alertmanager and keeps the open ones alive (see the module docstring).

    ``url`` is Alertmanager's base URL (``http://alertmanager:9093``). One request at a time
    (``max_in_flight = 1``): a trigger, its resolve and the periodic re-send of open alerts never race.
    """

    name = "alertmanager"
    max_in_flight = 1
    rate_limit_per_min = None

    def __init__(self, url: str, *, resend_interval_s: float = 60.0, ttl_s: float | None = None,
                 generator_url: str = "", timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.time) -> None:
        base = check_url(url, "Alertmanager").rstrip("/")
        self.endpoint = base if base.endswith(API_PATH) else base + API_PATH
        if resend_interval_s <= 0 or timeout_s <= 0:
            raise MonitorConfigError("Alertmanager sink needs resend_interval_s > 0 and timeout_s > 0")
        self.resend_interval_s = resend_interval_s
        self.ttl_s = ttl_s if ttl_s is not None else 5 * resend_interval_s
        if self.ttl_s <= resend_interval_s:
            raise MonitorConfigError(f"Alertmanager ttl_s ({self.ttl_s}) must exceed resend_interval_s "
                                     f"({resend_interval_s}), or open alerts expire between two re-sends")
        self.generator_url = generator_url
        self.timeout_s = timeout_s
        self.clock = clock
        self._open: dict[str, _Open] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AlertmanagerSink(url={redact(self.endpoint)!r})"

    @property
    def open_alerts(self) -> dict[str, dict[str, str]]:
        """dedup key -> labels of the alerts this sink keeps alive."""
        with self._lock:
            return {k: dict(v.labels) for k, v in self._open.items()}

    def prime(self, alert: Alert) -> None:
        """Apply an alert Alertmanager already accepted earlier (state only, no request)."""
        if alert.action not in ("trigger", "resolve") or not isinstance(alert.ts, int | float):
            return
        with self._lock:
            self._apply(alert, labels(alert) if alert.action == "trigger" else None)

    def deliver(self, alert: Alert) -> Attempt:
        """Post the trigger (with the resolve of a lower-severity label set it replaces) or the resolve."""
        if alert.action not in ("trigger", "resolve"):
            return Attempt("rejected", f"action must be trigger or resolve, got {alert.action!r}")
        try:
            ts = int(alert.ts)
        except (TypeError, ValueError):
            return Attempt("rejected", f"unusable ts {alert.ts!r}")
        with self._lock:
            now_ms = int(self.clock() * 1000)
            prev = self._open.get(alert.dedup_key)
            if alert.action == "trigger":
                new = labels(alert)
                starts = prev.starts_ms if prev is not None else ts
                items = [postable(alert, new, starts_ms=starts, ends_ms=now_ms + int(self.ttl_s * 1000),
                                  generator_url=self.generator_url)]
                if prev is not None and prev.labels != new:
                    items.insert(0, postable(prev.alert, prev.labels, starts_ms=prev.starts_ms, ends_ms=ts,
                                             generator_url=self.generator_url))
            else:
                new = None
                old = prev.labels if prev is not None else labels(alert)
                starts = prev.starts_ms if prev is not None else ts
                items = [postable(alert, old, starts_ms=starts, ends_ms=ts, generator_url=self.generator_url)]
            attempt = self._post(items)
            if attempt.accepted:
                self._apply(alert, new, starts)
            return attempt

    def resend(self) -> Attempt | None:
        """Post every open alert again with a fresh ``endsAt``; None when nothing is open. If Alertmanager
        refuses the list as invalid, each alert is posted alone and the ones it refuses are forgotten (so one bad
        alert cannot stop the re-sends of the others)."""
        with self._lock:
            if not self._open:
                return None
            ends = int(self.clock() * 1000) + int(self.ttl_s * 1000)
            items = {k: postable(o.alert, o.labels, starts_ms=o.starts_ms, ends_ms=ends,
                                 generator_url=self.generator_url) for k, o in self._open.items()}
            attempt = self._post(list(items.values()))
            if attempt.outcome != "rejected" or len(items) == 1:
                if attempt.outcome == "rejected":
                    self._open.clear()
                return attempt
            for key, item in items.items():
                if self._post([item]).outcome == "rejected":
                    self._open.pop(key, None)
            return attempt

    def close(self) -> None:
        """Nothing to release (open alerts expire in Alertmanager after ``ttl_s`` unless re-sent)."""

    def _apply(self, alert: Alert, new_labels: dict[str, str] | None, starts_ms: int | None = None) -> None:
        if new_labels is None:
            self._open.pop(alert.dedup_key, None)
            return
        prev = self._open.get(alert.dedup_key)
        starts = starts_ms if starts_ms is not None else (prev.starts_ms if prev is not None else int(alert.ts))
        self._open[alert.dedup_key] = _Open(alert, new_labels, starts)

    def _post(self, items: list[dict[str, Any]]) -> Attempt:
        return post_json(self.endpoint, json.dumps(items, allow_nan=False).encode(), timeout_s=self.timeout_s)
