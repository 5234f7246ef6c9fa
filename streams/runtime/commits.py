"""The batch loop's offset commits: synchronous, or sent asynchronously and confirmed by a :class:`CommitLog`.

With a :class:`~streams.runtime.batch.CommitLog` (also the consumer's ``on_commit``) a commit is sent and the loop
goes on; the broker's answer arrives with a later poll, and what was sent for partitions being revoked, or on
close, is committed synchronously (:meth:`Committer.commit_sent`). Without one, every commit is synchronous.
Each commit also exports the consumer lag of its partitions and the time of the last acknowledged commit.

Example (a stand-in consumer):
    >>> from streams.metrics import Metrics
    >>> from streams.runtime.batch import CommitLog, LoopHealth
    >>> class Consumer:
    ...     def __init__(self): self.calls = []
    ...     def commit(self, offsets, asynchronous): self.calls.append((offsets[0].offset, asynchronous))
    ...     def get_watermark_offsets(self, tp, cached): return (0, 10)
    >>> consumer, log = Consumer(), CommitLog()
    >>> committer = Committer("pipeline", Metrics(), LoopHealth(), log)
    >>> committer.commit(consumer, [TopicPartition("t", 0, 7)])
    >>> committer.commit_sent(consumer, None)  # on close: what was sent, synchronously
    >>> consumer.calls
    [(7, True), (7, False)]
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from streams.metrics import Metrics
from streams.runtime.batch import CommitLog, LoopHealth

log = logging.getLogger(__name__)

__all__ = ["Committer"]


class Committer:
    """Commits the loop's offsets and reports them (``health.last_commit_at``, last-commit and lag metrics)."""

    def __init__(self, stage: str, metrics: Metrics, health: LoopHealth, commits: CommitLog | None) -> None:
        self.stage = stage
        self.metrics = metrics
        self.health = health
        self.commits = commits  # given: commit asynchronously
        self._sent: dict[tuple[str, int], int] = {}  # offsets committed asynchronously, per partition

    def commit(self, consumer: Any, committed: list[TopicPartition]) -> None:
        """Commit ``committed`` (the next offsets), asynchronously when there is a commit log."""
        if self.commits is None:
            consumer.commit(offsets=committed, asynchronous=False)
            self.health.last_commit_at = time.time()
        else:
            consumer.commit(offsets=committed, asynchronous=True)
            self._sent.update({(tp.topic, tp.partition): tp.offset for tp in committed})
            self.health.last_commit_at = self.commits.acknowledged_at
        if self.health.last_commit_at is not None:
            self.metrics.last_commit.labels(self.stage).set(self.health.last_commit_at)
        self.export_lag(consumer, committed)

    def note_acknowledged(self) -> None:
        """The broker's answer to an asynchronous commit arrives during a later poll: the last commit's time
        follows it even when no further commit is made (an idle stream after its last checkpoint)."""
        acked = None if self.commits is None else self.commits.acknowledged_at
        if acked is not None and acked != self.health.last_commit_at:
            self.health.last_commit_at = acked
            self.metrics.last_commit.labels(self.stage).set(acked)

    def commit_sent(self, consumer: Any, partitions: Sequence[TopicPartition] | None) -> None:
        """Commit synchronously what was sent asynchronously for ``partitions`` (None: all), so a revoked
        partition's next owner or a restart starts after it; a failure is logged (the store skips replays)."""
        keys = list(self._sent) if partitions is None else [(p.topic, p.partition) for p in partitions]
        offsets = [TopicPartition(t, p, self._sent.pop((t, p))) for t, p in keys if (t, p) in self._sent]
        if not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("final commit of %s failed: %s", [f"{o.topic}[{o.partition}]@{o.offset}" for o in offsets],
                        exc)

    def export_lag(self, consumer: Any, committed: list[TopicPartition]) -> None:
        """Lag per partition from the high watermark the last fetch reported (``cached=True``: no broker round
        trip, and the only value the embedded broker gets right)."""
        for tp in committed:
            try:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
            except Exception:  # noqa: BLE001 - a metric never fails a batch that is already committed
                log.debug("no watermark for %s[%d]", tp.topic, tp.partition, exc_info=True)
                continue
            if high >= 0:
                self.metrics.consumer_lag.labels(self.stage, tp.topic, str(tp.partition)).set(max(0, high - tp.offset))
