"""The whole loop against the real embedded broker and real Redis: drift → alert → signed rollback → ack → v1.

Asserts the causal chain, reading the real topics afterwards: no alert before the drift onset; the rollback
command on ``control`` verifies with the control key and was acked ``applied`` by the scorer; every prediction
scored after the ack carries v1.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams import codec
from streams.control import CommandVerifier
from streams.demo import DemoConfig, run_demo
from streams.settings import Settings

pytestmark = pytest.mark.integration


def read_all(settings: Settings, topic: str, partitions: int, idle_s: float = 1.5) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out, last = [], time.time()
    try:
        while time.time() - last < idle_s:
            for m in consumer.consume(1000, 0.2):
                if m.error() is None:
                    out.append(codec.decode(m.value()))
                    last = time.time()
    finally:
        consumer.close()
    return out


def test_drift_alert_rollback_ack_and_v1_afterwards(settings: Settings) -> None:
    started_ms = int(time.time() * 1000)
    # 300 patients: the PSI window must see many entities, or the per-patient autocorrelation of the vitals
    # alone gives PSI ~ (bins - 1) / patients and false alarms before the onset.
    summary = run_demo(settings, DemoConfig(entities=300, rate=400.0, duration_s=30.0, drift_at_s=10.0,
                                            train_duration_s=60.0), echo=lambda _l: None)
    assert summary["worker_errors"] == []
    assert summary["alerts_before_onset"] == 0, summary
    assert summary["detection_delay_s"] is not None and summary["detection_delay_s"] > 0, summary
    assert summary["ok"], summary
    v1, v2 = summary["versions"]["v1"], summary["versions"]["v2"]

    control = [m for m in read_all(settings, settings.topics.control, 1) if m.get("issued_at", 0) >= started_ms
               or m.get("at", 0) >= started_ms]
    commands = [m for m in control if m.get("type") == "command"]
    rollback = next(c for c in commands if c["command_id"] == summary["rollback_command_id"])
    verified = CommandVerifier(settings.control_key.encode()).verify(rollback, int(time.time() * 1000))
    assert (verified.command, verified.to_version) == ("rollback", v1)
    acks = [m for m in control if m.get("type") == "ack" and m["ack_for"] == rollback["command_id"]]
    assert acks and all(a["status"] == "applied" and a["active_version"] == v1 for a in acks)
    ack_at = min(a["at"] for a in acks)

    predictions = [p for p in read_all(settings, settings.topics.predictions, settings.topics.predictions_partitions)
                   if p["scored_at"] >= started_ms and p["model"] == summary["model"]]
    before = {p["model_version"] for p in predictions if p["scored_at"] < int(summary["onset_at_ms"])}
    after = [p for p in predictions if p["scored_at"] > ack_at]
    assert before == {v2}
    assert after, "no prediction was scored after the ack"
    assert {p["model_version"] for p in after} == {v1}
