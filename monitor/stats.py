"""Distribution-comparison statistics: two-sample KS, Jensen-Shannon, and rolling mean shift.

Example:
    >>> ms = MeanShift(reference_mean=0.20, window=4, min_samples=2)
    >>> _ = ms.update(0.25)
    >>> ms.value
    nan
    >>> round(ms.update(0.35).value, 6)
    0.1
    >>> round(jensen_shannon([0.5, 0.5], [0.5, 0.5]), 6), jensen_shannon([1, 0], [0, 1])
    (0.0, 1.0)
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np
from scipy import stats as _sps

from monitor.exceptions import MonitorConfigError


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    return arr[np.isfinite(arr)]


def ks_statistic(reference_sample: np.ndarray, window_sample: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov ``(D, p-value)``; non-finite values are dropped.

    Returns ``(nan, nan)`` when either side is empty (inconclusive).

    >>> rng = np.random.default_rng(1)
    >>> d, p = ks_statistic(rng.normal(size=500), rng.normal(2.0, 1.0, size=500))
    >>> d > 0.5, p < 1e-6
    (True, True)
    >>> ks_statistic(np.array([1.0, 2.0]), np.array([]))
    (nan, nan)
    """
    ref = _finite(reference_sample)
    win = _finite(window_sample)
    if ref.size == 0 or win.size == 0:
        return math.nan, math.nan
    res = _sps.ks_2samp(ref, win)
    return float(res.statistic), float(res.pvalue)


