"""MonitorHandler keeps the report's history: throttled snapshots, alert / command / ack events, written after
delivery; a failing history store never fails the batch; every alert says what the report shows first."""

from __future__ import annotations

from typing import Any

import numpy as np

from models.prediction import Prediction
from monitor.drift_monitor import DriftMonitor
from monitor.history import MemoryHistory
from monitor.reference import ReferenceProfile
from monitor.rollback import RollbackPolicy
from streams import codec
from streams.control.protocol import Ack
from streams.metrics import Metrics
from streams.runtime.monitor_handler import MonitorHandler
from streams.settings import Settings

from .fake_message import FakeMessage
from .test_monitor_ab import Clock, FakeRegistry, ScriptedJoin

MODEL = "risk"


class BrokenHistory(MemoryHistory):
    def write(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("redis is gone")


def make(history: MemoryHistory) -> tuple[MonitorHandler, Clock]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 1))
    prof = ReferenceProfile.from_training(X, ["hr"], scores=1 / (1 + np.exp(-X[:, 0])))
    drift = DriftMonitor(lambda m, v: prof, evaluate_every=100)
    clock = Clock()
    h = MonitorHandler(Settings(), drift, ScriptedJoin(), RollbackPolicy(FakeRegistry(), mode="alert_only"),  # type: ignore[arg-type]
                       registry=FakeRegistry(), control_key=b"k" * 32, clock=clock, metrics=Metrics(),
                       history=history, history_interval_ms=5000)
    return h, clock


def batch(shift: float, n: int = 250, seed: int = 0) -> list[FakeMessage]:
    rng = np.random.default_rng(seed)
    preds = [Prediction(f"p{seed}-{i}", f"e{i}", i, MODEL, 1, "champion", float(rng.uniform()), 1, 0,
                        {"hr": float(rng.normal(shift, 1.0))}) for i in range(n)]
    return [FakeMessage("predictions", 0, i, codec.encode(p.to_dict())) for i, p in enumerate(preds)]


def run(h: MonitorHandler, messages: list[FakeMessage]) -> list[dict]:
    result = h.process(messages)
    if result.finalize is not None:
        result.finalize()  # what the loop does after every output was delivered
    return [codec.decode(o.value) for o in result.outputs if o.topic == "alerts"]


def test_snapshots_are_throttled_and_alerts_become_events_after_delivery() -> None:
    history = MemoryHistory()
    h, clock = make(history)
    alerts: list[dict] = []
    for i in range(12):  # 3,000 predictions, shifted: PSI on hr goes critical
        clock.t += 1.0
        result = h.process(batch(3.0, seed=i))
        assert history.events(MODEL, 0, 10**13) == [] or i > 0  # nothing is written before delivery
        if result.finalize is not None:
            result.finalize()
        alerts += [codec.decode(o.value) for o in result.outputs if o.topic == "alerts"]
    snaps = history.snapshots(MODEL, 0, 10**13)
    assert [s["ts"] for s in snaps] == [1_001_000, 1_006_000, 1_011_000]  # one per 5 s of traffic
    assert sum(s["new"] for s in snaps) <= 3000 and snaps[-1]["psi"]["hr"] > 0.25
    events = history.events(MODEL, 0, 10**13)
    assert alerts and [e["alert_id"] for e in events] == [a["alert_id"] for a in alerts]
    for a in alerts:
        assert a["summary"].endswith(a["details"]["report_first"]) and "| report first: hr" in a["summary"]
        assert a["details"]["report"] == f"driftline report --model {MODEL}"


def test_acks_are_events_and_a_broken_store_never_fails_a_batch() -> None:
    h, clock = make(BrokenHistory())
    for i in range(4):
        clock.t += 6
        run(h, batch(3.0, seed=i))  # no exception: logged and counted
    failed = h.metrics.registry.get_sample_value("driftline_history_records_total",
                                                 {"kind": "snapshot", "outcome": "failed"})
    assert failed and failed >= 1
    history = MemoryHistory()
    h, _ = make(history)
    h.on_control(Ack("cmd-1", "scorer-a", "applied", active_version=1, error=None, at=1234, model=MODEL))
    (event,) = history.events(MODEL, 0, 10**6)
    assert event["kind"] == "ack" and event["version"] == 1 and "serving v1" in event["label"]
