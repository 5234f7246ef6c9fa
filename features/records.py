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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from features.definitions import FeatureView, FieldSpec
from features.exceptions import RecordError
from features.per_view import per_view
from features.timestamps import timestamp_parser

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
    return _checker_for(view)(obj, key)


def parse_object(view: FeatureView, obj: dict[str, Any], key: bytes | None = None) -> Event:
    """Validate an already decoded record (a row of a CSV or Parquet file) with the same checks as
    :func:`parse_record`; raise ``RecordError`` on any defect.

    >>> from features.definitions import FeatureView, FieldSpec
    >>> view = FeatureView("v", 1, "t", "id", "day", (FieldSpec("x"),), (), ts_format="%Y-%m-%d")
    >>> parse_object(view, {"id": "a", "day": "1970-01-02", "x": 1})
    Event(entity_id='a', ts_ms=86400000, values={'x': 1.0}, offset=-1, partition=-1)
    """
    return _checker_for(view)(obj, key)


# --- the per-view compiled checker ------------------------------------------------------------------------
# ``compile_checker`` writes one function per view that checks the decoded object field by field with the
# view's names and bounds as constants. Each check has a fast test that only accepts what the generic path
# accepts, with the same result (a float or small int in range, an int for an int field, a str for a str
# field); anything else goes to the generic checks (``_check_value``, ``parse_timestamp``, the helpers below),
# so every error and every unusual value is handled by the same code, with the same message, as before.
# ``tests/features/test_records_fast_path.py`` pins this against a copy of the loop it replaced.

_Check = Callable[[dict[str, Any], bytes | None], Event]
_DBL_MAX = "1.7976931348623157e+308"  # `-MAX <= x <= MAX` is False for a NaN and both infinities
_EXACT = 2**53  # an int up to this size is an exact float: its range test is the one of float(int)


@dataclass(frozen=True)
class RecordChecker:
    """A view's compiled ``check(obj, key) -> Event`` and its generated source (for reading)."""

    check: _Check
    source: str


def _entity_id(ek: str, entity: Any) -> str:
    if entity is None:
        raise RecordError("missing_field", f"entity key {ek!r} is missing")
    if isinstance(entity, bool) or not isinstance(entity, str | int):
        raise RecordError("wrong_type", f"entity key {ek!r} must be a string or integer")
    return entity if isinstance(entity, str) else str(entity)


def _check_key(key: bytes, ek: str, entity_id: str) -> None:
    try:
        key_text = key.decode()
    except UnicodeDecodeError:
        key_text = None
    if key_text != entity_id:
        raise RecordError("key_mismatch", f"Kafka key {key[:64]!r} != {ek}={entity_id[:64]!r}")


def _timestamp(field: str, raw_ts: Any) -> int:
    if raw_ts is None:
        raise RecordError("missing_field", f"timestamp field {field!r} is missing")
    return parse_timestamp(raw_ts)


def _required(spec: FieldSpec, raw: Any) -> float | int | str:
    if raw is None:
        raise RecordError("missing_field", f"field {spec.name!r} is required")
    return _check_value(spec, raw)


def _unknown(obj: dict[str, Any], known: frozenset[str]) -> None:
    extra = sorted(k for k in obj if k not in known)
    if extra:
        raise RecordError("unknown_field", f"unexpected fields {extra[:10]}")


def _literal(bound: Any) -> str | None:
    """``repr`` of a finite int/float bound (it reads back as the same number); ``None`` otherwise."""
    if type(bound) is int or (type(bound) is float and math.isfinite(bound)):
        return repr(bound)
    return None


