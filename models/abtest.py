"""A/B comparison of champion and challenger: the two-proportion z-test.

"Success" is whatever is better when higher (a correct prediction, a caught event). The test pools the two
proportions under the null hypothesis of no difference and reports a two-sided p-value. The verdict is
``undecided`` until both arms have at least ``min_n`` trials, or while the p-value is not below ``alpha``.

Example (champion 120/1000, challenger 150/1000):
    >>> r = two_proportion_ztest(120, 1000, 150, 1000)
    >>> round(r.z, 3), round(r.p_value, 4), round(r.lift, 3), r.verdict
    (1.963, 0.0496, 0.03, 'better')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from models.exceptions import ABTestError

__all__ = ["ZTestResult", "two_proportion_ztest"]

Verdict = Literal["better", "worse", "undecided"]


@dataclass(frozen=True)
class ZTestResult:
    """Outcome of :func:`two_proportion_ztest`; ``lift`` is ``p_challenger - p_champion``."""

    z: float
    p_value: float
    lift: float
    verdict: Verdict


def two_proportion_ztest(
    successes_a: int, n_a: int, successes_b: int, n_b: int, alpha: float = 0.05, min_n: int = 30
) -> ZTestResult:
    """Pooled two-proportion z-test of challenger ``b`` against champion ``a`` (two-sided).

    ``better`` / ``worse`` means the challenger's success rate is significantly higher / lower at
    level ``alpha``; ``undecided`` otherwise, and always while ``n_a`` or ``n_b`` is below ``min_n``.

    >>> two_proportion_ztest(5, 10, 9, 10).verdict   # too few trials to decide
    'undecided'
    >>> two_proportion_ztest(0, 100, 0, 100)          # no variance at all
    ZTestResult(z=0.0, p_value=1.0, lift=0.0, verdict='undecided')
    """
    for name, s, n in (("a", successes_a, n_a), ("b", successes_b, n_b)):
        if n < 0 or s < 0 or s > n:
            raise ABTestError(f"arm {name}: need 0 <= successes <= n, got successes={s}, n={n}")
    if not 0.0 < alpha < 1.0:
        raise ABTestError(f"alpha must be within (0, 1), got {alpha!r}")
    p_a = successes_a / n_a if n_a else 0.0
    p_b = successes_b / n_b if n_b else 0.0
    lift = p_b - p_a
    if n_a == 0 or n_b == 0:
        return ZTestResult(0.0, 1.0, lift, "undecided")
    pooled = (successes_a + successes_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    if se == 0.0:
        return ZTestResult(0.0, 1.0, lift, "undecided")
    z = lift / se
    p_value = math.erfc(abs(z) / math.sqrt(2.0))  # = 2 * (1 - Phi(|z|)), accurate in the tails
    verdict: Verdict = "undecided"
    if n_a >= min_n and n_b >= min_n and p_value < alpha:
        verdict = "better" if lift > 0 else "worse"
    return ZTestResult(z, p_value, lift, verdict)
