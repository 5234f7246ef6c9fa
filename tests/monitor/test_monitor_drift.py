"""DriftMonitor + VersionMonitor: quiet on a stationary stream, loud and specific on a shifted one."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest

from models.prediction import Prediction
from monitor.alerts import Alert
from monitor.drift_monitor import DriftMonitor, default_policy
from monitor.reference import ReferenceProfile
from monitor.version_monitor import MonitorConfig, Signal, VersionMonitor, worst

NAMES = ["hr", "spo2", "rr"]
MODEL = "risk"


def _score(X: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-X[:, 1]))  # the score depends on spo2 only


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    X = np.random.default_rng(0).normal(size=(5000, 3))
    return ReferenceProfile.from_training(X, NAMES, scores=_score(X), bins=10)


def stream(n: int, seed: int, *, shift: dict[int, float] | None = None, version: int = 1,
           start: int = 0) -> Iterator[Prediction]:
    X = np.random.default_rng(seed).normal(size=(n, 3))
    for col, delta in (shift or {}).items():
        X[:, col] += delta
    scores = _score(X)
    for i in range(n):
        yield Prediction(f"e-{start + i}", f"p{i % 97}", start + i, MODEL, version, "champion", float(scores[i]),
                         int(scores[i] >= 0.5), 0, dict(zip(NAMES, X[i].tolist(), strict=True)))


def feed(mon: DriftMonitor, preds: Iterator[Prediction], batch: int = 50, t0: int = 0) -> list[Alert]:
    alerts: list[Alert] = []
    buf: list[Prediction] = []
    for i, p in enumerate(preds):
        buf.append(p)
        if len(buf) == batch:
            alerts += mon.on_predictions(buf, now_ms=t0 + i)
            buf = []
    if buf:
        alerts += mon.on_predictions(buf, now_ms=t0 + 10**6)
    return alerts


def make_monitor(profile: ReferenceProfile) -> DriftMonitor:
    return DriftMonitor(lambda model, version: profile, policy=default_policy(min_samples=500),
                        config=MonitorConfig(psi_window=1000, psi_min_samples=500, mean_shift_window=1000))


def test_stationary_stream_from_the_reference_distribution_raises_no_alert(profile: ReferenceProfile) -> None:
    mon = make_monitor(profile)
    assert feed(mon, stream(6000, seed=1)) == []
    vm = mon.monitors[(MODEL, 1)]
    assert vm.predictions == 6000
    assert all(v < 0.1 for _, v in vm.ranked_feature_psi())
    assert vm.score_psi.value < 0.1 and vm.mean_shift.value < 0.03


def test_shifted_feature_triggers_one_critical_data_drift_alert_naming_it(profile: ReferenceProfile) -> None:
    mon = make_monitor(profile)
    assert feed(mon, stream(2000, seed=2)) == []
    alerts = feed(mon, stream(3000, seed=3, shift={0: 1.5}, start=2000))
    data = [a for a in alerts if a.kind == "data_drift"]
    crit = [a for a in data if a.severity == "critical" and a.action == "trigger"]
    assert len(crit) == 1, [(a.severity, a.feature, a.action) for a in data]
    a = crit[0]
    assert (a.feature, a.detector, a.statistic, a.model, a.model_version) == ("hr", "psi", "psi", MODEL, 1)
    assert a.dedup_key == "risk/1/data_drift/hr/all"
    assert a.value is not None and a.threshold == 0.25 and a.value >= 0.25
    top = a.details["top_drifted_features"]
    assert top[0]["feature"] == "hr" and top[0]["psi"] >= 0.25
    assert [t["psi"] for t in top] == sorted((t["psi"] for t in top), reverse=True)
    assert {t["feature"] for t in top} == set(NAMES)
    assert "hr" in a.summary and "CRITICAL" in a.summary
    # nothing about the untouched features, and no prediction drift (the score ignores hr)
    assert {x.feature for x in data} == {"hr"}
    assert not [x for x in alerts if x.kind == "prediction_drift" and x.severity == "critical"]


def test_shifted_scores_trigger_prediction_drift(profile: ReferenceProfile) -> None:
    mon = make_monitor(profile)
    feed(mon, stream(1500, seed=4))
    alerts = feed(mon, stream(3000, seed=5, shift={1: 2.0}, start=1500))
    kinds = {(a.kind, a.detector, a.feature) for a in alerts if a.action == "trigger"}
    assert ("prediction_drift", "psi", "score") in kinds
    assert ("prediction_drift", "mean_shift", "score_mean") in kinds
    assert ("data_drift", "psi", "spo2") in kinds


def test_drift_that_goes_away_resolves(profile: ReferenceProfile) -> None:
    mon = make_monitor(profile)
    feed(mon, stream(3000, seed=6, shift={0: 1.5}))
    alerts = feed(mon, stream(4000, seed=7, start=3000))
    resolves = [a for a in alerts if a.action == "resolve" and a.feature == "hr"]
    assert len(resolves) == 1 and resolves[0].severity == "critical"


def test_nan_scores_are_not_observed(profile: ReferenceProfile) -> None:
    mon = make_monitor(profile)
    p = next(stream(1, seed=8))
    nan = Prediction(p.prediction_id, p.entity_id, p.event_ts, MODEL, 1, "champion", math.nan, None, 0, p.features)
    mon.on_predictions([nan, p], now_ms=0)
    assert mon.monitors[(MODEL, 1)].predictions == 1


def test_versions_are_monitored_separately(profile: ReferenceProfile) -> None:
    mon = make_monitor(profile)
    mon.on_predictions(list(stream(10, seed=9, version=1)) + list(stream(5, seed=9, version=2)), now_ms=0)
    assert {k: m.predictions for k, m in mon.monitors.items()} == {(MODEL, 1): 10, (MODEL, 2): 5}


def test_evaluates_every_n_predictions(profile: ReferenceProfile) -> None:
    calls: list[int] = []
    mon = make_monitor(profile)
    original = mon.evaluate
    mon.evaluate = lambda now_ms: (calls.append(now_ms), original(now_ms))[1]  # type: ignore[method-assign]
    for i, p in enumerate(stream(350, seed=10)):
        mon.on_predictions([p], now_ms=i)
    assert calls == [99, 199, 299]


# ------------------------------------------------------------------------------------------ concept drift
def test_concept_drift_is_one_incident_opened_once_then_updated(profile: ReferenceProfile) -> None:
    mon = make_monitor(profile)
    rng = np.random.default_rng(11)
    errors = np.concatenate([rng.random(1500) < 0.05, rng.random(3000) < 0.6]).astype(int)
    alerts: list[Alert] = []
    for i in range(0, len(errors), 100):
        alerts += mon.on_outcomes([(MODEL, 1, int(e)) for e in errors[i:i + 100]], now_ms=i)
    concept = [a for a in alerts if a.kind == "concept_drift"]
    assert concept, "a jump from 5% to 60% errors must be detected"
    assert len({a.dedup_key for a in concept}) == 1 and all(a.action == "trigger" for a in concept)
    changes = [a.details["incident"]["change"] for a in concept]
    assert changes.count("opened") == 1 and changes[0] == "opened", changes
    assert concept[-1].severity == "critical", "ADWIN and DDM agree: confirmed"
    assert [a.details["incident"]["detections"] for a in concept] == sorted(a.details["incident"]["detections"]
                                                                            for a in concept)
    assert concept[0].details["accuracy"] is not None


def test_repeated_prediction_drift_events_update_the_open_incident(profile: ReferenceProfile) -> None:
    vm_key = (MODEL, 1)
    mon = make_monitor(profile)
    mon.monitor_for(*vm_key)
    event = Signal("prediction_drift", None, "adwin", "mean_score", 0.7, 1000, "adwin width 300", event=True)
    first = mon._alerts(mon.monitors[vm_key], [event], now_ms=0)
    second = mon._alerts(mon.monitors[vm_key], [event], now_ms=1)
    assert [(a.severity, a.feature) for a in first] == [("warning", "score")]
    assert [(a.action, a.severity, a.dedup_key) for a in second] == [("trigger", "warning", first[0].dedup_key)]
    assert second[0].details["incident"]["change"] == "updated"
    assert second[0].details["incident"]["detections"] == 2
    assert "no new page" in second[0].summary


# ------------------------------------------------------------------------------------------ version monitor
def test_version_monitor_signals_are_nan_until_enough_samples(profile: ReferenceProfile) -> None:
    vm = VersionMonitor(MODEL, 1, profile, MonitorConfig(psi_window=100, psi_min_samples=50))
    for p in stream(49, seed=12):
        vm.observe(p.score, p.features)
    sigs = vm.evaluate()
    assert {s.kind for s in sigs} == {"data_drift", "prediction_drift"}
    assert all(math.isnan(s.value) for s in sigs)
    assert worst(sigs) is None
    assert math.isnan(vm.accuracy) and math.isnan(vm.rolling_error)


def test_version_monitor_accuracy_and_snapshot(profile: ReferenceProfile) -> None:
    vm = VersionMonitor(MODEL, 3, profile)
    for e in [0, 0, 1, 0]:
        vm.observe_outcome(e)
    snap = vm.snapshot()
    assert (snap["version"], snap["outcomes"], snap["accuracy"]) == (3, 4, 0.75)


def test_missing_features_only_skip_those_features(profile: ReferenceProfile) -> None:
    vm = VersionMonitor(MODEL, 1, profile, MonitorConfig(psi_window=10, psi_min_samples=1))
    vm.observe(0.5, {"hr": 0.1})
    vm.observe(0.5, None)
    assert {n: psi.n for n, psi in vm.feature_psi.items()} == {"hr": 1, "spo2": 0, "rr": 0}
    assert vm.predictions == 2
