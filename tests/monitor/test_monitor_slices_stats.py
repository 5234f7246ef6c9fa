"""Slices, KS/JS signals, rolling accuracy/AUC and inconclusive states (a silent stream is not a verdict)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from models.prediction import Prediction
from monitor.alerts import Alert
from monitor.drift_monitor import DriftMonitor, default_policy
from monitor.policy import AlertPolicy, PolicyConfig, Thresholds
from monitor.reference import ReferenceProfile
from monitor.slices import slice_by, slice_overrides
from monitor.version_monitor import MonitorConfig, OutcomeWindow, ReferenceKS

NAMES = ["hr", "age"]
MODEL = "risk"


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=5000), rng.uniform(20, 90, size=5000)])
    return ReferenceProfile.from_training(X, NAMES, scores=1 / (1 + np.exp(-X[:, 0])), bins=10)


def stream(n: int, seed: int, *, old_shift: float = 0.0, start: int = 0) -> Iterator[Prediction]:
    """hr shifts by ``old_shift`` for patients aged 80+ only."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        age = float(rng.uniform(20, 90))
        hr = float(rng.normal(old_shift if age >= 80 else 0.0))
        yield Prediction(f"e{start + i}", "p", start + i, MODEL, 1, "champion", 1 / (1 + math.exp(-hr)), 1, 0,
                         {"hr": hr, "age": age})


def feed(mon: DriftMonitor, preds: Iterator[Prediction], batch: int = 50) -> list[Alert]:
    out: list[Alert] = []
    buf: list[Prediction] = []
    for p in preds:
        buf.append(p)
        if len(buf) == batch:
            out += mon.on_predictions(buf, now_ms=p.event_ts)
            buf = []
    return out


def make(profile: ReferenceProfile, **kw: object) -> DriftMonitor:
    return DriftMonitor(lambda m, v: profile, policy=kw.pop("policy", default_policy(200)),  # type: ignore[arg-type]
                        config=MonitorConfig(psi_window=400, psi_min_samples=200, mean_shift_window=400), **kw)


# ------------------------------------------------------------------------------------------ slices
def test_drift_in_one_slice_alerts_for_that_slice(profile: ReferenceProfile) -> None:
    mon = make(profile, slice_of=slice_by("age", edges=(40, 65, 80)))
    alerts = feed(mon, stream(12000, seed=1, old_shift=2.0))
    sliced = [a for a in alerts if a.action == "trigger" and a.kind == "data_drift" and a.feature == "hr"]
    assert {a.slice for a in sliced if a.severity == "critical"} == {"age>=80"}
    a = next(a for a in sliced if a.slice == "age>=80" and a.severity == "critical")
    assert a.dedup_key == "risk/1/data_drift/hr/age>=80" and "slice age>=80" in a.summary
    assert set(mon.slices.state()["monitored"]["risk/1"]) == {"age<40", "40<=age<65", "65<=age<80", "age>=80"}
    # the other slices see the reference hr distribution: no alert about hr there (age itself differs per
    # slice by construction, so slicing on a feature makes that feature drift inside each slice)
    assert not [x for x in alerts if x.slice not in (None, "age>=80") and x.feature == "hr"]


def test_slice_count_is_bounded_and_extra_slices_are_counted(profile: ReferenceProfile) -> None:
    mon = make(profile, slice_of=lambda p: p.prediction_id, max_slices=5)
    feed(mon, stream(100, seed=2))
    assert len(mon.slice_monitors) == 5 and mon.slices.dropped == 95
    assert mon.monitors[(MODEL, 1)].predictions == 100  # overall monitoring is unaffected


def test_a_slice_gets_its_own_thresholds(profile: ReferenceProfile) -> None:
    strict = PolicyConfig(thresholds=Thresholds(1e3, 1e4), min_samples=200)  # never alert in this slice
    base = default_policy(200)
    policy = AlertPolicy(base.config, per_key={**base._per_key, **slice_overrides("age>=80", strict)})
    mon = make(profile, slice_of=slice_by("age", edges=(80,)), policy=policy)
    alerts = feed(mon, stream(12000, seed=1, old_shift=2.0))
    assert not [a for a in alerts if a.slice == "age>=80" and a.kind == "data_drift"]


