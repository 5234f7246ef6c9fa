"""BatchLoop with a checkpoint interval: outputs at once, flush + state write + commit once per interval, and
synchronously on revoke, shutdown and an idle stream; a failure rewinds to the first offsets after the last
checkpoint and has the handler roll back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from confluent_kafka import TopicPartition

from streams.runtime.batch import BatchResult
from streams.runtime.loop import BatchLoop

from .fake_message import FakeMessage
from .test_loop import FakeConsumer, FakeProducer, RecordingHandler, msgs


class DeferringHandler(RecordingHandler):
    """A handler whose finalize checkpoints everything since the last one (like the fused pipeline's)."""

    def __init__(self, events: list[str], **kw: Any) -> None:
        super().__init__(events, **kw)
        self.rollbacks = 0

    def process(self, messages: Sequence[FakeMessage]) -> BatchResult:
        result = super().process(messages)
        return BatchResult(result.outputs, finalize=self._finalize, deferrable=True)

    def rollback(self) -> None:
        self.events.append("rollback")
        self.rollbacks += 1


def make(batches: Sequence[Sequence[FakeMessage]], interval_ms: int, **kw: Any
         ) -> tuple[BatchLoop, FakeConsumer, FakeProducer, DeferringHandler, list[str]]:
    events: list[str] = []
    consumer, producer = FakeConsumer(batches, events), FakeProducer(events)
    handler = DeferringHandler(events, **kw)
    loop = BatchLoop(consumer, producer, handler, ["src"], max_rows=100, max_ms=1,  # type: ignore[arg-type]
                     max_backoff_s=0.0, flush_timeout_s=0.01, checkpoint_interval_ms=interval_ms)
    return loop, consumer, producer, handler, events


def test_interval_zero_checkpoints_every_batch_in_the_usual_order() -> None:
    loop, consumer, _, handler, events = make([msgs("src", 0, [0, 1]), msgs("src", 0, [2])], 0)
    loop.run_once()
    loop.run_once()
    assert events == ["consume", "process", "produce:out", "produce:out", "flush", "finalize", "commit",
                      "consume", "process", "produce:out", "flush", "finalize", "commit"]
    assert consumer.commits == [[("src", 0, 2)], [("src", 0, 3)]]


def test_within_the_interval_outputs_go_out_and_nothing_is_saved_or_committed() -> None:
    loop, consumer, producer, handler, events = make([msgs("src", 0, [0, 1]), msgs("src", 1, [5])], 60_000)
    loop.run_once()
    loop.run_once()
    assert handler.finalized == 0 and consumer.commits == [] and "flush" not in events
    assert len(producer.queue) == 3  # produced (librdkafka sends them), not yet awaited
    loop.ledger.started_at -= 61  # the interval passed
    loop.checkpoint()
    assert events[-3:] == ["flush", "finalize", "commit"]
    assert handler.finalized == 1  # one state write for both batches
    assert sorted(consumer.commits[0]) == [("src", 0, 2), ("src", 1, 6)]


def test_the_batch_after_the_interval_checkpoints() -> None:
    loop, consumer, _, handler, _ = make([msgs("src", 0, [0]), msgs("src", 0, [1])], 1)
    loop.run_once()
    loop.ledger.started_at -= 1.0
    loop.run_once()
    assert handler.finalized == 1 and consumer.commits == [[("src", 0, 2)]]


def test_an_idle_stream_checkpoints_when_due() -> None:
    loop, consumer, _, handler, _ = make([msgs("src", 0, [0]), []], 60_000)
    loop.run_once()
    loop.run_once()  # nothing polled, not due
    assert handler.finalized == 0
    consumer.batches.append([])
    loop.ledger.started_at -= 61
    loop.run_once()
    assert handler.finalized == 1 and consumer.commits == [[("src", 0, 1)]]


def test_a_failure_rewinds_to_the_first_offsets_after_the_last_checkpoint_and_rolls_back() -> None:
    loop, consumer, _, handler, events = make([msgs("src", 0, [0, 1]), msgs("src", 1, [7]),
                                               msgs("src", 0, [2])], 60_000)
    loop.run_once()
    loop.run_once()
    handler.fail_process = 1
    assert loop.run_once() == 0
    assert sorted(consumer.seeks) == [("src", 0, 0), ("src", 1, 7)]  # not ("src", 0, 2): the batch's own
    assert handler.rollbacks == 1 and consumer.commits == [] and handler.finalized == 0
    assert not loop.health.healthy


def test_a_failed_checkpoint_rewinds_everything_since_the_previous_one() -> None:
    loop, consumer, _, handler, _ = make([msgs("src", 0, [0]), msgs("src", 0, [1])], 60_000, fail_finalize=1)
    loop.run_once()
    loop.ledger.started_at -= 61
    assert loop.run_once() == 0
    assert consumer.seeks == [("src", 0, 0)] and consumer.commits == [] and handler.rollbacks == 1


def test_revoke_checkpoints_synchronously_before_the_handler_lets_go() -> None:
    loop, consumer, _, handler, events = make([msgs("src", 0, [0, 1])], 60_000)
    loop.run_once()
    loop._revoked(consumer, [TopicPartition("src", 0)])  # type: ignore[arg-type]
    assert handler.finalized == 1 and consumer.commits == [[("src", 0, 2)]]
    assert events.index("finalize") < events.index("commit")
    assert handler.revoked == [("src", 0)]


def test_shutdown_checkpoints_what_is_pending() -> None:
    loop, consumer, _, handler, _ = make([msgs("src", 0, [0, 1])], 60_000)
    loop.run_once()
    loop.stop()
    loop.run()
    assert handler.finalized == 1 and consumer.commits[-1] == [("src", 0, 2)] and consumer.closed


def test_a_handler_that_cannot_defer_is_checkpointed_at_once() -> None:
    events: list[str] = []
    consumer, producer = FakeConsumer([msgs("src", 0, [0])], events), FakeProducer(events)
    handler = RecordingHandler(events)
    loop = BatchLoop(consumer, producer, handler, ["src"], max_rows=100, max_ms=1,  # type: ignore[arg-type]
                     max_backoff_s=0.0, flush_timeout_s=0.01, checkpoint_interval_ms=60_000)
    loop.run_once()
    assert handler.finalized == 1 and consumer.commits == [[("src", 0, 1)]]


class PoisonDeferringHandler(DeferringHandler):
    """Raises an unforeseen (record-level) error whenever its batch holds one of ``poison``'s offsets."""

    def __init__(self, events: list[str], poison: set[int]) -> None:
        super().__init__(events)
        self.poison = poison

    def process(self, messages: Sequence[FakeMessage]) -> BatchResult:
        if self.poison.intersection(m.offset() for m in messages):
            self.events.append("process")
            raise OverflowError("int too large to convert to float")
        return super().process(messages)


def test_a_record_level_fault_within_an_interval_goes_back_to_the_checkpoint_then_isolates_the_culprit() -> None:
    first, second = msgs("src", 0, [0, 1]), msgs("src", 0, [2, 3, 4])
    events: list[str] = []
    # the consumer hands out: the two batches, then (after the seek to the checkpoint) the same records again
    consumer = FakeConsumer([first, second, first + second], events)
    producer = FakeProducer(events)
    handler = PoisonDeferringHandler(events, {3})
    loop = BatchLoop(consumer, producer, handler, ["src"], max_rows=100, max_ms=1,  # type: ignore[arg-type]
                     max_backoff_s=0.0, flush_timeout_s=0.01, checkpoint_interval_ms=60_000)
    assert loop.run_once() == 2  # deferred: nothing saved or committed yet
    assert loop.run_once() == 0  # the fault: back to the checkpoint (offset 0), no backoff, no failure counted
    assert consumer.seeks == [("src", 0, 0)] and handler.rollbacks == 1
    assert loop.health.consecutive_failures == 0
    assert loop.run_once() == 5  # carefully: bisected, each part checkpointed before the next
    dead = [o for o in producer.delivered if o.topic == "src.dlq"]
    assert [dict(o.headers or [])["source_offset"] for o in dead] == [b"3"]
    out = [o.value for o in producer.delivered if o.topic == "out"]
    # every good record delivered; the ones handled since the checkpoint (0, 1) a second time, with the same value
    assert sorted(set(out)) == [b"v0", b"v1", b"v2", b"v4"] and out.count(b"v2") == 1 and out.count(b"v4") == 1
    assert consumer.commits[-1] == [("src", 0, 5)] and loop._careful == {}


def test_a_record_level_fault_right_after_a_checkpoint_is_isolated_in_place() -> None:
    events: list[str] = []
    batch = msgs("src", 0, [0, 1, 2, 3])
    consumer, producer = FakeConsumer([batch], events), FakeProducer(events)
    handler = PoisonDeferringHandler(events, {2})
    loop = BatchLoop(consumer, producer, handler, ["src"], max_rows=100, max_ms=1,  # type: ignore[arg-type]
                     max_backoff_s=0.0, flush_timeout_s=0.01, checkpoint_interval_ms=60_000)
    assert loop.run_once() == 4 and consumer.seeks == []
    out = [o.value for o in producer.delivered if o.topic == "out"]
    assert sorted(out) == [b"v0", b"v1", b"v3"]  # each good record once
    assert consumer.commits[-1] == [("src", 0, 4)]


def test_a_failed_checkpoint_stays_a_failure_until_a_checkpoint_goes_through() -> None:
    # a Redis that refuses every save: the replayed batches are processed (deferred) in between, and must not
    # make the loop look healthy before a checkpoint succeeds
    batch = msgs("src", 0, [0])
    loop, consumer, _, handler, _ = make([batch, batch, batch], 60_000, fail_finalize=1)
    loop.run_once()
    loop.ledger.started_at -= 61
    loop.run_once()  # the checkpoint's save fails: back to the last checkpoint
    assert not loop.health.healthy and loop.health.failing is not None
    assert loop.run_once() == 1  # the replay is processed, its state waits for the next checkpoint
    assert not loop.health.healthy and loop.health.failing is not None
    loop.ledger.started_at -= 61
    assert loop.run_once() == 0  # nothing more to fetch: the idle checkpoint goes through this time
    assert loop.health.healthy and loop.health.failing is None and consumer.commits[-1] == [("src", 0, 1)]
