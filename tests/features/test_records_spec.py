"""Both record parsers of ``features.records`` against the specification, not against each other.

The compiled checker (``parse_record``) decides the common case inline (an int timestamp in range, a float or
int in range); everything else goes to the generic helpers (``parse_timestamp``, ``_check_value``). Each is
checked here against an oracle written from the contract alone:

* timestamps: epoch milliseconds in ``[0, 10**14)`` (a float is floored; ``bool`` is not a number), or an RFC
  3339 ``date-time`` (section 5.6: ``T``/``t`` (or a space), fractions of any length, ``Z``/``z`` or ``±HH:MM``)
  whose instant lies in the same range; anything else is ``bad_timestamp``. The oracle parses RFC 3339 with
  its own grammar and counts days with its own civil-calendar arithmetic (no ``datetime``);
* values: a ``float`` field takes a finite JSON number (not a bool) within ``[min, max]`` (inclusive) as a
  float; an ``int`` field an integer (or an integral float) within the bounds; a ``str`` field a string;
* the parse is total: a bad record raises ``RecordError`` with a reason, never another exception.

Cases today's code gets wrong are ``xfail(strict=True)`` with the issue that fixes them, so they turn into
failures to un-mark the day they pass.
"""

from __future__ import annotations

import json
import math
import re

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from features import records
from features.definitions import FeatureView, FieldSpec
from features.exceptions import RecordError
from features.records import Event, parse_record, parse_timestamp
from tests.budget import examples

MAX_TS = 10**14  # the documented bound: epoch ms in [0, 1e14)

# --- the oracle -----------------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _leap(y: int) -> bool:
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


def _days_before(y: int, m: int, d: int) -> int:
    """Days from 1970-01-01 to y-m-d, counted year by year and month by month (slow and obvious)."""
    days = sum(366 if _leap(yy) else 365 for yy in range(1970, y)) - sum(
        366 if _leap(yy) else 365 for yy in range(y, 1970)
    )
    days += sum(_DAYS_IN_MONTH[mm - 1] + (mm == 2 and _leap(y)) for mm in range(1, m))
    return days + d - 1


def rfc3339_ms(text: str) -> int | None:
    """Epoch ms of an RFC 3339 date-time (fraction truncated to the ms), or None when it is not one or is out
    of range. A leap second (``:60``) is read as the first ms after ``:59.999``, the next minute's ``:00``."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        return None
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7), m.group(8)
    if not 1 <= mo <= 12 or not 1 <= d <= _DAYS_IN_MONTH[mo - 1] + (mo == 2 and _leap(y)):
        return None
    if h > 23 or mi > 59 or s > 60:
        return None
    offset_min = 0
    if zone not in ("Z", "z"):
        oh, om = int(zone[1:3]), int(zone[4:6])
        if oh > 23 or om > 59:
            return None
        offset_min = (oh * 60 + om) * (1 if zone[0] == "+" else -1)
    seconds = _days_before(y, mo, d) * 86_400 + h * 3_600 + mi * 60 + s - offset_min * 60
    ms = seconds * 1_000 + (int((frac[1:] + "00")[:3]) if frac else 0)
    return ms if 0 <= ms < MAX_TS else None


def spec_timestamp(raw: object) -> int | None:
    """What the contract says a timestamp value means (None: ``bad_timestamp``)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 0 <= raw < MAX_TS else None
    if isinstance(raw, float):
        return math.floor(raw) if math.isfinite(raw) and 0 <= raw < MAX_TS else None
    if isinstance(raw, str):
        return rfc3339_ms(raw)
    return None


def test_the_oracle_itself() -> None:
    assert rfc3339_ms("1970-01-01T00:00:00Z") == 0
    assert rfc3339_ms("2023-11-14T22:13:20Z") == 1_700_000_000_000  # `date -d @1700000000`
    assert rfc3339_ms("2023-11-14T23:13:20.250+01:00") == 1_700_000_000_250
    assert rfc3339_ms("2000-02-29T00:00:00Z") == 951_782_400_000  # a leap day (divisible by 400)
    assert rfc3339_ms("1900-02-29T00:00:00Z") is None  # no leap day (divisible by 100)
    assert rfc3339_ms("5138-11-16T09:46:39.999Z") == MAX_TS - 1
    assert rfc3339_ms("5138-11-16T09:46:40Z") is None
    assert rfc3339_ms("1969-12-31T23:59:59.999Z") is None


# --- timestamps -----------------------------------------------------------------------------------------------