# ------------------------------------------------------------------------------------------ KS / JS
def test_ks_and_js_signals_and_one_incident_per_feature(profile: ReferenceProfile) -> None:
    mon = make(profile)
    alerts = feed(mon, stream(3000, seed=3, old_shift=0.0))
    assert alerts == []
    rng = np.random.default_rng(4)
    shifted = (Prediction(f"s{i}", "p", 3000 + i, MODEL, 1, "champion", 0.5, 1, 0,
                          {"hr": float(rng.normal(2.0)), "age": float(rng.uniform(20, 90))}) for i in range(2000))
    alerts = feed(mon, shifted)
    hr = [a for a in alerts if a.feature == "hr" and a.kind == "data_drift"]
    # psi, ks and js share one incident: one trigger per escalation (the window fills gradually), no repeats
    assert [(a.action, a.severity) for a in hr] in ([("trigger", "critical")],
                                                     [("trigger", "warning"), ("trigger", "critical")])
    assert len({a.dedup_key for a in hr}) == 1
    stats = hr[-1].details["statistics"]
    assert stats["psi"] > 0.25 and stats["ks_d"] > 0.3 and stats["js_divergence"] > 0.05
    assert stats["ks_p_value"] < 1e-6
    assert hr[-1].detector in ("psi", "ks", "js") and hr[-1].threshold is not None


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=60), st.lists(st.floats(-5, 5), min_size=1, max_size=60))
def test_reference_ks_distance_matches_scipy(ref: list[float], win: list[float]) -> None:
    d, p = ReferenceKS(ref).test(np.asarray(win))
    assert d == pytest.approx(sps.ks_2samp(ref, win).statistic, abs=1e-12)
    assert 0.0 <= p <= 1.0


# ------------------------------------------------------------------------------------------ accuracy / AUC
@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9]), st.integers(0, 1)), min_size=2, max_size=80),
       st.integers(1, 50))
def test_rolling_auc_matches_sklearn_on_the_window(pairs: list[tuple[float, int]], size: int) -> None:
    w = OutcomeWindow(size)
    for s, y in pairs:
        w.update(s, y, int((s >= 0.5) != y))
    last = pairs[-size:]
    labels = [y for _, y in last]
    assert w.n == len(last)
    assert w.accuracy == pytest.approx(np.mean([(s >= 0.5) == y for s, y in last]))
    if len(set(labels)) < 2:
        assert math.isnan(w.auc)
    else:
        assert w.auc == pytest.approx(roc_auc_score(labels, [s for s, _ in last]))


def test_rolling_accuracy_and_auc_in_snapshot_and_alert_details(profile: ReferenceProfile) -> None:
    mon = make(profile)
    rng = np.random.default_rng(5)
    outcomes = []
    for i in range(3000):
        y = int(rng.random() < 0.5)
        bad = i >= 1000
        score = float(rng.uniform(0.5, 1) if (y == 1) != bad else rng.uniform(0, 0.5))
        outcomes.append((MODEL, 1, int((score >= 0.5) != y), y, score))
    alerts: list[Alert] = []
    for i in range(0, 3000, 100):
        alerts += mon.on_outcomes(outcomes[i:i + 100], now_ms=i)
    snap = mon.snapshots()[0]
    assert snap["rolling_accuracy"] == 0.0 and snap["rolling_auc"] == 0.0  # the window only holds bad outcomes
    concept = [a for a in alerts if a.kind == "concept_drift"]
    assert concept and all(a.details["rolling_auc"] is not None for a in concept)
    assert concept[0].details["outcome_window_n"] == 1000


# ------------------------------------------------------------------------------------------ inconclusive
def test_too_few_samples_is_inconclusive_and_listed(profile: ReferenceProfile) -> None:
    mon = make(profile, evaluate_every=100)
    assert feed(mon, stream(150, seed=6)) == []
    inc = mon.inconclusive()
    assert "psi|risk/1/data_drift/hr/all" in inc and inc["ks|risk/1/data_drift/hr/all"].startswith("too few samples")
    assert mon.policy.status("psi|risk/1/data_drift/hr/all") == "inconclusive"
    assert mon.snapshots()[0]["inconclusive"] == inc


def test_a_stream_that_goes_silent_neither_resolves_nor_triggers(profile: ReferenceProfile) -> None:
    mon = make(profile)
    rng = np.random.default_rng(7)

    def shifted(n: int, start: int, shift: float) -> Iterator[Prediction]:
        for i in range(n):
            hr = float(rng.normal(shift))
            yield Prediction(f"s{start + i}", "p", start + i, MODEL, 1, "champion", 0.5, 1, 0,
                             {"hr": hr, "age": float(rng.uniform(20, 90))})

    alerts = feed(mon, shifted(1500, 0, 2.0))
    assert any(a.feature == "hr" and a.action == "trigger" for a in alerts)
    open_before = mon.policy.open_incidents()
    # silence: the timer keeps evaluating, nothing new arrives
    silent = [a for t in range(20) for a in mon.evaluate(now_ms=10**7 + t * 60_000)]
    assert silent == []
    assert mon.policy.open_incidents() == open_before                      # still open, not resolved
    reasons = mon.inconclusive()
    assert reasons["psi|risk/1/data_drift/hr/all"].startswith("no traffic")
    assert all(mon.policy.status(k) == "inconclusive" for k in reasons)
    # traffic comes back healthy: the incident resolves on fresh evidence only
    back = feed(mon, shifted(3000, 10**7, 0.0))
    assert [a.action for a in back if a.feature == "hr" and a.kind == "data_drift"] == ["resolve"]
    assert not any(k.startswith("psi|risk/1/data_drift/hr") for k in mon.inconclusive())
