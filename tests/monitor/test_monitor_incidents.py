"""Detector incidents: open, update, escalate, resolve, re-arm (IncidentBook, ConceptVerdict, DriftMonitor)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.prediction import Prediction
from monitor.alerts import Alert
from monitor.concept import ConceptVerdict
from monitor.drift_monitor import DriftMonitor, default_policy
from monitor.incidents import RANK, IncidentBook, IncidentConfig
from monitor.reference import ReferenceProfile
from monitor.version_monitor import MonitorConfig

MODEL = "risk"


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    X = np.random.default_rng(0).normal(size=(5000, 2))
    return ReferenceProfile.from_training(X, ["a", "b"], scores=1.0 / (1.0 + np.exp(-X[:, 0])), bins=10)


def make(profile: ReferenceProfile, *, warmup: int = 0, resolve_after: int = 3000,
         confirm_within: int = 2000) -> DriftMonitor:
    return DriftMonitor(lambda m, v: profile, policy=default_policy(min_samples=500),
                        config=MonitorConfig(psi_window=1000, psi_min_samples=500, detector_warmup=warmup),
                        incidents=IncidentConfig(resolve_after=resolve_after), confirm_within=confirm_within)


def feed_errors(mon: DriftMonitor, rates: list[tuple[int, float]], seed: int, version: int = 1,
                batch: int = 100) -> list[Alert]:
    """Bernoulli error stream: ``rates`` = [(events, error rate), ...]; ``now_ms`` = outcome index."""
    rng = np.random.default_rng(seed)
    errors = np.concatenate([rng.random(n) < p for n, p in rates]).astype(int)
    alerts: list[Alert] = []
    for i in range(0, len(errors), batch):
        alerts += mon.on_outcomes([(MODEL, version, int(e)) for e in errors[i:i + batch]], now_ms=i + batch)
    return alerts


def opened(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.action == "trigger" and a.details.get("incident", {}).get("change") == "opened"]


# ------------------------------------------------------------------------------------------ the book
def test_book_opens_updates_escalates_and_resolves_after_quiet_events() -> None:
    book = IncidentBook(IncidentConfig(resolve_after=50))
    assert book.detect("k", "adwin", 100, 0, "warning").change == "opened"
    assert book.detect("k", "adwin", 120, 1, "warning").change == "updated"
    t = book.detect("k", "ddm", 130, 2, "critical")
    assert (t.change, t.severity, t.incident.by_detector) == ("escalated", "critical", {"adwin": 2, "ddm": 1})
    assert book.quiet("k", 179, 3) is None  # 49 quiet events after the last detection
    t = book.quiet("k", 180, 4)
    assert t is not None and (t.action, t.severity, t.incident.detections) == ("resolve", "critical", 3)
    assert book.get("k") is None and book.quiet("k", 10_000, 5) is None  # re-armed: nothing to resolve


def test_book_resolves_in_band_only_for_an_incident_with_a_band() -> None:
    book = IncidentBook(IncidentConfig(resolve_after=10_000))
    book.detect("a", "adwin", 0, 0, "warning", baseline=0.1, band=0.15)
    book.detect("b", "adwin", 0, 0, "warning")
    assert book.quiet("a", 10, 1, in_band=True).reason.startswith("back within its band")  # type: ignore[union-attr]
    assert book.quiet("b", 10, 1, in_band=True) is None


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["detect", "quiet"]), st.integers(0, 200),
                          st.sampled_from(["warning", "critical"]), st.booleans()), max_size=60),
       st.integers(1, 150))
def test_book_invariants(ops: list[tuple[str, int, str, bool]], resolve_after: int) -> None:
    """Whatever the order: one page per incident, no de-escalation while open, resolves only after enough quiet
    events (or in band), and every detection is counted in exactly one incident."""
    book = IncidentBook(IncidentConfig(resolve_after=resolve_after))
    position, detections, counted, is_open, severity, last = 0, 0, 0, False, None, 0
    for op, step, sev, band in ops:
        position += step
        if op == "detect":
            detections += 1
            t = book.detect("k", "d", position, position, sev, baseline=0.0 if band else None,  # type: ignore[arg-type]
                            band=0.1 if band else None)
            assert t.change == ("opened" if not is_open else "escalated" if RANK[sev] > RANK[severity] else "updated")
            assert t.action == "trigger"
            assert RANK[t.severity] >= RANK[severity]
            is_open, severity, last = True, t.severity, position
        else:
            t = book.quiet("k", position, position, in_band=band)
            if t is not None:
                assert is_open and (position - last >= resolve_after or (band and t.incident.band is not None))
                counted += t.incident.detections
                is_open, severity = False, None
            else:
                assert not is_open or position - last < resolve_after
        assert (book.get("k") is not None) == is_open
    open_inc = book.get("k")
    assert counted + (open_inc.detections if open_inc else 0) == detections


# ------------------------------------------------------------------------------------------ the verdict
def test_ddm_alone_never_pages_and_confirms_an_adwin_increase_in_either_order() -> None:
    v = ConceptVerdict(confirm_within=100)
    assert v.on_detection("k", "ddm", "up", 500, drift_open=False, is_open=False) is None
    assert v.pending_ddm == 1
    assert v.on_detection("k", "adwin", "up", 700, drift_open=False, is_open=False) == "warning"  # DDM too old
    assert v.on_detection("k", "ddm", "up", 750, drift_open=False, is_open=True) == "critical"
    assert v.on_detection("j", "adwin", "up", 10, drift_open=True, is_open=False) == "critical"  # PSI/KS open
    assert v.on_detection("j", "adwin", "down", 20, drift_open=True, is_open=True) is None


# ------------------------------------------------------------------------------------------ the monitor
def test_a_second_change_after_the_first_incident_resolved_opens_a_second_incident(profile: ReferenceProfile) -> None:
    mon = make(profile, resolve_after=3000)
    alerts = feed_errors(mon, [(4000, 0.05), (4000, 0.30), (8000, 0.05), (4000, 0.30), (2000, 0.30)], seed=3)
    concept = [a for a in alerts if a.kind == "concept_drift"]
    pages = opened(concept)
    assert len(pages) == 2, [(a.action, a.details["incident"]) for a in concept]
    assert len({a.dedup_key for a in concept}) == 1
    assert 4000 <= pages[0].ts <= 5500 and 16_000 <= pages[1].ts <= 17_500
    resolves = [a for a in concept if a.action == "resolve"]
    assert resolves and pages[0].ts < resolves[0].ts < pages[1].ts
    between = [a for a in concept if pages[0].ts < a.ts < pages[1].ts and a.action == "trigger"]
    assert all(a.details["incident"]["change"] in ("updated", "escalated") for a in between)
    assert mon.snapshots()[0]["incidents"] == {}  # the second one resolved too: 4,000 quiet outcomes at the end


def test_a_falling_error_rate_is_no_incident(profile: ReferenceProfile) -> None:
    mon = make(profile)
    alerts = feed_errors(mon, [(5000, 0.30), (10_000, 0.05)], seed=4)
    assert [a for a in alerts if a.kind == "concept_drift"] == []


def test_stationary_errors_raise_nothing_and_ddm_false_alarms_stay_pending(profile: ReferenceProfile) -> None:
    mon = make(profile)
    for seed in range(3):
        assert feed_errors(mon, [(20_000, 0.02)], seed=seed, version=seed + 1) == []


def test_warmup_hides_early_detections_but_not_a_later_change(profile: ReferenceProfile) -> None:
    """An error increase inside the warm-up is not reported (a learner's early errors); the next change is."""
    rates = [(300, 0.02), (700, 0.40), (1000, 0.05), (6000, 0.35)]
    assert opened(feed_errors(make(profile, warmup=0), rates, seed=5))[0].ts <= 1000
    mon = make(profile, warmup=2000)
    pages = opened(feed_errors(mon, rates, seed=5))
    assert len(pages) == 1 and 2000 < pages[0].ts <= 3500
    assert mon.monitors[(MODEL, 1)].warmup_suppressed >= 1


def test_update_alerts_carry_the_count_and_the_same_key(profile: ReferenceProfile) -> None:
    mon = make(profile, resolve_after=50_000)
    alerts = feed_errors(mon, [(3000, 0.05), (3000, 0.25), (3000, 0.50), (3000, 0.75)], seed=6)
    concept = [a for a in alerts if a.kind == "concept_drift" and a.action == "trigger"]
    assert len(opened(concept)) == 1 and len(concept) >= 3
    counts = [a.details["incident"]["detections"] for a in concept]
    assert counts == sorted(counts) and counts[-1] > counts[0]
    snap = mon.snapshots()[0]["incidents"]
    assert list(snap) == [concept[0].dedup_key] and snap[concept[0].dedup_key]["detections"] >= counts[-1]


def test_score_adwin_incident_shares_its_key_with_psi_and_resolves_when_both_have(profile: ReferenceProfile) -> None:
    """ADWIN and PSI on scores feed one incident (one dedup key): one page, one resolve after both resolved."""
    mon = make(profile, resolve_after=2000)
    rng = np.random.default_rng(7)
    z = np.concatenate([rng.normal(0, 1, 3000), rng.normal(1.5, 1, 3000), rng.normal(0, 1, 8000)])
    alerts: list[Alert] = []
    for i, s in enumerate(1.0 / (1.0 + np.exp(-z))):
        p = Prediction(str(i), "e", i, MODEL, 1, "champion", float(s), int(s >= 0.5), 0, None)
        alerts += mon.on_predictions([p], now_ms=i)
    score = [a for a in alerts if a.dedup_key == f"{MODEL}/1/prediction_drift/score/all"]
    assert any(a.detector == "adwin" for a in score)
    assert [a.action for a in score if a.action == "resolve"] == ["resolve"], [(a.action, a.detector) for a in score]
    assert score[-1].action == "resolve" and score[-1].ts > 6000
    assert mon.book.open_incidents() == {}
    assert score[0].action == "trigger" and score[0].ts >= 3000


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(200, 4000), st.sampled_from([0.02, 0.05, 0.1, 0.2, 0.4, 0.6])),
                min_size=1, max_size=6), st.integers(0, 10**6))
