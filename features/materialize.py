"""Backfill: compute a view over an event log AND hand the resulting window state to the online store.

This is a feature store's "materialize" step. A pipeline started on an empty store would serve cold windows
(a 30-minute slope over two minutes of data) for its first window-length of event time, a distribution the
model never saw in training. Backfilling from the same log the training rows came from gives the online path
exactly the state the offline path ended with, keyed by the Kafka partition each entity's events go to.

Example:
    >>> from features.definitions import FeatureView, FieldSpec, FeatureSpec, Window
    >>> from features.store import MemoryFeatureStore, SourcePosition
    >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x"),),
    ...                    (FeatureSpec("x_sum", "x", "sum", Window("sliding", 60_000)),))
    >>> result = backfill(view, [Event("a", 1_000, {"x": 5.0}), Event("a", 2_000, {"x": 3.0})], num_partitions=3)
    >>> [r.features["x_sum"] for r in result.rows]
    [5.0, 8.0]
    >>> store = MemoryFeatureStore()
    >>> write_backfill(store, view, result, group="g")
    >>> p = result.partition_of("a")
    >>> store.read_features(view, ["a"], 2_000, partition_of=result.partition_of, group="g")["a"]["x_sum"]
    8.0
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from features.definitions import FeatureView
from features.engine import FeatureEngine
from features.offline import TrainingRow
from features.partitioning import kafka_partition
from features.records import Event
from features.state import EntityState
from features.store import FeatureStore, SourcePosition

CHUNK = 4096


@dataclass
class Backfill:
    rows: list[TrainingRow]
    states: dict[int, dict[str, EntityState]]
    num_partitions: int
    late: int = 0
    _partitions: dict[str, int] = field(default_factory=dict)

    def partition_of(self, entity_id: str) -> int:
        if entity_id not in self._partitions:
            self._partitions[entity_id] = kafka_partition(entity_id.encode(), self.num_partitions)
        return self._partitions[entity_id]


def backfill(view: FeatureView, events: Iterable[Event], *, num_partitions: int) -> Backfill:
    """Run the online engine over ``events`` (log order), partitioned as Kafka would partition them."""
    engine = FeatureEngine(view)
    result = Backfill([], {}, num_partitions)
    by_partition: dict[int, list[Event]] = {}
    for ev in events:
        by_partition.setdefault(result.partition_of(ev.entity_id), []).append(ev)
    for partition, evs in by_partition.items():
        states = result.states.setdefault(partition, {})
        watermark: int | None = None
        for start in range(0, len(evs), CHUNK):
            res = engine.process(states, evs[start:start + CHUNK], watermark_ms=watermark)
            watermark = res.watermark_ms
            result.late += len(res.late)
            result.rows.extend(TrainingRow(e.entity_id, e.ts_ms, vec) for e, vec in res.vectors)
    result.rows.sort(key=lambda r: r.ts_ms)
    return result


def write_backfill(store: FeatureStore, view: FeatureView, result: Backfill, *, group: str) -> None:
    """Save the backfilled state for consumer group ``group`` (its offsets stay unset: -1)."""
    for partition, states in result.states.items():
        pos = SourcePosition(group, view.source_topic, partition)
        store.save(view, pos, states, expected_offset=-1, new_offset=-1, ttl_ms=view.retention_ms)
