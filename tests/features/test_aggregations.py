"""Every aggregation against numpy on random data, through buckets, folds and (de)serialisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from features.aggregations import (
    AGGREGATIONS,
    DISTINCT_CAP,
    EWMA_ALPHA,
    add_number,
    angle_diff,
    fold,
    new_accumulator,
    new_partial,
)
from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window
from features.records import Event
from features.state import EntityState
from tests.budget import examples

BUCKET = 10_000
NUMERIC_AGGS = [
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "std",
    "first",
    "last",
    "delta",
    "slope",
    "ewma",
    "distinct_count",
    "integral",
]
WINDOW = Window("sliding", 3_600_000)
VIEW = FeatureView(
    "agg",
    1,
    "t",
    "id",
    "ts",
    (FieldSpec("x"), FieldSpec("h")),
    tuple(FeatureSpec(a, "x", a, WINDOW) for a in NUMERIC_AGGS)
    + (FeatureSpec("turn", "h", "angle_change_rate", WINDOW),),
    bucket_ms=BUCKET,
)


def _expected(ts: np.ndarray, x: np.ndarray, h: np.ndarray) -> dict[str, float]:
    order = np.argsort(ts, kind="stable")
    ts_s, x_s, h_s = ts[order], x[order], h[order]
    t = (ts_s - ts_s[0]) / 1000.0
    buckets = ts_s - ts_s % BUCKET
    ewma = math.nan
    for b in np.unique(buckets):
        m = x_s[buckets == b].mean()
        ewma = m if math.isnan(ewma) else EWMA_ALPHA * m + (1 - EWMA_ALPHA) * ewma
    span = (ts_s[-1] - ts_s[0]) / 1000.0
    turns = sum(angle_diff(a, b) for a, b in zip(h_s[:-1], h_s[1:], strict=True))
    return {
        "count": float(len(x)),
        "sum": float(x.sum()),
        "mean": float(x.mean()),
        "min": float(x.min()),
        "max": float(x.max()),
        "std": float(np.std(x)),
        "first": float(x_s[0]),
        "last": float(x_s[-1]),
        "delta": float(x_s[-1] - x_s[0]),
        "slope": float(np.polyfit(t, x_s, 1)[0]) if len(x) > 1 and span > 0 else math.nan,
        "ewma": ewma,
        "distinct_count": float(len(set(x.tolist()))),
        "integral": float(x.mean() * span),
        "turn": turns / span if len(x) > 1 and span > 0 else math.nan,
    }


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-7)


@pytest.mark.parametrize("seed", range(25))
def test_aggregations_match_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    start = 1_700_000_000_000 + int(rng.integers(0, BUCKET))
    ts = start + rng.choice(
        3_000_000, size=n, replace=False
    )  # distinct timestamps (first/last are unambiguous)
    x = np.round(rng.normal(80, 15, size=n), int(rng.integers(0, 3)))  # repeats for distinct_count
    h = rng.uniform(0, 360, size=n)
    state = EntityState()
    in_order = np.argsort(ts)  # angle_change_rate is exact for in-order streams; the rest for any order
    apply_order = in_order if seed % 2 else rng.permutation(n)
    for i in apply_order:
        x_i = float(x[i])
        h_i = float(h[i]) if seed % 2 else 0.0
        state.apply(VIEW, Event("e", int(ts[i]), {"x": x_i, "h": h_i}))
    state = EntityState.from_redis(state.to_redis()[0])  # exercise the encoding too
    got = state.features(VIEW, int(ts.max()))
    want = _expected(ts, x, h if seed % 2 else np.zeros(n))
    for name in VIEW.feature_names:
        assert _close(got[name], want[name]), (name, got[name], want[name])


def test_empty_window_values() -> None:
    got = EntityState().features(VIEW, 1_700_000_000_000)
    zero = {"count", "sum", "distinct_count", "integral"}
    for name, value in got.items():
        assert (value == 0.0) if name in zero else math.isnan(value), name


def test_single_value_edge_cases() -> None:
    st_ = EntityState()
    st_.apply(VIEW, Event("e", 1_000, {"x": 7.0, "h": 90.0}))
    got = st_.features(VIEW, 1_000)
    assert got["std"] == 0.0 and got["delta"] == 0.0 and got["integral"] == 0.0 and got["ewma"] == 7.0
    assert math.isnan(got["slope"]) and math.isnan(got["turn"])
    st_.apply(VIEW, Event("e", 1_000, {"x": 9.0, "h": 90.0}))  # same timestamp: zero time variance
    assert math.isnan(st_.features(VIEW, 1_000)["slope"])


def test_distinct_cap_saturates() -> None:
    p = new_partial(distinct=True)
    for i in range(DISTINCT_CAP + 50):
        add_number(p, 0, i, float(i), False)
    acc = new_accumulator(True)
    fold(acc, p, 0, 0, False)
    assert AGGREGATIONS["distinct_count"].result(acc) == DISTINCT_CAP


def _slope_error_bound(points: list[tuple[int, float]], slope: float) -> float:
    """How far a slope from the one-pass sums (``Σt``, ``Σt²``, ``Σt·y`` from origin 0) may be from exact.

    ``Σt² - (Σt)²/n`` cancels when the times are close together far from the origin: the rounding of the
    sums (a few ulps of their magnitudes) is divided by ``Sxx = Σ(t - t̄)²``. Two points 1 ms apart at 65.5 s
    give a condition number ``Σt²/Sxx`` of ~2e10: a slope of 1000 is exact to ~4e-3, not to ``rel_tol=1e-6``.
    For spread-out times the bound is ~1e-13 relative, so the comparison stays tight.
    """
    ts = [t / 1000.0 for t, _ in points]
    xs = [x for _, x in points]
    n = len(points)
    t_mean = math.fsum(ts) / n
    sxx = math.fsum((t - t_mean) ** 2 for t in ts)
    if sxx == 0.0:
        return 0.0
    stt = math.fsum(t * t for t in ts)
    sty = math.fsum(abs(t * x) for t, x in zip(ts, xs, strict=True))
    scale = max(abs(x) for x in xs)
    slack = 16 * 2.0**-52 * n  # a few roundings per value in the sums and their shifts to the window start
    return slack * (sty + math.fsum(ts) * scale + abs(slope) * stt) / sxx


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 99_999), st.floats(-1e3, 1e3, allow_nan=False)), min_size=1, max_size=60
    ),
    st.integers(1, 5),
)
@example(points=[(65535, 0.0), (65536, 1.0)], split=1)  # found by hypothesis: slope 1000 vs 1000.0033
def test_bucketing_does_not_change_results(points: list[tuple[int, float]], split: int) -> None:
    """Folding many small buckets equals one big bucket (up to rounding) for the mergeable aggregations.

    The slope is compared within the conditioning of its least-squares sums (``_slope_error_bound``, the same
    bound as ``tolerance`` in test_window_reference.py); the others within 1e-6.
    """
    big = new_partial()
    small: dict[int, list] = {}
    width = 100_000 // (split * 4)
    for ts, x in sorted(points):
        add_number(big, 0, ts, x, False)
        b = ts - ts % width
        add_number(small.setdefault(b, new_partial()), b, ts, x, False)
    one = new_accumulator(False)
    fold(one, big, 0, 0, False)
    many = new_accumulator(False)
    for b in sorted(small):
        fold(many, small[b], b, 0, False)
    for name in ("count", "sum", "mean", "min", "max", "std", "first", "last", "delta", "slope", "integral"):
        a, b = AGGREGATIONS[name].result(one), AGGREGATIONS[name].result(many)
        if math.isnan(a) or math.isnan(b):
            assert math.isnan(a) and math.isnan(b), (name, a, b)
        elif name == "slope":  # a and b are each within the bound of the exact slope; 1e-12 floors slopes ~0
            bound = 2 * _slope_error_bound(points, max(abs(a), abs(b))) + 1e-12
            assert abs(a - b) <= bound, (name, a, b, bound)
        else:
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6), (name, a, b)
