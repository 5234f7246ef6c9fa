"""Alert sinks: log, PagerDuty Events API v2 and generic webhooks.

``send`` never blocks the caller: the HTTP sinks put the request on a bounded queue (dropping the oldest
when full, counted in ``stats["dropped"]``) and one background thread delivers it, retrying with exponential
backoff and jitter on 429, 5xx and network errors, never on other 4xx. PagerDuty's documented limit is about
120 events per minute per routing key, so the sender rate-limits per key. Secrets (the routing key, a
webhook URL's path and query) never reach a log line: logs name the host and the alert's dedup key only.

Example (pure part):
    >>> from monitor.alerts import Alert
    >>> a = Alert.build(action="trigger", severity="warning", kind="data_drift", model="m", model_version=2,
    ...                 feature="hr", detector="psi", statistic="psi", value=0.12, threshold=0.1,
    ...                 window="last 500 events", ts=0, summary="PSI 0.12 on hr")
    >>> ev = pagerduty_event(a, routing_key="R" * 32, source="driftline")
    >>> ev["event_action"], ev["dedup_key"], ev["payload"]["severity"], ev["payload"]["timestamp"]
    ('trigger', 'm/2/data_drift/hr/all', 'warning', '1970-01-01T00:00:00.000Z')
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import math
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from monitor.alerts import Alert
from monitor.exceptions import MonitorConfigError, MonitorError

log = logging.getLogger(__name__)

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
PD_SEVERITY = {"critical": "critical", "error": "error", "warning": "warning", "info": "info"}
"""driftline severity -> PagerDuty severity."""
MAX_DEDUP_KEY = 255
MAX_SUMMARY = 1024


@runtime_checkable
class AlertSink(Protocol):
    """Where alerts go. Implementations must not block the caller for long."""

    def send(self, alert: Alert) -> None:
        """Hand over one alert (fire and forget)."""
        ...

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is pending (up to ``timeout`` seconds) and release resources."""
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


