"""Point-in-time labels: the as-of join never uses an event after the label, and equals a recomputation on the
history cut at the label's time (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window
from features.historical import Label, LabelError, as_of_join, to_binary
from features.offline import compute_offline
from features.records import Event

VIEW = FeatureView("pit", 1, "t", "id", "ts", (FieldSpec("x"),),
                   (FeatureSpec("x_max", "x", "max", Window("sliding", 60_000)),
                    FeatureSpec("x_sum", "x", "sum", Window("sliding", 60_000)),
                    FeatureSpec("x_last", "x", "last", Window("tumbling", 30_000))),
                   bucket_ms=10_000, allowed_lateness_ms=0)


def test_a_later_spike_never_reaches_an_earlier_label() -> None:
    events = [Event("a", 1_000 * i, {"x": 1.0}) for i in range(1, 11)] + [Event("a", 10_500, {"x": 1000.0})]
    rows = compute_offline(VIEW, events)
    joined = as_of_join(rows, [Label("a", 10_400, 1), Label("a", 10_500, 0)], tolerance_ms=60_000)
    before, at = joined.pairs
    assert before.row.ts_ms == 10_000 and before.row.features["x_max"] == 1.0 and before.row.features["x_sum"] == 10
    assert at.row.ts_ms == 10_500 and at.row.features["x_max"] == 1000.0  # the event at the label's time counts


def test_labels_before_any_event_or_too_old_are_unmatched() -> None:
    rows = compute_offline(VIEW, [Event("a", 100_000, {"x": 1.0})])
    joined = as_of_join(rows, [Label("a", 99_999, 1), Label("a", 200_001, 1), Label("b", 150_000, 0),
                               Label("a", 200_000, 0)], tolerance_ms=100_000)
    assert joined.unmatched == 3 and [p.label_ts_ms for p in joined.pairs] == [200_000]


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 300_000), st.integers(-50, 50)), min_size=1,
                max_size=40),
       st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 320_000)), min_size=1, max_size=15))
def test_as_of_join_equals_recomputing_the_history_cut_at_the_label(
        raw: list[tuple[str, int, int]], labels: list[tuple[str, int]]) -> None:
    events = sorted((Event(e, ts, {"x": float(x)}) for e, ts, x in raw), key=lambda ev: ev.ts_ms)
    rows = compute_offline(VIEW, events)
    joined = as_of_join(rows, [Label(e, t, 1) for e, t in labels], tolerance_ms=10**9)
    got = {(p.row.entity_id, p.label_ts_ms): p.row for p in joined.pairs}
    for entity, t in labels:
        cut = [ev for ev in events if ev.ts_ms <= t]  # everything known at the label's time, nothing after
        mine = [r for r in compute_offline(VIEW, cut) if r.entity_id == entity]
        if not mine:
            assert (entity, t) not in got
            continue
        want, have = mine[-1], got[(entity, t)]
        assert have.ts_ms == want.ts_ms <= t
        assert all(math.isclose(have.features[k], want.features[k]) or
                   (math.isnan(have.features[k]) and math.isnan(want.features[k])) for k in want.features)


@pytest.mark.parametrize(("raw", "positive", "want"), [
    (0, None, 0), (1.0, None, 1), ("1", None, 1), ("0.0", None, 0), ("TRUE", None, 1), ("no", None, 0),
    (False, None, 0), ("fraud", "fraud", 1), ("ok", "fraud", 0), (2, "2", 1),
])
def test_to_binary(raw: object, positive: str | None, want: int) -> None:
    assert to_binary(raw, positive) == want


@pytest.mark.parametrize("raw", [2, -1, "maybe", None, 0.5, [1]])
def test_non_binary_labels_are_refused_with_the_fix(raw: object) -> None:
    with pytest.raises(LabelError, match="--positive VALUE"):
        to_binary(raw)
