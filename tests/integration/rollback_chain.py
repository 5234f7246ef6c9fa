"""What the end-to-end tests (embedded stack, Faust engine, containers) check on the topics after a demo run:
the signed rollback, its acks, and the model version of the predictions before the onset and after the ack."""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from streams import codec
from streams.control.protocol import CommandVerifier
from streams.settings import Settings


def read_records(bootstrap: str, topic: str, partitions: int, idle_s: float = 1.5) -> list[Message]:
    """Every record of ``topic`` from the beginning (no group), until nothing arrives for ``idle_s``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out, last = [], time.time()
    try:
        while time.time() - last < idle_s:
            for m in consumer.consume(1000, 0.2):
                if m.error() is None:
                    out.append(m)
                    last = time.time()
    finally:
        consumer.close()
    return out


def read_all(bootstrap: str, topic: str, partitions: int, idle_s: float = 1.5) -> list[dict]:
    """Every record of ``topic``, decoded (see :func:`read_records`)."""
    return [codec.decode(m.value()) for m in read_records(bootstrap, topic, partitions, idle_s)]


def assert_rollback_chain(settings: Settings, summary: dict[str, Any], started_ms: int, idle_s: float = 1.5) -> None:
    """The demo's rollback command is signed and targets v1, every ack says applied on v1, predictions before
    the onset are all v2 and those scored after the first ack are all v1."""
    bootstrap = settings.kafka.bootstrap_servers
    v1, v2 = summary["versions"]["v1"], summary["versions"]["v2"]
    control = [m for m in read_all(bootstrap, settings.topics.control, 1, idle_s)
               if m.get("issued_at", 0) >= started_ms or m.get("at", 0) >= started_ms]
    commands = [m for m in control if m.get("type") == "command"]
    rollback = next(c for c in commands if c["command_id"] == summary["rollback_command_id"])
    verified = CommandVerifier(settings.control_key.encode()).verify(rollback, int(time.time() * 1000))
    assert (verified.command, verified.to_version) == ("rollback", v1)
    acks = [m for m in control if m.get("type") == "ack" and m["ack_for"] == rollback["command_id"]]
    assert acks and all(a["status"] == "applied" and a["active_version"] == v1 for a in acks)
    ack_at = min(a["at"] for a in acks)

    predictions = [p for p in read_all(bootstrap, settings.topics.predictions,
                                       settings.topics.predictions_partitions, idle_s)
                   if p["scored_at"] >= started_ms and p["model"] == summary["model"]]
    before = {p["model_version"] for p in predictions if p["scored_at"] < int(summary["onset_at_ms"])}
    after = [p for p in predictions if p["scored_at"] > ack_at]
    assert before == {v2}
    assert after, "no prediction was scored after the ack"
    assert {p["model_version"] for p in after} == {v1}