def jensen_shannon(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon divergence in bits (base 2), in ``[0, 1]``; inputs are normalised to sum to 1.

    Symmetric, finite even with empty bins (unlike PSI/KL). Its square root is a metric.

    >>> round(jensen_shannon([0.3, 0.5, 0.2], [0.45, 0.4, 0.15]), 5)
    0.01749
    """
    pa = np.asarray(p, dtype=float).ravel()
    qa = np.asarray(q, dtype=float).ravel()
    if pa.shape != qa.shape:
        raise MonitorConfigError(f"jensen_shannon needs vectors of the same length, got {pa.size} and {qa.size}")
    if (pa < 0).any() or (qa < 0).any() or not np.isfinite(pa).all() or not np.isfinite(qa).all():
        raise MonitorConfigError("jensen_shannon needs finite, non-negative weights")
    ps, qs = pa.sum(), qa.sum()
    if ps <= 0 or qs <= 0:
        raise MonitorConfigError("jensen_shannon needs vectors with a positive sum")
    pa, qa = pa / ps, qa / qs
    m = 0.5 * (pa + qa)

    def kl(a: np.ndarray) -> float:
        # m > 0 too: for a subnormal weight (5e-324) the midpoint underflows to 0; its term is 0 in the limit
        mask = (a > 0) & (m > 0)
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return float(min(1.0, max(0.0, 0.5 * kl(pa) + 0.5 * kl(qa))))


class RollingWindow:
    """A bounded deque of floats with an O(1) running mean; non-finite values are skipped.

    >>> w = RollingWindow(3)
    >>> w.mean
    nan
    >>> for x in [1.0, 2.0, float("nan"), 3.0, 4.0]:
    ...     _ = w.update(x)
    >>> w.values().tolist(), w.mean, w.n_invalid
    ([2.0, 3.0, 4.0], 3.0, 1)
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise MonitorConfigError(f"window size must be >= 1, got {size}")
        self.size = size
        self.n_invalid = 0
        self._values: deque[float] = deque()
        self._sum = 0.0
        self._since_resum = 0

    def update(self, x: float) -> RollingWindow:
        """Append ``x`` (evicting the oldest value when full)."""
        xf = float(x)
        if not math.isfinite(xf):
            self.n_invalid += 1
            return self
        if len(self._values) == self.size:
            self._sum -= self._values.popleft()
        self._values.append(xf)
        self._sum += xf
        self._since_resum += 1
        if self._since_resum >= self.size:  # bound floating-point drift of the running sum
            self._sum = math.fsum(self._values)
            self._since_resum = 0
        return self

    def __len__(self) -> int:
        return len(self._values)

    @property
    def n(self) -> int:
        """Values currently held."""
        return len(self._values)

    @property
    def mean(self) -> float:
        """Mean of the held values, ``nan`` when empty."""
        return self._sum / len(self._values) if self._values else math.nan

    def values(self) -> np.ndarray:
        """A copy of the held values, oldest first."""
        return np.fromiter(self._values, dtype=float, count=len(self._values))

    def clear(self) -> None:
        """Drop every value."""
        self._values.clear()
        self._sum = 0.0
        self._since_resum = 0


class MeanShift:
    """|mean(last window) - reference_mean|, e.g. mean probability shift > 0.03."""

    def __init__(self, reference_mean: float, window: int = 500, min_samples: int = 100) -> None:
        if not math.isfinite(reference_mean):
            raise MonitorConfigError(f"reference_mean must be finite, got {reference_mean}")
        if not 1 <= min_samples <= window:
            raise MonitorConfigError(f"min_samples must be in [1, window={window}], got {min_samples}")
        self.reference_mean = float(reference_mean)
        self.min_samples = min_samples
        self.window = RollingWindow(window)

    def update(self, x: float) -> MeanShift:
        """Add one observation (non-finite values are skipped)."""
        self.window.update(x)
        return self

    @property
    def n(self) -> int:
        """Valid observations in the window."""
        return self.window.n

    @property
    def ready(self) -> bool:
        """True once the window holds at least ``min_samples`` values."""
        return self.window.n >= self.min_samples

    @property
    def signed(self) -> float:
        """``mean(window) - reference_mean`` (positive: the live mean is higher), ``nan`` while not ready."""
        return self.window.mean - self.reference_mean if self.ready else math.nan

    @property
    def value(self) -> float:
        """Absolute shift, ``nan`` while not ready."""
        return abs(self.signed)


class RollingKS:
    """KS statistic of the last ``window`` values against a fixed reference sample.

    Updates are O(1); ``value``/``p_value`` run the test lazily (O(n log n)) and cache it until the next update.

    >>> rng = np.random.default_rng(3)
    >>> ks = RollingKS(rng.normal(size=500), window=200, min_samples=50)
    >>> for x in rng.normal(3.0, 1.0, size=200):
    ...     _ = ks.update(float(x))
    >>> ks.value > 0.8, ks.p_value < 1e-9
    (True, True)
    """

    def __init__(self, reference_sample: Sequence[float] | np.ndarray, window: int = 500,
                 min_samples: int = 100) -> None:
        ref = _finite(reference_sample)
        if ref.size == 0:
            raise MonitorConfigError("RollingKS needs a non-empty reference sample")
        if not 1 <= min_samples <= window:
            raise MonitorConfigError(f"min_samples must be in [1, window={window}], got {min_samples}")
        self.reference = np.sort(ref)
        self.min_samples = min_samples
        self.window = RollingWindow(window)
        self._cached: tuple[float, float] | None = None

    def update(self, x: float) -> RollingKS:
        """Add one observation (non-finite values are skipped)."""
        self.window.update(x)
        self._cached = None
        return self

    @property
    def n(self) -> int:
        """Valid observations in the window."""
        return self.window.n

    @property
    def ready(self) -> bool:
        """True once the window holds at least ``min_samples`` values."""
        return self.window.n >= self.min_samples

    def _result(self) -> tuple[float, float]:
        if not self.ready:
            return math.nan, math.nan
        if self._cached is None:
            self._cached = ks_statistic(self.reference, self.window.values())
        return self._cached

    @property
    def value(self) -> float:
        """KS distance D in [0, 1], ``nan`` while not ready."""
        return self._result()[0]

    @property
    def p_value(self) -> float:
        """Two-sided p-value, ``nan`` while not ready."""
        return self._result()[1]