def _field_lines(i: int, spec: FieldSpec, store: bool) -> list[str]:
    """Lines checking ``spec`` into ``v{i}`` (fast test, else generic); ``store``: into ``values`` too."""
    v = f"v{i}"
    slow = f"_required(S{i}, {v})" if spec.required else f"_check_value(S{i}, {v})"
    lo, hi = _literal(spec.min), _literal(spec.max)
    if spec.type == "str":
        fast = [f"if type({v}) is not str:", f"    {v} = {slow}"]
    elif (spec.min is not None and lo is None) or (spec.max is not None and hi is None):
        fast = [f"{v} = {slow}"]  # a bound with no exact literal (inf, ...): always the generic check
    elif spec.type == "int":
        tests = [f"type({v}) is int", *([f"{lo} <= {v}"] if lo else []), *([f"{v} <= {hi}"] if hi else [])]
        fast = [f"if not ({' and '.join(tests)}):", f"    {v} = {slow}"]
    else:
        rng = f"{lo or '-' + _DBL_MAX} <= {v} <= {hi or _DBL_MAX}"
        fast = [
            f"if type({v}) is float:",
            f"    if not {rng}:",
            f"        {v} = {slow}",
            f"elif type({v}) is int and {-_EXACT} <= {v} <= {_EXACT} and {rng}:",
            f"    {v} = float({v})",
            "else:",
            f"    {v} = {slow}",
        ]
    fast += [f"values[{spec.name!r}] = {v}"] if store else []
    if spec.required:
        return [f"{v} = obj.get({spec.name!r})", *fast]
    return [f"{v} = obj.get({spec.name!r})", f"if {v} is not None:", *("    " + line for line in fast)]


def compile_checker(view: FeatureView) -> RecordChecker:
    """Compile the checks of ``view`` (``parse_record`` compiles each view once and keeps it).

    >>> from features.definitions import FeatureView, FieldSpec
    >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("n", "int", max=9),), ())
    >>> checker = compile_checker(view)
    >>> checker.check({"id": "a", "ts": 5, "n": 3.0}, b"a")
    Event(entity_id='a', ts_ms=5, values={'n': 3}, offset=-1, partition=-1)
    >>> for line in checker.source.splitlines()[-5:]:
    ...     print(line)
        v0 = obj.get('n')
        if not (type(v0) is int and v0 <= 9):
            v0 = _required(S0, v0)
        values = {'n': v0}
        return Event(entity, ts, values)
    """
    ek, tsf, fields = view.entity_key, view.ts_field, view.fields
    body = [
        f"entity = obj.get({ek!r})",
        "if type(entity) is not str:",
        "    entity = _entity_id(EK, entity)",
        "if key is not None:",
        "    try:",
        "        same = key.decode() == entity",
        "    except UnicodeDecodeError:",
        "        same = False",
        "    if not same:",
        "        _check_key(key, EK, entity)",
        f"ts = obj.get({tsf!r})",
        *([f"if type(ts) is not int or not 0 <= ts < {MAX_TS_MS}:", "    ts = _timestamp(TSF, ts)"]
          if view.ts_format == "auto" else  # a declared format: always its own parser
          ["if ts is None:", "    _timestamp(TSF, ts)", "ts = TS_PARSE(ts)"]),
    ]
    # The required fields before the first optional one go into one dict display; each later field is stored
    # right after its own check. Checks run in field order (the first bad field wins), keys keep that order.
    head = next((i for i, spec in enumerate(fields) if not spec.required), len(fields))
    display = "values = {" + ", ".join(f"{f.name!r}: v{i}" for i, f in enumerate(fields[:head])) + "}"
    for i, spec in enumerate(fields):
        body += [display] if i == head else []
        body += _field_lines(i, spec, store=i >= head)
    body += [display] if head == len(fields) else []
    if view.unknown_fields == "reject":
        body += ["if len(obj) > len(values) + 2:", "    _unknown(obj, KNOWN)"]
    body.append("return Event(entity, ts, values)")
    source = "def check(obj, key):\n" + "".join(f"    {line}\n" for line in body)
    ns: dict[str, Any] = {
        "Event": Event, "_entity_id": _entity_id, "_check_key": _check_key, "_timestamp": _timestamp,
        "_required": _required, "_check_value": _check_value, "_unknown": _unknown,
        "EK": ek, "TSF": tsf, "TS_PARSE": timestamp_parser(view.ts_format), "KNOWN": frozenset({ek, tsf, *(f.name for f in fields)}),
        **{f"S{i}": spec for i, spec in enumerate(fields)},
    }
    code = compile(source, f"<features.records {view.name} v{view.version}>", "exec")
    exec(code, ns)  # noqa: S102 - own template
    return RecordChecker(ns["check"], source)


_checker_for: Callable[[FeatureView], _Check] = per_view(lambda view: compile_checker(view).check)
