"""The line each alert carries about the report: what ``driftline report`` would show first for it.

The report opens on the top drifted feature (reference vs current, by PSI); an alert knows the ranking of its
version's features when it fires (``details.top_drifted_features``), so it can name that chart.

Example:
    >>> from monitor.alerts import Alert
    >>> a = Alert.build(action="trigger", severity="critical", kind="concept_drift", model="m", model_version=2,
    ...                 feature=None, detector="ddm", statistic="error_rate", value=0.4, threshold=None,
    ...                 window="w", ts=1, summary="[CRITICAL] concept drift",
    ...                 details={"top_drifted_features": [{"feature": "spo2_mean_5m", "psi": 0.8123}]})
    >>> with_report_hint(a).summary
    '[CRITICAL] concept drift | report first: spo2_mean_5m reference vs current (PSI 0.81)'
    >>> with_report_hint(a).details["report"]
    'driftline report --model m'
"""

from __future__ import annotations

import dataclasses
import math

from monitor.alerts import Alert

__all__ = ["report_first", "with_report_hint"]

MAX_SUMMARY = 1024


def report_first(alert: Alert) -> str:
    """The chart the report opens on, as the alert sees it."""
    for top in alert.details.get("top_drifted_features") or []:
        psi = top.get("psi") if isinstance(top, dict) else None
        if isinstance(psi, (int, float)) and math.isfinite(psi):
            return f"{top.get('feature')} reference vs current (PSI {psi:.2f})"
    if alert.feature and alert.kind == "data_drift":
        return f"{alert.feature} reference vs current"
    return "the PSI timeline and events (no feature PSI yet)"


def with_report_hint(alert: Alert) -> Alert:
    """``alert`` with `` | report first: ...`` at the end of its summary (kept whole, the summary cut before it
    if needed) and ``details.report_first`` / ``details.report`` (the command that opens it)."""
    first = report_first(alert)
    tail = f" | report first: {first}"
    summary = alert.summary[: MAX_SUMMARY - len(tail)] + tail
    details = {**alert.details, "report_first": first, "report": f"driftline report --model {alert.model}"}
    return dataclasses.replace(alert, summary=summary, details=details)
