"""Alerts for what the scorer itself sees: schema drift, and its circuit breaker opening or closing.

Example:
    >>> from models.scorer import ScorerEvent
    >>> a = alert_for(ScorerEvent("breaker_open", 2, "boom", 64), "m", 1000)
    >>> a.action, a.severity, a.kind, a.dedup_key
    ('trigger', 'critical', 'performance', 'm/2/performance/scorer/all')
    >>> t = AlertThrottle(60_000)
    >>> t.allow("k", 0), t.allow("k", 1000), t.allow("k", 61_000)
    (True, False, True)
"""

from __future__ import annotations

from models.scorer import ScorerEvent
from monitor.alerts import Alert

_MAP = {
    "schema_drift": ("trigger", "warning", "schema_drift", "rows do not match the version's declared schema"),
    "breaker_open": ("trigger", "critical", "performance", "circuit breaker open: the fallback is serving"),
    "breaker_closed": ("resolve", "critical", "performance", "circuit breaker closed: the model serves again"),
}


def alert_for(event: ScorerEvent, model: str, now_ms: int) -> Alert:
    action, severity, kind, text = _MAP[event.kind]
    return Alert.build(action=action, severity=severity, kind=kind, model=model, model_version=event.version,
                       feature="scorer", detector="scorer", statistic=event.kind, value=float(event.rows),
                       threshold=None, window="batch", ts=now_ms,
                       summary=f"[{severity.upper()}] {model} v{event.version}: {text} ({event.detail})"[:1024],
                       details={"rows": event.rows, "detail": event.detail})


def command_rejected_alert(model: str, active_version: int | None, command: str, command_id: str, error: str,
                           instance: str, now_ms: int) -> Alert:
    """A scorer refused a control command (bad signature, replay, unknown version, artifact failing its sha256):
    it keeps serving ``active_version``; someone must look.

    Example:
        >>> a = command_rejected_alert("m", 2, "rollback", "c1", "bad signature", "host-1", 0)
        >>> a.severity, a.kind, a.feature
        ('critical', 'performance', 'control')
    """
    return Alert.build(action="trigger", severity="critical", kind="performance", model=model,
                       model_version=active_version or 0, feature="control", detector="scorer",
                       statistic="command_rejected", value=None, threshold=None, window="command", ts=now_ms,
                       summary=(f"[CRITICAL] {instance} rejected {command} {command_id or '(no id)'} for {model}: "
                                f"{error}; still serving v{active_version}")[:1024],
                       details={"command": command, "command_id": command_id, "error": error, "instance": instance})


class AlertThrottle:
    """At most one alert per key per ``interval_ms`` (dedup of repeating per-batch events)."""

    def __init__(self, interval_ms: int = 60_000) -> None:
        self.interval_ms = interval_ms
        self._last: dict[str, int] = {}

    def allow(self, key: str, now_ms: int) -> bool:
        last = self._last.get(key)
        if last is not None and now_ms - last < self.interval_ms:
            return False
        self._last[key] = now_ms
        return True
