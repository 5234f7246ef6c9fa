"""Two-proportion z-test against a hand-computed case and scipy."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm

from models.abtest import two_proportion_ztest
from models.exceptions import ABTestError


def test_hand_computed_case() -> None:
    # champion 200/1000 = 0.20, challenger 250/1000 = 0.25
    # pooled p = 450/2000 = 0.225; se = sqrt(0.225 * 0.775 * (2/1000)) = 0.0186749...
    # z = 0.05 / 0.0186749 = 2.67739...
    r = two_proportion_ztest(200, 1000, 250, 1000)
    assert r.lift == pytest.approx(0.05)
    assert r.z == pytest.approx(2.677398, abs=1e-5)
    assert r.p_value == pytest.approx(2 * norm.sf(2.677398), rel=1e-5)
    assert r.p_value == pytest.approx(0.007419, abs=1e-5)
    assert r.verdict == "better"


def test_worse_and_symmetric() -> None:
    better = two_proportion_ztest(200, 1000, 250, 1000)
    worse = two_proportion_ztest(250, 1000, 200, 1000)
    assert worse.verdict == "worse"
    assert worse.z == pytest.approx(-better.z)
    assert worse.p_value == pytest.approx(better.p_value)


def test_not_significant_is_undecided() -> None:
    r = two_proportion_ztest(100, 1000, 105, 1000)
    assert r.p_value > 0.05 and r.verdict == "undecided"


def test_min_n_gate() -> None:
    strong = two_proportion_ztest(0, 29, 29, 29)
    assert strong.p_value < 1e-6 and strong.verdict == "undecided"
    assert two_proportion_ztest(0, 30, 30, 30).verdict == "better"
    assert two_proportion_ztest(0, 29, 29, 29, min_n=10).verdict == "better"


def test_empty_arms() -> None:
    r = two_proportion_ztest(0, 0, 5, 10)
    assert (r.z, r.p_value, r.verdict) == (0.0, 1.0, "undecided")


@pytest.mark.parametrize("args", [(-1, 10, 1, 10), (11, 10, 1, 10), (1, 10, 1, -2), (1, 10, 3, 2)])
def test_impossible_counts(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(ABTestError):
        two_proportion_ztest(*args)
    with pytest.raises(ValueError):
        two_proportion_ztest(*args)


def test_bad_alpha() -> None:
    with pytest.raises(ABTestError):
        two_proportion_ztest(1, 10, 2, 10, alpha=1.5)


@given(
    n_a=st.integers(1, 10_000), n_b=st.integers(1, 10_000), fa=st.floats(0, 1), fb=st.floats(0, 1)
)
def test_matches_scipy(n_a: int, n_b: int, fa: float, fb: float) -> None:
    s_a, s_b = round(fa * n_a), round(fb * n_b)
    r = two_proportion_ztest(s_a, n_a, s_b, n_b)
    assert 0.0 <= r.p_value <= 1.0
    assert r.lift == pytest.approx(s_b / n_b - s_a / n_a)
    if r.z != 0.0:
        assert r.p_value == pytest.approx(2 * norm.sf(abs(r.z)), rel=1e-6, abs=1e-300)
        assert math.copysign(1, r.z) == math.copysign(1, r.lift)
    if r.verdict != "undecided":
        assert r.p_value < 0.05 and min(n_a, n_b) >= 30
        assert (r.verdict == "better") == (r.lift > 0)
