"""Training entry point: metrics, determinism, failure modes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from models.exceptions import ModelError, TrainingError
from models.train import train_classifier


def _data(n: int = 600, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    logits = 2.0 * X[:, 0] - 1.0 * X[:, 1]
    y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(int)
    return X, y


@pytest.mark.parametrize("kind", ["logistic", "gbm"])
def test_trains_and_reports_metrics(kind: str) -> None:
    X, y = _data()
    r = train_classifier(X, y, seed=3, kind=kind)
    assert set(r.metrics) >= {"auc", "accuracy", "log_loss", "positive_rate", "n_train", "n_test"}
    assert r.metrics["n_test"] == 150 and r.metrics["n_train"] == 450
    assert r.metrics["auc"] > 0.75 and r.metrics["accuracy"] > 0.65
    assert 0 < r.metrics["log_loss"] < (0.6 if kind == "logistic" else 1.0)
    assert r.metrics["positive_rate"] == pytest.approx(y.mean())
    assert r.scores_test.shape == (150,) and r.X_test.shape == (150, 4)
    assert np.all((r.scores_test >= 0) & (r.scores_test <= 1))
    np.testing.assert_allclose(r.estimator.predict_proba(r.X_test)[:, 1], r.scores_test)  # type: ignore[attr-defined]
    clone = pickle.loads(pickle.dumps(r.estimator, protocol=5))
    np.testing.assert_allclose(clone.predict_proba(r.X_test)[:, 1], r.scores_test)


@pytest.mark.parametrize("kind", ["logistic", "gbm"])
def test_deterministic_for_a_seed(kind: str) -> None:
    X, y = _data()
    a, b = train_classifier(X, y, seed=7, kind=kind), train_classifier(X, y, seed=7, kind=kind)
    assert a.metrics == b.metrics
    np.testing.assert_array_equal(a.scores_test, b.scores_test)
    np.testing.assert_array_equal(a.X_test, b.X_test)
    c = train_classifier(X, y, seed=8, kind=kind)
    assert not np.array_equal(a.X_test, c.X_test)


def test_string_labels_use_the_larger_label_as_positive() -> None:
    X, y = _data()
    labels = np.where(y == 1, "sick", "ok")  # "sick" > "ok"
    r = train_classifier(X, labels, seed=0)
    ref = train_classifier(X, y, seed=0)
    np.testing.assert_allclose(r.scores_test, ref.scores_test)


def test_single_class_raises_model_error() -> None:
    X, _ = _data(100)
    with pytest.raises(ModelError, match="two classes"):
        train_classifier(X, np.ones(100, dtype=int))


@pytest.mark.parametrize(
    "X, y, kw",
    [
        (np.zeros(10), np.array([0, 1] * 5), {}),
        (np.zeros((10, 2)), np.array([0, 1] * 4), {}),
        (np.zeros((9, 2)), np.array([0, 1, 2] * 3), {}),
        (np.zeros((10, 2)), np.array([0] * 9 + [1]), {}),
        (np.zeros((10, 2)), np.array([0, 1] * 5), {"kind": "svm"}),
        (np.zeros((10, 2)), np.array([0, 1] * 5), {"test_size": 1.5}),
    ],
)
def test_bad_inputs(X: np.ndarray, y: np.ndarray, kw: dict) -> None:
    with pytest.raises(TrainingError):
        train_classifier(X, y, **kw)
