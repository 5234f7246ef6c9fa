"""Population Stability Index, one-shot and over a rolling window.

``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)`` over bins, with expected proportions ``e`` (training) and
actual proportions ``a`` (live). Rules of thumb: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift.

Example:
    >>> round(psi([0.30, 0.50, 0.20], [0.45, 0.40, 0.15]), 5)
    0.09752
    >>> from monitor.reference import Histogram
    >>> ref = Histogram(edges=(0.0,), proportions=(0.5, 0.5))
    >>> r = RollingPSI(ref, window=4, min_samples=4)
    >>> for x in [-1.0, 1.0, -2.0]:
    ...     _ = r.update(x)
    >>> r.value  # not enough data yet: NaN means inconclusive, never 0
    nan
    >>> round(r.update(2.0).value, 6), r.actual_proportions()
    (0.0, [0.5, 0.5])
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from monitor.exceptions import MonitorConfigError
from monitor.reference import Histogram

EPSILON: float = 1e-4
"""Floor applied to every expected and actual proportion before the log, so an empty bin gives a large
but finite term instead of ``inf``. Smaller values punish empty bins harder."""


def _term(expected: float, actual: float, eps: float) -> float:
    e = max(expected, eps)
    a = max(actual, eps)
    return (a - e) * math.log(a / e)


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = EPSILON) -> float:
    """PSI between two proportion vectors of the same length (each should sum to 1).

    Always >= 0; 0 iff the vectors are equal (after the ``eps`` floor).

    >>> psi([0.5, 0.5], [0.5, 0.5])
    0.0
    >>> round(psi([0.5, 0.5, 0.0], [0.5, 0.0, 0.5]), 4)  # empty bins are floored at EPSILON
    8.5155
    """
    if len(expected) != len(actual):
        raise MonitorConfigError(f"psi needs vectors of the same length, got {len(expected)} and {len(actual)}")
    if eps <= 0:
        raise MonitorConfigError(f"eps must be > 0, got {eps}")
    return math.fsum(_term(float(e), float(a), eps) for e, a in zip(expected, actual, strict=True))


class RollingPSI:
    """PSI of the last `window` observations against a reference Histogram, updated incrementally:
    O(1) per update (keep per-bin counts + a deque of bin indices), not recomputed from scratch.

    ``value`` costs O(bins) and is cached until the next update. NaN and inf are counted in
    ``n_invalid`` and skipped.
    """

    def __init__(self, reference: Histogram, window: int = 500, min_samples: int = 100,
                 eps: float = EPSILON) -> None:
        if window < 1:
            raise MonitorConfigError(f"window must be >= 1, got {window}")
        if not 1 <= min_samples <= window:
            raise MonitorConfigError(f"min_samples must be in [1, window={window}], got {min_samples}")
        if eps <= 0:
            raise MonitorConfigError(f"eps must be > 0, got {eps}")
        self.reference = reference
        self.window = window
        self.min_samples = min_samples
        self.eps = eps
        self.n_invalid = 0
        self._counts = [0] * reference.bins
        self._indices: deque[int] = deque()
        self._cached: float | None = None

    def update(self, x: float) -> RollingPSI:
        """Add one observation (evicting the oldest when the window is full)."""
        try:
            xf = float(x)
        except (TypeError, ValueError):
            self.n_invalid += 1
            return self
        if not math.isfinite(xf):
            self.n_invalid += 1
            return self
        idx = self.reference.bin_index(xf)
        if len(self._indices) == self.window:
            self._counts[self._indices.popleft()] -= 1
        self._indices.append(idx)
        self._counts[idx] += 1
        self._cached = None
        return self

    @property
    def n(self) -> int:
        """Valid observations currently in the window."""
        return len(self._indices)

    @property
    def ready(self) -> bool:
        """True once the window holds at least ``min_samples`` observations."""
        return self.n >= self.min_samples

    @property
    def value(self) -> float:
        """Current PSI, or ``nan`` while not :attr:`ready` (inconclusive, never 0)."""
        if not self.ready:
            return math.nan
        if self._cached is None:
            n = self.n
            self._cached = math.fsum(_term(e, c / n, self.eps)
                                     for e, c in zip(self.reference.proportions, self._counts, strict=True))
        return self._cached

    def actual_proportions(self) -> list[float]:
        """Share of the window in each reference bin (all zeros when empty)."""
        n = self.n
        return [c / n if n else 0.0 for c in self._counts]

    def reset(self) -> None:
        """Forget the window (e.g. after a model swap)."""
        self._counts = [0] * self.reference.bins
        self._indices.clear()
        self._cached = None