VIEW = FeatureView(
    "spec", 1, "src", "id", "ts",
    (FieldSpec("x", min=-10.0, max=10.0), FieldSpec("n", "int", required=False, min=-5, max=5),
     FieldSpec("s", "str", required=False)),
    (),
)


def via_record(ts_json: str) -> int | None:
    """The timestamp ``parse_record`` (the compiled fast path first) makes of the JSON text ``ts_json``."""
    body = f'{{"id": "e", "ts": {ts_json}, "x": 1.0}}'.encode()
    try:
        return parse_record(VIEW, b"e", body).ts_ms
    except RecordError as exc:
        assert exc.reason == "bad_timestamp", exc
        return None


def via_helper(raw: object) -> int | None:
    """The timestamp the generic helper (the slow path) makes of ``raw``."""
    try:
        return parse_timestamp(raw)
    except RecordError as exc:
        assert exc.reason == "bad_timestamp", exc
        return None


EDGES = [-(10**20), -(2**63), -1, 0, 1, 1_700_000_000_000, MAX_TS - 1, MAX_TS, MAX_TS + 1, 2**63, 10**30]


@pytest.mark.parametrize("n", EDGES)
def test_epoch_ms_int_edges_on_both_paths(n: int) -> None:
    want = n if 0 <= n < MAX_TS else None
    assert via_record(str(n)) == want
    assert via_helper(n) == want


@settings(max_examples=examples(300), deadline=None)
@given(st.one_of(st.integers(), st.integers(-2, 2).map(lambda d: MAX_TS + d), st.integers(-3, 3)))
def test_epoch_ms_ints(n: int) -> None:
    assert via_record(str(n)) == spec_timestamp(n)
    assert via_helper(n) == spec_timestamp(n)


@settings(max_examples=examples(300), deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-2.0, 2.0),
                 st.floats(MAX_TS - 4.0, MAX_TS + 4.0)))
@example(-0.0)
@example(1_700_000_000_123.9)
@example(float(MAX_TS))
@example(math.nextafter(float(MAX_TS), 0.0))
def test_epoch_ms_floats(x: float) -> None:
    assert via_helper(x) == spec_timestamp(x)
    text = json.dumps(x)  # NaN / Infinity as Python producers write them
    assert via_record(text) == spec_timestamp(x)


@pytest.mark.parametrize("raw", [True, False, None, [1], {"ms": 1}, "1700000000000", "", "yesterday"])
def test_other_types_and_numeric_strings_are_bad(raw: object) -> None:
    assert via_helper(raw) is None
    if raw is not None:  # a null timestamp is a missing field
        assert via_record(orjson.dumps(raw).decode()) is None


@st.composite
def rfc3339(draw: st.DrawFn, lower_z: bool = False) -> str:
    """An RFC 3339 date-time: valid calendar dates over the whole representable range and just past it,
    T/t/space, fractions of 0 to 12 digits, Z or a numeric offset (lowercase z only with ``lower_z``)."""
    y = draw(st.one_of(st.integers(1970, 2100), st.integers(1, 9999), st.sampled_from([1969, 1970, 5138, 5139])))
    mo = draw(st.integers(1, 12))
    d = draw(st.integers(1, _DAYS_IN_MONTH[mo - 1] + (mo == 2 and _leap(y))))
    h, mi, s = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    sep = draw(st.sampled_from("Tt "))
    frac = draw(st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=12).map(lambda t: "." + t)))
    zones = st.one_of(st.just("Z"), st.builds(lambda sign, oh, om: f"{sign}{oh:02d}:{om:02d}",
                                              st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)))
    zone = draw(st.one_of(zones, st.just("z")) if lower_z else zones)
    return f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}{frac}{zone}"


@settings(max_examples=examples(500), deadline=None)
@given(rfc3339())
@example("1970-01-01T00:00:00Z")
@example("1970-01-01T00:00:00.0001+00:00")
@example("1970-01-01T00:59:59.999+01:00")  # 1969-12-31T23:59:59.999Z: before the epoch
@example("5138-11-16T09:46:39.999999999Z")
@example("5138-11-16T10:46:40+01:00")  # exactly 10**14 ms
@example("2023-11-14T22:13:20.123456789Z")
def test_rfc3339_on_both_paths(text: str) -> None:
    want = rfc3339_ms(text)
    assert via_helper(text) == want
    assert via_record(json.dumps(text)) == want


