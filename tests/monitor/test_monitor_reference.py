"""Reference histograms and profiles."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.exceptions import MonitorError, ProfileError
from monitor.reference import MAX_SAMPLE, SCORE_KEY, Histogram, ReferenceProfile

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def test_quantile_edges_split_a_uniform_sample_evenly() -> None:
    h = Histogram.from_sample(np.arange(1000, dtype=float), bins=10)
    assert len(h.edges) == 9
    assert h.proportions == pytest.approx([0.1] * 10, abs=0.002)


def test_nan_and_inf_are_ignored() -> None:
    clean = Histogram.from_sample([1.0, 2.0, 3.0, 4.0], bins=2)
    dirty = Histogram.from_sample([1.0, math.nan, 2.0, math.inf, 3.0, -math.inf, 4.0], bins=2)
    assert clean == dirty


def test_constant_sample_collapses_to_one_bin() -> None:
    h = Histogram.from_sample([3.0] * 50, bins=10)
    assert h.edges == () and h.proportions == (1.0,)
    assert h.bin_index(-1e9) == h.bin_index(1e9) == 0


def test_empty_sample_is_an_error() -> None:
    with pytest.raises(ProfileError, match="empty"):
        Histogram.from_sample([math.nan, math.nan])
    assert issubclass(ProfileError, MonitorError)


@pytest.mark.parametrize("edges, props", [((1.0, 0.5), (0.3, 0.3, 0.4)), ((1.0,), (0.5, 0.4)),
                                          ((1.0,), (0.5,)), ((math.nan,), (0.5, 0.5))])
def test_invalid_histograms_are_rejected(edges: tuple, props: tuple) -> None:
    with pytest.raises(ProfileError):
        Histogram(edges=edges, proportions=props)


@given(st.lists(finite, min_size=1, max_size=300), st.integers(min_value=1, max_value=20))
@settings(max_examples=200, deadline=None)
def test_histogram_invariants(values: list[float], bins: int) -> None:
    h = Histogram.from_sample(values, bins=bins)
    assert len(h.proportions) == len(h.edges) + 1 <= bins
    assert math.isclose(sum(h.proportions), 1.0, abs_tol=1e-9)
    assert all(b > a for a, b in zip(h.edges, h.edges[1:], strict=False))
    # the stored proportions are exactly the sample's share per bin, and bin_index agrees with numpy
    idx = [h.bin_index(v) for v in values]
    assert idx == np.searchsorted(np.array(h.edges), np.array(values), side="right").tolist()
    counts = np.bincount(idx, minlength=h.bins) / len(values)
    assert np.allclose(counts, h.proportions)
    assert Histogram.from_dict(json.loads(json.dumps(h.to_dict()))) == h


def test_profile_from_training_round_trips_through_json() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(2000, 3))
    X[::10, 1] = np.nan
    scores = rng.uniform(size=2000)
    prof = ReferenceProfile.from_training(X, ["a", "b", "c"], scores, bins=8, seed=1)
    assert prof.n == 2000
    assert set(prof.samples) == {"a", "b", "c", SCORE_KEY}
    assert all(len(v) == MAX_SAMPLE for v in prof.samples.values())
    assert not any(math.isnan(x) for x in prof.samples["b"])
    assert prof.feature_means["b"] == pytest.approx(float(np.nanmean(X[:, 1])))
    assert prof.mean_score == pytest.approx(float(scores.mean()))
    text = json.dumps(prof.to_dict())
    assert ReferenceProfile.from_dict(json.loads(text)) == prof
    # deterministic for a seed
    assert ReferenceProfile.from_training(X, ["a", "b", "c"], scores, bins=8, seed=1) == prof


def test_small_training_set_keeps_every_value_in_the_sample() -> None:
    prof = ReferenceProfile.from_training(np.array([[1.0], [2.0], [3.0]]), ["x"], np.array([0.1, 0.2, 0.3]))
    assert sorted(prof.samples["x"]) == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("X, names, scores, match", [
    (np.zeros((3, 2)), ["a"], np.zeros(3), "columns"),
    (np.zeros((3, 1)), ["a"], np.zeros(4), "rows"),
    (np.zeros(3), ["a"], np.zeros(3), "2-D"),
    (np.zeros((3, 2)), ["a", "a"], np.zeros(3), "unique"),
    (np.full((3, 1), np.nan), ["a"], np.zeros(3), "feature 'a'"),
])
def test_profile_input_errors(X: np.ndarray, names: list[str], scores: np.ndarray, match: str) -> None:
    with pytest.raises(ProfileError, match=match):
        ReferenceProfile.from_training(X, names, scores)


def test_profile_from_dict_rejects_unknown_format_and_missing_fields() -> None:
    prof = ReferenceProfile.from_training(np.array([[1.0], [2.0]]), ["x"], np.array([0.1, 0.2]))
    d = prof.to_dict()
    with pytest.raises(ProfileError, match="format"):
        ReferenceProfile.from_dict(d | {"format": 99})
    del d["score"]
    with pytest.raises(ProfileError, match="malformed"):
        ReferenceProfile.from_dict(d)
