"""EntityState: caching of window folds, encoding, dirty tracking."""

from __future__ import annotations

import math
import struct

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window
from features.plan import compile_plan
from features.records import Event
from features.state import EntityState
from tests.budget import examples
from tests.features.test_plan import events as plan_events
from tests.features.test_plan import identical
from tests.features.test_plan import views as plan_views

VIEW = FeatureView(
    "st",
    1,
    "t",
    "id",
    "ts",
    (FieldSpec("x"), FieldSpec("s", "str", required=False)),
    (
        FeatureSpec("n", "x", "count", Window("sliding", 60_000)),
        FeatureSpec("m", "x", "mean", Window("sliding", 60_000)),
        FeatureSpec("d", "s", "distinct_count", Window("tumbling", 60_000)),
    ),
)


def test_late_write_into_an_older_bucket_invalidates_the_cached_fold() -> None:
    st = EntityState()
    for ts in (1_000, 12_000, 25_000):
        st.apply(VIEW, Event("e", ts, {"x": 1.0}))
    assert st.features(VIEW, 25_000)["n"] == 3.0  # caches the fold of buckets 0 s and 10 s
    st.apply(VIEW, Event("e", 2_000, {"x": 4.0}))  # older bucket, no read in between
    got = st.features(VIEW, 25_000)
    assert got["n"] == 4.0 and got["m"] == 7.0 / 4


def test_reads_at_other_times_and_after_expiry() -> None:
    st = EntityState()
    for ts in range(0, 100_000, 5_000):
        st.apply(VIEW, Event("e", ts, {"x": float(ts)}))
    assert st.features(VIEW, 95_000)["n"] == 12.0
    assert st.features(VIEW, 30_000)["n"] == 8.0
    assert st.features(VIEW, 95_000)["n"] == 12.0
    st.expire(50_000)
    assert st.features(VIEW, 95_000)["n"] == 10.0
    assert st.features(VIEW, 0)["n"] == 0.0 and math.isnan(st.features(VIEW, 0)["m"])


def test_encoding_roundtrip_and_dirty_tracking() -> None:
    st = EntityState()
    st.apply(VIEW, Event("e", 1_000, {"x": 1.5, "s": "b"}))
    st.apply(VIEW, Event("e", 11_000, {"x": 2, "s": "a"}))
    st.apply(VIEW, Event("e", 12_000, {"x": 2.5, "s": "a"}))
    sets, dels = st.to_redis()
    assert sorted(sets) == [b"0", b"10000"] and dels == []
    # b"B", row width 3 (x: count and sum; s: count), the row's doubles, then the distinct values of field 1 (s)
    assert sets[b"10000"] == b"B\x03\x00" + struct.pack("<3d", 2.0, 4.5, 2.0) + b'|{"1":["a"]}'
    back = EntityState.from_redis(sets)
    assert back.features(VIEW, 12_000) == st.features(VIEW, 12_000) == {"n": 3.0, "m": 2.0, "d": 2.0}
    assert back.to_redis() == ({}, []) and not back.is_dirty
    back.apply(VIEW, Event("e", 13_000, {"x": 1.0}))
    assert list(back.to_redis()[0]) == [b"10000"]
    back.mark_saved()
    assert not back.is_dirty


def test_the_prefix_is_cached_on_a_first_read_only_after_a_bucket_read_more_than_once() -> None:
    st = EntityState()
    st.apply(VIEW, Event("e", 1_000, {"x": 1.0}))
    st.features(VIEW, 1_000)
    st.apply(VIEW, Event("e", 12_000, {"x": 2.0}))
    assert st.features(VIEW, 12_000)["n"] == 2.0
    assert st._cache is None  # one read per bucket so far: one pass, nothing kept
    st.apply(VIEW, Event("e", 14_000, {"x": 3.0}))
    assert st.features(VIEW, 14_000)["n"] == 3.0
    assert st._cache is not None and st._cache[0] == 10_000  # a second read in a bucket caches its prefix
    st.apply(VIEW, Event("e", 21_000, {"x": 4.0}))
    assert st.features(VIEW, 21_000)["n"] == 4.0
    assert st._cache[0] == 20_000  # the bucket before was read twice: cached on the first read here
    st.apply(VIEW, Event("e", 31_000, {"x": 5.0}))
    assert st.features(VIEW, 31_000)["n"] == 5.0
    assert st._cache[0] == 20_000  # the bucket before was read once: back to one pass


