"""The monitor's record checks: a ``predictions`` or ``labels`` record becomes a value or a ``RecordError``.

What they refuse goes to ``predictions.dlq`` / ``labels.dlq`` (with the reason, like the source topics' dead
letters), never into the drift statistics and never as an exception out of the batch:

* ``malformed_json``, ``bad_encoding`` (UTF-8 only, no byte order mark, no lone surrogate), ``not_an_object``:
  the decoding of :func:`features.records.decode_json`;
* ``missing_field``: a prediction without one of its contract's fields; a label without ``label``, or without
  both ``prediction_id`` and (``entity_id``, ``event_ts``);
* ``wrong_type``: a field that cannot be read as its type (a score that is not a finite number, a version or a
  timestamp that is not an integer, a label that is not 0 or 1).

Example:
    >>> p = parse_prediction(b'{"prediction_id": "v-0-1-champion", "entity_id": "e", "event_ts": 5, "model": "m",'
    ...                      b' "model_version": 2, "variant": "champion", "score": 0.5, "label": 1, "scored_at": 6}')
    >>> p.model_version, p.score
    (2, 0.5)
    >>> parse_label(b'{"prediction_id": "v-0-1-champion", "label": 1}')
    {'prediction_id': 'v-0-1-champion', 'label': 1}
    >>> parse_label(b'{"label": 1}')
    Traceback (most recent call last):
    ...
    features.exceptions.RecordError: missing_field: a label needs prediction_id, or entity_id and event_ts
"""

from __future__ import annotations

import math
from typing import Any

from features.exceptions import RecordError
from features.records import decode_json
from models.prediction import Prediction, _quality

_INT_FIELDS = ("event_ts", "model_version", "scored_at")
_MAX_INT = 2**63


def _object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise RecordError("malformed_json", "null value (tombstone)")
    obj = decode_json(value)
    if not isinstance(obj, dict):
        raise RecordError("not_an_object", f"top level is {type(obj).__name__}")
    return obj


def _int(obj: dict[str, Any], name: str) -> int:
    raw = obj.get(name)
    if raw is None:
        raise RecordError("missing_field", f"field {name!r} is required")
    if isinstance(raw, bool) or not isinstance(raw, int | float) or (isinstance(raw, float) and not raw.is_integer()):
        raise RecordError("wrong_type", f"field {name!r} must be an integer, got {type(raw).__name__}")
    if not -_MAX_INT < raw < _MAX_INT:
        raise RecordError("wrong_type", f"field {name!r} is outside the 64-bit range")
    return int(raw)


def _float(raw: float | int) -> float:
    try:
        return float(raw)
    except OverflowError:  # an integer with hundreds of digits
        return math.inf


def _label(raw: Any) -> int:
    if isinstance(raw, bool) or raw not in (0, 1):
        raise RecordError("wrong_type", f"a label is 0 or 1, got {str(raw)[:32]!r}")
    return int(raw)


def parse_prediction(value: bytes | None) -> Prediction:
    """A ``predictions`` record (see the module docstring); raises ``RecordError``."""
    obj = _object(value)
    for name in ("prediction_id", "entity_id", "model", "variant", "score"):
        if obj.get(name) is None:
            raise RecordError("missing_field", f"field {name!r} is required")
    for name in ("prediction_id", "entity_id", "model", "variant"):
        if not isinstance(obj[name], str | int) or isinstance(obj[name], bool):
            raise RecordError("wrong_type", f"field {name!r} must be a string")
    score = obj["score"]
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(_float(score)):
        raise RecordError("wrong_type", f"field 'score' must be a finite number, got {str(score)[:32]!r}")
    ints = {name: _int(obj, name) for name in _INT_FIELDS}
    label = obj.get("label")
    features = obj.get("features")
    return Prediction(str(obj["prediction_id"]), str(obj["entity_id"]), ints["event_ts"], str(obj["model"]),
                      ints["model_version"], str(obj["variant"]), float(score),
                      None if label is None else _label(label), ints["scored_at"],
                      features if isinstance(features, dict) else None, _quality(obj.get("quality")))


def parse_label(value: bytes | None) -> dict[str, Any]:
    """A ``labels`` record (see the module docstring), as its decoded object; raises ``RecordError``."""
    obj = _object(value)
    if obj.get("label") is None:
        raise RecordError("missing_field", "field 'label' is required")
    _label(obj["label"])
    if not obj.get("prediction_id"):
        if obj.get("entity_id") is None or obj.get("event_ts") is None:
            raise RecordError("missing_field", "a label needs prediction_id, or entity_id and event_ts")
        _int(obj, "event_ts")
    return obj
