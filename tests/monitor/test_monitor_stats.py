"""KS, Jensen-Shannon, rolling windows and mean shift."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon

from monitor.exceptions import MonitorConfigError
from monitor.stats import MeanShift, RollingKS, RollingWindow, jensen_shannon, ks_statistic


def test_ks_same_distribution_vs_shifted() -> None:
    rng = np.random.default_rng(2)
    ref = rng.normal(size=500)
    d_same, p_same = ks_statistic(ref, rng.normal(size=500))
    d_shift, p_shift = ks_statistic(ref, rng.normal(0.5, 1.0, size=500))
    assert d_same < 0.1 and p_same > 0.01
    assert d_shift > 0.15 and p_shift < 1e-4


def test_ks_drops_nan_and_is_inconclusive_when_empty() -> None:
    assert ks_statistic(np.array([1.0, 2.0, np.nan]), np.array([1.0, 2.0])) == (0.0, 1.0)
    d, p = ks_statistic(np.array([np.nan]), np.array([1.0]))
    assert math.isnan(d) and math.isnan(p)


weights = st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=1, max_size=10)


@given(weights, st.data())
@settings(max_examples=200, deadline=None)
def test_js_matches_scipy_and_is_bounded_symmetric(p: list[float], data: st.DataObject) -> None:
    q = data.draw(st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=len(p), max_size=len(p)))
    if sum(p) < 1e-3 or sum(q) < 1e-3:
        return
    js = jensen_shannon(p, q)
    assert 0.0 <= js <= 1.0
    assert js == pytest.approx(jensen_shannon(q, p), abs=1e-12)
    oracle = jensenshannon(p, q, base=2) ** 2
    if math.isfinite(oracle):  # scipy itself returns inf on subnormal weights (e.g. p=[5e-324, 1.0], q=[0, 1])
        assert js == pytest.approx(oracle, abs=1e-9)


def test_js_extremes_and_errors() -> None:
    assert jensen_shannon([1, 0], [0, 1]) == 1.0
    assert jensen_shannon([2, 2], [1, 1]) == 0.0  # normalised first
    with pytest.raises(MonitorConfigError):
        jensen_shannon([1, 0], [1])
    with pytest.raises(MonitorConfigError):
        jensen_shannon([-1, 2], [1, 1])
    with pytest.raises(MonitorConfigError):
        jensen_shannon([0, 0], [1, 1])


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), max_size=300), st.integers(1, 50))
@settings(max_examples=200, deadline=None)
def test_rolling_window_mean_equals_mean_of_last_values(xs: list[float], size: int) -> None:
    w = RollingWindow(size)
    for x in xs:
        w.update(x)
    last = xs[-size:]
    assert w.values().tolist() == last
    if last:
        assert w.mean == pytest.approx(float(np.mean(last)), rel=1e-9, abs=1e-6)
    else:
        assert math.isnan(w.mean)


def test_rolling_window_skips_non_finite() -> None:
    w = RollingWindow(2)
    for x in [1.0, math.inf, math.nan, 3.0]:
        w.update(x)
    assert w.values().tolist() == [1.0, 3.0] and w.mean == 2.0 and w.n_invalid == 2
    with pytest.raises(MonitorConfigError):
        RollingWindow(0)


def test_mean_shift_detects_a_probability_shift() -> None:
    rng = np.random.default_rng(4)
    ms = MeanShift(reference_mean=0.20, window=500, min_samples=100)
    for i, x in enumerate(rng.beta(2, 8, size=99)):  # mean 0.2
        ms.update(float(x))
        assert math.isnan(ms.value), i
    ms.update(0.2)
    assert ms.ready and ms.value < 0.03
    for x in rng.beta(3, 7, size=500):  # mean 0.3
        ms.update(float(x))
    assert ms.value > 0.05 and ms.signed > 0


def test_mean_shift_config_errors() -> None:
    with pytest.raises(MonitorConfigError):
        MeanShift(math.nan)
    with pytest.raises(MonitorConfigError):
        MeanShift(0.1, window=10, min_samples=20)


def test_rolling_ks_is_nan_until_ready_and_caches() -> None:
    rng = np.random.default_rng(8)
    ref = rng.normal(size=300)
    ks = RollingKS(ref, window=100, min_samples=30)
    xs = rng.normal(size=150)
    for x in xs[:29]:
        ks.update(float(x))
    assert math.isnan(ks.value) and math.isnan(ks.p_value)
    for x in xs[29:]:
        ks.update(float(x))
    assert (ks.value, ks.p_value) == ks_statistic(ref, xs[-100:])
    assert ks.n == 100 and 0.0 < ks.value < 0.2
    with pytest.raises(MonitorConfigError):
        RollingKS([math.nan])
