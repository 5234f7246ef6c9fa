"""BatchLoop with fake Kafka clients: order of effects, commit offsets, rewind on failure, health, DLQ."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.runtime.batch import BatchResult, Output, dead_letter, describe, next_offsets
from streams.runtime.loop import BatchLoop

from .fake_message import FakeMessage


# --------------------------------------------------------------------------------------------- fakes
@dataclass
class FakeError:
    code_: int = KafkaError._PARTITION_EOF
    fatal_: bool = False
    text: str = "boom"

    def code(self) -> int:
        return self.code_

    def fatal(self) -> bool:
        return self.fatal_

    def str(self) -> str:
        return self.text


class FakeConsumer:
    def __init__(self, batches: Sequence[Sequence[FakeMessage]], events: list[str]) -> None:
        self.batches = [list(b) for b in batches]
        self.events = events
        self.commits: list[list[tuple[str, int, int]]] = []
        self.seeks: list[tuple[str, int, int]] = []
        self.polls: list[float] = []
        self.lingers: list[float] = []
        self.seek_error: Exception | None = None
        self.commit_error: Exception | None = None
        self.callbacks: dict[str, Callable[..., None]] = {}
        self.subscribed: list[str] = []
        self.closed = False

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        self.subscribed = list(topics)
        self.callbacks = callbacks

    def poll(self, timeout: float) -> FakeMessage | None:
        """A batch's first record (the rest stays queued for ``consume``), None when nothing is queued."""
        self.events.append("consume")
        self.polls.append(timeout)
        if not self.batches or not self.batches[0]:
            if self.batches:
                self.batches.pop(0)
            return None
        return self.batches[0].pop(0)

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        """What is left of the polled batch (it never waits: ``timeout`` is only recorded)."""
        self.lingers.append(timeout)
        batch = self.batches.pop(0) if self.batches else []
        assert len(batch) <= num_messages
        return batch

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool) -> None:
        """Records ``commit`` (synchronous) or ``commit-async``; ``commit_error`` fails synchronous ones."""
        if self.commit_error is not None and not asynchronous:
            raise self.commit_error
        self.events.append("commit-async" if asynchronous else "commit")
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def seek(self, tp: TopicPartition) -> None:
        if self.seek_error is not None:
            raise self.seek_error
        self.events.append("seek")
        self.seeks.append((tp.topic, tp.partition, tp.offset))

    def close(self) -> None:
        self.closed = True

    assigned_tps: list[TopicPartition] = []

    def assignment(self) -> list[TopicPartition]:
        return list(self.assigned_tps)

    def pause(self, tps: list[TopicPartition]) -> None:
        self.events.append("pause:" + ",".join(f"{t.topic}[{t.partition}]" for t in tps))

    def resume(self, tps: list[TopicPartition]) -> None:
        self.events.append("resume:" + ",".join(f"{t.topic}[{t.partition}]" for t in tps))


