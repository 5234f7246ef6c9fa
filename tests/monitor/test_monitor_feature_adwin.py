"""ADWIN on chosen feature streams: a change in a feature's mean is an event, on that feature only."""

from __future__ import annotations

import itertools

import numpy as np

from monitor.reference import ReferenceProfile
from monitor.version_monitor import MonitorConfig, VersionMonitor

NAMES = ("hr", "spo2", "rr")


def make(adwin_features: tuple[str, ...]) -> VersionMonitor:
    X = np.random.default_rng(0).normal(size=(5000, 3))
    profile = ReferenceProfile.from_training(X, NAMES, scores=1 / (1 + np.exp(-X[:, 1])), bins=10)
    return VersionMonitor("m", 1, profile, MonitorConfig(adwin_features=adwin_features))


def feed(mon: VersionMonitor, n: int, seed: int, hr_shift: float = 0.0) -> list:
    X = np.random.default_rng(seed).normal(size=(n, 3))
    X[:, 0] += hr_shift
    events = []
    for row in X:
        mon.observe(0.5, dict(zip(NAMES, row.tolist(), strict=True)))
        events += [s for s in mon.evaluate() if s.event] if mon.predictions % 100 == 0 else []
    return events


def test_adwin_on_a_feature_fires_on_its_shift_and_names_it() -> None:
    mon = make(("hr", "spo2"))
    assert feed(mon, 3000, seed=1) == []  # stationary: nothing
    events = feed(mon, 2000, seed=2, hr_shift=1.5)
    assert [(s.kind, s.feature, s.detector) for s in events][:1] == [("data_drift", "hr", "adwin")]
    assert all(s.feature == "hr" for s in events)


def test_features_not_chosen_get_no_adwin() -> None:
    mon = make(())
    assert mon.feature_adwin == {}
    assert feed(mon, 2000, seed=2, hr_shift=3.0) == []  # PSI sees it (not an event); no ADWIN event
    assert list(itertools.islice(mon.feature_psi, 1)) == ["hr"]
