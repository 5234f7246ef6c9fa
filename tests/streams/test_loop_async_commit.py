"""BatchLoop with a CommitLog: asynchronous commits after each batch, synchronous ones on revoke and close."""

from __future__ import annotations

from confluent_kafka import KafkaException, TopicPartition

from streams.runtime.batch import CommitLog
from streams.runtime.loop import BatchLoop

from .test_loop import FakeConsumer, FakeProducer, RecordingHandler, msgs


def make_async_loop(batches: list) -> tuple[BatchLoop, FakeConsumer, CommitLog, list[str]]:
    events: list[str] = []
    consumer, producer = FakeConsumer(batches, events), FakeProducer(events)
    commits = CommitLog()
    loop = BatchLoop(consumer, producer, RecordingHandler(events), ["src"], max_rows=100,  # type: ignore[arg-type]
                     max_ms=1, max_backoff_s=0.0, flush_timeout_s=0.01, commits=commits)
    return loop, consumer, commits, events


def test_commit_is_sent_asynchronously_after_state_and_delivery() -> None:
    loop, consumer, _, events = make_async_loop([msgs("src", 0, [4, 5])])
    loop.run_once()
    assert events == ["consume", "process", "produce:out", "produce:out", "flush", "finalize", "commit-async"]
    assert consumer.commits == [[("src", 0, 6)]]


def test_health_reports_the_last_acknowledged_commit_not_the_last_sent() -> None:
    loop, _, commits, _ = make_async_loop([msgs("src", 0, [1]), msgs("src", 0, [2])])
    loop.run_once()
    assert loop.health.last_commit_at is None  # sent, not yet answered
    commits(None, [TopicPartition("src", 0, 2)])  # the broker's answer, served by the next poll
    loop.run_once()
    assert loop.health.last_commit_at == commits.acknowledged_at is not None


def test_a_failed_commit_is_counted_and_leaves_the_acknowledged_time() -> None:
    commits = CommitLog()
    commits(None, [TopicPartition("src", 0, 3)])
    acked = commits.acknowledged_at
    commits("REBALANCE_IN_PROGRESS", [TopicPartition("src", 0, 4)])
    assert commits.failures == 1 and commits.last_error == "REBALANCE_IN_PROGRESS"
    assert commits.acknowledged_at == acked is not None


def _stop_when(loop: BatchLoop, events: list[str], async_commits: int) -> None:
    """Stop ``loop`` from its tick once ``async_commits`` were sent (or after 20 ticks: never hang a test)."""
    ticks = [0]

    def tick() -> None:
        ticks[0] += 1
        if events.count("commit-async") >= async_commits or ticks[0] > 20:
            loop.stop()

    loop.tick = tick


def test_revoke_commits_what_was_sent_for_those_partitions_synchronously() -> None:
    loop, consumer, _, events = make_async_loop([msgs("src", 0, [7]) + msgs("src", 1, [3])])
    loop.stop()
    loop.run()  # subscribes (registers the rebalance callbacks) and stops at once
    loop.run_once()
    consumer.callbacks["on_revoke"](consumer, [TopicPartition("src", 1)])
    assert consumer.commits[-1] == [("src", 1, 4)] and events[-1] == "commit"
    consumer.callbacks["on_revoke"](consumer, [TopicPartition("src", 1)])
    assert events.count("commit") == 1  # nothing left to commit for it


def test_close_commits_everything_sent() -> None:
    loop, consumer, _, events = make_async_loop([msgs("src", 0, [1, 2]), msgs("src", 2, [9])])
    _stop_when(loop, events, 2)
    loop.run()
    assert events.count("commit-async") == 2 and events[-1] == "commit"
    assert sorted(consumer.commits[-1]) == [("src", 0, 3), ("src", 2, 10)] and consumer.closed


def test_a_failing_final_commit_is_logged_and_the_consumer_still_closes() -> None:
    loop, consumer, _, events = make_async_loop([msgs("src", 0, [1])])
    consumer.commit_error = KafkaException("coordinator not available")
    _stop_when(loop, events, 1)
    loop.run()
    assert consumer.closed and "commit-async" in events and "commit" not in events


def test_without_a_commit_log_the_loop_commits_synchronously() -> None:
    events: list[str] = []
    consumer = FakeConsumer([msgs("src", 0, [1])], events)
    loop = BatchLoop(consumer, FakeProducer(events), RecordingHandler(events), ["src"], max_rows=10,  # type: ignore[arg-type]
                     max_ms=1, flush_timeout_s=0.01)
    loop.run_once()
    assert events[-1] == "commit" and loop.health.last_commit_at is not None