def test_states_in_the_former_json_encoding_are_still_read() -> None:
    legacy = {b"0": orjson.dumps({"x": [1, 1.5, 0.0, 1.5, 1.5, 1000, 1.5, 1000, 1.5, 1.0, 1.0, 1.5, 0.0],
                                  "s": [1, 0.0, 0.0, 0.0, 0.0, 1000, 0.0, 1000, 0.0, 0.0, 0.0, 0.0, 0.0, ["b"]]}),
              b"10000": orjson.dumps({"x": [2, 4.5, 0.125, 2.0, 2.5, 11000, 2.0, 12000, 2.5, 2.0, 2.0, 4.5, 0.0],
                                      "s": [2, 0.0, 0.0, 0.0, 0.0, 11000, 0.0, 12000, 0.0, 0.0, 0.0, 0.0, 0.0, ["a"]]})}
    st = EntityState()
    st.apply(VIEW, Event("e", 1_000, {"x": 1.5, "s": "b"}))
    st.apply(VIEW, Event("e", 11_000, {"x": 2, "s": "a"}))
    st.apply(VIEW, Event("e", 12_000, {"x": 2.5, "s": "a"}))
    back = EntityState.from_redis(legacy, VIEW)
    assert back.features(VIEW, 12_000) == st.features(VIEW, 12_000) == {"n": 3.0, "m": 2.0, "d": 2.0}
    assert back.to_redis() == ({}, [])
    with pytest.raises(ValueError, match="pass the view"):
        EntityState.from_redis(legacy)


def test_a_full_vitals_window_keeps_21_doubles_per_bucket() -> None:
    from features.views import VITALS_VIEW

    st = EntityState()
    vals = {"hr": 80.0, "rr": 12.0, "spo2": 98.0, "temp": 37.0, "sbp": 120.0, "dbp": 80.0}
    for ts in range(0, 31 * 60_000, 10_000):
        st.apply(VITALS_VIEW, Event("e", ts, vals))
    assert st.nbytes() == 31 * 21 * 8 + 31 * 8
    assert sorted(st.buckets(VITALS_VIEW))[:2] == [0, 60_000]


def test_a_long_prefix_is_cached_on_the_first_read_of_a_bucket() -> None:
    from features.state import LONG_PREFIX
    from features.views import VITALS_VIEW

    st = EntityState()
    vals = {"hr": 80.0, "rr": 12.0, "spo2": 98.0, "temp": 37.0, "sbp": 120.0, "dbp": 80.0}
    for minute in range(LONG_PREFIX + 2):  # one reading per minute: every read is the first of its bucket
        st.apply(VITALS_VIEW, Event("e", minute * 60_000, vals))
    back = EntityState.from_redis(st.to_redis()[0])  # as loaded from Redis: no read yet
    now = (LONG_PREFIX + 2) * 60_000
    back.apply(VITALS_VIEW, Event("e", now, vals))
    first = back.features(VITALS_VIEW, now)
    assert back._cache is not None and back._cache[0] == now  # the window's older buckets, folded once
    back.apply(VITALS_VIEW, Event("e", now + 10_000, vals))
    assert back.features(VITALS_VIEW, now + 10_000)["hr_mean_5m"] == first["hr_mean_5m"] == 80.0


def _tracked_parts(st: EntityState) -> list[str]:
    """What the garbage collector walks for one state besides the state itself."""
    import gc
    return sorted(type(o).__name__ for o in gc.get_referents(st) if gc.is_tracked(o) and o is not type(st))


def test_a_saved_state_gives_the_garbage_collector_two_objects_to_walk() -> None:
    """A worker caches up to 100,000 states and every full collection walks them all (a pause in the loop): a
    saved state holds its two arrays and no empty sets; the dirty and deleted marks exist only while there are
    marks."""
    st = EntityState()
    for ts in range(0, 100_000, 5_000):
        st.apply(VIEW, Event("e", ts, {"x": 1.0}))
    st.expire(30_000)
    assert "set" in _tracked_parts(st) and st.is_dirty
    sets, deleted = st.to_redis()
    assert sets and deleted
    st.mark_saved()
    assert _tracked_parts(st) == ["array", "array"] and not st.is_dirty and st.to_redis() == ({}, [])
    st.apply(VIEW, Event("e", 99_000, {"x": 2.0}))
    assert st.is_dirty and list(st.to_redis()[0]) == [b"90000"] and st.to_redis()[1] == []
    st.expire(60_000)
    assert st.to_redis()[1] == [str(b).encode() for b in range(30_000, 60_000, 10_000)]


@settings(max_examples=examples(200), deadline=None)
@given(plan_views(), plan_events(), st.booleans())
def test_step_is_apply_then_features_at_the_events_time(view: FeatureView, evs: list[Event], compiled: bool) -> None:
    """The engine's fused call against its two halves, on random views (every window kind, distinct values) and
    out-of-order streams, with either plan: the same vectors, bit for bit, and the same state."""
    plan = compile_plan(view, compiled=compiled)
    fused, halves = EntityState(), EntityState()
    for ev in evs:
        got = fused.step(plan, ev.ts_ms, ev.values)
        halves.apply_values(plan, ev.ts_ms, ev.values)
        assert identical(got, halves.features_of(plan, ev.ts_ms))
    assert fused.to_redis() == halves.to_redis()
