"""BatchLoop with a checkpoint interval and a handler whose state write can be started (``start_finalize``, as the
fused pipeline's Redis save): the write is started at the interval's checkpoint, the next batches go on, and the
offsets are committed only once the write was answered (at the next checkpoint, or before a revoke, shutdown,
idle poll or rewind). A write that failed sends the loop back to the checkpoint before it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import TopicPartition

from streams.runtime.batch import BatchResult
from streams.runtime.loop import BatchLoop

from .fake_message import FakeMessage
from .test_loop import FakeConsumer, FakeProducer, msgs
from .test_loop_checkpoint import DeferringHandler


class StartingHandler(DeferringHandler):
    """A deferring handler whose checkpoint can be started; ``fail_wait``: how many waits raise."""

    def __init__(self, events: list[str], fail_wait: int = 0) -> None:
        super().__init__(events)
        self.fail_wait = fail_wait
        self.answered = 0

    def process(self, messages: Sequence[FakeMessage]) -> BatchResult:
        result = super().process(messages)
        return BatchResult(result.outputs, finalize=result.finalize, deferrable=True, start_finalize=self._start)

    def _start(self) -> Callable[[], None]:
        self.events.append("start")

        def wait() -> None:
            self.events.append("wait")
            if self.fail_wait:
                self.fail_wait -= 1
                raise ConnectionError("redis went away before it answered")
            self.answered += 1

        return wait


def make(batches: Sequence[Sequence[FakeMessage]], interval_ms: int = 60_000, **kw: Any
         ) -> tuple[BatchLoop, FakeConsumer, StartingHandler, list[str]]:
    events: list[str] = []
    consumer, producer = FakeConsumer(batches, events), FakeProducer(events)
    handler = StartingHandler(events, **kw)
    loop = BatchLoop(consumer, producer, handler, ["src"], max_rows=100, max_ms=1,  # type: ignore[arg-type]
                     max_backoff_s=0.0, flush_timeout_s=0.01, checkpoint_interval_ms=interval_ms)
    return loop, consumer, handler, events


def due(loop: BatchLoop) -> None:
    loop.ledger.started_at -= 61  # the interval passed


def test_the_interval_checkpoint_is_started_and_committed_only_after_its_answer() -> None:
    loop, consumer, handler, events = make([msgs("src", 0, [0, 1]), msgs("src", 0, [2]), msgs("src", 0, [3])])
    loop.run_once()
    due(loop)
    loop.run_once()
    assert events[-2:] == ["flush", "start"] and consumer.commits == []  # written, not answered: no commit
    assert handler.finalized == 0
    loop.run_once()  # the next batch goes on meanwhile
    assert consumer.commits == [] and "wait" not in events
    due(loop)
    consumer.batches.append(msgs("src", 0, [4]))
    loop.run_once()  # the next checkpoint: the answer first, its commit, then this interval's start
    tail = events[events.index("wait"):]
    assert tail == ["wait", "commit", "flush", "start"]
    assert consumer.commits == [[("src", 0, 3)]]


def test_an_idle_poll_settles_a_started_checkpoint() -> None:
    loop, consumer, handler, events = make([msgs("src", 0, [0]), []])
    loop.run_once()
    loop.checkpoint(overlap=True)  # as the interval's checkpoint does
    assert consumer.commits == [] and events[-1] == "start"
    loop.run_once()  # nothing polled
    assert handler.answered == 1 and consumer.commits == [[("src", 0, 1)]]
    assert loop.health.healthy


def test_a_failed_answer_rewinds_to_the_checkpoint_before_the_started_one() -> None:
    loop, consumer, handler, events = make([msgs("src", 0, [0, 1]), msgs("src", 1, [7]), msgs("src", 0, [2])],
                                           fail_wait=1)
    loop.run_once()
    due(loop)
    loop.run_once()  # started: offsets 0-1 of p0 and 7 of p1
    loop.run_once()  # p0 offset 2, on top of it
    due(loop)
    consumer.batches.append(msgs("src", 0, [3]))
    assert loop.run_once() == 0  # the next checkpoint hears that the write failed
    assert consumer.commits == []
    assert sorted(consumer.seeks) == [("src", 0, 0), ("src", 1, 7)]  # back before the started checkpoint
    assert handler.rollbacks == 1 and not loop.health.healthy


def test_revoke_and_shutdown_wait_for_a_started_checkpoint_before_their_own() -> None:
    loop, consumer, handler, events = make([msgs("src", 0, [0, 1]), msgs("src", 0, [2])])
    loop.run_once()
    loop.checkpoint(overlap=True)  # started
    loop.run_once()  # pending
    loop._revoked(consumer, [TopicPartition("src", 0)])  # type: ignore[arg-type]
    assert handler.answered == 1 and handler.finalized == 1  # the started one answered, then the rest saved
    assert consumer.commits == [[("src", 0, 2)], [("src", 0, 3)]]
    assert events.index("wait") < events.index("commit") < events.index("finalize")

    loop, consumer, handler, events = make([msgs("src", 0, [0])])
    loop.run_once()
    loop.checkpoint(overlap=True)
    loop.stop()
    loop.run()
    assert handler.answered == 1 and consumer.commits[0] == [("src", 0, 1)] and consumer.closed


def test_a_batch_after_an_unanswered_checkpoint_does_not_clear_a_failure() -> None:
    loop, consumer, handler, _ = make([msgs("src", 0, [0]), msgs("src", 0, [1]), msgs("src", 0, [2])])
    loop.health.failing, loop.health.consecutive_failures = "redis", 3
    loop.run_once()
    loop.checkpoint(overlap=True)  # started, not answered
    loop.run_once()
    assert loop.health.consecutive_failures == 3 and consumer.commits == []
    due(loop)
    loop.run_once()  # answered at this checkpoint
    assert loop.health.consecutive_failures == 0 and consumer.commits[0] == [("src", 0, 1)]


def test_without_an_interval_the_write_is_never_left_unanswered() -> None:
    loop, consumer, handler, events = make([msgs("src", 0, [0]), msgs("src", 0, [1])], interval_ms=0)
    loop.run_once()
    loop.run_once()
    assert "start" not in events and handler.finalized == 2
    assert consumer.commits == [[("src", 0, 1)], [("src", 0, 2)]]
