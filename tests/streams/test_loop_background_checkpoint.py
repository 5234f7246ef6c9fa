"""BatchLoop with background checkpoints: the state write of a due checkpoint runs while the next batches are
handled; the offsets are committed only once it went through; when it fails, the loop goes back to the checkpoint
before it (everything handled since, including batches after the failed one began) and the handler rolls back."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import redis
from confluent_kafka import TopicPartition

from streams.runtime.batch import BatchResult
from streams.runtime.loop import BatchLoop

from .fake_message import FakeMessage
from .test_loop import FakeConsumer, FakeProducer, msgs
from .test_loop_checkpoint import DeferringHandler


class BackgroundHandler(DeferringHandler):
    """Its checkpoint has a background form: each ``begin`` hands out a Future the test resolves."""

    def __init__(self, events: list[str], **kw: Any) -> None:
        super().__init__(events, **kw)
        self.saves: list[Future[None]] = []

    def process(self, messages: Sequence[FakeMessage]) -> BatchResult:
        result = super().process(messages)
        return BatchResult(result.outputs, finalize=result.finalize, deferrable=True, begin_finalize=self.begin)

    def begin(self) -> Future[None]:
        self.events.append("begin")
        self.saves.append(Future())
        return self.saves[-1]


def make(batches: Sequence[Sequence[FakeMessage]], background: bool = True
         ) -> tuple[BatchLoop, FakeConsumer, BackgroundHandler, list[str]]:
    events: list[str] = []
    consumer, producer = FakeConsumer(batches, events), FakeProducer(events)
    handler = BackgroundHandler(events)
    loop = BatchLoop(consumer, producer, handler, ["src"], max_rows=100, max_ms=1,  # type: ignore[arg-type]
                     max_backoff_s=0.0, flush_timeout_s=0.01, checkpoint_interval_ms=60_000,
                     checkpoint_background=background)
    return loop, consumer, handler, events


def due(loop: BatchLoop, every_batch: bool = True) -> None:
    """From now on every batch's checkpoint is due (or, with False, none is)."""
    loop.ledger.interval_s = 1e-9 if every_batch else 3600.0


def test_the_commit_waits_for_the_background_save_and_batches_go_on_meanwhile() -> None:
    loop, consumer, handler, events = make([msgs("src", 0, [0, 1]), msgs("src", 0, [2]), [], []])
    due(loop)
    assert loop.run_once() == 2
    assert events[-2:] == ["flush", "begin"] and consumer.commits == [] and handler.finalized == 0
    due(loop, False)
    assert loop.run_once() == 1  # handled while the save is on its way
    assert consumer.commits == [] and loop.health.healthy is not False  # no failure either
    loop.run_once()  # idle, the save still running: nothing to commit yet
    assert consumer.commits == []
    handler.saves[0].set_result(None)
    loop.run_once()
    assert consumer.commits == [[("src", 0, 2)]]  # what the checkpoint covered, not offset 3 handled after it


def test_a_failed_background_save_rewinds_to_the_checkpoint_before_it_and_rolls_back() -> None:
    loop, consumer, handler, _ = make([msgs("src", 0, [0, 1]), msgs("src", 1, [7]), msgs("src", 0, [2]), []])
    due(loop)
    loop.run_once()  # offsets 0-1 of partition 0: checkpoint begun
    due(loop, False)
    loop.run_once()  # partition 1's 7, after it
    loop.run_once()  # partition 0's 2
    handler.saves[0].set_exception(redis.exceptions.ConnectionError("redis went away"))
    assert loop.run_once() == 0
    assert sorted(consumer.seeks) == [("src", 0, 0), ("src", 1, 7)]  # partition 0 from before the failed one
    assert handler.rollbacks == 1 and consumer.commits == []
    assert not loop.health.healthy and loop.health.failing == "redis"


def test_the_next_due_checkpoint_settles_the_previous_first() -> None:
    loop, consumer, handler, events = make([msgs("src", 0, [0]), msgs("src", 0, [1])])
    due(loop)
    loop.run_once()
    handler.saves[0].set_result(None)
    loop.run_once()  # the second checkpoint: the first one's commit comes before it begins
    assert consumer.commits == [[("src", 0, 1)]] and events[-2:] == ["flush", "begin"]
    assert events.index("commit") < len(events) - 2


def test_revoke_and_shutdown_wait_for_the_save_in_flight_and_commit_it() -> None:
    loop, consumer, handler, _ = make([msgs("src", 0, [0, 1])])
    due(loop)
    loop.run_once()
    handler.saves[0].set_result(None)
    loop._revoked(consumer, [TopicPartition("src", 0)])  # type: ignore[arg-type]
    assert consumer.commits == [[("src", 0, 2)]] and handler.revoked == [("src", 0)]

    loop, consumer, handler, _ = make([msgs("src", 0, [0, 1])])
    due(loop)
    loop.run_once()
    handler.saves[0].set_result(None)
    loop.stop()
    loop.run()
    assert consumer.commits[-1] == [("src", 0, 2)] and consumer.closed


def test_a_sync_checkpoint_after_a_failed_background_one_covers_both_intervals() -> None:
    loop, consumer, handler, _ = make([msgs("src", 0, [0]), msgs("src", 0, [1])])
    due(loop)
    loop.run_once()
    due(loop, False)
    loop.run_once()
    handler.saves[0].set_exception(redis.exceptions.ConnectionError("redis went away"))
    loop.stop()
    loop.run()  # shutdown: the failed save is found, the loop goes back to before it; nothing is committed
    assert consumer.commits == [] and consumer.seeks == [("src", 0, 0)] and handler.rollbacks == 1


def test_off_or_without_an_interval_the_checkpoint_stays_in_the_loop() -> None:
    loop, consumer, handler, events = make([msgs("src", 0, [0])], background=False)
    due(loop)
    loop.run_once()
    assert "begin" not in events and handler.finalized == 1 and consumer.commits == [[("src", 0, 1)]]
