"""The numpy scoring path of linear pipelines: the same bits as predict_proba, or no plan at all."""

from __future__ import annotations

import dataclasses
import warnings
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from models.exceptions import ModelError
from models.fast_linear import compile_linear, compile_verified
from models.loaded import LoadedModel
from models.train import build_estimator


def _data(seed: int, rows: int = 300, cols: int = 5, nan_share: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=rng.uniform(-50, 50, cols), scale=rng.uniform(0.01, 30, cols), size=(rows, cols))
    y = (X[:, 0] - X[:, 0].mean() + rng.normal(scale=X[:, 0].std(), size=rows) > 0).astype(int)
    X[rng.random(X.shape) < nan_share] = np.nan
    return X, y


def _fit(steps: list[tuple[str, object]], X: np.ndarray, y: np.ndarray) -> Pipeline:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings of unscaled variants are beside the point
        return Pipeline(steps).fit(X, y)


@st.composite
def pipelines(draw: st.DrawFn) -> list[tuple[str, object]]:
    steps: list[tuple[str, object]] = [
        ("impute", SimpleImputer(strategy=draw(st.sampled_from(["mean", "median", "most_frequent", "constant"])),
                                 fill_value=draw(st.floats(-5, 5)), keep_empty_features=draw(st.booleans())))]
    if draw(st.booleans()):
        steps.append(("scale", StandardScaler(with_mean=draw(st.booleans()), with_std=draw(st.booleans()))))
    elif draw(st.booleans()):
        steps.append(("skip", "passthrough"))
    steps.append(("clf", LogisticRegression(C=draw(st.floats(0.01, 100)), fit_intercept=draw(st.booleans()),
                                            max_iter=200)))
    return steps


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=pipelines(), seed=st.integers(0, 2**16), rows=st.integers(1, 600))
def test_scores_are_predict_proba_bit_for_bit(steps: list[tuple[str, object]], seed: int, rows: int) -> None:
    X, y = _data(seed)
    est = _fit(steps, X, y)
    plan = compile_verified(est, X.shape[1])
    assert plan is not None
    batch, _ = _data(seed + 1, rows=rows, nan_share=0.3)
    assert np.array_equal(plan.scores(batch), est.predict_proba(batch)[:, 1])


def test_the_trained_kind_compiles_and_matches() -> None:
    X, y = _data(7, cols=14)
    est = build_estimator("logistic").fit(X, y)
    plan = compile_verified(est, 14)
    assert plan is not None and plan.fill is not None and plan.mean is not None and plan.scale is not None
    assert np.array_equal(plan.scores(X), est.predict_proba(X)[:, 1])


def test_a_bare_logistic_regression_compiles_and_refuses_nan() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 3))
    est = LogisticRegression().fit(X, (X[:, 1] > 0).astype(int))
    plan = compile_verified(est, 3)
    assert plan is not None and plan.fill is None
    assert np.array_equal(plan.scores(X), est.predict_proba(X)[:, 1])
    X[0, 0] = np.nan
    assert plan.scores(X) is None  # sklearn raises for NaN here; the caller lets it


@pytest.mark.parametrize("make", [
    lambda: HistGradientBoostingClassifier(max_iter=5),
    lambda: Pipeline([("impute", SimpleImputer()), ("scale", MinMaxScaler()), ("clf", LogisticRegression())]),
    lambda: Pipeline([("impute", SimpleImputer(add_indicator=True)), ("clf", LogisticRegression())]),
    lambda: Pipeline([("impute", SimpleImputer(missing_values=-1.0)), ("clf", LogisticRegression())]),
    lambda: Pipeline([("scale", StandardScaler()), ("impute", SimpleImputer()), ("clf", LogisticRegression())]),
], ids=["gbm", "other-scaler", "indicator", "sentinel-missing", "scale-before-impute"])
def test_other_estimators_do_not_compile(make) -> None:
    X, y = _data(5, nan_share=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make().fit(X, y)
    assert compile_linear(est, X.shape[1]) is None


def test_multiclass_and_dropped_columns_do_not_compile() -> None:
    X, y = _data(11)
    three = np.arange(len(y)) % 3
    assert compile_linear(_fit([("i", SimpleImputer()), ("c", LogisticRegression())], X, three), 5) is None
    X[:, 2] = np.nan  # an empty column the imputer drops (keep_empty_features=False)
    est = _fit([("i", SimpleImputer()), ("c", LogisticRegression())], X, y)
    assert compile_linear(est, 5) is None


def test_verification_rejects_a_plan_that_differs() -> None:
    X, y = _data(13)
    est = build_estimator("logistic").fit(X, y)
    plan = compile_linear(est, 5)
    assert plan is not None
    wrong = dataclasses.replace(plan, scale=None)  # a missed step must be caught by the probe, not shipped
    assert not np.array_equal(wrong.scores(X), est.predict_proba(X)[:, 1])
    assert compile_verified(est, 5) is not None
    with mock.patch("models.fast_linear.compile_linear", return_value=wrong):
        assert compile_verified(est, 5) is None


@pytest.mark.parametrize("bad", [
    np.full((2, 4), 1.0),  # wrong width
    np.array([[np.inf, 0, 0, 0, 0.0]]),
    np.array([[1, 2, 3, 4, 5]], dtype=np.int64),
], ids=["width", "inf", "int"])
def test_input_outside_the_fast_path_falls_back_to_sklearn(bad: np.ndarray) -> None:
    X, y = _data(17)
    est = build_estimator("logistic").fit(X, y)
    plan = compile_verified(est, 5)
    assert plan is not None and plan.scores(bad) is None


def _loaded(est: object, n: int) -> LoadedModel:
    meta = SimpleNamespace(model="m", version=1, flavor="sklearn", feature_names=tuple(f"f{i}" for i in range(n)))
    return LoadedModel(meta, est)  # type: ignore[arg-type]


def test_loaded_model_scores_through_the_plan_and_keeps_sklearn_errors() -> None:
    X, y = _data(19)
    est = build_estimator("logistic").fit(X, y)
    model = _loaded(est, 5)
    assert model.linear_plan is not None
    assert np.array_equal(model.predict_scores(X), est.predict_proba(X)[:, 1])
    with pytest.raises(ModelError, match="infinity"):
        model.predict_scores(np.array([[np.inf, 0, 0, 0, 0.0]]))


def test_loaded_model_of_another_estimator_uses_predict_proba() -> None:
    X, y = _data(23, nan_share=0.0)
    est = HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    model = _loaded(est, 5)
    assert model.linear_plan is None
    assert np.array_equal(model.predict_scores(X), est.predict_proba(X)[:, 1])
