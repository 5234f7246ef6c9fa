"""The compiled fast path (features.plan + EntityState.features) is bit-identical to the reference fold."""

from __future__ import annotations

import math
from bisect import bisect_left

from hypothesis import given, settings
from hypothesis import strategies as st

from features.aggregations import AGGREGATIONS, fold, new_accumulator
from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window
from features.plan import compile_plan, plan_for
from features.records import Event
from features.state import EntityState
from tests.budget import examples

BUCKET = 5_000
WINDOWS = (
    Window("sliding", 5_000),
    Window("sliding", 30_000),
    Window("tumbling", 20_000),
    Window("hopping", 40_000, 15_000),
)
NUMERIC = sorted(a for a, spec in AGGREGATIONS.items() if spec.numeric_only)
FIELDS = (FieldSpec("x"), FieldSpec("i", "int", required=False), FieldSpec("s", "str", required=False))


def reference(state: EntityState, view: FeatureView, now_ms: int) -> dict[str, float]:
    """The pre-compilation read: one ``fold`` call per (bucket, feature group), no cache."""
    angle = {f.field for f in view.features if AGGREGATIONS[f.agg].needs_angle}
    distinct = {f.field for f in view.features if AGGREGATIONS[f.agg].needs_distinct}
    order = sorted(state.buckets)
    out = {}
    for feat in view.features:
        start, last = feat.window.bucket_range(view.bucket_ms, now_ms)
        acc = new_accumulator(feat.field in distinct)
        for b in order[bisect_left(order, start) : bisect_left(order, last + 1)]:
            p = state.buckets[b].get(feat.field)
            if p is not None:
                fold(acc, p, b, start, feat.field in angle)
        out[feat.name] = AGGREGATIONS[feat.agg].result(acc)
    return out


def identical(a: dict[str, float], b: dict[str, float]) -> bool:
    """Same keys in the same order, and every value the same double (NaN == NaN, 0.0 != -0.0)."""
    return list(a) == list(b) and all(
        (math.isnan(x) and math.isnan(y)) or (x == y and math.copysign(1, x) == math.copysign(1, y))
        for x, y in zip(a.values(), b.values(), strict=True)
    )


@st.composite
def views(draw: st.DrawFn) -> FeatureView:
    feats = []
    for field, aggs in (("x", NUMERIC), ("i", NUMERIC), ("s", ["count", "distinct_count"])):
        for agg in draw(st.lists(st.sampled_from(aggs), max_size=4, unique=True)):
            w = draw(st.sampled_from(WINDOWS))
            feats.append(FeatureSpec(f"{field}_{agg}_{len(feats)}", field, agg, w))
    feats = draw(st.permutations(feats))
    return FeatureView("p", 1, "t", "id", "ts", FIELDS, tuple(feats), bucket_ms=BUCKET)


@st.composite
def events(draw: st.DrawFn) -> list[Event]:
    t = draw(st.integers(0, 100_000))
    out = []
    for _ in range(draw(st.integers(1, 40))):
        t += draw(st.integers(0, 9_000))
        ts = max(0, t - draw(st.sampled_from([0, 0, 0, 700, 4_000, 20_000])))
        values: dict[str, float | int | str] = {"x": draw(st.floats(-1e6, 1e6, allow_nan=False, width=32))}
        if draw(st.booleans()):
            values["i"] = draw(st.integers(-1000, 1000))
        if draw(st.booleans()):
            values["s"] = draw(st.sampled_from("abc"))
        out.append(Event("e", ts, values))
    return out


@settings(max_examples=examples(150), deadline=None)
@given(views(), events(), st.data())
def test_compiled_reads_are_bit_identical_to_the_reference_fold(
    view: FeatureView, evs: list[Event], data: st.DataObject
) -> None:
    state = EntityState()
    for ev in evs:
        state.apply(view, ev)
        for now in (ev.ts_ms, data.draw(st.integers(0, ev.ts_ms + 30_000))):  # also other times: cache
            assert identical(state.features(view, now), reference(state, view, now))
        if data.draw(st.integers(0, 9)) == 0:
            state.expire(ev.ts_ms - data.draw(st.integers(0, 60_000)))
    now = evs[-1].ts_ms
    restored = EntityState.from_redis(state.to_redis()[0])
    assert identical(restored.features(view, now), reference(state, view, now))


def test_one_pass_merges_only_the_slots_each_group_needs() -> None:
    view = FeatureView(
        "p",
        1,
        "t",
        "id",
        "ts",
        FIELDS,
        (
            FeatureSpec("m", "x", "mean", WINDOWS[1]),
            FeatureSpec("sd", "x", "std", WINDOWS[1]),
            FeatureSpec("n", "s", "count", WINDOWS[1]),
            FeatureSpec("k", "x", "slope", WINDOWS[2]),
        ),
        bucket_ms=BUCKET,
    )
    plan = compile_plan(view)
    src = plan.source
    # one loop for both windows; x is looked up once per bucket, mean+std share one merge (group g0)
    assert src.count("for b in") == 1 and src.count("bk.get('x')") == 1
    assert "g0_m2" in src and "g0_st" not in src and "g0_mx" not in src and "g0_ew" not in src
    assert "g2_st " in src and "g2_m2" not in src and "ALPHA" not in src
    assert plan.windows == (WINDOWS[1], WINDOWS[2]) and plan.starts(12_000, 10_000) == (-15_000, 0)
    assert plan_for(view) is plan_for(view)


def test_distinct_sets_of_a_cached_prefix_are_not_mutated() -> None:
    view = FeatureView(
        "p",
        1,
        "t",
        "id",
        "ts",
        FIELDS,
        (FeatureSpec("d", "s", "distinct_count", Window("sliding", 20_000)),),
        bucket_ms=BUCKET,
    )
    state = EntityState()
    state.apply(view, Event("e", 1_000, {"x": 1.0, "s": "a"}))
    state.apply(view, Event("e", 6_000, {"x": 1.0, "s": "b"}))
    assert state.features(view, 6_000) == {"d": 2.0}  # caches the prefix {a}, folds {b} into a copy
    state.apply(view, Event("e", 7_000, {"x": 1.0, "s": "c"}))
    assert state.features(view, 7_000) == {"d": 3.0}
    state.apply(view, Event("e", 11_000, {"x": 1.0, "s": "a"}))
    assert state.features(view, 11_000) == {"d": 3.0}
    assert state.features(view, 6_000) == {"d": 3.0}  # b and c both sit in the bucket of 6 s


def test_a_cached_prefix_is_dropped_when_an_older_bucket_changes() -> None:
    view = FeatureView(
        "p", 1, "t", "id", "ts", FIELDS, (FeatureSpec("sum", "x", "sum", WINDOWS[1]),), bucket_ms=BUCKET
    )
    state = EntityState()
    for ts in (1_000, 6_000, 11_000):
        state.apply(view, Event("e", ts, {"x": 1.0}))
    assert state.features(view, 11_000) == state.features(view, 12_000) == {"sum": 3.0}  # 2nd read caches
    state.apply(view, Event("e", 2_000, {"x": 4.0}))
    assert state.features(view, 13_000) == {"sum": 7.0}
    state.apply(view, Event("e", 14_000, {"x": 0.5}))  # the current bucket: the prefix stays valid
    assert state.features(view, 14_000) == {"sum": 7.5}
    state.expire(5_000)
    assert state.features(view, 14_000) == {"sum": 2.5}
