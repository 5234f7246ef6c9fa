"""Reference profiles: what the training data looked like, for PSI, KS and mean-shift checks.

A :class:`Histogram` holds quantile bin edges taken from a training sample and the proportion of that sample
in each bin. A :class:`ReferenceProfile` bundles one histogram per feature, one for the model score, the
means, and a small sample per column for KS. Both round-trip through plain JSON-able dicts so the model
registry can store them next to the model artifact.

Example:
    >>> h = Histogram.from_sample([1, 2, 3, 4, 5, 6, 7, 8], bins=4)
    >>> h.edges
    (2.75, 4.5, 6.25)
    >>> h.proportions
    (0.25, 0.25, 0.25, 0.25)
    >>> h.bin_index(4.5), h.bin_index(-100.0), h.bin_index(100.0)
    (2, 0, 3)
    >>> Histogram.from_dict(h.to_dict()) == h
    True
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitor.exceptions import MonitorConfigError, ProfileError

SCORE_KEY = "__score__"
"""Key of the model-score column in :attr:`ReferenceProfile.samples`."""

MAX_SAMPLE = 500
"""Largest per-column sample kept in a profile for KS tests."""

_FORMAT = 1


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    return arr[np.isfinite(arr)]


@dataclass(frozen=True)
class Histogram:
    """Quantile bins of a reference sample.

    ``edges`` are the inner cut points (``bins - 1`` of them before deduplication), ``proportions`` the
    share of the reference sample in each of the ``len(edges) + 1`` bins. Bin ``i`` holds
    ``edges[i-1] <= x < edges[i]`` (the first and last bins are open-ended), the same rule as
    ``np.searchsorted(edges, x, side="right")``.
    """

    edges: tuple[float, ...]
    proportions: tuple[float, ...]

    def __post_init__(self) -> None:
        edges = tuple(float(e) for e in self.edges)
        props = tuple(float(p) for p in self.proportions)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "proportions", props)
        if len(props) != len(edges) + 1:
            raise ProfileError(f"histogram has {len(edges)} edges but {len(props)} proportions; "
                               f"expected len(edges) + 1")
        if not all(math.isfinite(e) for e in edges) or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise ProfileError(f"histogram edges must be finite and strictly increasing: {edges}")
        if any(not math.isfinite(p) or p < 0 for p in props) or not math.isclose(sum(props), 1.0, abs_tol=1e-6):
            raise ProfileError(f"histogram proportions must be >= 0 and sum to 1: {props}")

    @classmethod
    def from_sample(cls, values: Sequence[float] | np.ndarray, bins: int = 10) -> Histogram:
        """Build quantile bins from ``values`` (NaN and inf ignored); tied quantiles are merged.

        >>> Histogram.from_sample([0.0, 0.0, 0.0, 1.0], bins=4)
        Histogram(edges=(0.25,), proportions=(0.75, 0.25))
        >>> Histogram.from_sample([5.0, float("nan")], bins=10)
        Histogram(edges=(), proportions=(1.0,))
        """
        if bins < 1:
            raise MonitorConfigError(f"bins must be >= 1, got {bins}")
        arr = _finite(values)
        if arr.size == 0:
            raise ProfileError("cannot build a histogram from an empty sample (all values missing or NaN?)")
        qs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
        edges = np.unique(np.quantile(arr, qs)) if qs.size else np.empty(0)
        # A cut at the minimum would leave bin 0 empty by construction (side="right"): drop it.
        edges = edges[edges > arr.min()]
        counts = np.bincount(np.searchsorted(edges, arr, side="right"), minlength=edges.size + 1)
        return cls(edges=tuple(edges.tolist()), proportions=tuple((counts / arr.size).tolist()))

    @property
    def bins(self) -> int:
        """Number of bins (``len(edges) + 1``)."""
        return len(self.proportions)

    def bin_index(self, x: float) -> int:
        """Bin of ``x``: same result as ``np.searchsorted(edges, x, side="right")``, without numpy overhead."""
        return bisect_right(self.edges, x)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return {"edges": list(self.edges), "proportions": list(self.proportions)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Histogram:
        """Inverse of :meth:`to_dict`; raises :class:`ProfileError` on a malformed dict."""
        try:
            return cls(edges=tuple(d["edges"]), proportions=tuple(d["proportions"]))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(f"malformed histogram dict: {exc!r}") from exc


@dataclass(frozen=True)
class ReferenceProfile:
    """Training-time view of the inputs and the scores, stored in the model registry.

    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(1000, 2))
    >>> prof = ReferenceProfile.from_training(X, ["a", "b"], scores=rng.uniform(size=1000), bins=5)
    >>> prof.n, sorted(prof.features), prof.features["a"].bins, len(prof.samples["__score__"])
    (1000, ['a', 'b'], 5, 500)
    >>> ReferenceProfile.from_dict(prof.to_dict()) == prof
    True
    """

    features: dict[str, Histogram]
    score: Histogram
    mean_score: float
    n: int
    feature_means: dict[str, float]
    samples: dict[str, tuple[float, ...]]

    @classmethod
    def from_training(cls, X: np.ndarray, feature_names: Sequence[str], scores: np.ndarray, bins: int = 10,
                      seed: int = 0) -> ReferenceProfile:
        """Profile a training (or validation) matrix ``X`` (rows x features) and the model's scores on it.

        NaN cells are ignored per column; each sample is drawn without replacement with ``seed``.
        """
        X = np.asarray(X, dtype=float)
        scores = np.asarray(scores, dtype=float).ravel()
        names = list(feature_names)
        if X.ndim != 2:
            raise ProfileError(f"X must be 2-D (rows x features), got shape {X.shape}")
        if X.shape[1] != len(names):
            raise ProfileError(f"X has {X.shape[1]} columns but {len(names)} feature names were given")
        if len(set(names)) != len(names) or SCORE_KEY in names:
            raise ProfileError(f"feature names must be unique and not {SCORE_KEY!r}: {names}")
        if scores.shape[0] != X.shape[0]:
            raise ProfileError(f"X has {X.shape[0]} rows but there are {scores.shape[0]} scores")
        rng = np.random.default_rng(seed)

        def sample(col: np.ndarray) -> tuple[float, ...]:
            fin = _finite(col)
            if fin.size > MAX_SAMPLE:
                fin = rng.choice(fin, size=MAX_SAMPLE, replace=False)
            return tuple(fin.tolist())

        features: dict[str, Histogram] = {}
        means: dict[str, float] = {}
        samples: dict[str, tuple[float, ...]] = {}
        for j, name in enumerate(names):
            col = X[:, j]
            try:
                features[name] = Histogram.from_sample(col, bins)
            except ProfileError as exc:
                raise ProfileError(f"feature {name!r}: {exc}") from exc
            means[name] = float(np.mean(_finite(col)))
            samples[name] = sample(col)
        try:
            score_hist = Histogram.from_sample(scores, bins)
        except ProfileError as exc:
            raise ProfileError(f"scores: {exc}") from exc
        samples[SCORE_KEY] = sample(scores)
        return cls(features=features, score=score_hist, mean_score=float(np.mean(_finite(scores))),
                   n=int(X.shape[0]), feature_means=means, samples=samples)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (plain floats, lists and dicts) with a ``format`` version."""
        return {
            "format": _FORMAT,
            "features": {k: h.to_dict() for k, h in self.features.items()},
            "score": self.score.to_dict(),
            "mean_score": float(self.mean_score),
            "n": int(self.n),
            "feature_means": {k: float(v) for k, v in self.feature_means.items()},
            "samples": {k: [float(x) for x in v] for k, v in self.samples.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ReferenceProfile:
        """Inverse of :meth:`to_dict`; raises :class:`ProfileError` on an unknown format or missing field."""
        fmt = d.get("format", _FORMAT) if isinstance(d, dict) else None
        if fmt != _FORMAT:
            raise ProfileError(f"unsupported reference profile format {fmt!r} (this driftline reads {_FORMAT})")
        try:
            return cls(
                features={str(k): Histogram.from_dict(h) for k, h in d["features"].items()},
                score=Histogram.from_dict(d["score"]),
                mean_score=float(d["mean_score"]),
                n=int(d["n"]),
                feature_means={str(k): float(v) for k, v in d["feature_means"].items()},
                samples={str(k): tuple(float(x) for x in v) for k, v in d["samples"].items()},
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(f"malformed reference profile: {exc!r}") from exc