def _rfc3339(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pagerduty_event(alert: Alert, routing_key: str, source: str) -> dict:
    """The PagerDuty Events API v2 body for ``alert`` (pure; no I/O)."""
    if alert.action not in ("trigger", "resolve"):
        raise MonitorError(f"alert {alert.alert_id}: action must be trigger or resolve, got {alert.action!r}")
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
    return {
        "routing_key": routing_key,
        "event_action": alert.action,
        "dedup_key": _pd_dedup_key(alert.dedup_key),
        "client": "driftline",
        "payload": {
            "summary": _fit(summary, MAX_SUMMARY),
            "source": source,
            "severity": severity,
            "timestamp": _rfc3339(int(alert.ts)),
            "component": alert.model,
            "group": alert.feature or "-",
            "class": alert.kind,
            "custom_details": _json_safe(details),
        },
    }


class LogSink:
    """Logs one line per alert (critical triggers at ERROR, warning triggers at WARNING, the rest at INFO)."""

    def __init__(self, logger: logging.Logger | None = None, level: int | None = None) -> None:
        self.logger = logger or log
        self.level = level

    def send(self, alert: Alert) -> None:
        """Log ``alert`` as one line."""
        level = self.level
        if level is None:
            level = (logging.ERROR if alert.severity == "critical" else logging.WARNING
                     if alert.severity == "warning" else logging.INFO) if alert.action == "trigger" else logging.INFO
        self.logger.log(level, "alert %s %s %s %s=%s threshold=%s window=%r: %s", alert.action, alert.severity,
                        alert.dedup_key, alert.statistic, alert.value, alert.threshold, alert.window,
                        alert.summary)

    def close(self, timeout: float = 5.0) -> None:
        """Nothing to release."""


class _RateLimiter:
    """At most ``limit`` requests per ``period`` seconds per key (sliding window of send times)."""

    def __init__(self, limit: int, period: float = 60.0) -> None:
        self.limit = limit
        self.period = period
        self._sent: dict[str, deque[float]] = {}

    def wait_time(self, key: str, now: float) -> float:
        """Seconds to wait before the next request on ``key`` is allowed (0 if now)."""
        q = self._sent.setdefault(key, deque())
        while q and now - q[0] >= self.period:
            q.popleft()
        return 0.0 if len(q) < self.limit else q[0] + self.period - now

    def record(self, key: str, now: float) -> None:
        """Count one request on ``key``."""
        self._sent.setdefault(key, deque()).append(now)


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class _HttpSender:
    """The shared delivery machinery: bounded queue, one worker thread, retries, rate limit."""

    def __init__(self, url: str, *, headers: Mapping[str, str] | None, max_retries: int, base_delay_s: float,
                 queue_size: int, timeout_s: float, rate_limit_per_min: int | None,
                 max_delay_s: float = 30.0) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise MonitorConfigError(f"alert sink URL must be http(s), got scheme of {_redact(url)!r}")
        if max_retries < 0 or base_delay_s < 0 or queue_size < 1 or timeout_s <= 0:
            raise MonitorConfigError("alert sink needs max_retries >= 0, base_delay_s >= 0, queue_size >= 1, "
                                     "timeout_s > 0")
        self.url = url
        self.where = _redact(url)
        self.headers = {"Content-Type": "application/json", "User-Agent": "driftline", **dict(headers or {})}
        self.max_retries = max_retries
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self._limiter = _RateLimiter(rate_limit_per_min) if rate_limit_per_min else None
        self._queue: deque[tuple[bytes, str, str]] = deque()
        self._queue_size = queue_size
        self._cond = threading.Condition()
        self._abort = threading.Event()
        self._closing = False
        self._busy = False
        self._stats = {"sent": 0, "retried": 0, "failed": 0, "dropped": 0, "throttled": 0}
        self._rng = random.Random()
        self._thread = threading.Thread(target=self._run, name=f"driftline-sink {self.where}", daemon=True)
        self._thread.start()

    @property
    def stats(self) -> dict[str, int]:
        with self._cond:
            return dict(self._stats)

    def _count(self, name: str) -> None:
        with self._cond:
            self._stats[name] += 1

    def submit(self, body: bytes, rate_key: str, label: str) -> None:
        with self._cond:
            if self._closing:
                self._stats["dropped"] += 1
                log.warning("alert sink %s is closed; dropped %s", self.where, label)
                return
            if len(self._queue) >= self._queue_size:
                _, _, old = self._queue.popleft()
                self._stats["dropped"] += 1
                log.warning("alert sink %s queue full (%d); dropped oldest %s", self.where, self._queue_size, old)
            self._queue.append((body, rate_key, label))
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is queued or in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(max(timeout, 0.0))
        if self._thread.is_alive():
            self._abort.set()
            with self._cond:
                self._stats["dropped"] += len(self._queue)
                self._queue.clear()
                self._cond.notify_all()
            self._thread.join(1.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue or self._abort.is_set():
                    return
                body, rate_key, label = self._queue.popleft()
                self._busy = True
            try:
                self._deliver(body, rate_key, label)
            except Exception:  # the worker must survive anything a single alert does
                log.exception("alert sink %s: unexpected error delivering %s", self.where, label)
                self._count("failed")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _deliver(self, body: bytes, rate_key: str, label: str) -> None:
        attempt = 0
        while True:
            if self._limiter is not None:
                wait = self._limiter.wait_time(rate_key, time.monotonic())
                if wait > 0:
                    self._count("throttled")
                    if self._abort.wait(wait):
                        self._count("failed")
                        return
                self._limiter.record(rate_key, time.monotonic())
            status, retry_after, reason = self._post(body)
            if status is not None and 200 <= status < 300:
                self._count("sent")
                return
            retryable = status is None or status == 429 or status >= 500
            if not retryable or attempt >= self.max_retries:
                self._count("failed")
                log.error("alert sink %s: giving up on %s after %d attempt(s): %s%s", self.where, label,
                          attempt + 1, reason, "" if retryable else " (not retryable; fix the request)")
                return
            attempt += 1
            self._count("retried")
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1)) * self._rng.uniform(0.5, 1.0)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.max_delay_s))
            log.warning("alert sink %s: %s for %s, retry %d/%d in %.3fs", self.where, reason, label, attempt,
                        self.max_retries, delay)
            if self._abort.wait(delay):
                self._count("failed")
                return

    def _post(self, body: bytes) -> tuple[int | None, float | None, str]:
        """One POST: (status or None on a network error, Retry-After seconds, short reason)."""
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read()
                return resp.status, None, f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            retry_after: float | None = None
            try:
                retry_after = float(exc.headers.get("Retry-After", "")) if exc.headers else None
            except ValueError:
                retry_after = None
            exc.close()
            return exc.code, retry_after, f"HTTP {exc.code}"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            return None, None, f"network error {type(exc).__name__}"


