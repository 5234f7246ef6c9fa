"""The batch loop's producer (``LoopProducer``) asks for delivery reports of failed records only, to one
producer-wide callback: on the real broker, a delivered batch calls no Python callback at all and passes the flush
check; an undeliverable one is still reported and fails it."""

from __future__ import annotations

import dataclasses

import pytest
from confluent_kafka import KafkaError, Message

from streams.local.procs import free_port
from streams.metrics import Metrics
from streams.runtime.batch import DeliveryError, Output
from streams.runtime.clients import producer_config
from streams.runtime.producing import DeliveryReports, LoopProducer, OutputProducer
from streams.runtime.topics import TopicSpec, ensure_topics
from streams.settings import Settings

pytestmark = pytest.mark.integration


class Counting(DeliveryReports):
    """Every delivery report the producer hands to Python, recorded before the usual handling."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[KafkaError | None] = []

    def delivered(self, err: KafkaError | None, msg: Message) -> None:
        self.seen.append(err)
        super().delivered(err, msg)


def test_a_delivered_batch_calls_no_python_callback(settings: Settings, unique: str) -> None:
    topic = f"loop-producer-{unique}"
    ensure_topics(settings, [TopicSpec(topic, 1)])
    reports = Counting()
    out = OutputProducer(LoopProducer(producer_config(settings.kafka), reports), Metrics(), "pipeline",
                         max_message_bytes=settings.kafka.message_max_bytes)
    out.produce_all([Output(topic, b"x" * 100, b"k") for _ in range(200)])
    out.produce_all([Output(f"{topic}.dlq", b"y", b"k", [("reason", b"planted")])])  # the headers path
    out.flush_and_check(15.0)
    assert reports.seen == [] and out.errors == []


def test_an_undeliverable_batch_is_still_reported(settings: Settings) -> None:
    kafka = dataclasses.replace(settings.kafka, bootstrap_servers=f"127.0.0.1:{free_port()}")  # nobody listens
    reports = Counting()
    out = OutputProducer(LoopProducer(producer_config(kafka, message_timeout_ms=300), reports), Metrics(),
                         "pipeline", max_message_bytes=kafka.message_max_bytes)
    out.produce_all([Output("anywhere", b"x", b"k") for _ in range(3)])
    with pytest.raises(DeliveryError):
        out.flush_and_check(10.0)
    assert len(reports.seen) == 3 and all(err is not None for err in reports.seen) and len(out.errors) == 3
