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
    buckets = state.buckets(view)
    order = sorted(buckets)
    out = {}
    for feat in view.features:
        start, last = feat.window.bucket_range(view.bucket_ms, now_ms)
        acc = new_accumulator(feat.field in distinct)
        for b in order[bisect_left(order, start) : bisect_left(order, last + 1)]:
            p = buckets[b].get(feat.field)
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
    # one loop for both windows; x's count is read once per bucket, mean+std share one merge (group g0)
    assert src.count("for j in") == 1 and src.count("nb = data[base + 0]") == 1
    # x keeps count, sum, M2, first/last time and the least-squares sums; s its count: 9 doubles per bucket
    assert dict(plan.layout)["x"] == (("n", 0), ("s", 1), ("m2", 2), ("fts", 3), ("lts", 4), ("st", 5), ("stt", 6),
                                      ("sty", 7))
    assert plan.width == 9 and "i" not in dict(plan.layout)
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


def reference_partials(view: FeatureView, evs: list[Event]) -> dict[int, dict[str, list]]:
    """The former representation: 13-slot partials built with ``add_number`` / ``add_string``."""
    from features.aggregations import add_number as add
    from features.aggregations import add_string, new_partial

    angle = {f.field for f in view.features if AGGREGATIONS[f.agg].needs_angle}
    out: dict[int, dict[str, list]] = {}
    for ev in evs:
        b = ev.ts_ms - ev.ts_ms % view.bucket_ms
        for f in view.fields:
            x = ev.values.get(f.name)
            if x is None:
                continue
            p = out.setdefault(b, {}).setdefault(f.name, new_partial(True))
            if f.type == "str":
                add_string(p, ev.ts_ms, x)  # type: ignore[arg-type]
            else:
                add(p, b, ev.ts_ms, x, f.name in angle)  # type: ignore[arg-type]
    return out


@settings(max_examples=examples(150), deadline=None)
@given(views(), events())
def test_compiled_apply_keeps_the_same_doubles_as_add_number(view: FeatureView, evs: list[Event]) -> None:
    state = EntityState()
    for ev in evs:
        state.apply(view, ev)
    plan = plan_for(view)
    ref = reference_partials(view, evs)
    got = state.buckets(view)
    assert sorted(got) == sorted({ev.ts_ms - ev.ts_ms % view.bucket_ms for ev in evs})
    for b, parts in got.items():
        for name, off in plan.layout:
            p, q = parts.get(name), ref.get(b, {}).get(name)
            if q is None:
                assert p is None
                continue
            for slot, _ in off:  # every kept slot: the same double (0.0 vs -0.0 and NaN included)
                k = ("n", "s", "m2", "mn", "mx", "fts", "fv", "lts", "lv", "st", "stt", "sty", "ang").index(slot)
                assert p is not None and identical({slot: float(p[k])}, {slot: float(q[k])}), (b, name, slot)
            if name in dict((n, i) for i, n in plan.distinct):
                assert p[13] == q[13]  # type: ignore[index]