@settings(max_examples=examples(100), deadline=None)
@given(rfc3339(lower_z=True).filter(lambda t: t.endswith("z")))
def test_rfc3339_lowercase_z(text: str) -> None:
    assert via_helper(text) == rfc3339_ms(text)
    assert via_record(json.dumps(text)) == rfc3339_ms(text)


def test_rfc3339_leap_second() -> None:
    """Decided (features/timestamps.py): :60 is the instant after :59.999, the next minute's :00."""
    got = via_helper("2016-12-31T23:59:60Z")
    assert got is not None and rfc3339_ms("2016-12-31T23:59:59Z") <= got <= rfc3339_ms("2017-01-01T00:00:00Z")
    assert got == rfc3339_ms("2016-12-31T23:59:60Z") == via_record('"2016-12-31T23:59:60Z"')
    assert via_helper("2016-12-31T23:59:60.250Z") == got + 250 and via_helper("2016-12-31T23:59:61Z") is None


@pytest.mark.parametrize("text", [
    "2023-13-01T00:00:00Z", "2023-00-10T00:00:00Z", "2023-02-29T00:00:00Z", "2023-04-31T00:00:00Z",
    "2023-11-14T24:00:00Z", "2023-11-14T22:60:00Z", "2023-11-14T22:13:61Z", "2023-11-14T22:13:20+24:00",
    "2023-11-14T22:13:20", "2023-11-14", "22:13:20Z", "２０２３-11-14T22:13:20Z",
    " 2023-11-14T22:13:20Z", "2023-11-14T22:13:20Z ", "2023-11-14T22:13:20ZZ",
])
def test_not_a_date_time_is_bad(text: str) -> None:
    assert rfc3339_ms(text) is None
    assert via_helper(text) is None
    assert via_record(json.dumps(text)) is None


@pytest.mark.parametrize("text", [
    "2023-11-14T22:13Z",  # no seconds
    "20231114T221320Z",  # basic format
    "2023-11-14T22:13:20,5Z",  # decimal comma
    "2023-11-14T22:13:20.Z",  # a dot without digits
    "2023-11-14T22:13:20+0100",  # offset without colon
    "2023-11-14T22:13:20+01",  # offset without minutes
    "2023-11-14T22:13:20+01:00:30",  # offset with seconds
    "2023-W46-2T22:13:20Z",  # week date
    "2023-11-14T22:13:20+01:60",  # offset minute 60 (read as +02:00)
])
def test_iso8601_forms_outside_rfc3339_are_bad(text: str) -> None:
    assert rfc3339_ms(text) is None
    assert via_helper(text) is None
    assert via_record(json.dumps(text)) is None


# --- values ---------------------------------------------------------------------------------------------------

BOUND = st.one_of(st.none(), st.integers(-100, 100), st.floats(-100, 100, allow_nan=False),
                  st.sampled_from([0, 0.5, -0.5, 2**53, -(2**53)]))
NUMBERS = st.one_of(st.integers(-200, 200), st.floats(-200, 200), st.floats(), st.integers(-(2**60), 2**60),
                    st.integers(-200, 200).map(float), st.sampled_from([0.5, -0.5, 1.0, -0.0, 1e300, -1e300]))


def spec_value(kind: str, lo: float | None, hi: float | None, raw: object) -> tuple[str, object]:
    """("ok", value) or ("error", reason) for a value of a field of ``kind`` with bounds ``lo``/``hi``."""
    if kind == "str":
        return ("ok", raw) if isinstance(raw, str) else ("error", "wrong_type")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return ("error", "wrong_type")
    if isinstance(raw, float) and not math.isfinite(raw):
        return ("error", "not_finite")
    if kind == "int":
        if isinstance(raw, float) and raw != math.floor(raw):
            return ("error", "wrong_type")
        value: int | float = int(raw)
    else:
        value = float(raw)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return ("error", "out_of_range")
    return ("ok", value)


def outcome(call: object) -> tuple[str, object]:
    try:
        value = call()  # type: ignore[operator]
    except RecordError as exc:
        return ("error", exc.reason)
    return ("ok", value)


