"""The fused features → score stage: one consumer, no intermediate hop.

``FusedHandler.process`` (called by :class:`streams.runtime.loop.BatchLoop`) parses and validates a batch, loads the
touched entities' window state (one Redis round trip per partition), applies the events in memory with the
same engine the offline path uses, scores every accepted event in one call per model version, and returns the
predictions and dead letters to produce plus a ``finalize`` that checkpoints: it saves every state change since
the last checkpoint with the offset, atomically per partition (:mod:`streams.runtime.checkpoint`). The loop runs it
after every batch (``checkpoint_interval_ms`` 0) or once per interval; under an interval it starts it instead
(``start_finalize``: written now, answers read before the commit), so Redis applies a checkpoint while the worker
handles the next batches.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from confluent_kafka import Message, TopicPartition

from features.definitions import FeatureView
from features.engine import FeatureEngine
from features.exceptions import RecordError
from features.record_parser import batch_parser, record_parser
from features.records import MAX_TS_MS, Event
from features.silence import SilenceTracker
from features.state import EntityState
from features.store import FeatureStore, SourcePosition
from models.prediction import Prediction
from models.prediction_columns import PredictionColumns
from models.scorer import Scorer, ScoringRows
from monitor.scorer_alerts import AlertThrottle, alert_for
from monitor.sensor_checks import SensorChecks
from streams import codec
from streams.metrics import Metrics, observe_many
from streams.runtime.batch import BatchResult, Output, dead_letter, describe
from streams.runtime.checkpoint import PendingState
from streams.runtime.state_cache import DEFAULT_MAX_ENTITIES, StateCache

log = logging.getLogger(__name__)
DEFAULT_MAX_FUTURE_SKEW_MS = 30_000  # streams.settings.PipelineSettings.max_future_skew_ms
LATE_DETAIL = {"late": "older than watermark - lateness", "too_far_future": "newer than watermark + max_future"}


@dataclass
class PipelineStats:
    """Counters the CLI, the demo and the metrics exporter read."""

    consumed: int = 0
    scored: int = 0
    dead_lettered: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    replayed: int = 0
    schema_mismatches: int = 0
    last_predictions: list[Prediction] = field(default_factory=list)


class FusedHandler:
    """Batch handler of the fused pipeline for one feature view and one model.

    ``cache_max_entities`` bounds the write-through state cache for the whole worker (every partition it
    owns), least recently used entities out first: see :mod:`streams.runtime.state_cache` for what it costs.
    ``sensors`` (optional) sees each batch's readings and rejections and marks the predictions of entities whose
    sensors look broken (:mod:`monitor.sensor_checks`)."""

    def __init__(self, view: FeatureView, store: FeatureStore, scorer: Scorer, *, group: str,
                 predictions_topic: str, dlq_topic: str, alerts_topic: str = "alerts",
                 on_predictions: Callable[[list[Prediction]], None] | None = None,
                 metrics: Metrics | None = None, silence: SilenceTracker | None = None,
                 features_topic: str | None = None,
                 cache_max_entities: int = DEFAULT_MAX_ENTITIES, sensors: SensorChecks | None = None,
                 max_future_skew_ms: int = DEFAULT_MAX_FUTURE_SKEW_MS, clock: Callable[[], float] = time.time) -> None:
        self.view = view
        self.store = store
        # with the wall-clock bound on, the view's watermark-relative `max_future` is off: the clock already bounds
        # event time, and a partition whose watermark went stale (a pause in the stream longer than max_future)
        # would otherwise refuse every later event as too_far_future, for good
        self.engine = FeatureEngine(view if max_future_skew_ms <= 0 else replace(view, max_future_ms=MAX_TS_MS))
        self.scorer = scorer
        self.group = group
        self.predictions_topic = predictions_topic
        self.dlq_topic = dlq_topic
        self.alerts_topic = alerts_topic
        self.metrics = metrics or Metrics()
        self.silence = silence
        self.features_topic = features_topic or f"features.{view.source_topic}"
        self.throttle = AlertThrottle()
        self.on_predictions = on_predictions
        self.watermarks: dict[int, int | None] = {}
        self.cache: StateCache[EntityState] = StateCache(cache_max_entities)
        self._evictions_exported = 0
        self.pending = PendingState(view, store, self.cache, group,
                                    on_load=self.metrics.redis_seconds.labels("load").observe)
        self.stats = PipelineStats()
        self.sensors = sensors
        self.max_future_skew_ms = max_future_skew_ms  # 0: no check (a simulation whose event time runs ahead)
        self.clock = clock

    def on_assign(self, partitions: Sequence[TopicPartition]) -> None:
        for p in partitions:
            self.watermarks.setdefault(p.partition, None)

    def on_revoke(self, partitions: Sequence[TopicPartition]) -> None:
        # the loop checkpointed before; its next owner may write: never trust this copy again
        self.pending.rollback([p.partition for p in partitions])
        for p in partitions:
            self.watermarks.pop(p.partition, None)
            if self.silence is not None:
                self.silence.forget(p.partition)

    def process(self, messages: Sequence[Message]) -> BatchResult:
        outputs: list[Output] = []
        rejected: dict[int, list[tuple[Message, RecordError]]] = defaultdict(list)
        topic = self.view.source_topic
        view = self.view
        self.metrics.consumed.labels("pipeline", topic).inc(len(messages))
        self.stats.consumed += len(messages)
        oldest_append_ms = min((m.timestamp()[1] for m in messages), default=0)
        skew = self.max_future_skew_ms
        future_ms = int(self.clock() * 1000) + skew if skew > 0 else MAX_TS_MS
        # the batch's common case in one C call (features._check); every other record through parse, one by one
        by_partition, first_offset, last_offset, odd = batch_parser(view)(messages, future_ms)
        parse = record_parser(view)  # C for the common case (features._check), parse_record for the rest
        reordered: set[int] = set()
        for i in odd:
            m = messages[i]
            partition = m.partition()
            try:
                key = m.key()
                if key is None:  # the README's contract: the Kafka key is the entity id
                    raise RecordError("key_mismatch", f"no Kafka key: key records by their {view.entity_key}")
                event = parse(key, m.value())
                if event.ts_ms > future_ms:  # never moves the watermark: on-time events stay on time
                    raise RecordError("future", f"event time {event.ts_ms} is more than {skew} ms ahead of this "
                                                f"worker's clock ({future_ms - skew})")
            except RecordError as err:
                rejected[partition].append((m, err))  # dead-lettered below, unless already applied
                continue
            event.offset, event.partition = m.offset(), partition
            by_partition.setdefault(partition, []).append(event)
            reordered.add(partition)
        for partition in reordered:  # an odd record that parsed after all: back to its place (offset order)
            by_partition[partition].sort(key=_offset_of)

        if self.sensors is not None:  # per-entity sensor checks on this batch's readings and rejections
            self.sensors.observe_batch((e for evs in by_partition.values() for e in evs),
                                       ((m.key(), err) for errs in rejected.values() for m, err in errs))
        rows = ScoringRows()
        positions = {p: SourcePosition(self.group, self.view.source_topic, p) for p in last_offset}
        for partition, new_offset in last_offset.items():
            events = by_partition.get(partition, [])
            pos = positions[partition]
            if self.pending.is_replay(partition, first_offset[partition]):  # a retry: from the last checkpoint
                self.rollback([partition])
            # the partition's states are taken here and staged back only when the batch went through: a failed
            # batch (whose states the engine already mutated) is retried from Redis
            states, stored = self.pending.load(partition, {e.entity_id for e in events})
            if self.watermarks.get(partition) is None:  # first batch after an assignment: resume the watermark
                self.watermarks[partition] = self.store.position(self.view, pos)[1]
            result = self.engine.process(states, events, watermark_ms=self.watermarks.get(partition),
                                         min_offset=stored)
            # a failed batch rolls the in-memory watermark back with the states (``rollback``)
            for m, err in rejected.get(partition, ()):
                if m.offset() <= stored:  # dead-lettered before (a replay): not again
                    result.skipped += 1
                else:
                    outputs.append(self._dead(m, err.reason, err.detail))
            self.stats.replayed += result.skipped
            if result.skipped:
                self.metrics.replayed.labels(topic).inc(result.skipped)
            if result.late:  # rare: the original records (for their dead letters) are looked up only then
                self.metrics.late_events.labels(topic).inc(len(result.late))
                originals = {m.offset(): m for m in messages if m.partition() == partition}
                for event, reason in result.late:
                    outputs.append(self._dead(originals[event.offset], reason, LATE_DETAIL.get(reason, reason)))
            if self.silence is not None:
                self.silence.observe_events(partition, (event for event, _ in result.vectors), time.time())
                outputs += self._silent(pos, states, self.silence.due(partition, result.watermark_ms),
                                        result.watermark_ms)
            prefix = f"{topic}-{partition}-"  # event keys: topic-partition-offset (prediction ids, stable in replays)
            latest: dict[str, tuple[int, dict[str, float]]] = {}  # last one per entity wins
            keys, entities, times, features = rows.event_keys, rows.entity_ids, rows.event_ts, rows.features
            for event, vector in result.vectors:  # the scorer's columns (ScoringRows), appended in place
                keys.append(prefix + str(event.offset))
                entities.append(event.entity_id)
                times.append(event.ts_ms)
                features.append(vector)
                latest[event.entity_id] = (event.ts_ms, vector)
            self.pending.stage(partition, states, stored, new_offset=new_offset, watermark_ms=result.watermark_ms,
                               latest=latest)
            self.watermarks[partition] = result.watermark_ms
        self._export_cache()

        scored = self.scorer.score(rows) if rows else None
        if scored is not None:
            topic_out = self.predictions_topic
            for group in scored.groups:  # the records straight from the columns (same bytes as codec.encode)
                if self.sensors is not None:  # the faults of entities whose sensors look broken
                    group.quality = self.sensors.quality_of(group.entity_ids)
                outputs += [Output(topic_out, value, entity)
                            for value, entity in zip(group.encode(), group.entity_ids, strict=True)]
            self.stats.scored += scored.count
            self.stats.schema_mismatches += len(scored.schema_mismatches)
            self._observe(scored.groups, oldest_append_ms)
            for ev in scored.events:
                self.metrics.scorer_errors.labels(self.scorer.model, str(ev.version), ev.kind).inc()
                if ev.kind != "schema_drift" or self.throttle.allow(f"{ev.kind}/{ev.version}", now_ms()):
                    alert = alert_for(ev, self.scorer.model, now_ms())
                    outputs.append(Output(self.alerts_topic, codec.encode(alert.to_dict()), alert.dedup_key))
            if self.on_predictions:
                self.on_predictions(scored.predictions)
        return BatchResult(outputs, finalize=self.checkpoint, deferrable=True, start_finalize=self.start_checkpoint)

    def _silent(self, pos: SourcePosition, states: dict, due: list[tuple[str, int]],
                as_of: int | None) -> list[Output]:
        """Stale-feature records for silent entities: their windows evaluated at the partition's watermark."""
        if not due or as_of is None:
            return []
        unsaved = self.pending.pending_states(pos.partition)
        missing = {e for e, _ in due if e not in states and e not in unsaved}
        loaded = self.store.load(self.view, pos, missing)[0] if missing else {}
        outputs = []
        for entity, last_ts in due:
            state = states.get(entity) or unsaved.get(entity) or loaded.get(entity)
            features = state.features(self.view, as_of) if state is not None else {}
            record = {"entity_id": entity, "view": self.view.name, "as_of": as_of, "last_event_ts": last_ts,
                      "silent_for_ms": as_of - last_ts, "stale": True, "features": features}
            outputs.append(Output(self.features_topic, codec.encode(record), entity))
        self.metrics.silent_entities.labels(self.view.source_topic).inc(len(outputs))
        return outputs

    def idle_outputs(self, now_s: float, idle_wall_s: float) -> list[Output]:
        """From the tick: a partition that received nothing for ``idle_wall_s`` cannot advance its watermark,
        so every entity it tracks is reported silent (once), evaluated at the last watermark."""
        if self.silence is None:
            return []
        outputs: list[Output] = []
        for partition in self.silence.idle_partitions(now_s, idle_wall_s):
            watermark = self.watermarks.get(partition)
            if watermark is None:
                continue
            due = self.silence.due(partition, watermark + self.silence.idle_ms + 1)
            pos = SourcePosition(self.group, self.view.source_topic, partition)
            outputs += self._silent(pos, {}, due, watermark)
        return outputs

    def checkpoint(self) -> None:
        """Save every partition's changes since the last checkpoint with its offset (each partition its own atomic
        compare-and-set, all in one round trip); the loop calls it after the outputs were delivered."""
        t0 = time.perf_counter()
        if self.pending.save():
            self.metrics.redis_seconds.labels("save").observe(time.perf_counter() - t0)

    def start_checkpoint(self) -> Callable[[], None]:
        """:meth:`checkpoint`, started (:meth:`PendingState.start_save`): the changes are written to Redis now and
        the next batches go on while Redis applies them; the returned function waits for the answers (raising
        what the save raised). The loop calls it before it commits the offsets."""
        t0 = time.perf_counter()
        ticket = self.pending.start_save()
        started_s = time.perf_counter() - t0
        if ticket is None:
            return _nothing

        def wait() -> None:
            t1 = time.perf_counter()
            ticket.wait()
            self.metrics.redis_seconds.labels("save").observe(started_s + time.perf_counter() - t1)

        return wait

    def _export_cache(self) -> None:
        self.metrics.cache_entities.set(len(self.cache))
        if self.cache.evicted > self._evictions_exported:
            self.metrics.cache_evictions.inc(self.cache.evicted - self._evictions_exported)
            self._evictions_exported = self.cache.evicted

    def rollback(self, partitions: Sequence[int] | None = None) -> None:
        """Forget every change not checkpointed yet (``None``: all partitions): the loop replays from the last
        checkpoint, whose stored offset makes the replay skip what it holds."""
        self.pending.rollback(partitions)
        for p in self.watermarks if partitions is None else partitions:
            if p in self.watermarks:
                self.watermarks[p] = None

    def _observe(self, groups: list[PredictionColumns], oldest_append_ms: int) -> None:
        now = now_ms()
        self.metrics.model_info.labels(self.scorer.model).set(self.scorer.active_version or 0)
        counts: dict[tuple[int, str], int] = defaultdict(int)
        for group in groups:
            counts[(group.model_version, group.variant)] += len(group)
            observe_many(self.metrics.event_to_prediction,  # seconds from event time, never negative
                         np.maximum(0.0, (now - np.asarray(group.event_ts, dtype=np.float64)) / 1000))
        for (version, variant), n in counts.items():
            self.metrics.predictions.labels(self.scorer.model, str(version), variant).inc(n)
        if oldest_append_ms > 0:
            self.metrics.consume_to_produce.observe(max(0.0, (now - oldest_append_ms) / 1000))

    def _dead(self, m: Message, reason: str, detail: str) -> Output:
        self.stats.dead_lettered[reason] += 1
        self.metrics.dead_letters.labels(m.topic() or self.view.source_topic, reason).inc()
        log.debug("dead letter %s: %s %s", describe(m), reason, detail)
        return dead_letter(m, self.dlq_topic, reason, detail)


def _nothing() -> None:
    """The wait of a checkpoint that had nothing to save."""


def _offset_of(event: Event) -> int:
    return event.offset


def now_ms() -> int:
    return int(time.time() * 1000)
