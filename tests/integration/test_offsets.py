"""A fresh group started at the end of its topics sees only what is written afterwards (the demo run twice)."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.exceptions import ConfigError
from streams.runtime.clients import make_consumer
from streams.runtime.offsets import end_offsets, start_groups_at_end
from streams.settings import Settings

pytestmark = pytest.mark.integration


def _topic(settings: Settings, name: str, partitions: int) -> str:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result()
    return name


def _produce(settings: Settings, topic: str, values: list[bytes], partitions: int) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for i, v in enumerate(values):
        producer.produce(topic, v, partition=i % partitions)
    assert producer.flush(10) == 0


def test_end_offsets_are_the_high_watermarks_also_of_empty_partitions(settings: Settings, unique: str) -> None:
    topic = _topic(settings, f"ends-{unique}", 3)
    _produce(settings, topic, [b"a", b"b", b"c", b"d", b"e"], partitions=2)  # partition 2 stays empty
    assert {tp.partition: tp.offset for tp in end_offsets(settings.kafka, [topic])} == {0: 3, 1: 2, 2: 0}


def test_a_group_started_at_the_end_skips_earlier_records(settings: Settings, unique: str) -> None:
    topic = _topic(settings, f"skip-{unique}", 2)
    _produce(settings, topic, [b"old-%d" % i for i in range(20)], partitions=2)
    group = f"g-{unique}"
    assert start_groups_at_end(settings.kafka, {group: [topic]}) == {group: 20}
    _produce(settings, topic, [b"new-%d" % i for i in range(6)], partitions=2)

    consumer = make_consumer(settings.kafka, group)
    consumer.subscribe([topic])
    seen: list[bytes] = []
    deadline = time.time() + 15
    try:
        while len(seen) < 6 and time.time() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                seen.append(msg.value())
        end = time.time() + 1.0  # and nothing more arrives
        while time.time() < end:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                seen.append(msg.value())
    finally:
        consumer.close()
    assert sorted(seen) == sorted(b"new-%d" % i for i in range(6))


def test_a_missing_topic_is_a_clear_error(settings: Settings, unique: str) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        end_offsets(settings.kafka, [f"missing-{unique}"], timeout_s=3)
