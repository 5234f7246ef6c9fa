"""The compiled ``features.records.parse_record`` behaves exactly like the generic one it replaced.

The reference below is a verbatim copy of ``parse_record`` as it was before the per-view compiled checker
(commit 1bc6854), on the unchanged ``parse_timestamp`` and ``_check_value``. Both parsers must return the same event
(same entity id, timestamp and values, every value of the same type, keys in the same order) or raise the
same exception with the same reason and message, for:

* any record (hypothesis): views with str/int/float fields, with and without bounds, required or not, both
  ``unknown_fields`` modes; raw JSON text with every value type, ``NaN``/``Infinity``, huge ints, bad
  timestamps and ids, mismatching or non-UTF-8 keys, tombstones, oversized and malformed values;
* a valid record with one odd part (hypothesis): the outcome hangs on that one check, so a fast path that
  accepts too much cannot hide behind an earlier or later error;
* every field kind x bounds x tricky value (exhaustive), fixed numeric edges and realistic vitals records.

The pipeline's parser (``features.record_parser``: the C parser of ``features._check`` for the common case) is
held to the same reference in every one of these cases.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from features import records
from features.definitions import FeatureView, FieldSpec
from features.exceptions import RecordError
from features.record_parser import compile_parser, record_parser
from features.records import Event
from features.views import GPS_VIEW, VITALS_VIEW
from tests.budget import examples

# --- reference: verbatim copy of ``parse_record`` before the compiled parser ------------------------------
# ``parse_timestamp``, ``_check_value`` and the size bound are unchanged (and the compiled checker's slow path
# calls them), so the reference takes them from ``features.records``; what it pins is the loop they replaced.

MAX_RECORD_BYTES = records.MAX_RECORD_BYTES
parse_timestamp = records.parse_timestamp
_check_value = records._check_value
decode_json = records.decode_json


def parse_record(view: FeatureView, key: bytes | None, value: bytes | None) -> Event:
    """Decode and validate one Kafka record against ``view``; raise ``RecordError`` on any defect."""
    if value is None:
        raise RecordError("malformed_json", "null value (tombstone)")
    if len(value) > MAX_RECORD_BYTES:
        raise RecordError("too_large", f"{len(value)} bytes > {MAX_RECORD_BYTES}")
    obj = decode_json(value)  # the decoding (UTF-8 only, issue 16) is shared: what is pinned is the checks
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


# --- generators -------------------------------------------------------------------------------------------

NAMES = ("hr", "x", "n", "s", "a b", "é", 'q"t')
EXTRAS = ("extra", "zz", "")
# Bounds around the float/int edges: 2**53 + 3 is an int a float cannot hold (float() rounds it up).
BOUNDS = st.one_of(
    st.none(),
    st.none(),  # twice: an open side is common, and it is where only the finiteness test stops infinities
    st.sampled_from([2**53 + 3, -(2**53) - 3, 2**53 + 1]),
    st.sampled_from([0, -1, 1, 0.5, -2.5, 100, 2**53, 2**53 + 3, -(2**53) - 3, 10**20, 1e308, -1e308]),
    st.integers(-1000, 1000),
    st.floats(-1e6, 1e6, allow_nan=False),
)


@st.composite
def field_specs(draw: st.DrawFn, name: str) -> FieldSpec:
    lo, hi = draw(BOUNDS), draw(BOUNDS)
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    kind = draw(st.sampled_from(["float", "float", "int", "str"]))
    return FieldSpec(name, kind, draw(st.booleans()), lo, hi)


@st.composite
def views(draw: st.DrawFn, min_fields: int = 0) -> FeatureView:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, min_size=min_fields, max_size=5))
    fields = tuple(draw(field_specs(n)) for n in names)
    mode = draw(st.sampled_from(["ignore", "reject"]))
    return FeatureView("v", 1, "src", "id", "ts", fields, (), unknown_fields=mode)


def _num(x: float | int) -> str:
    return json.dumps(x)  # NaN / Infinity / -Infinity for the non-finite floats, as Python producers write


SPECIAL = ["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "true", "false", "null", "[]", "{}", "[1.0]",
           "-0.0", "0", "1.0", "1.5", "2.0", "9007199254740995", "9007199254740993.0", "1" + "0" * 25,
           "-1" + "0" * 25, "1" + "0" * 400, "123456789012345678901234567890", "1e20", "1E2", "-0"]
JSON_VALUES = st.one_of(
    st.floats().map(_num),
    st.floats(-300, 300).map(_num),
    st.integers().map(str),
    st.integers(-300, 300).map(str),
    st.sampled_from(SPECIAL),
    st.text(max_size=5).map(json.dumps),
    st.sampled_from(['"5"', '"1.5"', '"NaN"', '""', '"\\ud800"']),
)
TIMESTAMPS = st.one_of(
    st.integers(0, 10**14 - 1).map(str),
    st.integers(1_600_000_000_000, 1_800_000_000_000).map(str),
    st.integers(-5, 10**14 + 5).map(str),
    st.sampled_from(["0", "99999999999999", "100000000000000", "-1", "1700000000000", "1700000000000.7",
                     "1e13", "1e14", "NaN", "Infinity", "1e999", "true", "false", "null", "[1]", "{}",
                     "1" + "0" * 30, '"2023-11-14T22:13:20Z"', '"2023-11-14T22:13:20.5+01:00"',
                     '"2023-11-14T22:13:20"', '"yesterday"', '"0001-01-01T00:00:00+00:00"',
                     '"9999-12-31T23:59:59+00:00"', '"1969-12-31T23:59:59.999+00:00"']),
    st.floats(-1.0, 2e14).map(_num),
)
ENTITIES = st.one_of(
    st.text(max_size=6).map(json.dumps),
    st.sampled_from(['"e1"', '"P00221"', "7", "-3", "0", "1.0", "true", "null", "[]", '"\\ud800"', '"é"',
                     "1" + "0" * 30, "1" + "0" * 5000]),
)


@functools.cache  # one strategy per spec: hypothesis validates a new strategy object on every draw
def plausible(spec: FieldSpec, edge: bool) -> st.SearchStrategy[str]:
    """JSON text of a value that passes ``spec`` (in range, its type); with ``edge``, one at its edges."""
    if spec.type == "str":
        return st.text(max_size=5).map(json.dumps)
    lo = -1.5e308 if spec.min is None else spec.min
    hi = 1.5e308 if spec.max is None else spec.max
    ints = st.integers(math.ceil(lo), math.floor(hi)) if math.ceil(lo) <= math.floor(hi) else st.just(lo)
    if not edge:
        if spec.type == "int":
            return st.one_of(ints.map(str), ints.map(float).map(_num))
        # bounds 0 and -0.0 are equal but hypothesis refuses floats(0.0, -0.0): one value then
        floats = st.floats(float(lo), float(hi)) if float(lo) < float(hi) else st.just(float(hi))
        return st.one_of(floats.map(_num), ints.map(str))
    # Values at and next to each bound: the float neighbours, and for an int bound the ints around it (an int
    # bound like 2**53 + 3 has neighbours that float() rounds across it); plus the non-finite ones.
    near = [x for b in (lo, hi) for x in (b, math.nextafter(b, math.inf), math.nextafter(b, -math.inf))]
    near_ints = [b + d for b in (lo, hi) if type(b) is int for d in (0, 0, 0, -2, -1, 1, 2)] or [0]
    nonfinite = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
    other_types = st.sampled_from(['"5"', "[1]", "{}", "1.5", "-0.0", "2.0", "-0", "0", "1"])
    return st.one_of(st.sampled_from(near).map(_num), st.sampled_from(near_ints).map(str), nonfinite,
                     nonfinite, st.sampled_from(["true", "false"]), other_types)


def _object(parts: dict[str, str], order: list[str]) -> bytes:
    """A JSON object from the raw JSON text of each value, keys in ``order``."""
    text = "{" + ", ".join(f"{json.dumps(k)}: {parts[k]}" for k in order) + "}"
    return text.encode("utf-8", "surrogatepass")


def _matching_key(entity: str) -> bytes:
    """The Kafka key of the entity id written as ``entity`` (JSON text); ``b"e1"`` if it is no valid id."""
    try:
        decoded = json.loads(entity)
    except ValueError:
        return b"e1"
    if isinstance(decoded, int) and not isinstance(decoded, bool) and abs(decoded) < 10**100:
        decoded = str(decoded)
    return decoded.encode("utf-8", "surrogatepass") if isinstance(decoded, str) else b"e1"


@st.composite
def records_for(draw: st.DrawFn, view: FeatureView) -> tuple[bytes | None, bytes | None]:
    """(key, value): raw JSON text assembled piecewise, so it can hold NaN, Infinity and huge numbers."""
    shape = draw(st.sampled_from(["object"] * 12 + ["tombstone", "not_object", "malformed", "too_large"]))
    if shape == "tombstone":
        return draw(st.one_of(st.none(), st.binary(max_size=4))), None
    if shape == "not_object":
        return None, draw(st.sampled_from([b"[1, 2]", b'"text"', b"3", b"null", b"NaN", b"true"]))
    if shape == "malformed":
        return None, draw(st.sampled_from([b"{not json", b"\xff\xfe", b"", b'{"id": "e1",}', b"[" * 100_000]))
    parts: dict[str, str] = {}
    if draw(st.integers(0, 19)):
        parts[view.entity_key] = draw(ENTITIES)
    if draw(st.integers(0, 19)):
        parts[view.ts_field] = draw(TIMESTAMPS)
    for spec in view.fields:
        mode = draw(st.integers(0, 19))
        if mode == 0:
            continue  # field absent
        parts[spec.name] = draw(JSON_VALUES if mode < 3 else plausible(spec, edge=mode < 6))
    for extra in draw(st.lists(st.sampled_from(EXTRAS), unique=True, max_size=2)):
        parts[extra] = draw(JSON_VALUES)
    value = _object(parts, draw(st.permutations(list(parts))))
    if shape == "too_large":
        value = value[:-1] + b" " * draw(st.sampled_from([MAX_RECORD_BYTES - len(value),
                                                           MAX_RECORD_BYTES - len(value) + 1])) + b"}"
    kinds = ["none"] * 5 + ["match"] * 10 + ["near"] * 2 + ["other"] * 2 + ["bad_utf8"]
    key_kind = draw(st.sampled_from(kinds))
    if key_kind == "none":
        key = None
    elif key_kind in ("match", "near"):
        key = _matching_key(parts.get(view.entity_key, '"e1"'))
        if key_kind == "near":  # the entity id with a byte more, less or changed
            key = draw(st.sampled_from([key + b" ", b" " + key, key[:-1], key.upper(), key + b"\x00"]))
    elif key_kind == "other":
        key = draw(st.text(max_size=4)).encode()
    else:
        key = draw(st.sampled_from([b"\xff", b"e1\xff", b"\xed\xa0\x80"]))
    return key, value


# --- comparison -------------------------------------------------------------------------------------------


def outcome(parse: Any, view: FeatureView, key: bytes | None, value: bytes | None) -> tuple:
    """What a parser did: the event's fields with the type of every value, or the exception it raised."""
    try:
        ev = parse(view, key, value)
    except RecordError as exc:
        return ("RecordError", exc.reason, exc.detail, str(exc))
    except Exception as exc:  # OverflowError/ValueError of huge numbers must match too
        return (type(exc).__name__, str(exc))
    vals = [(k, type(v).__name__, repr(v)) for k, v in ev.values.items()]
    return ("Event", type(ev).__name__, ev.entity_id, type(ev.entity_id).__name__, ev.ts_ms,
            type(ev.ts_ms).__name__, vals, ev.offset, ev.partition)


