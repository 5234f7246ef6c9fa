"""Parsing and validation of source records into :class:`Event` (the only place raw bytes are trusted).

``parse_record`` raises :class:`~features.exceptions.RecordError` with one of these reasons (the DLQ
``error`` header): ``too_large`` (value > 64 KiB), ``malformed_json`` (also a null value/tombstone),
``not_an_object``, ``missing_field``, ``wrong_type`` (bool is not a number; a string is not a number),
``not_finite`` (NaN/inf), ``out_of_range``, ``unknown_field`` (only with ``unknown_fields="reject"``),
``bad_timestamp`` (not epoch ms in [0, 1e14) nor RFC 3339 with an offset), ``key_mismatch`` (the Kafka
key differs from the payload's entity id).

Example:
    >>> from features.definitions import FeatureView, FieldSpec
    >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x", max=10.0),), ())
    >>> parse_record(view, b"a", b'{"id": "a", "ts": "1970-01-01T00:00:01Z", "x": 2}')
    Event(entity_id='a', ts_ms=1000, values={'x': 2.0}, offset=-1, partition=-1)
    >>> parse_record(view, b"a", b'{"id": "a", "ts": 5, "x": 11}')
    Traceback (most recent call last):
    ...
    features.exceptions.RecordError: out_of_range: field 'x'=11 outside [None, 10.0]
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from features.definitions import FeatureView, FieldSpec
from features.exceptions import RecordError

MAX_RECORD_BYTES = 64 * 1024
MAX_TS_MS = 10**14
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(slots=True)
class Event:
    """One validated source event; ``values`` holds the view's fields present in the record."""

    entity_id: str
    ts_ms: int
    values: dict[str, float | int | str]
    offset: int = -1
    partition: int = -1


def parse_timestamp(raw: Any) -> int:
    """Epoch milliseconds from an int/float (ms) or an RFC 3339 string with an offset.

    >>> parse_timestamp(1700000000123.9), parse_timestamp("2023-11-14T22:13:20.5+00:00")
    (1700000000123, 1700000000500)
    """
    if isinstance(raw, bool):
        raise RecordError("bad_timestamp", f"{raw!r} is not a timestamp")
    if isinstance(raw, int | float):
        if not math.isfinite(raw) or not 0 <= raw < MAX_TS_MS:
            raise RecordError("bad_timestamp", f"{raw!r} is not epoch milliseconds")
        return int(raw)  # floor for non-negative values
    if isinstance(raw, str):
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise RecordError("bad_timestamp", f"{raw[:64]!r} is not RFC 3339") from None
        if dt.tzinfo is None:
            raise RecordError("bad_timestamp", f"{raw[:64]!r} has no UTC offset")
        ms = (dt - _EPOCH) // _MS
        if not 0 <= ms < MAX_TS_MS:
            raise RecordError("bad_timestamp", f"{raw[:64]!r} is out of range")
        return ms
    raise RecordError("bad_timestamp", f"{type(raw).__name__} is not a timestamp")


def _check_value(spec: FieldSpec, raw: Any) -> float | int | str:
    kind = spec.type
    if kind == "str":
        if not isinstance(raw, str):
            raise RecordError("wrong_type", f"field {spec.name!r} must be a string, got {type(raw).__name__}")
        return raw
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise RecordError("wrong_type", f"field {spec.name!r} must be a number, got {type(raw).__name__}")
    if kind == "int":
        if isinstance(raw, float):
            if not math.isfinite(raw):
                raise RecordError("not_finite", f"field {spec.name!r} is {raw}")
            if not raw.is_integer():
                raise RecordError("wrong_type", f"field {spec.name!r} must be an integer, got {raw}")
            raw = int(raw)
        value: float | int = raw
    else:
        value = float(raw)
        if not math.isfinite(value):
            raise RecordError("not_finite", f"field {spec.name!r} is {raw}")
    if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
        raise RecordError("out_of_range", f"field {spec.name!r}={raw} outside [{spec.min}, {spec.max}]")
    return value


def parse_record(view: FeatureView, key: bytes | None, value: bytes | None) -> Event:
    """Decode and validate one Kafka record against ``view``; raise ``RecordError`` on any defect."""
    if value is None:
        raise RecordError("malformed_json", "null value (tombstone)")
    if len(value) > MAX_RECORD_BYTES:
        raise RecordError("too_large", f"{len(value)} bytes > {MAX_RECORD_BYTES}")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        # Strict JSON has no NaN/Infinity (and orjson refuses 1e999); producers in Python/JS emit them anyway.
        # Decode those leniently so the DLQ says "not_finite" rather than "malformed_json".
        try:
            obj = json.loads(value)
        except (ValueError, RecursionError):
            raise RecordError("malformed_json", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise RecordError("not_an_object", f"top level is {type(obj).__name__}")
    ek = view.entity_key
    entity = obj.get(ek)
    if entity is None:
        raise RecordError("missing_field", f"entity key {ek!r} is missing")
    if isinstance(entity, bool) or not isinstance(entity, str | int):
        raise RecordError("wrong_type", f"entity key {ek!r} must be a string or integer")
    entity_id = entity if isinstance(entity, str) else str(entity)
    if key is not None:
        try:
            key_text = key.decode()
        except UnicodeDecodeError:
            key_text = None
        if key_text != entity_id:
            raise RecordError("key_mismatch", f"Kafka key {key[:64]!r} != {ek}={entity_id[:64]!r}")
    raw_ts = obj.get(view.ts_field)
    if raw_ts is None:
        raise RecordError("missing_field", f"timestamp field {view.ts_field!r} is missing")
    ts_ms = parse_timestamp(raw_ts)
    values: dict[str, float | int | str] = {}
    for spec in view.fields:
        raw = obj.get(spec.name)
        if raw is None:
            if spec.required:
                raise RecordError("missing_field", f"field {spec.name!r} is required")
            continue
        values[spec.name] = _check_value(spec, raw)
    if view.unknown_fields == "reject" and len(obj) > len(values) + 2:
        known = {ek, view.ts_field, *(f.name for f in view.fields)}
        extra = sorted(k for k in obj if k not in known)
        if extra:
            raise RecordError("unknown_field", f"unexpected fields {extra[:10]}")
    return Event(entity_id, ts_ms, values)