class PagerDutySink:
    """PagerDuty Events API v2. Builds {routing_key, event_action: trigger|resolve, dedup_key (<=255 chars),
    payload: {summary (<=1024 chars), source, severity (critical|error|warning|info), timestamp (RFC 3339),
    component, class, custom_details}}. Sends from a background thread with a bounded queue (drop-oldest with a
    counter when full), retries with exponential backoff + jitter on 429, 5xx and network errors, never retries a
    400/other 4xx, and rate-limits to ~120 events/min per routing key. The routing key comes from the caller
    (read from the environment at the edge) and is never logged."""

    def __init__(self, routing_key: str, url: str = PAGERDUTY_URL, source: str = "driftline",
                 max_retries: int = 5, base_delay_s: float = 0.5, queue_size: int = 1000,
                 timeout_s: float = 5.0, rate_limit_per_min: int = 120) -> None:
        if not routing_key or not routing_key.strip():
            raise MonitorConfigError("PagerDuty routing key is empty: set it in the environment "
                                     "(an Events API v2 integration key)")
        if not source:
            raise MonitorConfigError("PagerDuty source must be a non-empty string")
        self._routing_key = routing_key
        self._rate_key = hashlib.sha256(routing_key.encode()).hexdigest()[:16]
        self.source = source
        self._sender = _HttpSender(url, headers=None, max_retries=max_retries, base_delay_s=base_delay_s,
                                   queue_size=queue_size, timeout_s=timeout_s,
                                   rate_limit_per_min=rate_limit_per_min)

    def __repr__(self) -> str:
        return f"PagerDutySink(url={self._sender.where!r}, source={self.source!r}, routing_key=<redacted>)"

    @property
    def stats(self) -> dict[str, int]:
        """Counters: sent, retried, failed, dropped (and throttled)."""
        return self._sender.stats

    def send(self, alert: Alert) -> None:
        """Queue ``alert`` for delivery; returns at once. A malformed alert is logged and counted as failed."""
        try:
            event = pagerduty_event(alert, self._routing_key, self.source)
        except MonitorError as exc:
            log.error("PagerDuty sink: not sending alert %s: %s", alert.alert_id, exc)
            self._sender._count("failed")
            return
        body = json.dumps(event, allow_nan=False).encode()
        self._sender.submit(body, self._rate_key, f"{alert.action} {alert.dedup_key}")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued has been delivered or given up; False on timeout."""
        return self._sender.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is pending for up to ``timeout`` seconds, then drop the rest (counted) and stop."""
        self._sender.close(timeout)


class WebhookSink:
    """POSTs ``Alert.to_dict()`` as JSON to ``url`` with the same queue / retry / backoff machinery as
    :class:`PagerDutySink` (no rate limit unless ``rate_limit_per_min`` is given)."""

    def __init__(self, url: str, headers: Mapping[str, str] | None = None, max_retries: int = 5,
                 base_delay_s: float = 0.5, queue_size: int = 1000, timeout_s: float = 5.0,
                 rate_limit_per_min: int | None = None) -> None:
        self._sender = _HttpSender(url, headers=headers, max_retries=max_retries, base_delay_s=base_delay_s,
                                   queue_size=queue_size, timeout_s=timeout_s,
                                   rate_limit_per_min=rate_limit_per_min)

    def __repr__(self) -> str:
        return f"WebhookSink(url={self._sender.where!r})"

    @property
    def stats(self) -> dict[str, int]:
        """Counters: sent, retried, failed, dropped (and throttled)."""
        return self._sender.stats

    def send(self, alert: Alert) -> None:
        """Queue ``alert`` for delivery; returns at once."""
        body = json.dumps(_json_safe(alert.to_dict()), allow_nan=False).encode()
        self._sender.submit(body, "webhook", f"{alert.action} {alert.dedup_key}")

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued has been delivered or given up; False on timeout."""
        return self._sender.flush(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is pending for up to ``timeout`` seconds, then drop the rest (counted) and stop."""
        self._sender.close(timeout)
