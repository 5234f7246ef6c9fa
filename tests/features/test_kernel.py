"""The C kernel (features._fold via features.kernel) keeps and reads the same bits as the generated Python.

Two plans of one view, one compiled and one pure Python, apply the same random stream (out of order, late
buckets, ints, floats of every size, missing values) to two arrays: after every event the arrays hold the same
bytes, and folds over random row ranges, continued from random prefixes, give the same accumulators and the same
feature vectors.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from array import array
from bisect import bisect_left
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import kernel
from features import plan as plan_module
from features.definitions import FeatureSpec, FeatureView, Window
from features.plan import compile_plan
from features.records import Event
from features.state import EntityState
from tests.budget import examples
from tests.features.test_plan import BUCKET, FIELDS, NUMERIC, WINDOWS, identical, views


def test_the_extension_is_built_and_plans_use_it() -> None:
    assert kernel.available(), "features._fold was not built: pip install -e . needs a C compiler (setup.py)"
    view = FeatureView("p", 1, "t", "id", "ts", FIELDS, (FeatureSpec("m", "x", "mean", WINDOWS[0]),),
                       bucket_ms=BUCKET)
    assert compile_plan(view).compiled and not compile_plan(view, compiled=False).compiled
    assert not kernel.wanted({"DRIFTLINE_PURE_PYTHON": "1"}) and kernel.wanted({})


def test_views_with_distinct_values_keep_the_python_fold() -> None:
    view = FeatureView("p", 1, "t", "id", "ts", FIELDS, (FeatureSpec("d", "s", "distinct_count", WINDOWS[0]),),
                       bucket_ms=BUCKET)
    assert not compile_plan(view, compiled=True).compiled



@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.one_of(st.floats(), st.integers(-5, 5), st.just(-0.0)), min_size=1, max_size=8), st.booleans())
def test_a_cached_prefix_fold_is_packed_only_when_every_accumulator_is_a_float(accs: list, right_size: bool) -> None:
    """``Plan.pack``: the doubles' bytes, bit for bit (NaN, -0.0), when the tuple is all exact floats of the
    kernel's size; anything else (an int count, another size) is kept as it is."""
    view = FeatureView("p", 1, "t", "id", "ts", FIELDS, (FeatureSpec("m", "x", "mean", WINDOWS[0]),),
                       bucket_ms=BUCKET)
    plan = compile_plan(view, compiled=True)
    n = len(plan.fold(None, array("d"), array("q"), 0, 0, plan.starts(0, 0), None))
    acc = tuple((accs * n)[:n]) if right_size else tuple(accs[: n - 1])
    packed = plan.pack(acc)
    if right_size and all(type(x) is float for x in acc):
        assert packed == struct.pack(f"={n}d", *acc)
        assert [struct.pack("=d", x) for x in memoryview(packed).cast("d")] == [struct.pack("=d", x) for x in acc]
    else:
        assert packed is acc


values_of = st.fixed_dictionaries(
    {},
    optional={
        "x": st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**6),
                       st.sampled_from([0.0, -0.0, 1e300, -1e-300, 359.9, 360.0, 180.0])),
        "i": st.one_of(st.integers(-1000, 1000), st.integers(-2**70, 2**70), st.sampled_from([2**53, 2**53 + 1])),
        "s": st.sampled_from(["a", "b"]),
    },
)


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[int, dict]]:
    t = draw(st.integers(0, 10**12))
    out = []
    for _ in range(draw(st.integers(1, 40))):
        t += draw(st.integers(0, 9_000))
        ts = max(0, t - draw(st.sampled_from([0, 0, 0, 1, 700, 4_000, 20_000, 60_000])))
        out.append((ts, draw(values_of)))
    return out


def row_of(width: int, order: array, data: array, b: int) -> int:
    """The row of bucket ``b`` in ``order``/``data``, inserted when new (as EntityState._row)."""
    i = bisect_left(order, b)
    if i == len(order) or order[i] != b:
        order.insert(i, b)
        data[i * width:i * width] = array("d", bytes(8 * width))
    return i


def same_doubles(a: tuple, b: tuple) -> bool:
    pack = struct.Struct("<d").pack
    return len(a) == len(b) and all(pack(float(x)) == pack(float(y)) for x, y in zip(a, b, strict=True))


