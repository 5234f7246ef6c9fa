"""PSI, one-shot and rolling."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.exceptions import MonitorConfigError
from monitor.psi import EPSILON, RollingPSI, psi
from monitor.reference import Histogram


def test_known_value() -> None:
    assert round(psi([0.30, 0.50, 0.20], [0.45, 0.40, 0.15]), 5) == 0.09752


def test_identical_distributions_give_zero_and_empty_bins_are_finite() -> None:
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    value = psi([0.5, 0.5, 0.0], [0.5, 0.0, 0.5])
    assert math.isfinite(value) and value > 5
    # the floor is applied to both sides: a smaller eps punishes an empty bin harder
    assert psi([0.5, 0.5, 0.0], [0.5, 0.0, 0.5], eps=1e-6) > value


def test_length_mismatch_and_bad_eps() -> None:
    with pytest.raises(MonitorConfigError):
        psi([0.5, 0.5], [1.0])
    with pytest.raises(MonitorConfigError):
        psi([1.0], [1.0], eps=0)


proportions = st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=12).filter(
    lambda xs: sum(xs) > 0.01).map(lambda xs: [x / sum(xs) for x in xs])


@given(proportions, st.data())
@settings(max_examples=200, deadline=None)
def test_psi_is_non_negative_symmetric_and_zero_on_self(e: list[float], data: st.DataObject) -> None:
    a = data.draw(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=len(e), max_size=len(e)).filter(
        lambda xs: sum(xs) > 0.01).map(lambda xs: [x / sum(xs) for x in xs]))
    assert psi(e, a) >= 0
    assert psi(e, a) == pytest.approx(psi(a, e))  # PSI is the symmetrised KL divergence
    assert psi(e, e) == 0.0


REF = Histogram(edges=(-1.0, 0.0, 1.0), proportions=(0.16, 0.34, 0.34, 0.16))


def test_rolling_value_is_nan_until_min_samples_then_matches_batch_psi() -> None:
    r = RollingPSI(REF, window=50, min_samples=20)
    rng = np.random.default_rng(0)
    xs = rng.normal(0.5, 1.0, size=200)
    for i, x in enumerate(xs):
        r.update(float(x))
        if i < 19:
            assert math.isnan(r.value) and not r.ready
    assert r.ready and r.n == 50
    window = xs[-50:]
    counts = np.bincount(np.searchsorted(REF.edges, window, side="right"), minlength=4) / 50
    assert r.actual_proportions() == pytest.approx(counts.tolist())
    assert r.value == pytest.approx(psi(REF.proportions, counts.tolist()))


def test_invalid_values_are_counted_and_skipped() -> None:
    r = RollingPSI(REF, window=10, min_samples=1)
    for x in [math.nan, math.inf, -math.inf, 0.5]:
        r.update(x)
    r.update(None)  # type: ignore[arg-type]
    assert r.n == 1 and r.n_invalid == 4
    assert r.actual_proportions() == [0.0, 0.0, 1.0, 0.0]


def test_shifted_stream_scores_high_and_stationary_low() -> None:
    rng = np.random.default_rng(11)
    ref = Histogram.from_sample(rng.normal(size=5000), bins=10)
    same, shifted = RollingPSI(ref), RollingPSI(ref)
    for x in rng.normal(size=500):
        same.update(float(x))
    for x in rng.normal(1.0, 1.0, size=500):
        shifted.update(float(x))
    assert same.value < 0.1 < 0.25 < shifted.value


@given(st.lists(st.floats(min_value=-3, max_value=3), min_size=1, max_size=400),
       st.integers(min_value=1, max_value=60))
@settings(max_examples=150, deadline=None)
def test_incremental_counts_equal_recount_of_last_window(xs: list[float], window: int) -> None:
    r = RollingPSI(REF, window=window, min_samples=1)
    for x in xs:
        r.update(x)
    last = np.array(xs[-window:])
    counts = np.bincount(np.searchsorted(REF.edges, last, side="right"), minlength=4) / len(last)
    assert r.n == len(last)
    assert r.actual_proportions() == pytest.approx(counts.tolist())
    assert r.value == pytest.approx(psi(REF.proportions, counts.tolist(), EPSILON))


def test_bad_parameters() -> None:
    with pytest.raises(MonitorConfigError):
        RollingPSI(REF, window=10, min_samples=11)
    with pytest.raises(MonitorConfigError):
        RollingPSI(REF, window=0)