@settings(max_examples=examples(600), deadline=None)
@given(st.sampled_from(["float", "int"]), BOUND, BOUND, NUMBERS)
@example("float", -10.0, 10.0, 10.0)
@example("float", -10.0, 10.0, math.nextafter(10.0, 11.0))
@example("int", 0.5, None, 0)
@example("int", None, 5, 5.0)
@example("int", None, None, 2.5)
def test_numeric_values_on_both_paths(kind: str, lo: float | None, hi: float | None, raw: float) -> None:
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    spec = FieldSpec("v", kind, True, lo, hi)  # type: ignore[arg-type]
    want = spec_value(kind, lo, hi, raw)
    slow = outcome(lambda: records._check_value(spec, raw))
    view = FeatureView("spec", 1, "src", "id", "ts", (spec,), ())
    fast = outcome(lambda: parse_record(view, None, json.dumps({"id": "e", "ts": 5, "v": raw}).encode()).values["v"])
    for got in (slow, fast):
        assert got[0] == want[0] and got[1] == want[1], (got, want)
        if got[0] == "ok":
            assert type(got[1]) is (int if kind == "int" else float)


@pytest.mark.parametrize("raw", ["5", "", True, False, [1.0], {"v": 1}])
def test_non_numbers_are_wrong_type_on_both_paths(raw: object) -> None:
    spec = FieldSpec("v", "float", True, None, None)
    assert outcome(lambda: records._check_value(spec, raw)) == ("error", "wrong_type")
    view = FeatureView("spec", 1, "src", "id", "ts", (spec,), ())
    body = orjson.dumps({"id": "e", "ts": 5, "v": raw})
    assert outcome(lambda: parse_record(view, None, body)) == ("error", "wrong_type")


@pytest.mark.parametrize(("raw", "reason"), [(1.0, "wrong_type"), (3, "wrong_type"), ("ok", "ok")])
def test_string_fields(raw: object, reason: str) -> None:
    want = ("ok", raw) if reason == "ok" else ("error", reason)
    assert spec_value("str", None, None, raw) == want
    body = orjson.dumps({"id": "e", "ts": 5, "x": 1.0, "s": raw})
    assert outcome(lambda: parse_record(VIEW, None, body).values["s"]) == want


HUGE = b'{"id": "e", "ts": 5, "v": 1' + b"0" * 400 + b"}"  # valid JSON, far outside float range


def test_an_int_field_holds_a_huge_number_to_its_bounds() -> None:
    view = FeatureView("spec", 1, "src", "id", "ts", (FieldSpec("v", "int", True, -10, 10),), ())
    assert outcome(lambda: parse_record(view, None, HUGE)) == ("error", "out_of_range")


def test_a_float_field_given_a_number_outside_float_range_is_a_record_error() -> None:
    for lo, hi in ((-10.0, 10.0), (None, None)):
        view = FeatureView("spec", 1, "src", "id", "ts", (FieldSpec("v", "float", True, lo, hi),), ())
        assert outcome(lambda view=view: parse_record(view, None, HUGE)) == ("error", "out_of_range")


def test_an_unbounded_int_field_refuses_a_number_past_every_float() -> None:
    """Int fields are aggregated as floats: 10**400 could only fail later, in the window fold."""
    view = FeatureView("spec", 1, "src", "id", "ts", (FieldSpec("v", "int", True),), ())
    assert outcome(lambda: parse_record(view, None, HUGE)) == ("error", "out_of_range")
    assert outcome(lambda: parse_record(view, None, b'{"id": "e", "ts": 5, "v": -9223372036854775808}')) == \
        ("ok", Event("e", 5, {"v": -(2**63)}))


@pytest.mark.parametrize(("entity", "want"), [
    ('"p1"', ("ok", "p1")), ("7", ("ok", "7")), ("-3", ("ok", "-3")), ('""', ("ok", "")),
    ("true", ("error", "wrong_type")), ("1.5", ("error", "wrong_type")), ("[1]", ("error", "wrong_type")),
    ("null", ("error", "missing_field")),
])
def test_entity_ids(entity: str, want: tuple[str, object]) -> None:
    body = f'{{"id": {entity}, "ts": 5, "x": 1.0}}'.encode()
    assert outcome(lambda: parse_record(VIEW, None, body).entity_id) == want


@pytest.mark.parametrize(("key", "entity", "ok"), [
    (b"p1", '"p1"', True), (b"7", "7", True), (b"p2", '"p1"', False), (b"p1 ", '"p1"', False),
    (b"\xff", '"p1"', False), (b"", '""', True), ("é".encode(), '"é"', True), ("é".encode("latin-1"), '"é"', False),
    (b"\xff", '""', False),  # a key that is not UTF-8 never matches, not even an empty id
])
def test_the_kafka_key_must_be_the_entity_id(key: bytes, entity: str, ok: bool) -> None:
    body = f'{{"id": {entity}, "ts": 5, "x": 1.0}}'.encode()
    assert outcome(lambda: parse_record(VIEW, key, body).entity_id)[0] == ("ok" if ok else "error")
    if not ok:
        assert outcome(lambda: parse_record(VIEW, key, body)) == ("error", "key_mismatch")