@settings(max_examples=examples(300), deadline=None)
@given(views(), streams(), st.data())
def test_the_kernel_keeps_and_reads_the_same_bits_as_the_python_plan(
    view: FeatureView, stream: list[tuple[int, dict]], data: st.DataObject
) -> None:
    fast, slow = compile_plan(view, compiled=True), compile_plan(view, compiled=False)
    if not fast.compiled or not view.features:
        return  # distinct values: the Python fold serves (test above)
    order, d_fast, d_slow = array("q"), array("d"), array("d")
    for ts, values in stream:
        b = ts - ts % BUCKET
        i = row_of(fast.width, order, d_fast, b)
        if len(d_slow) < len(d_fast):  # the bucket is new: the same zero row in the Python plan's array
            d_slow[i * slow.width:i * slow.width] = array("d", bytes(8 * slow.width))
        mapping = MappingProxyType(values) if data.draw(st.integers(0, 9)) == 0 else values  # not a dict: fallback
        fast.apply(d_fast, i * fast.width, b, ts, mapping)
        slow.apply(d_slow, i * slow.width, b, ts, values)
        assert d_fast.tobytes() == d_slow.tobytes()
        now = ts + data.draw(st.sampled_from([0, 0, 1_000, 30_000]))
        last = now - now % BUCKET
        starts = fast.starts(now, last)
        lo = bisect_left(order, min(starts))
        hi = bisect_left(order, last + 1, lo)
        mid = data.draw(st.integers(lo, hi))  # a cached prefix continued (EntityState.features)
        acc_f = fast.fold(fast.fold(None, d_fast, order, lo, mid, starts, None), d_fast, order, mid, hi, starts, None)
        acc_s = slow.fold(slow.fold(None, d_slow, order, lo, mid, starts, {}), d_slow, order, mid, hi, starts, {})
        assert same_doubles(acc_f, acc_s)
        assert identical(fast.emit(acc_f), slow.emit(acc_s))


def test_a_wrong_kernel_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison sees one ulp: a kernel built with an EWMA weight one ulp off differs after two buckets."""
    view = FeatureView("p", 1, "t", "id", "ts", FIELDS, (FeatureSpec("e", "x", "ewma", WINDOWS[1]),),
                       bucket_ms=BUCKET)
    slow, right = compile_plan(view, compiled=False), compile_plan(view, compiled=True)
    monkeypatch.setattr(plan_module, "EWMA_ALPHA", math.nextafter(plan_module.EWMA_ALPHA, 1.0))
    wrong = compile_plan(view, compiled=True)
    order, data = array("q", [0, BUCKET]), array("d", [1.0, 2.0, 1.0, 7.0])
    starts = slow.starts(BUCKET, BUCKET)
    expected = slow.fold(None, data, order, 0, 2, starts, {})
    assert same_doubles(right.fold(None, data, order, 0, 2, starts, None), expected)
    assert not same_doubles(wrong.fold(None, data, order, 0, 2, starts, None), expected)


def test_bad_arguments_raise_instead_of_reading_out_of_bounds() -> None:
    view = FeatureView("p", 1, "t", "id", "ts", FIELDS, (FeatureSpec("m", "x", "max", WINDOWS[0]),),
                       bucket_ms=BUCKET)
    plan = compile_plan(view, compiled=True)
    order, data = array("q", [0]), array("d", [0.0] * plan.width)
    starts = plan.starts(0, 0)
    with pytest.raises(IndexError):
        plan.fold(None, data, order, 0, 2, starts, None)
    with pytest.raises(IndexError):
        plan.apply(data, plan.width, 0, 1, {"x": 1.0})
    with pytest.raises(TypeError):
        plan.fold(None, [0.0] * plan.width, order, 0, 1, starts, None)
    with pytest.raises(TypeError):
        plan.fold(None, data, order, 0, 1, (), None)


def test_a_state_reads_the_same_features_with_either_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through EntityState (the prefix cache, out-of-order events, expiry): every numeric aggregation on every
    window kind, both plans, the same vectors."""
    import features.state as state_module

    feats = tuple(FeatureSpec(f"x_{agg}_{i}", "x", agg, w) for agg in NUMERIC for i, w in enumerate(WINDOWS))
    view = FeatureView("p", 1, "t", "id", "ts", FIELDS, feats, bucket_ms=BUCKET)
    vectors = []
    for compiled in (True, False):
        plan = compile_plan(view, compiled=compiled)
        assert plan.compiled == compiled
        monkeypatch.setattr(state_module, "plan_for", lambda v, plan=plan: plan)
        state, out = EntityState(), []
        for k in range(400):
            ev = Event("e", 1_000 * k - (3_000 if k % 7 == 0 else 0), {"x": math.sin(k) * 100, "i": k})
            state.apply(view, ev)
            out.append(state.features(view, ev.ts_ms))
            if k % 50 == 49:
                state.expire(ev.ts_ms - 45_000)
        vectors.append(out)
    assert all(identical(a, b) for a, b in zip(*vectors, strict=True))


accumulator_values = st.one_of(
    st.floats(), st.sampled_from([0.0, -0.0, 1.0, 2.0, -1.0, 1e-320, 5e-324, 1e308, -1e308]),
    st.integers(-3, 3),  # an int count, as the Python fold starts one: the Python emit serves it
)


@settings(max_examples=examples(500), deadline=None)
@given(views(), st.data())
def test_the_kernel_emits_the_python_result_of_any_accumulator(view: FeatureView, data: st.DataObject) -> None:
    """Not only the accumulators a fold leaves: any doubles (NaN, infinities, -0.0, zero, negative and tiny
    counts, equal first and last times) give the same vector, or the same exception, as the generated emit."""
    fast, slow = compile_plan(view, compiled=True), compile_plan(view, compiled=False)
    if not fast.compiled or not view.features:
        return
    width = len(slow.fold(None, array("d"), array("q"), 0, 0, slow.starts(0, 0), {}))
    acc = tuple(data.draw(st.lists(accumulator_values, min_size=width, max_size=width)))
    try:
        expected = slow.emit(acc)
    except (ZeroDivisionError, ValueError) as exc:
        with pytest.raises(type(exc)):
            fast.emit(acc)
        return
    assert identical(fast.emit(acc), expected)


