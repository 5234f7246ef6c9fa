"""RollingPSI at its edges: written to kill the mutants ``make mutation`` found alive (defaults, empty windows,
reset, the eps bound and the messages an operator reads)."""

from __future__ import annotations

import math

import pytest

from monitor.exceptions import MonitorConfigError
from monitor.psi import EPSILON, RollingPSI, psi
from monitor.reference import Histogram

REF = Histogram(edges=(0.0, 1.0), proportions=(0.25, 0.5, 0.25))


def test_documented_defaults() -> None:
    r = RollingPSI(REF)
    assert (r.window, r.min_samples, r.eps) == (500, 100, EPSILON)
    for _ in range(99):
        r.update(0.5)
    assert math.isnan(r.value)  # 99 < the default min_samples
    assert not math.isnan(r.update(0.5).value)


def test_an_empty_window_has_zero_proportions() -> None:
    r = RollingPSI(REF, window=4, min_samples=1)
    assert r.actual_proportions() == [0.0, 0.0, 0.0] and r.n == 0


def test_reset_forgets_every_count() -> None:
    r = RollingPSI(REF, window=4, min_samples=2)
    for x in (-1.0, 0.5, 0.5, 2.0):
        r.update(x)
    r.reset()
    assert r.n == 0 and r.actual_proportions() == [0.0, 0.0, 0.0] and math.isnan(r.value)
    r.update(0.5).update(0.5)
    assert r.actual_proportions() == [0.0, 1.0, 0.0]
    assert r.value == pytest.approx(psi([0.25, 0.5, 0.25], [0.0, 1.0, 0.0]))
    for x in (0.5, -1.0, 2.0):  # the window (4) slides over what came after the reset only
        r.update(x)
    assert r.actual_proportions() == [0.25, 0.5, 0.25] and r.value == 0.0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"window": 0}, "window must be >= 1, got 0"),
    ({"window": 10, "min_samples": 11}, r"min_samples must be in \[1, window=10\], got 11"),
    ({"window": 10, "min_samples": 0}, r"min_samples must be in \[1, window=10\], got 0"),
    ({"eps": 0.0}, "eps must be > 0, got 0.0"),
    ({"eps": -1e-4}, "eps must be > 0, got -0.0001"),
])
def test_bad_parameters_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(MonitorConfigError, match="^" + message + "$"):
        RollingPSI(REF, **kwargs)


def test_one_shot_psi_errors_say_what_is_wrong() -> None:
    with pytest.raises(MonitorConfigError, match=r"^psi needs vectors of the same length, got 2 and 3$"):
        psi([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(MonitorConfigError, match=r"^eps must be > 0, got 0$"):
        psi([0.5, 0.5], [0.5, 0.5], eps=0)