def test_error_details_are_bounded_and_name_the_culprits() -> None:
    body = ('{"id": "' + "e" * 100 + '", "ts": 5, "x": 1.0}').encode()
    with pytest.raises(RecordError) as info:
        parse_record(VIEW, b"k" * 100, body)
    assert info.value.detail == f"Kafka key {b'k' * 64!r} != id={'e' * 64!r}"
    strict = FeatureView("spec", 1, "src", "id", "ts", (FieldSpec("x"),), (), unknown_fields="reject")
    extra = {f"f{i:02d}": 1 for i in range(12)}
    with pytest.raises(RecordError) as info:
        parse_record(strict, None, orjson.dumps({"id": "e", "ts": 5, "x": 1.0, **extra}))
    assert info.value.detail == f"unexpected fields {sorted(extra)[:10]}"


@pytest.mark.parametrize(("fmt", "raw", "want"), [
    ("epoch_s", 1_700_000_000, 1_700_000_000_000),
    ("epoch_s", 1_700_000_000.25, 1_700_000_000_250),
    ("epoch_ms", 1_700_000_000_250, 1_700_000_000_250),
    ("epoch_ms", "1700000000250", 1_700_000_000_250),  # an int column of a CSV file arrives as a string
    ("%Y-%m-%d", "1970-01-02", 86_400_000),
    ("epoch_s", "soon", None), ("%Y-%m-%d", "02/01/1970", None), ("epoch_s", True, None),
])
def test_a_declared_timestamp_format_is_used_for_every_value(fmt: str, raw: object, want: int | None) -> None:
    view = FeatureView("spec", 1, "src", "id", "ts", (FieldSpec("x"),), (), ts_format=fmt)
    body = orjson.dumps({"id": "e", "ts": raw, "x": 1.0})
    if want is None:
        assert outcome(lambda: parse_record(view, None, body)) == ("error", "bad_timestamp")
    else:
        assert parse_record(view, None, body).ts_ms == want
    missing = orjson.dumps({"id": "e", "x": 1.0})
    assert outcome(lambda: parse_record(view, None, missing)) == ("error", "missing_field")


@pytest.mark.parametrize(("raw", "detail"), [
    ("5", "field 'x' must be a number, got str"),
    (True, "field 'x' must be a number, got bool"),
    (11.5, "field 'x'=11.5 outside [-10.0, 10.0]"),
])
def test_value_errors_name_the_field_and_the_problem(raw: object, detail: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_record(VIEW, None, orjson.dumps({"id": "e", "ts": 5, "x": raw}))
    assert info.value.detail == detail


def test_bounds_of_any_numeric_type_hold() -> None:
    """Bounds computed with numpy (a float64 is no plain float) hold on both sides."""
    import numpy as np

    for lo, hi in ((np.float64(-1.5), np.float64(2.5)), (np.float64(-1.5), 2.5), (-1.5, np.float64(2.5)),
                   (np.float64(-1.5), None), (None, np.float64(2.5))):
        view = FeatureView("spec", 1, "src", "id", "ts", (FieldSpec("v", "float", True, lo, hi),), ())
        for raw in (-1.5, 2.5, -1.6, 2.6, 0, 3, -2):
            ok = (lo is None or raw >= lo) and (hi is None or raw <= hi)
            got = outcome(lambda raw=raw, view=view: parse_record(view, None, orjson.dumps({"id": "e", "ts": 5, "v": raw})))
            assert got[0] == ("ok" if ok else "error"), (lo, hi, raw, got)


def test_the_compiled_checker_keeps_its_source() -> None:
    assert records.compile_checker(VIEW).source.startswith("def check(obj, key):\n")


def test_parse_object_checks_a_decoded_record_as_parse_record_does() -> None:
    obj = {"id": "e", "ts": 5, "x": 1.0}
    assert records.parse_object(VIEW, obj) == parse_record(VIEW, None, orjson.dumps(obj))
    assert records.parse_object(VIEW, obj, b"e").entity_id == "e"
    assert outcome(lambda: records.parse_object(VIEW, obj, b"other")) == ("error", "key_mismatch")
    assert outcome(lambda: records.parse_object(VIEW, {**obj, "x": 11.0})) == ("error", "out_of_range")
