"""A numpy-only scoring path for the linear pipelines driftline trains, bit-identical to ``predict_proba``.

sklearn re-validates its input and re-reads every step's tags on each ``predict_proba`` call (and, without
pandas installed, retries ``from pandas import NA`` several times per call): about a millisecond per call
whatever the batch size, which is most of a small batch's model time in the streaming worker. For the shape
``models.train`` builds, ``Pipeline([SimpleImputer, StandardScaler, LogisticRegression])`` with either
transformer optional and a binary target, :func:`compile_linear` reads the fitted attributes once and scores
with the same numpy operations sklearn runs (``where`` for the imputer, ``-= mean_`` and ``/= scale_``,
``X @ coef_.T + intercept_``, ``scipy.special.expit``), so the scores are the same bits.

Anything else (other steps, more classes, an imputer with indicators or dropped columns) compiles to
``None`` and the caller keeps ``predict_proba``. :func:`compile_verified` also checks the compiled scores
against ``predict_proba`` on a probe, bit for bit, before trusting them. Input the fast path does not
handle (wrong width, infinities, NaN without an imputer) makes :meth:`LinearPlan.scores` return ``None``,
so sklearn raises exactly the error it always did.

Example:
    >>> from sklearn.impute import SimpleImputer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import Pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
    >>> est = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler()),
    ...                 ("clf", LogisticRegression())]).fit(X, y)
    >>> plan = compile_verified(est, 3)
    >>> probe = np.array([[0.5, np.nan, -1.0], [2.0, 0.1, 0.3]])
    >>> np.array_equal(plan.scores(probe), est.predict_proba(probe)[:, 1])
    True
    >>> plan.scores(np.array([[np.inf, 0.0, 0.0]])) is None  # sklearn's own error, from the caller
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

__all__ = ["LinearPlan", "compile_linear", "compile_verified"]


@dataclass(frozen=True)
class LinearPlan:
    """Fitted constants of an impute → scale → logistic pipeline; ``None`` marks an absent step."""

    n_features: int
    fill: np.ndarray | None  # SimpleImputer.statistics_ (NaN → fill value)
    mean: np.ndarray | None  # StandardScaler.mean_ (with_mean)
    scale: np.ndarray | None  # StandardScaler.scale_ (with_std)
    coef: np.ndarray  # LogisticRegression.coef_.T, shape (n_features, 1)
    intercept: Any  # LogisticRegression.intercept_

    def scores(self, X: np.ndarray) -> np.ndarray | None:
        """Probability of the positive class per row, or ``None`` for input sklearn would refuse."""
        if X.ndim != 2 or X.shape[1] != self.n_features or X.dtype != np.float64:
            return None
        if self.fill is None:
            if not np.isfinite(X).all():
                return None
            X = X.copy()
        elif np.isinf(X).any():
            return None
        else:
            X = np.where(np.isnan(X), self.fill, X)
        if self.mean is not None:
            X -= self.mean
        if self.scale is not None:
            X /= self.scale
        decision = X @ self.coef + self.intercept
        return expit(decision.reshape(-1))


def compile_linear(estimator: Any, n_features: int) -> LinearPlan | None:
    """The :class:`LinearPlan` of ``estimator``, or ``None`` when it is not a supported linear pipeline."""
    steps = _steps(estimator)
    if not steps:
        return None
    *transformers, clf = steps
    fill = mean = scale = None
    kinds = [type(t).__name__ for t in transformers]
    if kinds not in ([], ["SimpleImputer"], ["StandardScaler"], ["SimpleImputer", "StandardScaler"]):
        return None
    for t in transformers:
        if type(t).__name__ == "SimpleImputer":
            fill = _imputer_fill(t, n_features)
            if fill is None:
                return None
        else:
            mean = _vector(getattr(t, "mean_", None), n_features) if t.with_mean else None
            scale = _vector(getattr(t, "scale_", None), n_features) if t.with_std else None
            if (t.with_mean and mean is None) or (t.with_std and scale is None):
                return None
    if type(clf).__name__ != "LogisticRegression" or len(getattr(clf, "classes_", ())) != 2:
        return None
    coef = np.asarray(clf.coef_, dtype=np.float64)
    if coef.shape != (1, n_features):
        return None
    return LinearPlan(n_features, fill, mean, scale, coef.T, clf.intercept_)


def compile_verified(estimator: Any, n_features: int, rows: int = 64, seed: int = 0) -> LinearPlan | None:
    """:func:`compile_linear`, kept only when its scores equal ``predict_proba``'s bit for bit on a probe of
    ``rows`` random rows (with NaNs when the pipeline imputes)."""
    plan = compile_linear(estimator, n_features)
    if plan is None:
        return None
    rng = np.random.default_rng(seed)
    center = plan.mean if plan.mean is not None else 0.0
    spread = plan.scale if plan.scale is not None else 1.0
    probe = center + spread * rng.normal(scale=2.0, size=(rows, n_features))
    if plan.fill is not None:
        probe[rng.random(probe.shape) < 0.2] = np.nan
    try:
        expected = np.asarray(estimator.predict_proba(probe))[:, 1]
    except Exception:  # noqa: BLE001 - an estimator that cannot score the probe is left to its own path
        return None
    got = plan.scores(probe)
    return plan if got is not None and np.array_equal(got, expected) else None


def _steps(estimator: Any) -> list[Any]:
    """The estimator's steps without ``passthrough``/``None`` ones (a bare estimator is one step)."""
    if type(estimator).__name__ != "Pipeline":
        return [estimator] if estimator is not None else []
    return [step for _, step in estimator.steps if step is not None and step != "passthrough"]


def _imputer_fill(imputer: Any, n_features: int) -> np.ndarray | None:
    """``statistics_`` when the imputer replaces NaN only, keeps every column and adds no indicator."""
    missing = imputer.missing_values
    if not (isinstance(missing, float) and math.isnan(missing)) or imputer.add_indicator:
        return None
    fill = _vector(getattr(imputer, "statistics_", None), n_features)
    return fill if fill is not None and np.isfinite(fill).all() else None


def _vector(values: Any, n_features: int) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64)
    return arr if arr.shape == (n_features,) else None
