"""Topic admin: create every topic driftline uses, idempotently, with partition counts from settings."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.exceptions import ConfigError
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int


def required_topics(settings: Settings, sources: Iterable[str]) -> list[TopicSpec]:
    """Source topics, their dead-letter topics, predictions, labels, alerts and control (and theirs).

    Example:
        >>> [t.name for t in required_topics(Settings(), ["vitals"])]
        ['vitals', 'vitals.dlq', 'features.vitals', 'predictions', 'labels', 'alerts', 'control', 'alerts.dlq', 'predictions.dlq', 'labels.dlq']
    """
    t = settings.topics
    specs: list[TopicSpec] = []
    for source in sources:
        specs += [TopicSpec(source, t.source_partitions), TopicSpec(t.dlq(source), 1),
                  TopicSpec(t.stale_features(source), t.source_partitions)]
    specs += [
        TopicSpec(t.predictions, t.predictions_partitions),
        TopicSpec(t.labels, t.predictions_partitions),
        TopicSpec(t.alerts, 1),
        TopicSpec(t.control, 1),  # one partition: every scorer reads every command, in order
        TopicSpec(t.dlq(t.alerts), 1),  # alerts a receiver refused as invalid (the delivery stage)
        TopicSpec(t.dlq(t.predictions), 1),  # records the monitor cannot read (streams/runtime/monitor_records.py)
        TopicSpec(t.dlq(t.labels), 1),
    ]
    return specs


def ensure_topics(settings: Settings, specs: Iterable[TopicSpec], timeout_s: float = 15.0) -> dict[str, str]:
    """Create missing topics; existing ones are left alone. Returns ``{name: "created"|"exists"}``."""
    admin = AdminClient(settings.kafka.client_config())
    specs = list(specs)
    existing = admin.list_topics(timeout=timeout_s).topics
    outcome = {s.name: "exists" for s in specs if s.name in existing}
    todo = [NewTopic(s.name, s.partitions, settings.topics.replication_factor) for s in specs if s.name not in existing]
    if not todo:
        return outcome
    for name, future in admin.create_topics(todo, operation_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            outcome[name] = "created"
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise ConfigError(f"cannot create topic {name}: {exc.args[0].str()}") from exc
            outcome[name] = "exists"
    log.info("topics: %s", outcome)
    return outcome


def partition_count(settings: Settings, topic: str, timeout_s: float = 10.0) -> int:
    """Number of partitions of ``topic`` (raises ConfigError if it does not exist)."""
    meta = AdminClient(settings.kafka.client_config()).list_topics(topic, timeout=timeout_s)
    info = meta.topics.get(topic)
    if info is None or info.error is not None or not info.partitions:
        raise ConfigError(f"topic {topic} does not exist; run `driftline topics` first")
    return len(info.partitions)
