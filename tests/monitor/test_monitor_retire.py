"""Incidents that close: a version that stopped serving has its open incidents resolved with reason
``version retired`` (windowed statistics and detector events, overall and per slice); a version that merely
gets no traffic stays inconclusive and keeps them open; late traffic of a retired version is ignored."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import numpy as np
import pytest

from monitor.drift_monitor import DriftMonitor, default_policy
from monitor.reference import ReferenceProfile
from monitor.rollback import RollbackPolicy
from monitor.slices import slice_by
from monitor.version_monitor import MonitorConfig
from streams.metrics import Metrics
from streams.runtime.monitor_handler import MonitorHandler
from streams.settings import Settings

from .test_monitor_drift import MODEL, NAMES, feed, stream


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    X = np.random.default_rng(0).normal(size=(5000, 3))
    return ReferenceProfile.from_training(X, NAMES, scores=1.0 / (1.0 + np.exp(-X[:, 1])), bins=10)


def drifting_monitor(profile: ReferenceProfile, **kw: Any) -> tuple[DriftMonitor, list]:
    mon = DriftMonitor(lambda model, version: profile, policy=default_policy(min_samples=500),
                       config=MonitorConfig(psi_window=1000, psi_min_samples=500, mean_shift_window=1000), **kw)
    feed(mon, stream(1500, seed=2, version=2))
    alerts = feed(mon, stream(3000, seed=3, version=2, shift={0: 1.5, 1: 1.0}, start=1500))
    alerts += feed(mon, stream(1500, seed=5, version=3, start=9000))  # another version, stable
    return mon, alerts


def open_incidents(alerts: list) -> dict[str, str]:
    state: dict[str, str] = {}
    for a in alerts:
        if a.action == "trigger":
            state[a.dedup_key] = a.severity
        else:
            state.pop(a.dedup_key, None)
    return state


def test_retiring_a_version_resolves_each_open_incident_once(profile: ReferenceProfile) -> None:
    mon, alerts = drifting_monitor(profile)
    before = open_incidents(alerts)
    assert any("/data_drift/hr/" in k for k in before) and all(k.startswith(f"{MODEL}/2/") for k in before)
    resolves = mon.retire_version(MODEL, 2, now_ms=10**7)
    assert {a.dedup_key for a in resolves} == set(before)
    assert all(a.action == "resolve" and a.details["reason"] == "version retired" and a.ts == 10**7
               for a in resolves)
    assert all(a.severity == before[a.dedup_key] for a in resolves if a.detector == "lifecycle")
    assert open_incidents(alerts + resolves) == {}
    hr = next(a for a in resolves if a.dedup_key.endswith("/data_drift/hr/all"))
    assert (hr.kind, hr.feature, hr.slice, hr.model_version) == ("data_drift", "hr", None, 2)
    assert "version retired" in hr.summary
    assert mon.retire_version(MODEL, 2, now_ms=10**7 + 1) == []  # already closed: nothing twice
    assert (MODEL, 2) not in mon.monitors and (MODEL, 3) in mon.monitors
    assert not [k for k in mon.policy.open_incidents() if f"|{MODEL}/2/" in k]


def test_late_traffic_of_a_retired_version_is_ignored_until_reinstated(profile: ReferenceProfile) -> None:
    mon, _ = drifting_monitor(profile)
    mon.retire_version(MODEL, 2, now_ms=10**7)
    late = feed(mon, stream(3000, seed=7, version=2, shift={0: 1.5}, start=20_000), t0=10**7)
    assert late == [] and (MODEL, 2) not in mon.monitors
    mon.reinstate(MODEL, 2)  # promoted again: watched from scratch, incidents open again when it drifts
    again = feed(mon, stream(3000, seed=8, version=2, shift={0: 1.5}, start=30_000), t0=2 * 10**7)
    assert any(a.action == "trigger" and a.dedup_key.endswith("/data_drift/hr/all") for a in again)


def test_no_traffic_is_inconclusive_and_closes_nothing(profile: ReferenceProfile) -> None:
    mon, alerts = drifting_monitor(profile)
    before = open_incidents(alerts)
    for t in range(10):  # version 2 is silent; only version 3 keeps serving
        alerts += feed(mon, stream(500, seed=100 + t, version=3, start=50_000 + 500 * t), t0=10**7 + t)
    assert open_incidents(alerts) == before  # nothing resolved by missing data
    assert any("no traffic" in reason for key, reason in mon.inconclusive().items() if f"|{MODEL}/2/" in key)


def test_detector_events_and_slices_resolve_too(profile: ReferenceProfile) -> None:
    mon, alerts = drifting_monitor(profile, slice_of=slice_by("hr", (0.0,)))
    events = [a for a in alerts if a.detector == "adwin" and a.model_version == 2]
    sliced = {a.dedup_key for a in alerts if a.slice is not None and a.action == "trigger" and a.model_version == 2}
    assert events and sliced  # the shifted stream raised an ADWIN event and per-slice incidents
    resolves = {a.dedup_key: a for a in mon.retire_version(MODEL, 2, now_ms=1)}
    assert {a.dedup_key for a in events} <= set(resolves) and sliced <= set(resolves)
    assert all(resolves[k].slice == k.rsplit("/", 1)[1] for k in sliced)
    assert all(k.startswith(f"{MODEL}/2/") for k in resolves)
    assert not [k for k in mon.slice_monitors if k[:2] == (MODEL, 2)]


# ------------------------------------------------------------------------- the monitor's hook (acks + registry)
class Registry:
    def __init__(self, stages: dict[int, str]) -> None:
        self.stages = stages

    def get(self, model: str, version: int) -> Any:
        return NS(stage=self.stages[version])

    def production(self, model: str) -> Any:
        return None


def handler(mon: DriftMonitor, stages: dict[int, str]) -> MonitorHandler:
    return MonitorHandler(Settings(), mon, NS(), RollbackPolicy(Registry(stages), mode="alert_only"),  # type: ignore[arg-type]
                          registry=Registry(stages), control_key=b"k", metrics=Metrics(), clock=lambda: 123.0)


def ack(active: int, status: str = "applied") -> Any:
    return NS(ack_for="c1", instance="i1", status=status, active_version=active, model=MODEL)


def test_an_applied_ack_away_from_an_archived_version_retires_it(profile: ReferenceProfile) -> None:
    mon, alerts = drifting_monitor(profile)
    h = handler(mon, {2: "archived", 3: "production"})
    h._observe([], [], [])  # noqa: SLF001 - the gauges of both versions exist
    assert ("risk", "2", "hr") in h.metrics.psi._metrics  # noqa: SLF001
    assert h.retire_stopped() == []  # no ack yet: nothing is known to have stopped serving
    h.on_control(ack(3, status="rejected"))
    assert h.retire_stopped() == []
    h.on_control(ack(3))
    resolves = h.retire_stopped()
    assert {a.dedup_key for a in resolves} == set(open_incidents(alerts)) and resolves
    assert all(a.ts == 123_000 and a.details["reason"] == "version retired" for a in resolves)
    assert h.timeline.first("version_retired") is not None
    assert not [k for k in h.metrics.psi._metrics if k[:2] == ("risk", "2")]  # noqa: SLF001 - no stale PSI
    assert [k for k in h.metrics.psi._metrics if k[:2] == ("risk", "3")]  # noqa: SLF001
    assert h.retire_stopped() == []


def test_a_staging_challenger_is_not_retired_by_a_swap(profile: ReferenceProfile) -> None:
    mon, _ = drifting_monitor(profile)
    h = handler(mon, {2: "staging", 3: "production"})  # v2 still serves as a challenger
    h.on_control(ack(3))
    assert h.retire_stopped() == [] and (MODEL, 2) in mon.monitors
