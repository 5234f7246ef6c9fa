"""Records of the ``alerts`` topic as the delivery stage reads them: decoding with a reason, and the original bytes.

>>> decode_alert(b'{"dedup_key": "k", "action": "trigger", "severity": "critical", "kind": "psi", "model": "m"}').kind
'psi'
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.alerts import Alert
from streams import codec

__all__ = ["Delivery", "decode_alert", "placeholder_alert"]

_REQUIRED = ("dedup_key", "action", "severity", "kind", "model")


@dataclass(frozen=True)
class Delivery:
    """One record of the alerts topic: the parsed alert and its original bytes (for a dead letter)."""

    alert: Alert
    key: bytes | None
    value: bytes
    topic: str


def decode_alert(value: bytes) -> Alert:
    """An :class:`Alert` from a record value; ``ValueError`` naming what is wrong otherwise.

    >>> decode_alert(b'{"dedup_key": "m/1/x/-/all", "action": "resolve", "severity": "warning", "kind": "x",'
    ...              b' "model": "m", "ts": 5}').action
    'resolve'
    >>> decode_alert(b'{"action": "trigger"}')
    Traceback (most recent call last):
    ...
    ValueError: not an alert: missing or empty dedup_key, severity, kind, model
    """
    try:
        body = codec.decode(value)
    except codec.DecodeError as exc:
        raise ValueError(f"malformed JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ValueError("not an alert: the value is not a JSON object")
    missing = [k for k in _REQUIRED if not isinstance(body.get(k), str) or not body.get(k)]
    if missing:
        raise ValueError(f"not an alert: missing or empty {', '.join(missing)}")
    if not isinstance(body.get("details", {}) or {}, dict):
        raise ValueError("not an alert: details is not an object")
    try:
        return Alert.from_dict({"alert_id": "", "model_version": 0, "feature": None, "detector": "",
                                "statistic": "", "value": None, "threshold": None, "window": "", "ts": 0,
                                "summary": "", **body})
    except TypeError as exc:
        raise ValueError(f"not an alert: {exc}") from exc


def placeholder_alert() -> Alert:
    """An empty alert, standing in for a record that could not be decoded (it is dead-lettered, never sent)."""
    return Alert("", "", "", "", "", "", 0, None, "", "", None, None, "", 0, "")
