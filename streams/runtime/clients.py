"""Factories for confluent-kafka clients with driftline's explicit semantics.

Consumers: auto-commit off (one owner of offsets: the batch loop), explicit offset reset, group timing
from settings. Producers: idempotent, Java-compatible ``murmur2_random`` partitioner (so a key's partition
can be computed outside Kafka, e.g. by the feature-serving API), small linger for batching.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, Producer

from streams.settings import KafkaSettings


def producer_config(kafka: KafkaSettings, **overrides: Any) -> dict[str, Any]:
    """Config of an idempotent, batching producer.

    Example:
        >>> cfg = producer_config(KafkaSettings(bootstrap_servers="b:1"), linger_ms=1)
        >>> cfg["enable.idempotence"], cfg["partitioner"], cfg["linger.ms"]
        (True, 'murmur2_random', 1)
    """
    cfg: dict[str, Any] = {
        **kafka.client_config(),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 200_000,
        "message.max.bytes": kafka.message_max_bytes,  # dead letters are cut to fit it (streams/runtime/dead_letters.py)
    }
    cfg.update({k.replace("_", "."): v for k, v in overrides.items()})
    return cfg


def consumer_config(kafka: KafkaSettings, group_id: str, *, on_commit: Callable[..., None] | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """Config of a group consumer whose offsets are committed only by the batch loop (``on_commit``: the
    callback that sees the broker's answers to asynchronous commits, e.g. a ``streams.runtime.batch.CommitLog``).

    Example:
        >>> cfg = consumer_config(KafkaSettings(session_timeout_ms=2000, heartbeat_interval_ms=200), "g")
        >>> cfg["enable.auto.commit"], cfg["session.timeout.ms"], cfg["auto.offset.reset"]
        (False, 2000, 'earliest')
    """
    cfg: dict[str, Any] = {
        **kafka.client_config(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": kafka.auto_offset_reset,
        "session.timeout.ms": kafka.session_timeout_ms,
        "heartbeat.interval.ms": kafka.heartbeat_interval_ms,
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.wait.max.ms": kafka.fetch_wait_max_ms,
        "queued.max.messages.kbytes": kafka.prefetch_kbytes,
    }
    cfg.update({k.replace("_", "."): v for k, v in overrides.items()})
    if on_commit is not None:
        cfg["on_commit"] = on_commit
    return cfg


def make_producer(kafka: KafkaSettings, **overrides: Any) -> Producer:
    return Producer(producer_config(kafka, **overrides))


def make_consumer(kafka: KafkaSettings, group_id: str, *, on_commit: Callable[..., None] | None = None,
                  **overrides: Any) -> Consumer:
    return Consumer(consumer_config(kafka, group_id, on_commit=on_commit, **overrides))


def close_producer(producer: Producer, timeout_s: float = 5.0) -> None:
    """Deliver what is queued, then close the producer's connections now (before the broker it talks to goes
    away, so librdkafka has nothing left to log about it). ``Producer.close`` exists from confluent-kafka 2.10;
    before that, dropping the last reference does the same."""
    producer.flush(timeout_s)
    close = getattr(producer, "close", None)
    if close is not None:
        close()
