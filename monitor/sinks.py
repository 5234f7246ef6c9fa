"""Alert sinks: where the delivery stage sends alerts (log, PagerDuty Events API v2, generic webhooks;
Alertmanager lives in :mod:`monitor.alertmanager`).

A sink makes **one attempt** per call and says what happened (:class:`~monitor.http_post.Attempt`:
accepted, retry, or rejected with the reason); it never sleeps, queues, retries or drops. Retries, backoff,
``Retry-After``, per-incident ordering and offsets belong to the delivery stage
(``streams/runtime/alert_delivery.py``), which reads the ``alerts`` topic and commits an alert's offset only
once every sink accepted it (or dead-lettered it as invalid for that sink).

What a sink does when the same alert arrives twice (the delivery stage delivers at least once):

- PagerDuty: events carry the alert's ``dedup_key``; a repeated trigger joins the open alert, a repeated
  resolve of a resolved alert is accepted and ignored: harmless.
- webhook: the same JSON body again, with the same ``alert_id`` and an ``Idempotency-Key: <alert_id>``
  header; the receiver must drop an ``alert_id`` it has seen.
- log: a second log line.

Secrets (the routing key, a webhook URL's path and query) never reach a log line or a ``repr``.

Example (pure part):
    >>> from monitor.alerts import Alert
    >>> a = Alert.build(action="trigger", severity="warning", kind="data_drift", model="m", model_version=2,
    ...                 feature="hr", detector="psi", statistic="psi", value=0.12, threshold=0.1,
    ...                 window="last 500 events", ts=0, summary="PSI 0.12 on hr")
    >>> ev = pagerduty_event(a, routing_key="R" * 32, source="driftline")
    >>> ev["event_action"], ev["dedup_key"], ev["payload"]["severity"], ev["payload"]["timestamp"]
    ('trigger', 'm/2/data_drift/hr/all', 'warning', '1970-01-01T00:00:00.000Z')
    >>> pagerduty_event(a.__class__(**{**a.to_dict(), "action": "resolve"}), "R" * 32, "driftline").keys()
    dict_keys(['routing_key', 'event_action', 'dedup_key'])
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from monitor.alerts import Alert
from monitor.exceptions import MonitorConfigError, MonitorError
from monitor.http_post import ACCEPTED, Attempt, check_url, post_json, redact

log = logging.getLogger(__name__)

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
PD_SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}
"""driftline severity -> PagerDuty severity."""
MAX_DEDUP_KEY = 255
MAX_SUMMARY = 1024


@runtime_checkable
class AlertSink(Protocol):
    """One receiver of alerts. ``deliver`` makes one attempt and never raises for the receiver's answers.

    Optional attributes the delivery stage reads: ``max_in_flight`` (concurrent requests, default 4),
    ``rate_limit_per_min`` (None: no limit), and for receivers that forget alerts unless reminded
    (Alertmanager) ``resend_interval_s`` with ``resend()`` and ``prime(alert)``.
    """

    name: str

    def deliver(self, alert: Alert) -> Attempt:
        """Send ``alert`` once; the outcome says whether to move on, retry, or dead-letter it."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