def test_no_incident_outlives_its_quiet_period_and_pages_alternate_with_resolves(
        segments: list[tuple[int, float]], seed: int) -> None:
    """Whatever the error stream: per dedup key, opened → (updated | escalated)* → resolve → opened ...; and an
    incident never stays open more than ``resolve_after`` outcomes (plus one batch) past its last detection."""
    X = np.random.default_rng(0).normal(size=(500, 2))
    prof = ReferenceProfile.from_training(X, ["a", "b"], scores=1.0 / (1.0 + np.exp(-X[:, 0])), bins=10)
    mon = make(prof, resolve_after=1500)
    rng = np.random.default_rng(seed)
    errors = np.concatenate([rng.random(n) < p for n, p in segments]).astype(int)
    is_open = False
    for i in range(0, len(errors), 100):
        for a in mon.on_outcomes([(MODEL, 1, int(e)) for e in errors[i:i + 100]], now_ms=i):
            change = a.details["incident"]["change"]
            if a.action == "resolve":
                assert is_open
                is_open = False
            elif change == "opened":
                assert not is_open
                is_open = True
            else:
                assert is_open and change in ("updated", "escalated")
        position = mon.monitors[(MODEL, 1)].outcomes
        for inc in mon.book.open_incidents().values():
            assert position - inc.last_detection < 1500 + 100
