"""parse_record: one test per rejection reason, plus the happy paths."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from features.definitions import FeatureView, FieldSpec
from features.exceptions import RecordError
from features.records import MAX_RECORD_BYTES, parse_record

VIEW = FeatureView(
    "v",
    1,
    "src",
    "id",
    "ts",
    (
        FieldSpec("x", min=0, max=100),
        FieldSpec("n", "int", required=False),
        FieldSpec("s", "str", required=False),
    ),
    (),
)
STRICT = dataclasses.replace(VIEW, unknown_fields="reject")


def _rec(**kw: object) -> bytes:
    body: dict[str, object] = {"id": "e1", "ts": 1_700_000_000_000, "x": 5.5}
    body.update(kw)
    return orjson.dumps({k: v for k, v in body.items() if v is not ...})


def _reason(view: FeatureView, key: bytes | None, value: bytes | None) -> str:
    with pytest.raises(RecordError) as info:
        parse_record(view, key, value)
    return info.value.reason


def test_happy_path() -> None:
    ev = parse_record(VIEW, b"e1", _rec(n=3, s="a", extra=1))
    assert (ev.entity_id, ev.ts_ms, ev.values) == ("e1", 1_700_000_000_000, {"x": 5.5, "n": 3, "s": "a"})
    assert isinstance(parse_record(VIEW, None, _rec(x=5)).values["x"], float)
    assert parse_record(VIEW, None, _rec(n=4.0)).values["n"] == 4
    assert parse_record(VIEW, b"7", _rec(id=7)).entity_id == "7"
    assert parse_record(VIEW, None, _rec(ts="2023-11-14T22:13:20Z")).ts_ms == 1_700_000_000_000
    assert parse_record(VIEW, None, _rec(ts="2023-11-14T23:13:20.250+01:00")).ts_ms == 1_700_000_000_250
    assert parse_record(VIEW, None, _rec(x=0)).values["x"] == 0.0  # bounds are inclusive
    assert parse_record(VIEW, None, _rec(x=100)).values["x"] == 100.0
    assert "n" not in parse_record(VIEW, None, _rec(n=None)).values


@pytest.mark.parametrize(
    ("view", "key", "value", "reason"),
    [
        (VIEW, None, b"{not json", "malformed_json"),
        (VIEW, None, None, "malformed_json"),
        (VIEW, None, b'{"id": "e1", "ts": 1, "x": 1.0,}', "malformed_json"),
        (VIEW, None, b"\xff\xfe", "bad_encoding"),  # a UTF-16 byte order mark
        (VIEW, None, b'{"id": "\xff"}', "bad_encoding"),  # not UTF-8
        (VIEW, None, rb'{"id": "\ud800", "ts": 1, "x": 1}', "bad_encoding"),  # a lone surrogate
        (VIEW, None, b"[1, 2]", "not_an_object"),
        (VIEW, None, b'"text"', "not_an_object"),
        (VIEW, None, _rec(x=...), "missing_field"),
        (VIEW, None, _rec(id=...), "missing_field"),
        (VIEW, None, _rec(ts=...), "missing_field"),
        (VIEW, None, _rec(x="5.5"), "wrong_type"),
        (VIEW, None, _rec(x=True), "wrong_type"),
        (VIEW, None, _rec(n=1.5), "wrong_type"),
        (VIEW, None, _rec(n=False), "wrong_type"),
        (VIEW, None, _rec(s=3), "wrong_type"),
        (VIEW, None, _rec(id=["e1"]), "wrong_type"),
        (VIEW, None, b'{"id": "e1", "ts": 1, "x": 1e999}', "not_finite"),
        (VIEW, None, b'{"id": "e1", "ts": 1, "x": -1e400}', "not_finite"),
        (VIEW, None, b'{"id": "e1", "ts": 1, "x": NaN}', "not_finite"),
        (VIEW, None, b'{"id": "e1", "ts": 1, "n": Infinity, "x": 1}', "not_finite"),
        (VIEW, None, _rec(x=100.0001), "out_of_range"),
        (VIEW, None, _rec(x=-1), "out_of_range"),
        (STRICT, None, _rec(extra=1), "unknown_field"),
        (VIEW, None, _rec(ts="yesterday"), "bad_timestamp"),
        (VIEW, None, _rec(ts="2023-11-14T22:13:20"), "bad_timestamp"),  # no offset
        (VIEW, None, _rec(ts=-5), "bad_timestamp"),
        (VIEW, None, _rec(ts=True), "bad_timestamp"),
        (VIEW, None, _rec(ts=[1]), "bad_timestamp"),
        (VIEW, None, b'{"id": "e1", "ts": 1e999, "x": 1}', "bad_timestamp"),
        (VIEW, b"e2", _rec(), "key_mismatch"),
        (VIEW, b"\xff", _rec(), "key_mismatch"),
        (VIEW, None, b" " * (MAX_RECORD_BYTES + 1), "too_large"),
    ],
)
def test_rejections(view: FeatureView, key: bytes | None, value: bytes | None, reason: str) -> None:
    assert _reason(view, key, value) == reason


def test_size_limit_is_inclusive() -> None:
    body = _rec(pad=...)
    padded = body[:-1] + b" " * (MAX_RECORD_BYTES - len(body)) + b"}"
    assert len(padded) == MAX_RECORD_BYTES
    assert parse_record(VIEW, None, padded).entity_id == "e1"


def test_strict_view_accepts_known_fields_and_null_optionals() -> None:
    assert parse_record(STRICT, None, _rec(n=None, s="a")).values == {"x": 5.5, "s": "a"}
