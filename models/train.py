"""Training entry point for binary classifiers, deterministic for a seed.

``kind="logistic"`` is ``Pipeline(StandardScaler, LogisticRegression)``; ``kind="gbm"`` is a
``HistGradientBoostingClassifier``. The split is stratified, and the held-out scores come back with the
estimator so the caller can build the reference profile (for PSI) from the same data the metrics describe.

Example:
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 3))
    >>> y = (X[:, 0] + 0.5 * rng.normal(size=400) > 0).astype(int)
    >>> result = train_classifier(X, y, seed=0)
    >>> result.metrics["auc"] > 0.9, result.metrics["n_test"], result.scores_test.shape
    (True, 100.0, (100,))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from models.exceptions import TrainingError

__all__ = ["KINDS", "TrainResult", "build_estimator", "time_split", "train_classifier"]

KINDS: tuple[str, ...] = ("logistic", "gbm")


@dataclass(frozen=True)
class TrainResult:
    """A fitted estimator, its held-out metrics, and the held-out scores and rows."""

    estimator: object
    metrics: dict[str, float]
    scores_test: np.ndarray
    X_test: np.ndarray


def build_estimator(kind: str, seed: int = 0) -> object:
    """An unfitted estimator of ``kind`` (``"logistic"`` or ``"gbm"``).

    >>> type(build_estimator("gbm")).__name__
    'HistGradientBoostingClassifier'
    """
    if kind == "logistic":
        return Pipeline(
            [
                # windowed features are NaN when a window holds too few points (std, slope): impute the
                # training median, the same transform at serving time since it is part of the pickled pipeline
                ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                ("scale", StandardScaler()),
                ("clf", LogisticRegression(max_iter=1000, random_state=seed)),
            ]
        )
    if kind == "gbm":
        return HistGradientBoostingClassifier(random_state=seed)
    raise TrainingError(f"unknown model kind {kind!r}; choose one of {list(KINDS)}")


def time_split(ts: np.ndarray, test_size: float, split_at_ms: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, validation)``: validation is the latest ``test_size`` share of rows by time (or every
    row at or after ``split_at_ms``), so a model is validated on a period after the one it learned from.

    >>> [a.tolist() for a in time_split(np.array([30, 10, 40, 20]), 0.25)]
    [[1, 3, 0], [2]]
    >>> [a.tolist() for a in time_split(np.array([30, 10, 40, 20]), 0.25, split_at_ms=25)]
    [[1, 3], [0, 2]]
    """
    order = np.argsort(ts, kind="stable")
    if split_at_ms is not None:
        cut = int(np.searchsorted(ts[order], split_at_ms, side="left"))
    else:
        cut = len(ts) - max(1, round(len(ts) * test_size))
    return order[:cut], order[cut:]


def train_classifier(
    X: np.ndarray, y: np.ndarray, *, seed: int = 0, kind: str = "logistic", test_size: float = 0.25,
    ts: np.ndarray | None = None, split_at_ms: int | None = None,
) -> TrainResult:
    """Fit a binary classifier on a stratified split (or, given ``ts``, a time split: see :func:`time_split`)
    and score it on the held-out part.

    ``metrics`` holds ``auc``, ``accuracy`` (threshold 0.5), ``log_loss``, ``positive_rate`` (share of the
    positive class in ``y``), ``predicted_positive_rate`` (share of held-out scores >= 0.5), ``n_train``
    and ``n_test``. The positive class is the larger of the two labels; ``scores_test`` is its probability.

    Raises:
        TrainingError (a ModelError): ``y`` has one class (or more than two), too few rows, or bad shapes.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2:
        raise TrainingError(f"X must be 2-D (rows x features), got shape {X.shape}")
    if y.ndim != 1 or len(y) != len(X):
        raise TrainingError(f"y must be 1-D with one label per row of X: X {X.shape}, y {y.shape}")
    if not 0.0 < test_size < 1.0:
        raise TrainingError(f"test_size must be within (0, 1), got {test_size!r}")
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) != 2:
        raise TrainingError(
            f"need exactly two classes in y to train a binary classifier, found {len(classes)}: "
            f"{classes.tolist()[:5]}; check the label join or widen the training window"
        )
    if counts.min() < 2:
        raise TrainingError(f"each class needs at least 2 rows for a stratified split, got {counts.tolist()}")
    estimator = build_estimator(kind, seed)
    split_metrics: dict[str, float] = {}
    if ts is not None:
        ts = np.asarray(ts)
        if ts.shape != y.shape:
            raise TrainingError(f"ts must give one time per row: ts {ts.shape}, y {y.shape}")
        train_idx, test_idx = time_split(ts, test_size, split_at_ms)
        for part, idx in (("training", train_idx), ("validation", test_idx)):
            if len(np.unique(y[idx])) != 2:
                raise TrainingError(
                    f"the {part} period has {len(idx)} rows and {len(np.unique(y[idx]))} class(es): a time split "
                    "needs both classes on each side; move the split (--validation / --split-at) or add history")
        X_train, X_test, y_train, y_test = X[train_idx], X[test_idx], y[train_idx], y[test_idx]
        split_metrics = {"split_ts_ms": float(ts[test_idx].min()), "train_until_ts_ms": float(ts[train_idx].max())}
    try:
        if ts is None:
            X_train, X_test, y_train, y_test = train_test_split(
                X, y, test_size=test_size, random_state=seed, stratify=y
            )
        estimator.fit(X_train, y_train)  # type: ignore[attr-defined]
        proba = estimator.predict_proba(X_test)  # type: ignore[attr-defined]
    except ValueError as exc:
        raise TrainingError(f"training a {kind!r} model failed: {exc}") from exc
    positive = classes[1]
    pos_col = int(np.flatnonzero(estimator.classes_ == positive)[0])  # type: ignore[attr-defined]
    scores = np.ascontiguousarray(proba[:, pos_col], dtype=np.float64)
    y_bin = (y_test == positive).astype(np.int64)
    metrics = {
        "auc": float(roc_auc_score(y_bin, scores)),
        "accuracy": float(accuracy_score(y_bin, (scores >= 0.5).astype(np.int64))),
        "log_loss": float(log_loss(y_bin, scores, labels=[0, 1])),
        "positive_rate": float(np.mean(y == positive)),
        "predicted_positive_rate": float(np.mean(scores >= 0.5)),
        "n_train": float(len(X_train)),
        "n_test": float(len(X_test)),
        **split_metrics,
    }
    return TrainResult(estimator=estimator, metrics=metrics, scores_test=scores, X_test=X_test)