class FakeProducer:
    """Queues produced records; ``flush`` delivers them (optionally failing some) and returns what is left."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.queue: list[tuple[Output, Callable[[Any, Any], None]]] = []
        self.delivered: list[Output] = []
        self.fail_topics: set[str] = set()
        self.undelivered = 0  # flush leaves this many records behind
        self.buffer_errors = 0  # the next produce calls raise BufferError this many times
        self.polls = 0

    def produce(self, topic: str, value: bytes, key: Any = None, *, headers: Any = None,
                on_delivery: Callable[[Any, Any], None]) -> None:
        if self.buffer_errors:
            self.buffer_errors -= 1
            raise BufferError("queue full")
        self.events.append(f"produce:{topic}")
        self.queue.append((Output(topic, value, key, headers), on_delivery))

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0

    def flush(self, timeout: float) -> int:
        self.events.append("flush")
        left = self.queue[len(self.queue) - self.undelivered:] if self.undelivered else []
        for out, cb in self.queue[: len(self.queue) - len(left)]:
            msg = FakeMessage(out.topic, 0, 0)
            if out.topic in self.fail_topics:
                cb(FakeError(code_=KafkaError._MSG_TIMED_OUT, text="timed out"), msg)
            else:
                self.delivered.append(out)
                cb(None, msg)
        self.queue = left
        return len(left)


class RecordingHandler:
    def __init__(self, events: list[str], outputs_per_record: int = 1, fail_finalize: int = 0,
                 fail_process: int = 0) -> None:
        self.events = events
        self.outputs_per_record = outputs_per_record
        self.fail_finalize = fail_finalize
        self.fail_process = fail_process
        self.seen: list[list[tuple[int, int]]] = []
        self.finalized = 0
        self.assigned: list[tuple[str, int]] = []
        self.revoked: list[tuple[str, int]] = []

    def process(self, messages: Sequence[FakeMessage]) -> BatchResult:
        self.events.append("process")
        self.seen.append([(m.partition(), m.offset()) for m in messages])
        if self.fail_process:
            self.fail_process -= 1
            raise TimeoutError("redis timed out")  # an infrastructure fault: the batch is retried whole
        outs = [Output("out", b"v%d" % m.offset(), m.key()) for m in messages for _ in range(self.outputs_per_record)]
        return BatchResult(outs, finalize=self._finalize)

    def _finalize(self) -> None:
        self.events.append("finalize")
        if self.fail_finalize:
            self.fail_finalize -= 1
            raise ConnectionError("redis down")
        self.finalized += 1

    def on_assign(self, partitions: Sequence[TopicPartition]) -> None:
        self.assigned += [(p.topic, p.partition) for p in partitions]

    def on_revoke(self, partitions: Sequence[TopicPartition]) -> None:
        self.revoked += [(p.topic, p.partition) for p in partitions]


def msgs(topic: str, partition: int, offsets: range | list[int]) -> list[FakeMessage]:
    return [FakeMessage(topic, partition, o, key_=f"e{o}".encode()) for o in offsets]


def make_loop(batches: Sequence[Sequence[FakeMessage]], **handler_kw: Any
              ) -> tuple[BatchLoop, FakeConsumer, FakeProducer, RecordingHandler, list[str]]:
    events: list[str] = []
    consumer, producer = FakeConsumer(batches, events), FakeProducer(events)
    handler = RecordingHandler(events, **handler_kw)
    loop = BatchLoop(consumer, producer, handler, ["src"], max_rows=100, max_ms=1,  # type: ignore[arg-type]
                     max_backoff_s=0.0, flush_timeout_s=0.01)
    return loop, consumer, producer, handler, events


# --------------------------------------------------------------------------------------------- order
def test_outputs_delivered_then_finalize_then_commit() -> None:
    loop, consumer, producer, handler, events = make_loop([msgs("src", 0, range(3))])
    assert loop.run_once() == 3
    assert events == ["consume", "process", "produce:out", "produce:out", "produce:out", "flush", "finalize",
                      "commit"]
    assert [o.value for o in producer.delivered] == [b"v0", b"v1", b"v2"]
    assert handler.finalized == 1


def test_commit_is_last_offset_plus_one_per_partition() -> None:
    batch = msgs("src", 0, [5, 6, 7]) + msgs("src", 1, [40]) + msgs("other", 0, [2, 3])
    batch = [batch[0], batch[3], batch[1], batch[4], batch[2], batch[5]]  # interleaved partitions
    loop, consumer, *_ = make_loop([batch])
    loop.run_once()
    assert sorted(consumer.commits[0]) == [("other", 0, 4), ("src", 0, 8), ("src", 1, 41)]


def testnext_offsets_takes_the_max_even_out_of_order() -> None:
    tps = next_offsets(msgs("t", 0, [9, 3, 7]))  # type: ignore[arg-type]
    assert [(tp.topic, tp.partition, tp.offset) for tp in tps] == [("t", 0, 10)]


def test_batch_waits_max_ms_for_a_first_record_then_only_linger_for_the_rest() -> None:
    events: list[str] = []
    consumer = FakeConsumer([msgs("src", 0, range(4))], events)
    loop = BatchLoop(consumer, FakeProducer(events), RecordingHandler(events), ["src"],  # type: ignore[arg-type]
                     max_rows=100, max_ms=40, linger_ms=3)
    assert [m.offset() for m in loop.next_batch()] == [0, 1, 2, 3]
    assert consumer.polls == [0.04] and consumer.lingers == [0.003]
    assert loop.next_batch() == [] and consumer.lingers == [0.003]  # nothing came: no second wait


def test_batch_of_one_row_never_lingers() -> None:
    events: list[str] = []
    consumer = FakeConsumer([msgs("src", 0, range(2))], events)
    loop = BatchLoop(consumer, FakeProducer(events), RecordingHandler(events), ["src"],  # type: ignore[arg-type]
                     max_rows=1, max_ms=5)
    assert [m.offset() for m in loop.next_batch()] == [0]
    assert consumer.lingers == []


def test_empty_batch_serves_callbacks_and_commits_nothing() -> None:
    loop, consumer, producer, handler, events = make_loop([[]])
    assert loop.run_once() == 0
    assert consumer.commits == [] and handler.seen == [] and producer.polls == 1
    assert loop.health.last_poll_at is not None


def test_handler_without_finalize_still_commits() -> None:
    loop, consumer, producer, handler, events = make_loop([msgs("src", 0, range(2))])
    handler.process = lambda m: BatchResult([])  # type: ignore[method-assign]
    assert loop.run_once() == 2
    assert consumer.commits == [[("src", 0, 2)]]


# --------------------------------------------------------------------------------------------- failures
def test_failing_finalize_rewinds_and_does_not_commit() -> None:
    batch = msgs("src", 0, [10, 11]) + msgs("src", 1, [3, 4])
    loop, consumer, producer, handler, events = make_loop([batch, batch], fail_finalize=1)
    assert loop.run_once() == 0
    assert consumer.commits == []
    assert sorted(consumer.seeks) == [("src", 0, 10), ("src", 1, 3)]
    assert loop.health.consecutive_failures == 1 and not loop.health.healthy
    assert "ConnectionError: redis down" in (loop.health.last_error or "")
    # the redelivered batch succeeds: health recovers, offsets commit
    assert loop.run_once() == 4
    assert consumer.commits == [[("src", 0, 12), ("src", 1, 5)]]
    assert loop.health.healthy and loop.health.batches == 1 and loop.health.records == 4


def test_delivery_error_rewinds_before_finalize() -> None:
    loop, consumer, producer, handler, events = make_loop([msgs("src", 2, [7, 8, 9])])
    producer.fail_topics = {"out"}
    assert loop.run_once() == 0
    assert "finalize" not in events and consumer.commits == []
    assert consumer.seeks == [("src", 2, 7)]
    assert "DeliveryError" in (loop.health.last_error or "") and "timed out" in (loop.health.last_error or "")
    assert handler.finalized == 0


def test_undelivered_after_flush_timeout_rewinds() -> None:
    loop, consumer, producer, handler, events = make_loop([msgs("src", 0, [1, 2])])
    producer.undelivered = 1
    assert loop.run_once() == 0
    assert "finalize" not in events and consumer.commits == [] and consumer.seeks == [("src", 0, 1)]
    assert "1 undelivered" in (loop.health.last_error or "")


def test_failing_process_rewinds_and_produces_nothing() -> None:
    loop, consumer, producer, handler, events = make_loop([msgs("src", 0, [4, 5])], fail_process=1)
    assert loop.run_once() == 0
    assert not any(e.startswith("produce") for e in events)
    assert consumer.seeks == [("src", 0, 4)] and consumer.commits == []


def test_consecutive_failures_count_up_and_reset() -> None:
    batch = msgs("src", 0, [1])
    loop, consumer, producer, handler, events = make_loop([batch] * 4, fail_finalize=3)
    for expected in (1, 2, 3):
        loop.run_once()
        assert loop.health.consecutive_failures == expected
    loop.run_once()
    assert loop.health.consecutive_failures == 0 and loop.health.last_commit_at is not None


def test_seek_on_revoked_partition_is_tolerated() -> None:
    loop, consumer, producer, handler, events = make_loop([msgs("src", 0, [1])], fail_finalize=1)
    consumer.seek_error = KafkaException(KafkaError(KafkaError._STATE))
    assert loop.run_once() == 0  # no exception escapes
    assert loop.health.consecutive_failures == 1


def test_buffer_error_applies_back_pressure_and_retries() -> None:
    loop, consumer, producer, handler, events = make_loop([msgs("src", 0, [1, 2])])
    producer.buffer_errors = 3
    assert loop.run_once() == 2
    assert producer.polls == 3 and len(producer.delivered) == 2


# --------------------------------------------------------------------------------------------- errors in messages
def test_partition_eof_and_soft_errors_are_dropped() -> None:
    batch = [FakeMessage("src", 0, -1, error_=FakeError()), *msgs("src", 0, [3]),
             FakeMessage("src", 0, -1, error_=FakeError(code_=KafkaError._TRANSPORT))]
    loop, consumer, producer, handler, events = make_loop([batch])
    assert loop.run_once() == 1
    assert handler.seen == [[(0, 3)]]


def test_fatal_consumer_error_raises() -> None:
    loop, *_ = make_loop([[FakeMessage("src", 0, -1, error_=FakeError(code_=KafkaError._FATAL, fatal_=True))]])
    with pytest.raises(KafkaException):
        loop.run_once()


# --------------------------------------------------------------------------------------------- run, callbacks
def test_run_subscribes_ticks_and_closes() -> None:
    loop, consumer, producer, handler, events = make_loop([msgs("src", 0, [0, 1]), msgs("src", 0, [2])])
    ticks: list[int] = []
    sizes: list[int] = []
    loop.tick = lambda: ticks.append(len(events))
    loop.on_batch = lambda n, secs: (sizes.append(n), loop.stop() if len(sizes) == 2 else None)
    loop.run()
    assert consumer.subscribed == ["src"] and consumer.closed
    assert sizes == [2, 1] and len(ticks) == 2
    assert ticks[1] == events.index("commit") + 1  # the tick runs between batches, never inside one
    assert events[-1] == "flush"  # final producer flush before close
    assert loop.stopping


def test_assign_and_revoke_track_health_and_notify_handler() -> None:
    loop, consumer, producer, handler, events = make_loop([])
    loop.stop()
    loop.run()
    consumer.callbacks["on_assign"](consumer, [TopicPartition("src", 0), TopicPartition("src", 1)])
    assert loop.health.assigned == ["src[0]", "src[1]"]
    consumer.callbacks["on_revoke"](consumer, [TopicPartition("src", 0)])
    assert loop.health.assigned == ["src[1]"]
    consumer.callbacks["on_lost"](consumer, [TopicPartition("src", 1)])
    assert loop.health.assigned == []
    assert handler.assigned == [("src", 0), ("src", 1)] and handler.revoked == [("src", 0), ("src", 1)]


# --------------------------------------------------------------------------------------------- dead letters
def test_a_held_loop_handles_nothing_rewinds_what_it_fetched_and_keeps_polling() -> None:
    """`pause`: records fetched before the pause took effect (or from a partition assigned while paused) are
    rewound, not handled; every poll re-pauses the assignment; the resume hands them to the handler."""
    paused = [True]
    loop, consumer, _, handler, events = make_loop([msgs("src", 0, [7, 8]), [], msgs("src", 0, [7, 8])])
    loop.hold = lambda: paused[0]
    consumer.assigned_tps = [TopicPartition("src", 0)]
    assert loop.run_once() == 0
    assert handler.seen == [] and consumer.seeks == [("src", 0, 7)] and consumer.commits == []
    assert events == ["pause:src[0]", "consume", "seek", "pause:src[0]"]
    consumer.assigned_tps = [TopicPartition("src", 0), TopicPartition("src", 1)]  # a rebalance while paused
    events.clear()
    assert loop.run_once() == 0 and events[0] == "pause:src[0],src[1]"
    assert loop.health.last_poll_at is not None  # a held loop is alive
    paused[0] = False
    events.clear()
    assert loop.run_once() == 2 and handler.seen == [[(0, 7), (0, 8)]]
    assert events[0] == "resume:src[0],src[1]"
    events.clear()
    loop.run_once()
    assert not any(e.startswith(("pause", "resume")) for e in events)  # resumed once, then left alone


def test_hold_that_starts_during_a_poll_rewinds_that_poll() -> None:
    calls = iter([False, True, True])
    loop, consumer, _, handler, _ = make_loop([msgs("src", 0, [3])])
    loop.hold = lambda: next(calls)
    consumer.assigned_tps = [TopicPartition("src", 0)]
    assert loop.run_once() == 0 and handler.seen == [] and consumer.seeks == [("src", 0, 3)]


def test_dead_letter_keeps_original_bytes_and_source_position() -> None:
    m = FakeMessage("vitals", 4, 1234, value_=b'{"bad json', key_=b"p-9")
    out = dead_letter(m, "vitals.dlq", "malformed_json", "unexpected end")  # type: ignore[arg-type]
    assert (out.topic, out.value, out.key) == ("vitals.dlq", b'{"bad json', b"p-9")
    assert dict(out.headers or []) == {"error": b"malformed_json", "source_topic": b"vitals",
                                       "source_partition": b"4", "source_offset": b"1234",
                                       "error_class": b"RecordError", "error_detail": b"unexpected end"}


def test_dead_letter_without_detail_and_null_value() -> None:
    m = FakeMessage("t", 0, 1, value_=None, key_=None)
    out = dead_letter(m, "t.dlq", "malformed_json")  # type: ignore[arg-type]
    assert out.value == b"" and out.key is None
    assert [h for h, _ in out.headers or []] == ["error", "source_topic", "source_partition", "source_offset",
                                                 "error_class"]


def test_dead_letter_detail_is_truncated() -> None:
    out = dead_letter(FakeMessage("t", 0, 1), "t.dlq", "x", "é" * 2000)  # type: ignore[arg-type]
    assert dict(out.headers or [])["error_detail"] == ("é" * 500).encode()


def test_describe() -> None:
    assert describe(FakeMessage("vitals", 2, 99)) == "vitals[2]@99"  # type: ignore[arg-type]
