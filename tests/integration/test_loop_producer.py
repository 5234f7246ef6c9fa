"""The batch loop's producer asks for delivery reports of failed records only: on the real broker, a delivered
batch calls no Python callback at all and passes the flush check; an undeliverable one is still reported and
fails it."""

from __future__ import annotations

import dataclasses

import pytest
from confluent_kafka import KafkaError, Message

from streams.local.procs import free_port
from streams.metrics import Metrics
from streams.runtime.batch import DeliveryError, Output
from streams.runtime.clients import make_producer
from streams.runtime.producing import OutputProducer
from streams.runtime.topics import TopicSpec, ensure_topics
from streams.runtime.workers import LOOP_PRODUCER
from streams.settings import Settings

pytestmark = pytest.mark.integration


def counting(out: OutputProducer) -> list[KafkaError | None]:
    """Every delivery report the producer hands to Python, recorded before the usual handling."""
    seen: list[KafkaError | None] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        seen.append(err)
        OutputProducer._delivered(out, err, msg)

    out._delivered = delivered  # type: ignore[method-assign]
    return seen


def test_a_delivered_batch_calls_no_python_callback(settings: Settings, unique: str) -> None:
    topic = f"loop-producer-{unique}"
    ensure_topics(settings, [TopicSpec(topic, 1)])
    out = OutputProducer(make_producer(settings.kafka, **LOOP_PRODUCER), Metrics(), "pipeline",
                         max_message_bytes=settings.kafka.message_max_bytes)
    seen = counting(out)
    out.produce_all([Output(topic, b"x" * 100, b"k") for _ in range(200)])
    out.flush_and_check(15.0)
    assert seen == []


def test_an_undeliverable_batch_is_still_reported(settings: Settings) -> None:
    kafka = dataclasses.replace(settings.kafka, bootstrap_servers=f"127.0.0.1:{free_port()}")  # nobody listens
    out = OutputProducer(make_producer(kafka, message_timeout_ms=300, **LOOP_PRODUCER), Metrics(), "pipeline",
                         max_message_bytes=kafka.message_max_bytes)
    seen = counting(out)
    out.produce_all([Output("anywhere", b"x", b"k") for _ in range(3)])
    with pytest.raises(DeliveryError):
        out.flush_and_check(10.0)
    assert len(seen) == 3 and all(err is not None for err in seen)
