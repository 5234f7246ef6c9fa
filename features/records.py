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

import codecs
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from features.definitions import FeatureView, FieldSpec
from features.exceptions import RecordError
from features.per_view import per_view
from features.timestamps import rfc3339_ms, timestamp_parser

MAX_RECORD_BYTES = 64 * 1024
MAX_TS_MS = 10**14
_FLOAT_MAX = sys.float_info.max


@dataclass(slots=True)
class Event:
    """One validated source event; ``values`` holds the view's fields present in the record."""

    entity_id: str
    ts_ms: int
    values: dict[str, float | int | str]
    offset: int = -1
    partition: int = -1


def parse_timestamp(raw: Any) -> int:
    """Epoch milliseconds from an int/float (ms) or an RFC 3339 string (:func:`features.timestamps.rfc3339_ms`).

    >>> parse_timestamp(1700000000123.9), parse_timestamp("2023-11-14T22:13:20.5+00:00")
    (1700000000123, 1700000000500)
    """
    if isinstance(raw, bool):
        raise RecordError("bad_timestamp", f"{raw!r} is not a timestamp")
    if isinstance(raw, int | float):
        if (isinstance(raw, float) and not math.isfinite(raw)) or not 0 <= raw < MAX_TS_MS:  # ints: any size
            raise RecordError("bad_timestamp", f"{_short(raw)} is not epoch milliseconds")
        return int(raw)  # floor for non-negative values
    if isinstance(raw, str):
        return rfc3339_ms(raw)
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
        if not -_FLOAT_MAX <= raw <= _FLOAT_MAX:  # aggregated as floats: an int past every float cannot be
            raise RecordError("out_of_range", f"field {spec.name!r}={_short(raw)} outside float range")
        value: float | int = raw
    else:
        try:
            value = float(raw)
        except OverflowError:  # an integer with hundreds of digits: finite, but past every float
            raise RecordError("out_of_range", f"field {spec.name!r}={_short(raw)} outside float range") from None
        if not math.isfinite(value):
            raise RecordError("not_finite", f"field {spec.name!r} is {raw}")
    if (spec.min is not None and value < spec.min) or (spec.max is not None and value > spec.max):
        raise RecordError("out_of_range", f"field {spec.name!r}={_short(raw)} outside [{spec.min}, {spec.max}]")
    return value


def _short(raw: float | int) -> str:
    """A number for an error detail: an integer with hundreds of digits is shown by its size."""
    if isinstance(raw, int) and not -(10**30) < raw < 10**30:
        return f"{'-' if raw < 0 else ''}<{len(str(abs(raw)))}-digit integer>"
    return str(raw)


def parse_record(view: FeatureView, key: bytes | None, value: bytes | None) -> Event:
    """Decode and validate one Kafka record against ``view``; raise ``RecordError`` on any defect."""
    if value is None:
        raise RecordError("malformed_json", "null value (tombstone)")
    if len(value) > MAX_RECORD_BYTES:
        raise RecordError("too_large", f"{len(value)} bytes > {MAX_RECORD_BYTES}")
    obj = decode_json(value)
    if not isinstance(obj, dict):
        raise RecordError("not_an_object", f"top level is {type(obj).__name__}")
    return _checker_for(view)(obj, key)


_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def decode_json(value: bytes) -> Any:
    """The JSON document in ``value``, which must be UTF-8 without a byte order mark (RFC 8259, section 8.1).

    orjson decodes the common case. What it refuses is looked at again: ``bad_encoding`` for a byte order mark,
    UTF-16/32 (a NUL among the first bytes), bytes that are not UTF-8 and lone surrogates (``"\\ud800"``, valid
    JSON syntax naming no character); the lenient ``json`` module then decodes what producers in Python or
    JavaScript write (``NaN``, ``Infinity``, ``1e999``, integers past 64 bits), so that the field checks can
    say ``not_finite`` or ``out_of_range`` rather than ``malformed_json``; anything else is ``malformed_json``.

    >>> decode_json(b'{"x": NaN}')
    {'x': nan}
    >>> for bad in (b'\\xef\\xbb\\xbf{}', '{}'.encode("utf-16"), b'{"x": "\\xff"}', b'{"x": "\\\\ud800"}', b'{"x": 1'):
    ...     try:
    ...         decode_json(bad)
    ...     except RecordError as err:
    ...         print(err.reason)
    bad_encoding
    bad_encoding
    bad_encoding
    bad_encoding
    malformed_json
    """
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        first = exc
    if value.startswith(_BOMS):
        raise RecordError("bad_encoding", "a byte order mark: JSON records must be UTF-8 without one")
    if b"\x00" in value[:4]:
        raise RecordError("bad_encoding", "NUL bytes at the start: UTF-16 or UTF-32? JSON records must be UTF-8")
    try:
        text = value.decode("utf-8")  # strict: refuses invalid bytes and encoded surrogates
    except UnicodeDecodeError as exc:
        raise RecordError("bad_encoding", f"not UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise RecordError("malformed_json", str(first)[:200]) from None
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")  # the only way a decoded str cannot be UTF-8
    except UnicodeEncodeError as exc:
        raise RecordError("bad_encoding", f"a lone surrogate {exc.object[exc.start:exc.end]!r}") from None
    except (ValueError, RecursionError):
        raise RecordError("malformed_json", str(first)[:200]) from None
    return obj


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
        tests = [f"type({v}) is int", f"{lo or '-' + _DBL_MAX} <= {v}", f"{v} <= {hi or _DBL_MAX}"]
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
        if not (type(v0) is int and -1.7976931348623157e+308 <= v0 and v0 <= 9):
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