def test_emit_checks_its_argument() -> None:
    view = FeatureView("p", 1, "t", "id", "ts", FIELDS, (FeatureSpec("m", "x", "mean", WINDOWS[0]),),
                       bucket_ms=BUCKET)
    plan = compile_plan(view, compiled=True)
    assert plan.emit((2.0, 3.0)) == {"m": 1.5}
    with pytest.raises((TypeError, ValueError)):
        plan.emit((1.0,))  # the wrong length: the Python emit's unpacking raises
    with pytest.raises(TypeError):
        plan.emit(None)


@st.composite
def sliding_views(draw: st.DrawFn) -> FeatureView:
    """Views whose windows are all sliding (the kernel's step serves them), every numeric aggregation."""
    feats = []
    for field in ("x", "i"):
        for agg in draw(st.lists(st.sampled_from(NUMERIC), min_size=1, max_size=5, unique=True)):
            size = draw(st.sampled_from([BUCKET, 2 * BUCKET, 3 * BUCKET, 6 * BUCKET]))
            feats.append(FeatureSpec(f"{field}_{agg}_{len(feats)}", field, agg, Window("sliding", size)))
    return FeatureView("p", 1, "t", "id", "ts", FIELDS, tuple(draw(st.permutations(feats))), bucket_ms=BUCKET)


@settings(max_examples=examples(300), deadline=None)
@given(sliding_views(), streams(), st.frozensets(st.integers(0, 80)))
def test_the_compiled_step_leaves_what_the_python_step_leaves(view: FeatureView, stream: list[tuple[int, dict]],
                                                              saved_before: frozenset[int]) -> None:
    """``EntityState.step`` with the kernel's step (its common case: the newest bucket, read before, whether or not
    the state was saved since) against the Python plan's step: the same vectors bit for bit, the same rows, dirty
    buckets and read counts; the compiled step must have served most events of a stream that stays in its newest
    bucket. ``saved_before``: events before which both states are marked saved (a checkpoint)."""
    fast, slow = compile_plan(view, compiled=True), compile_plan(view, compiled=False)
    assert fast.step is not None and slow.step is None
    served = []
    step = fast.step

    def counting(state: EntityState, ts: int, values: dict) -> dict | None:
        out = step(state, ts, values)
        served.append(out is not None)
        return out

    fast = dataclasses.replace(fast, step=counting)
    a, b = EntityState(), EntityState()
    for i, (ts, values) in enumerate(stream):
        if i in saved_before:
            a.mark_saved()
            b.mark_saved()
        assert identical(a.step(fast, ts, values), b.step(slow, ts, values))
        assert a.to_redis() == b.to_redis() and (a._reads, a._read_last) == (b._reads, b._read_last)
    if _three_reads_in_the_newest_bucket(stream):
        assert any(served)  # reached, not only defined


def _three_reads_in_the_newest_bucket(stream: list[tuple[int, dict]]) -> bool:
    """Three events in a row in one bucket that is the newest so far, with values the kernel reads exactly: the
    third finds its bucket read before and the prefix cached."""
    newest = -1
    buckets = []
    for ts, values in stream:
        b = ts - ts % BUCKET
        newest = max(newest, b)
        exact = all(kernel.exact_double(values[f]) is not None and abs(values[f]) <= 2**53  # the C reads these
                    for f in ("x", "i") if values.get(f) is not None)
        buckets.append(b if b == newest and exact else None)
    return any(x is not None and x == y == z for x, y, z in zip(buckets, buckets[1:], buckets[2:], strict=False))


def test_the_compiled_step_serves_the_newest_bucket_after_its_first_read() -> None:
    view = FeatureView("p", 1, "t", "id", "ts", FIELDS, (FeatureSpec("m", "x", "mean", Window("sliding", 3 * BUCKET)),),
                       bucket_ms=BUCKET)
    plan, state = compile_plan(view, compiled=True), EntityState()
    assert plan.step(state, 0, {"x": 1.0}) is None  # nothing read yet: Python
    for ts in range(0, 2 * BUCKET, BUCKET // 4):
        state.step(plan, ts, {"x": float(ts)})
    assert plan.step(state, 2 * BUCKET - 1, {"x": 7.0}) is not None  # the newest bucket, read before
    state.mark_saved()  # a checkpoint: no dirty set until the next change
    assert plan.step(state, 2 * BUCKET - 1, {"x": 8.0}) is not None and state.to_redis()[0]  # served, dirty again
    assert plan.step(state, 0, {"x": 7.0}) is None  # an older bucket: Python
    assert plan.step(state, 2 * BUCKET - 2, {"x": 2**60}) is None  # a value only Python reads exactly
