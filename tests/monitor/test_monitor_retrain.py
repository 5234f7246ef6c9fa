"""Retrain trigger: once per incident on the production version; wired through MonitorHandler with fakes."""

from __future__ import annotations

from types import SimpleNamespace as NS
from typing import Any

import numpy as np

from models.prediction import Prediction
from monitor.alerts import Alert
from monitor.drift_monitor import DriftMonitor, default_policy
from monitor.reference import ReferenceProfile
from monitor.retrain import RetrainPolicy
from monitor.rollback import RollbackPolicy
from monitor.version_monitor import MonitorConfig
from streams import codec
from streams.control.protocol import CommandVerifier
from streams.runtime.monitor_handler import MonitorHandler
from streams.settings import Settings
from tests.streams.fake_message import FakeMessage

KEY = b"k" * 32
MODEL = "risk"


class FakeRegistry:
    def __init__(self, prod: int = 2) -> None:
        self.prod = prod
        self.rollbacks: list[int] = []

    def production(self, model: str) -> Any:
        return NS(version=self.prod)

    def rollback_target(self, model: str, exclude: Any = ()) -> Any:
        return NS(version=self.prod - 1) if self.prod > 1 else None

    def rollback(self, model: str, *, to_version: int, by: str, reason: str) -> None:
        self.rollbacks.append(to_version)
        self.prod = to_version

    def uid(self, model: str) -> str:
        return "reg-uid-1"


def alert(version: int = 2, *, severity: str = "critical", action: str = "trigger", feature: str = "hr",
          kind: str = "data_drift") -> Alert:
    return Alert.build(action=action, severity=severity, kind=kind, model=MODEL, model_version=version,
                       feature=feature, detector="psi", statistic="psi", value=0.4, threshold=0.25,
                       window="last 1000 predictions", ts=0, summary="psi",
                       details={"top_drifted_features": [{"feature": feature, "psi": 0.4}], "rolling_auc": 0.7})


def test_one_request_per_incident_with_evidence() -> None:
    pol = RetrainPolicy(FakeRegistry())
    a, b = alert(feature="hr"), alert(feature="spo2")
    reqs = pol.on_alerts([a, b], now_ms=5)
    assert len(reqs) == 1
    r = reqs[0]
    assert (r.model, r.version) == (MODEL, 2)
    assert r.evidence["alert_ids"] == [a.alert_id, b.alert_id]
    assert [s["feature"] for s in r.evidence["statistics"]] == ["hr", "spo2"]
    assert r.evidence["top_drifted_features"] == [{"feature": "hr", "psi": 0.4}]
    assert r.evidence["window"] == "last 1000 predictions" and r.evidence["performance"]["rolling_auc"] == 0.7
    assert pol.on_alerts([alert(feature="rr")], now_ms=6) == []           # same incident
    pol.on_alerts([alert(feature="hr", action="resolve")], now_ms=7)
    assert pol.on_alerts([alert(feature="rr")], now_ms=8) == []           # spo2 and rr are still open
    pol.on_alerts([alert(feature=f, action="resolve") for f in ("spo2", "rr")], now_ms=9)
    assert pol.open_incidents() == {}
    assert len(pol.on_alerts([alert(feature="hr")], now_ms=10)) == 1      # a new incident may ask again


def test_only_critical_drift_triggers_on_production() -> None:
    pol = RetrainPolicy(FakeRegistry(prod=3))
    assert pol.on_alerts([alert(version=2)], 0) == []                      # not production
    assert pol.on_alerts([alert(version=3, severity="warning")], 0) == []
    assert pol.on_alerts([alert(version=3, kind="performance")], 0) == []
    assert RetrainPolicy(FakeRegistry(), mode="off").on_alerts([alert()], 0) == []


# ------------------------------------------------------------------------------------------ handler wiring
class NoJoin:
    def remember(self, predictions: Any, slice_of: Any = None) -> list:
        return []

    def match(self, labels: Any) -> list:
        return []


def _handler(registry: FakeRegistry, mode: str) -> MonitorHandler:
    X = np.random.default_rng(0).normal(size=(3000, 1))
    prof = ReferenceProfile.from_training(X, ["hr"], scores=1 / (1 + np.exp(-X[:, 0])))
    drift = DriftMonitor(lambda m, v: prof, policy=default_policy(100),
                         config=MonitorConfig(psi_window=200, psi_min_samples=100, mean_shift_window=200),
                         evaluate_every=50)
    return MonitorHandler(Settings(), drift, NoJoin(), RollbackPolicy(registry), registry=registry,  # type: ignore[arg-type]
                          control_key=KEY, clock=lambda: 1.0, retrain=RetrainPolicy(registry, mode=mode))  # type: ignore[arg-type]


def _batches(n: int, shift: float) -> list[list[FakeMessage]]:
    rng = np.random.default_rng(1)
    out = []
    for b in range(n):
        batch = []
        for i in range(50):
            x = float(rng.normal(shift))
            p = Prediction(f"p{b}-{i}", "e", 0, MODEL, 2, "champion", 1 / (1 + np.exp(-x)), 1, 0, {"hr": x})
            batch.append(FakeMessage("predictions", 0, 0, codec.encode(p.to_dict())))
        out.append(batch)
    return out


def _commands(outputs: list) -> list[dict]:
    return [codec.decode(o.value) for o in outputs if o.topic == Settings().topics.control]


def test_handler_emits_one_signed_retrain_request_after_the_rollback() -> None:
    reg = FakeRegistry(prod=2)
    h = _handler(reg, "after_rollback")
    cmds: list[dict] = []
    for batch in _batches(12, shift=2.5):
        cmds += _commands(h.process(batch).outputs)  # type: ignore[arg-type]
    kinds = [c["command"] for c in cmds]
    assert kinds == ["rollback", "retrain_requested"]
    retrain = CommandVerifier(KEY).verify(cmds[1], now_ms=1000)               # signed like any command
    assert retrain.model == MODEL and retrain.evidence is not None
    assert retrain.evidence["model_version"] == 2 and retrain.evidence["alert_ids"]
    assert retrain.evidence["top_drifted_features"][0]["feature"] == "hr"
    rollback = CommandVerifier(KEY).verify(cmds[0], now_ms=1000)
    assert (rollback.to_version, rollback.from_version, rollback.scope) == (1, 2, "reg-uid-1")
    assert reg.rollbacks == []  # the scorers decide it and move the registry's stages (ControlAgent)


def test_handler_retrains_instead_of_rolling_back_when_told() -> None:
    reg = FakeRegistry(prod=2)
    h = _handler(reg, "instead_of_rollback")
    cmds: list[dict] = []
    for batch in _batches(12, shift=2.5):
        cmds += _commands(h.process(batch).outputs)  # type: ignore[arg-type]
    assert [c["command"] for c in cmds] == ["retrain_requested"]
    assert reg.rollbacks == []


def test_handler_stationary_stream_requests_nothing() -> None:
    h = _handler(FakeRegistry(), "after_rollback")
    cmds: list[dict] = []
    for batch in _batches(12, shift=0.0):
        cmds += _commands(h.process(batch).outputs)  # type: ignore[arg-type]
    assert cmds == []
