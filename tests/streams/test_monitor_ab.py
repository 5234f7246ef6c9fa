"""MonitorHandler's champion/challenger report with fakes: gauges, snapshots, log line, stale series removed."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from models.abtest_report import ABTracker
from models.prediction import Prediction
from monitor.drift_monitor import DriftMonitor
from monitor.label_join import Outcome
from monitor.reference import ReferenceProfile
from monitor.rollback import RollbackPolicy
from streams import codec
from streams.metrics import Metrics
from streams.runtime.monitor_handler import MonitorHandler
from streams.settings import Settings

from .fake_message import FakeMessage

MODEL = "risk"


class ScriptedJoin:
    """Returns the outcomes the test queued, as if their labels had just been joined."""

    def __init__(self) -> None:
        self.queued: list[Outcome] = []

    def remember(self, predictions: Any, slice_of: Any = None) -> list:
        return []

    def match(self, labels: Any) -> list:
        out, self.queued = self.queued, []
        return out


class FakeRegistry:
    def production(self, model: str) -> Any:
        return None


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(ab: ABTracker | None | str = "new") -> tuple[MonitorHandler, ScriptedJoin, Clock]:
    ab = ABTracker() if ab == "new" else ab
    X = np.random.default_rng(0).normal(size=(500, 1))
    prof = ReferenceProfile.from_training(X, ["hr"], scores=1 / (1 + np.exp(-X[:, 0])))
    drift = DriftMonitor(lambda m, v: prof, evaluate_every=50)
    join, clock = ScriptedJoin(), Clock()
    h = MonitorHandler(Settings(), drift, join, RollbackPolicy(FakeRegistry(), mode="alert_only"),  # type: ignore[arg-type]
                       registry=FakeRegistry(), control_key=b"k" * 32, clock=clock, metrics=Metrics(), ab=ab)  # type: ignore[arg-type]
    return h, join, clock


def batch(join: ScriptedJoin, champion_right: int, challenger_right: int, n: int = 100) -> list[FakeMessage]:
    preds = [Prediction(f"p{i}-{v}", f"e{i}", i, MODEL, ver, v, 0.6, 1, 0, {"hr": 0.1})
             for i in range(5) for ver, v in ((1, "champion"), (2, "challenger"))]
    for version, right in ((1, champion_right), (2, challenger_right)):
        join.queued += [Outcome(MODEL, version, 0, 1, 0.6)] * right + [Outcome(MODEL, version, 1, 0, 0.6)] * (n - right)
    msgs = [FakeMessage("predictions", 0, 0, codec.encode(p.to_dict())) for p in preds]
    return msgs + [FakeMessage("labels", 0, 0, codec.encode({"prediction_id": "x", "label": 1}))]


def gauge(h: MonitorHandler, name: str) -> float | None:
    return h.metrics.registry.get_sample_value(name, {"model": MODEL, "champion": "1", "challenger": "2"})


def test_report_is_exported_logged_and_in_the_snapshots(caplog: pytest.LogCaptureFixture) -> None:
    h, join, _ = make()
    with caplog.at_level(logging.INFO, logger="streams.runtime.monitor_handler"):
        h.process(batch(join, 60, 85))  # type: ignore[arg-type]
    [r] = h.ab_reports
    assert (r.champion, r.challenger, r.verdict) == (1, 2, "better")
    assert gauge(h, "driftline_ab_z") == pytest.approx(r.z) and r.z > 0
    assert gauge(h, "driftline_ab_p_value") == pytest.approx(r.p_value) and r.p_value < 0.05
    assert any("A/B risk: challenger v2 vs champion v1" in m and "better" in m for m in caplog.messages)
    snaps = {s["version"]: s for s in h.snapshots()}
    assert snaps[2]["ab_test"]["verdict"] == "better" and "ab_test" not in snaps[1]
    assert h.timeline.first("ab_test", verdict="better") is not None


def test_counts_accumulate_across_batches() -> None:
    h, join, _ = make()
    h.process(batch(join, 10, 12, n=20))  # type: ignore[arg-type]
    assert h.ab_reports[0].verdict == "undecided"  # 20 per arm: below min_n
    h.process(batch(join, 40, 20, n=50))  # type: ignore[arg-type]
    r = h.ab_reports[0]
    assert (r.champion_successes, r.champion_n, r.challenger_successes, r.challenger_n) == (50, 70, 32, 70)
    assert r.verdict == "worse"


def test_series_removed_when_the_challenger_leaves_traffic() -> None:
    h, join, clock = make(ABTracker(active_ms=1000))
    h.process(batch(join, 50, 50))  # type: ignore[arg-type]
    assert gauge(h, "driftline_ab_z") is not None
    clock.t += 5.0
    h.process([FakeMessage("labels", 0, 0, codec.encode({"prediction_id": "x", "label": 1}))])  # type: ignore[arg-type]
    assert h.ab_reports == [] and gauge(h, "driftline_ab_z") is None and gauge(h, "driftline_ab_p_value") is None


def test_off_without_a_tracker() -> None:
    h, join, _ = make(None)
    h.process(batch(join, 60, 85))  # type: ignore[arg-type]
    assert h.ab_reports == [] and gauge(h, "driftline_ab_z") is None
    assert all("ab_test" not in s for s in h.snapshots())
