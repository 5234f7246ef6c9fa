"""The ``alerts`` topic contract (see design.md).

Example:
    >>> a = Alert.build(action="trigger", severity="critical", kind="data_drift", model="m", model_version=2,
    ...                 feature="hr_mean_5m", detector="psi", statistic="psi", value=0.31, threshold=0.25,
    ...                 window="last 500 events", ts=1000, summary="PSI 0.31 on hr_mean_5m")
    >>> a.dedup_key
    'm/2/data_drift/hr_mean_5m/all'
    >>> Alert.from_dict(a.to_dict()) == a
    True
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Action = Literal["trigger", "resolve"]
Severity = Literal["info", "warning", "critical"]
Kind = Literal["data_drift", "data_quality", "prediction_drift", "concept_drift", "schema_drift", "performance"]


def dedup_key_for(model: str, model_version: int, kind: str, feature: str | None, slice_: str | None) -> str:
    """One incident per (model, version, kind, feature, slice)."""
    return f"{model}/{model_version}/{kind}/{feature or '-'}/{slice_ or 'all'}"


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    dedup_key: str
    action: str
    severity: str
    kind: str
    model: str
    model_version: int
    feature: str | None
    detector: str
    statistic: str
    value: float | None
    threshold: float | None
    window: str
    ts: int
    summary: str
    slice: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, *, action: str, severity: str, kind: str, model: str, model_version: int,
              feature: str | None, detector: str, statistic: str, value: float | None,
              threshold: float | None, window: str, ts: int, summary: str,
              slice_: str | None = None, details: dict[str, Any] | None = None) -> Alert:
        """Create an alert with a fresh ``alert_id`` and the standard dedup key."""
        return cls(
            alert_id=uuid.uuid4().hex, dedup_key=dedup_key_for(model, model_version, kind, feature, slice_),
            action=action, severity=severity, kind=kind, model=model, model_version=model_version,
            feature=feature, detector=detector, statistic=statistic, value=value, threshold=threshold,
            window=window, ts=ts, summary=summary, slice=slice_, details=dict(details or {}),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__ if k in data} | {
            "details": dict(data.get("details") or {})})
