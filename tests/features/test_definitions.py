"""Definitions: durations, window boundaries, view validation, fingerprints."""

from __future__ import annotations

import dataclasses

import pytest

from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window, parse_duration
from features.exceptions import DefinitionError
from features.records import Event
from features.state import EntityState


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("10s", 10_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        (" 2 s ", 2000),
        (0, 0),
        (1234, 1234),
    ],
)
def test_parse_duration(text: str | int, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("bad", ["", "5", "m", "1.5s", "-1s", "5w", "10 sec", True, -5])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(DefinitionError):
        parse_duration(bad)  # type: ignore[arg-type]


def _view(
    *features: FeatureSpec, bucket_ms: int = 10_000, fields: tuple[FieldSpec, ...] = (FieldSpec("x"),)
) -> FeatureView:
    return FeatureView("t", 1, "topic", "id", "ts", fields, features, bucket_ms=bucket_ms)


def _counts(window: Window, ts_list: list[int], now: int) -> float:
    view = _view(FeatureSpec("n", "x", "count", window))
    st = EntityState()
    for ts in ts_list:
        st.apply(view, Event("e", ts, {"x": 1.0}))
    return st.features(view, now)["n"]


def test_sliding_boundaries() -> None:
    w = Window("sliding", 30_000)
    # now=65 s -> buckets 40, 50, 60 s (whole buckets, the bucket of now included entirely)
    assert _counts(w, [39_999], 65_000) == 0
    assert _counts(w, [40_000], 65_000) == 1
    assert _counts(w, [69_999], 65_000) == 1
    assert _counts(w, [70_000], 65_000) == 0
    assert _counts(w, [39_999, 40_000, 50_000, 65_000, 70_000], 65_000) == 3


def test_tumbling_boundaries() -> None:
    w = Window("tumbling", 60_000)
    assert _counts(w, [59_999, 60_000], 60_000) == 1
    assert _counts(w, [59_999, 60_000, 110_000], 119_999) == 2
    assert _counts(w, [59_999, 60_000, 110_000, 120_000], 120_000) == 1
    assert _counts(w, [0, 59_999], 59_999) == 2


def test_hopping_boundaries() -> None:
    w = Window("hopping", 60_000, 20_000)
    # windows [0,60), [20,80), [40,100) ...; at 65 s the oldest one still open is [20, 80)
    assert Window("hopping", 60_000, 20_000).bucket_range(10_000, 65_000) == (20_000, 60_000)
    assert _counts(w, [19_999, 20_000, 65_000], 65_000) == 2
    # at exactly 80 s the window [20, 80) closed: [40, 100)
    assert _counts(w, [39_999, 40_000, 80_000], 80_000) == 2
    # step == bucket: hopping == sliding
    assert Window("hopping", 30_000, 10_000).bucket_range(10_000, 65_000) == Window(
        "sliding", 30_000
    ).bucket_range(10_000, 65_000)


def test_window_validation() -> None:
    with pytest.raises(DefinitionError):
        Window("hopping", 60_000)
    with pytest.raises(DefinitionError):
        Window("sliding", 60_000, 10_000)
    with pytest.raises(DefinitionError):
        Window("hopping", 60_000, 70_000)
    with pytest.raises(DefinitionError):
        Window("rolling", 60_000)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="multiples of bucket_ms"):
        _view(FeatureSpec("n", "x", "count", Window("sliding", 15_000)))
    with pytest.raises(DefinitionError, match="multiples of bucket_ms"):
        _view(FeatureSpec("n", "x", "count", Window("hopping", 60_000, 15_000)))


def test_view_validation() -> None:
    w = Window("sliding", 60_000)
    with pytest.raises(DefinitionError, match="unknown agg"):
        FeatureSpec("n", "x", "median", w)
    with pytest.raises(DefinitionError, match="unknown field"):
        _view(FeatureSpec("n", "y", "count", w))
    with pytest.raises(DefinitionError, match="duplicate feature"):
        _view(FeatureSpec("n", "x", "count", w), FeatureSpec("n", "x", "sum", w))
    with pytest.raises(DefinitionError, match="numeric"):
        _view(FeatureSpec("n", "s", "mean", w), fields=(FieldSpec("s", "str"),))
    _view(FeatureSpec("n", "s", "distinct_count", w), fields=(FieldSpec("s", "str"),))


def test_retention_and_fingerprint() -> None:
    v = _view(
        FeatureSpec("a", "x", "count", Window("sliding", 60_000)),
        FeatureSpec("b", "x", "count", Window("hopping", 120_000, 30_000)),
    )
    assert v.retention_ms == 120_000 + 30_000 + 60_000
    assert v.fingerprint() == _view(*v.features).fingerprint()
    changed = dataclasses.replace(v, bucket_ms=5_000)
    assert changed.fingerprint() != v.fingerprint()
    assert dataclasses.replace(v, fields=(FieldSpec("x", max=3),)).fingerprint() != v.fingerprint()
    assert len(v.fingerprint()) == 12
