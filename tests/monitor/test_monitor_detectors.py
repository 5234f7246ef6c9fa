"""ADWIN and DDM wrappers: contract tests and golden indices on seeded streams."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.detectors import AdwinDetector, DdmDetector, Detector
from monitor.exceptions import MonitorConfigError, ObservationError

CHANGE = 1000


def shifted_stream(seed: int = 42) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 1, CHANGE), rng.normal(2, 1, CHANGE)])


def error_stream(seed: int = 42) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.random(CHANGE) < 0.1, rng.random(CHANGE) < 0.4]).astype(int)


def fire_indices(det: Detector, stream: np.ndarray) -> list[int]:
    return [i for i, x in enumerate(stream) if det.update(float(x)).drift_detected]


@pytest.mark.parametrize("make", [AdwinDetector, DdmDetector])
def test_detectors_follow_the_protocol(make: type) -> None:
    det = make(name="x")
    assert isinstance(det, Detector)
    assert det.update(0.0) is det
    assert det.drift_detected is False and det.n_detections == 0
    state = det.state()
    assert state["name"] == "x" and state["n"] == 1
    assert all(isinstance(v, int | float | str) for v in state.values())


@pytest.mark.parametrize("kwargs, expected", [({}, [1023]), ({"clock": 1}, [1011]),
                                              ({"clock": 1, "min_samples": 30}, [1011])])
def test_adwin_golden_index(kwargs: dict, expected: list[int]) -> None:
    det = AdwinDetector(**kwargs)
    fired = fire_indices(det, shifted_stream())
    assert fired == expected
    assert fired[0] >= CHANGE
    assert det.n_detections == len(expected)
    assert det.state()["last_detection_at"] == expected[-1]


@pytest.mark.parametrize("clock", [1, 32])
def test_adwin_is_quiet_on_a_stationary_stream(clock: int) -> None:
    rng = np.random.default_rng(7)
    det = AdwinDetector(clock=clock)
    assert fire_indices(det, rng.normal(0, 1, 5000)) == []
    assert det.estimation == pytest.approx(0.0, abs=0.1)
    assert det.width == 5000


def test_adwin_true_only_on_the_detecting_update_and_skips_nan() -> None:
    det = AdwinDetector(clock=1)
    stream = shifted_stream()
    for x in stream[:1011]:
        det.update(float(x))
    assert det.update(float(stream[1011])).drift_detected
    assert det.update(math.nan).drift_detected is False
    assert det.update(float(stream[1012])).drift_detected is False
    assert det.state()["n_invalid"] == 1
    assert det.width < 10  # river restarts the window after a detection


def test_adwin_grace_suppresses_followup_detections() -> None:
    rng = np.random.default_rng(3)
    # three level shifts close together: without grace ADWIN reports each one
    stream = np.concatenate([rng.normal(m, 0.5, 300) for m in (0, 3, 6, 9)])
    free = AdwinDetector(clock=1, min_samples=30)
    fired_free = fire_indices(free, stream)
    assert len(fired_free) >= 3
    damped = AdwinDetector(clock=1, min_samples=30, grace=1000)
    fired_damped = fire_indices(damped, stream)
    assert fired_damped == fired_free[:1]
    assert damped.n_suppressed == len(fired_free) - 1


def test_ddm_golden_index_and_warning_before_drift() -> None:
    det = DdmDetector()
    stream = error_stream()
    fired, warnings_after_change = [], []
    for i, e in enumerate(stream):
        det.update(int(e))
        if det.warning_detected and i >= CHANGE:
            warnings_after_change.append(i)
        if det.drift_detected:
            fired.append(i)
            assert not det.warning_detected
    assert fired == [1172]
    assert warnings_after_change and warnings_after_change[0] < fired[0]
    assert det.n_detections == 1
    # after the detection, DDM restarts: the error rate is measured on the new regime only
    assert det.error_rate == pytest.approx(float(stream[1173:].mean()), abs=1e-12)


def test_ddm_is_quiet_on_a_stationary_error_stream() -> None:
    rng = np.random.default_rng(7)
    det = DdmDetector()
    assert fire_indices(det, (rng.random(5000) < 0.1).astype(int)) == []
    assert det.state()["n_errors"] == det.state()["n"] * det.error_rate


def test_ddm_rejects_non_binary_and_skips_unknown() -> None:
    det = DdmDetector()
    det.update(True).update(0).update(1.0).update(math.nan).update(None)  # type: ignore[arg-type]
    assert det.n == 3 and det.state()["n_invalid"] == 2
    with pytest.raises(ObservationError, match="0/1"):
        det.update(0.7)


def test_config_errors() -> None:
    with pytest.raises(MonitorConfigError):
        AdwinDetector(delta=0)
    with pytest.raises(MonitorConfigError):
        AdwinDetector(grace=-1)
    with pytest.raises(MonitorConfigError):
        DdmDetector(warning_threshold=3.0, drift_threshold=2.0)
