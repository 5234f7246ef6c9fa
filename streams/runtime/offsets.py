"""Start a new consumer group at the current end of its topics (the demo's "only what I produce now").

A new group normally starts at ``auto.offset.reset`` (earliest: nothing is lost). A run that must ignore what
earlier runs left in the same topics (``driftline demo`` twice on one stack) instead commits, before its
workers join, the current end of every partition for its fresh groups.

The end is read from the high watermark a *fetch* response reports (``get_watermark_offsets(cached=True)``),
not from ListOffsets: tansu answers ListOffsets(latest), and so ``cached=False`` and
``auto.offset.reset=latest``, with a wrong offset. The fetch path is right on tansu and on Apache Kafka.

Example (needs a broker, so not a doctest; ``tests/integration/test_offsets.py`` runs it)::

    from streams.settings import KafkaSettings
    start_groups_at_end(KafkaSettings(bootstrap_servers="127.0.0.1:9092"), {"driftline-features-run1": ["vitals"]})
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.exceptions import ConfigError
from streams.runtime.clients import consumer_config
from streams.settings import KafkaSettings

__all__ = ["end_offsets", "commit_offsets", "start_groups_at_end"]

def end_offsets(kafka: KafkaSettings, topics: Sequence[str], timeout_s: float = 10.0) -> list[TopicPartition]:
    """The high watermark (next offset to be written) of every partition of ``topics``.

    Raises :class:`ConfigError` when a topic does not exist or a partition's watermark is not
    reported within ``timeout_s``.
    """
    consumer = Consumer(consumer_config(kafka, f"driftline-probe-{uuid.uuid4().hex[:8]}",
                                        max_partition_fetch_bytes=1024))
    try:
        partitions = _partitions(consumer, topics, timeout_s)
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in partitions])
        ends: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + timeout_s
        while len(ends) < len(partitions):
            if time.monotonic() > deadline:
                missing = sorted(set(partitions) - set(ends))
                raise ConfigError(f"no high watermark reported for {missing[:5]} within {timeout_s}s")
            consumer.poll(0.05)
            for t, p in partitions:
                if (t, p) not in ends:
                    _low, high = consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)
                    if high >= 0:  # OFFSET_INVALID (-1001) until a fetch reported this partition
                        ends[(t, p)] = high
        return [TopicPartition(t, p, ends[(t, p)]) for t, p in partitions]
    finally:
        consumer.close()


def commit_offsets(kafka: KafkaSettings, group: str, offsets: Sequence[TopicPartition]) -> None:
    """Commit ``offsets`` for ``group`` without joining it (the group must have no active member)."""
    consumer = Consumer(consumer_config(kafka, group))
    try:
        consumer.commit(offsets=list(offsets), asynchronous=False)
    finally:
        consumer.close()


def start_groups_at_end(kafka: KafkaSettings, groups: Mapping[str, Sequence[str]], timeout_s: float = 10.0) -> dict[str, int]:
    """Commit the current end of ``topics`` for each new ``group``.

    Returns, per group, the sum of the end offsets it starts at (records written before this run).
    """
    skipped: dict[str, int] = {}
    for group, topics in groups.items():
        ends = end_offsets(kafka, topics, timeout_s)
        commit_offsets(kafka, group, ends)
        skipped[group] = sum(tp.offset for tp in ends)
    return skipped


def _partitions(consumer: Consumer, topics: Sequence[str], timeout_s: float) -> list[tuple[str, int]]:
    meta = consumer.list_topics(timeout=timeout_s)
    out = []
    for topic in topics:
        info = meta.topics.get(topic)
        if info is None or info.error is not None or not info.partitions:
            raise ConfigError(f"topic {topic!r} does not exist (or has no partitions)")
        out.extend((topic, p) for p in sorted(info.partitions))
    return out