def compiled_parse(view: FeatureView, key: bytes | None, value: bytes | None) -> Event:
    """The pipeline's parser: ``features._check`` for the common case, ``parse_record`` for the rest."""
    return record_parser(view)(key, value)


def assert_same(view: FeatureView, key: bytes | None, value: bytes | None) -> None:
    expected = outcome(parse_record, view, key, value)
    assert outcome(records.parse_record, view, key, value) == expected
    assert outcome(compiled_parse, view, key, value) == expected
    if expected[0] == "Event":  # ``==`` on the events too (dataclass equality)
        assert records.parse_record(view, key, value) == parse_record(view, key, value)


@st.composite
def cases(draw: st.DrawFn) -> tuple[FeatureView, bytes | None, bytes | None]:
    view = draw(st.one_of(views(), st.sampled_from([VITALS_VIEW, GPS_VIEW])))
    key, value = draw(records_for(view))
    return view, key, value


@settings(max_examples=examples(1000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
@example((VITALS_VIEW, b"P1", b'{"patient_id": "P1", "ts": 1, "hr": 61.0, "rr": 12, "spo2": 97.5, '
                              b'"temp": 36.5, "sbp": 120.0, "dbp": 80.0}'))
@example((VITALS_VIEW, None, b'{"patient_id": "P1", "ts": 1, "hr": 1e999, "rr": 12}'))
def test_compiled_parser_matches_reference(case: tuple[FeatureView, bytes | None, bytes | None]) -> None:
    assert_same(*case)


@st.composite
def one_odd_field(draw: st.DrawFn) -> tuple[FeatureView, bytes | None, bytes | None]:
    """A valid record but for one part (a field, the timestamp, the id or the key): it decides the outcome."""
    view = draw(views(min_fields=1))
    parts = {"id": '"e1"', "ts": "1700000000000"}
    parts.update({spec.name: draw(plausible(spec, edge=False)) for spec in view.fields})
    odd = draw(st.sampled_from([*view.fields, *view.fields, "ts", "id", "key"]))
    if odd == "ts":
        parts["ts"] = draw(st.one_of(TIMESTAMPS, st.sampled_from(["99999999999999", "100000000000000"])))
    elif odd == "id":
        parts["id"] = draw(ENTITIES)
    elif isinstance(odd, FieldSpec):
        edge = plausible(odd, edge=True)
        parts[odd.name] = draw(st.one_of(edge, edge, edge, JSON_VALUES, st.just("null")))
        if draw(st.integers(0, 3)) == 0:  # or: the field is absent, and an unknown one is there
            del parts[odd.name]
            parts["extra"] = draw(JSON_VALUES)
    key = draw(st.sampled_from([None, _matching_key(parts["id"])]))
    if odd == "key":
        key = draw(st.sampled_from([b"e1 ", b" e1", b"e", b"E1", b"e1\x00", b"e1\xff", b"\xff", b""]))
    return view, key, _object(parts, draw(st.permutations(list(parts))))


@settings(max_examples=examples(500), deadline=None)
@given(one_odd_field())
def test_one_odd_field_matches_reference(case: tuple[FeatureView, bytes | None, bytes | None]) -> None:
    assert_same(*case)


EDGE_VIEW = FeatureView(
    "edge", 1, "src", "id", "ts",
    (FieldSpec("f", min=0, max=2**53 + 3), FieldSpec("g", "int", required=False, min=-2.5, max=2**53 + 3),
     FieldSpec("h", required=False), FieldSpec("lo", required=False, min=-1), FieldSpec("s", "str", False)),
    (),
)


@pytest.mark.parametrize("view", [EDGE_VIEW, dataclasses.replace(EDGE_VIEW, unknown_fields="reject")])
@pytest.mark.parametrize(
    "body",
    [
        '"f": 9007199254740995',  # == max as an int, but float() rounds it up past max: out_of_range
        '"f": 9007199254740996', '"f": 9007199254740997', '"f": 9007199254740992', '"f": 9007199254740993',
        '"f": 9007199254740996.0', '"f": 1' + "0" * 400, '"f": -0.0', '"f": 0', '"f": -0', '"f": 1e-320',
        '"f": 1, "g": 9007199254740995', '"f": 1, "g": 9007199254740996.0', '"f": 1, "g": -2.0',
        '"f": 1, "g": -3', '"f": 1, "g": 1e300', '"f": 1, "g": -0.0', '"f": 1, "g": true',
        '"f": 1, "h": Infinity', '"f": 1, "h": -Infinity', '"f": 1, "h": 1e308', '"f": 1, "h": -1e308',
        '"f": 1, "h": 1' + "0" * 400, '"f": 1, "h": 1' + "0" * 308,
        '"f": 1, "h": 17976931348623157' + "0" * 292,
        '"f": 1, "lo": Infinity', '"f": 1, "lo": -1', '"f": 1, "lo": -1.0000001', '"f": 1, "lo": NaN',
        '"f": 1, "s": 1', '"f": 1, "s": null', '"f": 1, "h": null, "s": "x", "lo": 3', '"f": 1, "zz": 1',
        '"f": 1, "h": null, "zz": null', '"f": null',
    ],
)
def test_numeric_edges_match_reference(view: FeatureView, body: str) -> None:
    for key in (None, b"e1", b"e2"):
        assert_same(view, key, ('{"id": "e1", "ts": 5, ' + body + "}").encode())


TRICKY_BOUNDS = [(None, None), (0, 10), (-1, None), (None, 1), (0.5, 2.5), (-2.5, 0), (0, 2**53 + 3),
                 (-(2**53) - 3, 0), (1e308, None), (None, -1e308), (2, 2), (float("-inf"), None)]
TRICKY_VALUES = [*SPECIAL, "1", "2", "10", "10.0", "11", "-1", "-2.5", "0.5", "2.5", "3", "1e-320", "-1e-320",
                 "9007199254740992", "9007199254740996", "-9007199254740995", "-9007199254740996", "1e308",
                 "-1e308", "1.7976931348623157e308", "-Infinity", '"x"', '""', '"2"', "[]", "{}"]


def test_every_tricky_value_for_every_field_kind() -> None:
    """Every kind x bounds x required x tricky value, in an otherwise valid record (exhaustive)."""
    for kind in ("float", "int", "str"):
        for lo, hi in TRICKY_BOUNDS:
            for required in (True, False):
                spec = FieldSpec("f", kind, required, lo, hi)  # type: ignore[arg-type]
                view = FeatureView("v", 1, "src", "id", "ts", (FieldSpec("g", required=False), spec), ())
                for raw in TRICKY_VALUES:
                    assert_same(view, b"e1", f'{{"id": "e1", "ts": 5, "f": {raw}, "g": 1.5}}'.encode())
                assert_same(view, b"e1", b'{"id": "e1", "ts": 5}')


VITALS_RECORDS = [
    (b"P00221", b'{"patient_id":"P00221","ts":1700000000000,"age_band":"18-40","hr":61.0,"rr":12.0,'
                b'"spo2":97.5,"temp":36.55,"sbp":136.0,"dbp":92.0}'),
    (b"P00434", b'{"patient_id":"P00434","ts":1700000000020,"age_band":"18-40","hr":66,"rr":13,'
                b'"spo2":100,"temp":36.96,"sbp":112.0,"dbp":90.0}'),
    (b"P00109", b'{"patient_id":"P00109","ts":"2023-11-14T22:13:20Z","hr":250.0,"rr":2,"spo2":50.0,'
                b'"temp":45,"sbp":40.0,"dbp":20}'),
]


@pytest.mark.parametrize(("key", "value"), VITALS_RECORDS)
def test_vitals_records_match_reference(key: bytes, value: bytes) -> None:
    """Realistic records, the ones the fast path is tuned for, and corrupted copies of each kind."""
    assert_same(VITALS_VIEW, key, value)
    assert_same(VITALS_VIEW, None, value)
    assert_same(VITALS_VIEW, key + b"x", value)
    assert_same(dataclasses.replace(VITALS_VIEW, unknown_fields="reject"), key, value)
    for field in (b'"hr":', b'"spo2":', b'"dbp":', b'"ts":'):
        for bad in (b"1e3", b"-1", b"NaN", b"Infinity", b"true", b"null", b'"7"', b"1" + b"0" * 400,
                    b"99999999999999", b"100000000000000", b"0", b"1.5"):
            assert_same(VITALS_VIEW, key, value.replace(field, field + bad + b',"x":'))


def test_the_pipeline_parser_is_compiled_for_the_shipped_views() -> None:
    """The C parser serves VITALS_VIEW and GPS_VIEW (a ``functools.partial`` of parse_record would mean Python)."""
    for view in (VITALS_VIEW, GPS_VIEW):
        assert not isinstance(record_parser(view), functools.partial), "features._check was not built (setup.py)"
        assert isinstance(compile_parser(view, {"DRIFTLINE_PURE_PYTHON": "1"}), functools.partial)
    declared = dataclasses.replace(VITALS_VIEW, ts_format="epoch_ms")
    inf_bound = FeatureView("v", 1, "src", "id", "ts", (FieldSpec("x", min=float("-inf")),), ())
    big_bound = FeatureView("v", 1, "src", "id", "ts", (FieldSpec("x", max=2**53 + 3),), ())
    for view in (declared, inf_bound, big_bound):  # what the C parser cannot mirror exactly: Python
        assert isinstance(compile_parser(view), functools.partial)
