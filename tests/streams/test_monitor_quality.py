"""MonitorHandler with the data-quality monitor: marked predictions and their outcomes stay out of the drift
statistics, their alert goes out, and no rollback follows."""

from __future__ import annotations

import numpy as np

from models.prediction import Prediction
from monitor.data_quality import DataQualityMonitor, QualityConfig
from monitor.drift_monitor import DriftMonitor
from monitor.label_join import Outcome
from monitor.reference import ReferenceProfile
from monitor.rollback import RollbackPolicy
from streams import codec
from streams.metrics import Metrics
from streams.runtime.monitor_handler import MonitorHandler
from streams.settings import Settings

from .fake_message import FakeMessage
from .test_monitor_ab import Clock, FakeRegistry, ScriptedJoin

MODEL = "risk"


def make(quarantine: bool) -> tuple[MonitorHandler, ScriptedJoin]:
    X = np.random.default_rng(0).normal(size=(500, 1))
    prof = ReferenceProfile.from_training(X, ["hr"], scores=1 / (1 + np.exp(-X[:, 0])))
    join = ScriptedJoin()
    h = MonitorHandler(Settings(), DriftMonitor(lambda m, v: prof, evaluate_every=50), join,
                       RollbackPolicy(FakeRegistry(), mode="rollback"), registry=FakeRegistry(),  # type: ignore[arg-type]
                       control_key=b"k" * 32, clock=Clock(), metrics=Metrics(),
                       quality=DataQualityMonitor(QualityConfig(evaluate_every=50, trigger_after=1,
                                                                quarantine=quarantine)))
    return h, join


def messages(join: ScriptedJoin) -> list[FakeMessage]:
    preds = [Prediction(f"p{i}", f"e{i % 20}", i, MODEL, 1, "champion", 0.6, 1, 0, {"hr": 0.1},
                        quality={"hr": "spike"} if i % 20 < 5 else None) for i in range(100)]
    join.queued += [Outcome(MODEL, 1, 1, 0, 0.6, suspect=True)] * 30 + [Outcome(MODEL, 1, 0, 1, 0.6)] * 70
    return [FakeMessage("predictions", 0, i, codec.encode(p.to_dict())) for i, p in enumerate(preds)] + \
        [FakeMessage("labels", 0, 0, codec.encode({"prediction_id": "x", "label": 1}))]


def test_marked_predictions_and_outcomes_are_kept_out_and_alerted() -> None:
    h, join = make(quarantine=True)
    result = h.process(messages(join))  # type: ignore[arg-type]
    vm = h.drift.monitors[(MODEL, 1)]
    assert (vm.predictions, vm.outcomes) == (75, 70)
    alerts = [codec.decode(o.value) for o in result.outputs if o.topic == "alerts"]
    assert [(a["kind"], a["action"], a["feature"], a["value"]) for a in alerts] == [
        ("data_quality", "trigger", "hr", 5.0)]
    assert not [o for o in result.outputs if o.topic == "control"]  # no rollback


def test_without_quarantine_they_are_watched_as_before() -> None:
    h, join = make(quarantine=False)
    h.process(messages(join))  # type: ignore[arg-type]
    vm = h.drift.monitors[(MODEL, 1)]
    assert (vm.predictions, vm.outcomes) == (100, 100)
