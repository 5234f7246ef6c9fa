"""The batch loop: the one owner of offsets.

Per batch, in order: take up to N records (:func:`take_batch`) → ``handler.process`` (pure work, in memory) →
produce its outputs asynchronously (:mod:`streams.runtime.producing`) → flush and check every delivery →
``result.finalize()`` (write state and the last applied offset atomically) → commit the next offsets
(:mod:`streams.runtime.commits`; asynchronously only for handlers whose state write stores the offset, so a lost
commit only replays what the store holds and skips). Auto-commit is off. State follows delivery because the store
skips events at or below its stored offset on a replay: a crash in between replays the batch from the old state,
with the same features and ``prediction_id`` (an identifiable duplicate), the state applied once.

**Checkpoint interval** (``checkpoint_interval_ms``; 0 = after every batch as above): for a ``deferrable`` result
(the fused pipeline's ``finalize`` saves everything applied since its last checkpoint) the outputs go out at once,
but the flush, the state write and the commit run once per interval (as Kafka Streams' and Quix Streams' commit
interval), and synchronously on revoke, shutdown and when the stream goes idle. Serving reads lag by up to the
interval; a crash replays up to it (:mod:`streams.runtime.checkpoint`; the loop's side: :mod:`streams.runtime.ledger`).
A write that can be started (``BatchResult.start_finalize``: the fused pipeline's Redis save) is started at an
interval's checkpoint while the loop goes on; its offsets are committed once it was answered, at the next
checkpoint or before anything that needs the store settled (revoke, shutdown, idle, rewind, careful handling). A
failed one is taken back into the ledger, so the rewind goes back to the checkpoint before it.

An infrastructure failure (Redis down, delivery failed: :func:`streams.runtime.isolation.is_infrastructure`)
rewinds the consumer to the first offsets after the last checkpoint, has the handler forget what it applied since
(``rollback``) and retries with exponential backoff, reporting itself unhealthy meanwhile.

A record-level fault (the handler raised for a reason that is not a dependency, or the broker refused an output
for what it is) never fails the stream: the loop goes back to the last checkpoint the same way, without backing
off, and handles everything up to the failed batch's last offsets *carefully*: batch by batch, each checkpointed
before the next, a failing batch bisected until the culprit fails alone and is dead-lettered as ``poison``
(:mod:`streams.runtime.isolation`). The records handled since the last checkpoint (at most one interval) are
handled again, their outputs produced a second time with the same ids; with checkpoints after every batch nothing
is produced twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from confluent_kafka import Consumer, Message, Producer, TopicPartition

from streams.metrics import Metrics
from streams.runtime.batch import (
    BatchHandler,
    BatchResult,
    CommitLog,
    LoopHealth,
    Output,
    first_offsets,
    is_consumer_error,
    next_offsets,
    offset_bounds,
    seek_all,
    take_batch,
)
from streams.runtime.commits import Committer
from streams.runtime.dead_letters import DEFAULT_MAX_BYTES, dlq_topic, headers_for
from streams.runtime.isolation import (
    dependency_of,
    is_infrastructure,
    poison_detail,
    run_isolated,
)
from streams.runtime.ledger import CheckpointLedger
from streams.runtime.producing import OutputProducer

log = logging.getLogger(__name__)


class BatchLoop:
    """Runs ``handler`` over a subscribed consumer until ``stop()``; see the module docstring."""

    def __init__(self, consumer: Consumer, producer: Producer, handler: BatchHandler, topics: Sequence[str], *,
                 max_rows: int = 500, max_ms: int = 50, linger_ms: int = 0, flush_timeout_s: float = 30.0,
                 max_backoff_s: float = 5.0, on_batch: Callable[[int, float], None] | None = None,
                 tick: Callable[[], None] | None = None, stage: str = "pipeline",
                 metrics: Metrics | None = None, commits: CommitLog | None = None,
                 hold: Callable[[], bool] | None = None, max_message_bytes: int = DEFAULT_MAX_BYTES,
                 checkpoint_interval_ms: int = 0) -> None:
        self.consumer = consumer
        self.producer = producer
        self.handler = handler
        self.topics = list(topics)
        self.max_rows = max_rows
        self.max_s = max_ms / 1000
        self.linger_s = linger_ms / 1000
        self.flush_timeout_s = flush_timeout_s
        self.max_backoff_s = max_backoff_s
        self.on_batch = on_batch
        self.tick = tick  # runs between batches (control commands, timers); never inside one
        # while hold() is true (a `pause` control command), fetching is paused and no record is handled: the
        # loop keeps polling (ticks, rebalances, group membership) and a record fetched by a partition assigned
        # meanwhile is rewound, so it is handled after the resume, never lost or handled while paused
        self.hold = hold
        self._holding = False
        self.stage = stage
        self.metrics = metrics or Metrics()
        self.health = LoopHealth()
        self.commits = commits  # given: commit asynchronously (see the module docstring)
        self.committer = Committer(stage, self.metrics, self.health, commits)
        self.outputs = OutputProducer(producer, self.metrics, stage, max_message_bytes=max_message_bytes)
        self._stop = threading.Event()
        # checkpointing (see the module docstring): 0 = after every batch
        self.ledger = CheckpointLedger(checkpoint_interval_ms / 1000)  # what was handled since the last checkpoint
        # after a record-level fault: per partition, the last offset to handle carefully (isolated, checkpointed
        # batch by batch)
        self._careful: dict[tuple[str, int], int] = {}

    @property
    def max_message_bytes(self) -> int:
        """The producer's ``message.max.bytes``: dead letters are cut to fit it."""
        return self.outputs.max_message_bytes

    @max_message_bytes.setter
    def max_message_bytes(self, value: int) -> None:
        self.outputs.max_message_bytes = value

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Subscribe and loop until stopped; closes the consumer (leaving the group) at the end."""
        self.consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked,
                                on_lost=self._revoked)
        try:
            while not self._stop.is_set():
                self.run_once()
        finally:
            self._checkpoint_or_rewind("shutdown")
            self.producer.flush(5)
            self._commit_sent(None)
            self.consumer.close()

    def run_once(self) -> int:
        """Consume and fully handle one batch; returns the number of records handled."""
        if self.tick is not None:
            self.tick()
        held = self._apply_hold()
        messages = self.next_batch()
        self.health.last_poll_at = time.time()
        self.committer.note_acknowledged()
        records = [m for m in messages if m.error() is None]
        if len(records) < len(messages):  # error events: logged (a fatal one raises), never handled
            for m in messages:
                is_consumer_error(m)
        if records and (held or self._apply_hold()):
            seek_all(self.consumer, first_offsets(records))
            self._apply_hold()  # partitions assigned during that poll
            records = []
        if not records:
            self.producer.poll(0)
            # an idle stream still checkpoints on time, and settles a started checkpoint at once
            if (self.ledger.uncommitted and self.ledger.due()) or self.ledger.started is not None:
                self._checkpoint_or_rewind("idle")
            return 0
        started = time.perf_counter()
        try:
            if not self._handle(records):
                return 0  # went back to the last checkpoint: the records come again
        except Exception as exc:  # noqa: BLE001 - any failure: rewind, back off, retry; never lose the batch
            if not is_infrastructure(exc):  # e.g. an output the broker refused at a checkpoint: no backoff
                self._back_to_checkpoint_carefully(records, exc)
                return 0
            self._rewind_to_checkpoint(records)
            self.note_failure(exc)
            delay = min(self.max_backoff_s, 0.1 * 2 ** min(self.health.consecutive_failures, 10))
            log.warning("batch failed (%s); rewound %d records, retrying in %.1fs",
                        self.health.last_error, len(records), delay)
            self._stop.wait(delay)
            return 0
        self.note_success(len(records), time.perf_counter() - started)
        return len(records)

    def _apply_hold(self) -> bool:
        """Pause the assignment while ``hold()`` says so (again every time: a rebalance assigns unpaused
        partitions), resume it once when it stops; returns whether the loop is held."""
        held = self.hold is not None and self.hold()
        if held or self._holding:
            assigned = self.consumer.assignment()
            if assigned:
                (self.consumer.pause if held else self.consumer.resume)(assigned)
            if held != self._holding:
                log.info("%s: fetching %s", self.stage, "paused" if held else "resumed")
            self._holding = held
        return held

    def next_batch(self) -> list[Message]:
        """This loop's next batch: :func:`take_batch` with its ``max_rows``, ``max_ms`` and ``linger_ms``."""
        return take_batch(self.consumer, self.max_rows, self.max_s, self.linger_s)

    def note_failure(self, exc: BaseException) -> None:
        """Health and metrics of a failed batch (the caller rewinds or leaves it unacked)."""
        self.health.last_error = f"{type(exc).__name__}: {exc}"
        self.health.last_error_class, self.health.last_error_at = type(exc).__name__, time.time()
        self.health.failing = dependency_of(exc)
        self.health.consecutive_failures += 1  # last: a reader that sees a failure count sees its cause
        self.metrics.batch_failures.labels(self.stage, type(exc).__name__).inc()
        self.metrics.healthy.labels(self.stage).set(0)

    def note_success(self, records: int, elapsed_s: float) -> None:
        """Health and metrics of a batch fully handled. Under a checkpoint interval a batch whose state still
        waits for its checkpoint does not clear a failure: only a checkpoint that went through does (so a Redis
        that refuses every save cannot look healthy between two failed checkpoints)."""
        if self.ledger.settled:
            self._note_settled()
        self.health.batches += 1
        self.health.records += records
        self.metrics.batch_size.labels(self.stage).observe(records)
        self.metrics.batch_seconds.labels(self.stage).observe(elapsed_s)
        if self.on_batch:
            self.on_batch(records, elapsed_s)

    def deliver(self, result: BatchResult) -> None:
        """Produce ``result``'s outputs, wait for every delivery, then run its ``finalize`` (the state write).

        Raises :class:`DeliveryError` (and skips ``finalize``) when any output was not acknowledged. Shared by
        this loop and the Faust engine, which acks its events after this returns.
        """
        self.outputs.clear()
        self.outputs.produce_all(result.outputs)
        self._flush_and_check()
        if result.finalize is not None:
            result.finalize()

    def _flush_and_check(self) -> None:
        """Wait for every output produced so far (:meth:`OutputProducer.flush_and_check`)."""
        self.outputs.flush_and_check(self.flush_timeout_s)

    def handle_isolated(self, records: Sequence[Message]) -> int:
        """``deliver(handler.process(records))``, isolating a record that makes the handler raise (see
        :mod:`streams.runtime.isolation`); returns the number of records dead-lettered as ``poison``."""
        return run_isolated(records, self.handler.process, self.deliver, self.poison)

    def poison(self, m: Message, exc: BaseException, bare: bool = False) -> BatchResult:
        """The dead letter of a record that failed alone: reason ``poison``, the exception's class and the
        traceback's last line, on ``<topic>.dlq`` (``bare``: without the record's key and value)."""
        topic = m.topic() or ""
        if not bare:
            self.metrics.dead_letters.labels(topic, "poison").inc()
        headers = headers_for(topic, m.partition(), m.offset(), "poison", poison_detail(exc), type(exc).__name__)
        return BatchResult([Output(dlq_topic(topic), b"" if bare else m.value() or b"", None if bare else m.key(),
                                   headers)])

    def _handle(self, records: list[Message]) -> bool:
        """Handle one batch; False when a record-level fault sent the loop back to the last checkpoint."""
        if self._careful and any(m.offset() <= self._careful.get((m.topic(), m.partition()), -1) for m in records):
            self._handle_carefully(records)
            return True
        clean = self.ledger.settled  # the store holds everything before this batch
        first, last = offset_bounds(records)
        self.ledger.begin_batch(records, first)
        try:
            result = self.handler.process(records)
            self.outputs.produce_all(result.outputs)
        except Exception as exc:  # noqa: BLE001 - classified right here
            if is_infrastructure(exc):
                raise
            if not clean:
                self._back_to_checkpoint_carefully(records, exc)
                return False
            self._isolate_here(records, exc)
            return True
        self.ledger.handled(records, result, last)
        if not result.deferrable or self.ledger.due():
            try:
                self.checkpoint(overlap=self.ledger.interval_s > 0)
            except Exception as exc:  # noqa: BLE001 - classified right here
                if is_infrastructure(exc) or not clean:
                    raise  # the loop rewinds (and handles carefully for a record-level fault)
                self._isolate_here(records, exc)  # an output of this batch alone was refused for what it is
        return True

    def _isolate_here(self, records: list[Message], exc: BaseException) -> None:
        """A record-level fault in a batch that started at a checkpoint: nothing before it needs a replay, so
        forget what it applied and handle it carefully right away (no seek, no backoff)."""
        log.warning("%s: a record-level fault (%s) in a batch of %d records: isolating the culprit",
                    self.stage, poison_detail(exc), len(records))
        self.ledger.clear()
        self.outputs.clear()
        self._forget_uncheckpointed()
        self._handle_carefully(records)

    def _handle_carefully(self, records: list[Message]) -> None:
        """After a record-level fault: handle ``records`` checkpointed on their own, bisected around a record that
        makes the handler (or the broker) refuse, which is dead-lettered as ``poison`` (see the module docstring)."""
        if not self.ledger.settled:
            self.checkpoint()  # what other partitions handled meanwhile, so this batch's checkpoint is its own
        run_isolated(records, self.handler.process, self.deliver, self.poison)
        committed = next_offsets(records)
        self._commit(committed)
        for tp in committed:
            key = (tp.topic, tp.partition)
            if tp.offset > self._careful.get(key, tp.offset):
                del self._careful[key]

    def _back_to_checkpoint_carefully(self, records: list[Message], exc: BaseException) -> None:
        """A record-level fault outside careful handling: rewind to the last checkpoint, and mark everything up to
        ``records`` (and what was handled since the checkpoint) to be handled carefully."""
        log.warning("%s: a record-level fault (%s) in a batch of %d records: back to the last checkpoint, then "
                    "isolating the culprit", self.stage, poison_detail(exc), len(records))
        self._settle_or_take_back()
        marks = {key: offset - 1 for key, offset in self.ledger.uncommitted.items()}
        for m in records:
            key = (m.topic(), m.partition())
            marks[key] = max(marks.get(key, -1), m.offset())
        for key, last in marks.items():
            self._careful[key] = max(self._careful.get(key, -1), last)
        self._rewind_to_checkpoint(records)

    def checkpoint(self, *, overlap: bool = False) -> None:
        """Flush and check every delivery since the last checkpoint, run the pending ``finalize`` calls (the state
        writes), then commit the next offsets of everything handled since. ``overlap``: a write that can be
        started (``start_finalize``) is only started, and its offsets wait for :meth:`settle_started` (called
        first by the next checkpoint)."""
        self.settle_started()
        self._flush_and_check()
        waits = []
        for finalize, start in self.ledger.finalizers.items():
            if start is None or not overlap:
                finalize()
            else:
                waits.append(start())
        if waits:
            self.ledger.start(waits)
            return
        committed = self.ledger.take()
        if committed:
            self._commit(committed)
        self._note_settled()

    def settle_started(self) -> None:
        """Wait for a started checkpoint's writes, then commit its offsets (``CheckpointLedger.settle``: a write that
        failed raises, and its checkpoint goes back into the ledger)."""
        if self.ledger.settle(self._commit):
            self._note_settled()

    def _settle_or_take_back(self) -> None:
        """Before a rewind: :meth:`settle_started`; a failed write is already taken back into the ledger there."""
        try:
            self.settle_started()
        except Exception as exc:  # noqa: BLE001 - the rewind that follows replays what it held
            log.warning("%s: a started checkpoint failed (%s): going back to the one before it", self.stage, exc)

    def _note_settled(self) -> None:
        """Everything handled so far is delivered and saved: no failure stands."""
        self.health.consecutive_failures = 0
        self.health.failing = None
        self.metrics.healthy.labels(self.stage).set(1)

    def _checkpoint_or_rewind(self, why: str) -> None:
        """A checkpoint outside a batch (revoke, shutdown, idle); a failure rolls back to the previous one."""
        if self.ledger.settled:
            return
        try:
            self.checkpoint()
        except Exception as exc:  # noqa: BLE001 - the store's offset makes the replay skip what was saved
            if not is_infrastructure(exc):  # an output refused for what it is: isolate it on the way back
                self._back_to_checkpoint_carefully([], exc)
                return
            log.warning("%s checkpoint failed (%s); rewinding to the last checkpoint", why, exc)
            self._rewind_to_checkpoint([])
            self.note_failure(exc)

    def _rewind_to_checkpoint(self, records: list[Message]) -> None:
        """After a failure: seek every partition handled since the last checkpoint back to its first offset after
        it, and have the handler forget what it applied since (``rollback``), so the replay starts from there."""
        self._settle_or_take_back()
        self.ledger.note_since(records)
        seek_all(self.consumer, self.ledger.since)
        self.ledger.clear()
        self.outputs.clear()
        self._forget_uncheckpointed()

    def _forget_uncheckpointed(self) -> None:
        """Have the handler forget what it applied since the last checkpoint (``rollback``, when it has one)."""
        rollback = getattr(self.handler, "rollback", None)
        if rollback is not None:
            rollback()

    def _commit(self, committed: list[TopicPartition]) -> None:
        self.committer.commit(self.consumer, committed)

    def _commit_sent(self, partitions: Sequence[TopicPartition] | None) -> None:
        """Commit synchronously what was sent asynchronously for ``partitions`` (None: all); see
        :meth:`Committer.commit_sent` (also the watchdog's, before it replaces the consumer)."""
        self.committer.commit_sent(self.consumer, partitions)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.health.assigned = sorted({*self.health.assigned, *(f"{p.topic}[{p.partition}]" for p in partitions)})
        log.info("assigned %s", [f"{p.topic}[{p.partition}]@{p.offset}" for p in partitions])
        self.handler.on_assign(partitions)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {f"{p.topic}[{p.partition}]" for p in partitions}
        self.health.assigned = [a for a in self.health.assigned if a not in gone]
        log.info("revoked %s", sorted(gone))
        self._checkpoint_or_rewind("revoke")  # synchronously, before the partitions' next owner reads the store
        self._commit_sent(partitions)
        self.handler.on_revoke(partitions)