def _json_safe(obj: Any) -> Any:
    """Replace NaN/inf (not valid JSON) by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _pd_dedup_key(key: str) -> str:
    """Keys over 255 chars keep a prefix plus a hash, so trigger and resolve still match.

    >>> len(_pd_dedup_key("x" * 400)), _pd_dedup_key("short")
    (255, 'short')
    """
    if len(key) <= MAX_DEDUP_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return key[: MAX_DEDUP_KEY - 17] + "#" + digest


def rfc3339(ts_ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC with milliseconds and a ``Z``."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pagerduty_event(alert: Alert, routing_key: str, source: str) -> dict:
    """The PagerDuty Events API v2 body for ``alert`` (pure; no I/O). A resolve carries no payload (the
    Events API ignores it), so it can be neither too long nor invalid."""
    if alert.action not in ("trigger", "resolve"):
        raise MonitorError(f"alert {alert.alert_id}: action must be trigger or resolve, got {alert.action!r}")
    if not alert.dedup_key:
        raise MonitorError(f"alert {alert.alert_id}: empty dedup_key")
    base = {"routing_key": routing_key, "event_action": alert.action, "dedup_key": _pd_dedup_key(alert.dedup_key)}
    if alert.action == "resolve":
        return base
    severity = PD_SEVERITY.get(alert.severity)
    if severity is None:
        raise MonitorError(f"alert {alert.alert_id}: unknown severity {alert.severity!r} "
                           f"(expected one of {sorted(PD_SEVERITY)})")
    summary = alert.summary or (f"{alert.kind} on {alert.model} v{alert.model_version}: "
                                f"{alert.statistic}={alert.value} (threshold {alert.threshold})")
    details = {"alert_id": alert.alert_id, "model": alert.model, "model_version": alert.model_version,
               "feature": alert.feature, "slice": alert.slice, "detector": alert.detector,
               "statistic": alert.statistic, "value": alert.value, "threshold": alert.threshold,
               "window": alert.window, "dedup_key": alert.dedup_key, **dict(alert.details)}
    try:
        timestamp = rfc3339(int(alert.ts))
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise MonitorError(f"alert {alert.alert_id}: unusable ts {alert.ts!r}") from exc
    return {**base, "client": "driftline", "payload": {
        "summary": _fit(summary, MAX_SUMMARY),
        "source": source,
        "severity": severity,
        "timestamp": timestamp,
        "component": alert.model,
        "group": alert.feature or "-",
        "class": alert.kind,
        "custom_details": _json_safe(details),
    }}


class LogSink:
    """Logs one line per alert (critical triggers at ERROR, warning triggers at WARNING, the rest at INFO)."""

    name = "log"
    max_in_flight = 1

    def __init__(self, logger: logging.Logger | None = None, level: int | None = None) -> None:
        self.logger = logger or log
        self.level = level

    def deliver(self, alert: Alert) -> Attempt:
        """Log ``alert`` as one line; always accepted."""
        level = self.level
        if level is None:
            level = (logging.ERROR if alert.severity == "critical" else logging.WARNING
                     if alert.severity == "warning" else logging.INFO) if alert.action == "trigger" else logging.INFO
        self.logger.log(level, "alert %s %s %s %s=%s threshold=%s window=%r: %s", alert.action, alert.severity,
                        alert.dedup_key, alert.statistic, alert.value, alert.threshold, alert.window,
                        alert.summary)
        return ACCEPTED

    def close(self) -> None:
        """Nothing to release."""


class PagerDutySink:
    """PagerDuty Events API v2: ``{routing_key, event_action: trigger|resolve, dedup_key (<=255 chars), payload:
    {summary (<=1024 chars), source, severity (critical|error|warning|info), timestamp (RFC 3339), component,
    group, class, custom_details}}`` (no payload on a resolve). PagerDuty's documented limit is about 120 events
    per minute per routing key: ``rate_limit_per_min`` tells the delivery stage. The routing key comes from the
    caller (read from the environment at the edge) and is never logged."""

    name = "pagerduty"

    def __init__(self, routing_key: str, url: str = PAGERDUTY_URL, source: str = "driftline",
                 timeout_s: float = 10.0, rate_limit_per_min: int | None = 120, max_in_flight: int = 4) -> None:
        if not routing_key or not routing_key.strip():
            raise MonitorConfigError("PagerDuty routing key is empty: set it in the environment "
                                     "(an Events API v2 integration key)")
        if not source:
            raise MonitorConfigError("PagerDuty source must be a non-empty string")
        if timeout_s <= 0 or max_in_flight < 1:
            raise MonitorConfigError("PagerDuty sink needs timeout_s > 0 and max_in_flight >= 1")
        self._routing_key = routing_key
        self.url = check_url(url, "PagerDuty")
        self.source = source
        self.timeout_s = timeout_s
        self.rate_limit_per_min = rate_limit_per_min
        self.max_in_flight = max_in_flight

    def __repr__(self) -> str:
        return f"PagerDutySink(url={redact(self.url)!r}, source={self.source!r}, routing_key=<redacted>)"

    def deliver(self, alert: Alert) -> Attempt:
        """One POST of the event; an alert that cannot become a valid event is rejected without a request."""
        try:
            event = pagerduty_event(alert, self._routing_key, self.source)
        except MonitorError as exc:
            return Attempt("rejected", f"not a valid PagerDuty event: {exc}")
        return post_json(self.url, json.dumps(event, allow_nan=False).encode(), timeout_s=self.timeout_s)

    def close(self) -> None:
        """Nothing to release (one connection per request)."""


class WebhookSink:
    """POSTs ``Alert.to_dict()`` as JSON to ``url`` (NaN as null), with an ``Idempotency-Key: <alert_id>``
    header so a receiver can drop a redelivered alert."""

    name = "webhook"

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, timeout_s: float = 10.0,
                 rate_limit_per_min: int | None = None, max_in_flight: int = 4) -> None:
        if timeout_s <= 0 or max_in_flight < 1:
            raise MonitorConfigError("webhook sink needs timeout_s > 0 and max_in_flight >= 1")
        self.url = check_url(url, "webhook")
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.rate_limit_per_min = rate_limit_per_min
        self.max_in_flight = max_in_flight

    def __repr__(self) -> str:
        return f"WebhookSink(url={redact(self.url)!r})"

    def deliver(self, alert: Alert) -> Attempt:
        """One POST of the alert's JSON."""
        body = json.dumps(_json_safe(alert.to_dict()), allow_nan=False).encode()
        return post_json(self.url, body, headers={**self.headers, "Idempotency-Key": alert.alert_id},
                         timeout_s=self.timeout_s)

    def close(self) -> None:
        """Nothing to release."""
