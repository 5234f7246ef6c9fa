"""The batch loop's vocabulary: what a handler returns (:class:`BatchResult` of :class:`Output` records), what the
loop reports (:class:`LoopHealth`, :class:`CommitLog`), how it takes a batch (:func:`take_batch`) and the record
helpers shared by every stage (:func:`describe`, :func:`dead_letter`, :func:`next_offsets`).

Example:
    >>> class Record:  # the three Message methods these helpers read
    ...     def __init__(self, offset: int) -> None:
    ...         self._offset = offset
    ...     def topic(self) -> str:
    ...         return "t"
    ...     def partition(self) -> int:
    ...         return 0
    ...     def offset(self) -> int:
    ...         return self._offset
    >>> batch = [Record(5), Record(6)]
    >>> [(tp.topic, tp.partition, tp.offset) for tp in next_offsets(batch)], describe(batch[0])
    ([('t', 0, 7)], 't[0]@5')
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.exceptions import InfrastructureError
from streams.runtime.dead_letters import headers_for

__all__ = ["Output", "BatchResult", "BatchHandler", "DeliveryError", "LoopHealth", "CommitLog", "take_batch",
           "first_offsets", "seek_all", "is_consumer_error", "next_offsets", "describe", "dead_letter"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Output:
    """One record to produce."""

    topic: str
    value: bytes
    key: bytes | str | None = None
    headers: list[tuple[str, bytes]] | None = None


@dataclass
class BatchResult:
    outputs: list[Output] = field(default_factory=list)
    finalize: Callable[[], None] | None = None  # state write; runs after every output was delivered
    # True: ``finalize`` checkpoints everything the handler applied since its last checkpoint (not only this
    # batch), so a loop with a checkpoint interval runs it once per interval instead of after every batch
    deferrable: bool = False
    # optional, for a deferrable result: ``finalize`` started (its writes sent); returns the wait for them, which
    # raises what ``finalize`` would have. A loop with a checkpoint interval overlaps the write with the next
    # batches and commits the offsets once the wait returned (``streams.runtime.loop``)
    start_finalize: Callable[[], Callable[[], None]] | None = None


class BatchHandler(Protocol):
    def process(self, messages: Sequence[Message]) -> BatchResult: ...

    def on_assign(self, partitions: Sequence[TopicPartition]) -> None: ...

    def on_revoke(self, partitions: Sequence[TopicPartition]) -> None: ...


class DeliveryError(InfrastructureError):
    """At least one output was not acknowledged by the broker."""


@dataclass
class LoopHealth:
    """What /health and the metrics report about one loop."""

    started_at: float = field(default_factory=time.time)
    last_commit_at: float | None = None
    last_poll_at: float | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_class: str | None = None
    last_error_at: float | None = None
    failing: str | None = None  # the dependency whose failure stops batches (None: the last batch succeeded)
    batches: int = 0
    records: int = 0
    assigned: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.consecutive_failures == 0


class CommitLog:
    """The broker's answers to asynchronous commits: pass it as the consumer's ``on_commit`` and to the loop.

    Example:
        >>> commits = CommitLog()
        >>> commits(None, [TopicPartition("t", 0, 5)])
        >>> commits.acknowledged_at is not None, commits.failures
        (True, 0)
        >>> commits("coordinator moved", [TopicPartition("t", 0, 6)])  # a KafkaError in real use
        >>> commits.failures, commits.last_error
        (1, 'coordinator moved')
    """

    def __init__(self) -> None:
        self.acknowledged_at: float | None = None
        self.failures = 0
        self.last_error: str | None = None

    def __call__(self, err: Any, partitions: list[TopicPartition]) -> None:
        failed = [tp.error for tp in partitions if tp.error is not None]
        if err is None and not failed:
            self.acknowledged_at = time.time()
            return
        self.failures += 1
        self.last_error = str(err if err is not None else failed[0])
        log.warning("offset commit failed: %s (the next commit covers it)", self.last_error)


def take_batch(consumer: Consumer, max_rows: int, wait_s: float, linger_s: float = 0.0) -> list[Message]:
    """Up to ``max_rows`` records: wait up to ``wait_s`` for a first one, then take what else is already
    queued, waiting at most ``linger_s`` more for it (0: none).

    Batches thus size themselves to the load ("smart batching"): at a low rate a record is handled as soon
    as it arrives, under load the records that queued while the previous batch ran form the next one.
    ``Consumer.consume(n, timeout)`` alone would hold every record for the full ``timeout`` unless ``n``
    are queued, which puts the batch window on every event's latency.
    """
    first = consumer.poll(wait_s)
    if first is None:
        return []
    if max_rows <= 1:
        return [first]
    return [first, *consumer.consume(max_rows - 1, linger_s)]


def next_offsets(records: Sequence[Message]) -> list[TopicPartition]:
    """The offsets to commit: last handled offset + 1, per partition."""
    return [TopicPartition(t, p, o + 1) for (t, p), o in offset_bounds(records)[1].items()]


def offset_bounds(records: Sequence[Message]) -> tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]]:
    """Per (topic, partition), in one pass: the first offset among ``records`` (where a rewind of them seeks to)
    and the largest (the last handled).

    >>> class R:
    ...     def __init__(self, p, o): self.p, self.o = p, o
    ...     def topic(self): return "t"
    ...     def partition(self): return self.p
    ...     def offset(self): return self.o
    >>> offset_bounds([R(0, 5), R(1, 2), R(0, 7), R(0, 6)])
    ({('t', 0): 5, ('t', 1): 2}, {('t', 0): 7, ('t', 1): 2})
    """
    first: dict[tuple[str, int], int] = {}
    last: dict[tuple[str, int], int] = {}
    for m in records:
        key, offset = (m.topic(), m.partition()), m.offset()
        if key not in first:
            first[key] = offset
        if offset > last.get(key, -1):
            last[key] = offset
    return first, last


def first_offsets(records: Sequence[Message]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the first offset among ``records`` (where a rewind of them seeks to)."""
    return offset_bounds(records)[0]


def seek_all(consumer: Consumer, offsets: Mapping[tuple[str, int], int]) -> None:
    """Seek each (topic, partition) to its offset; a partition revoked meanwhile is skipped (its new owner
    replays it)."""
    for (topic, partition), offset in offsets.items():
        try:
            consumer.seek(TopicPartition(topic, partition, offset))
        except KafkaException as exc:
            log.info("seek %s[%d]@%d skipped: %s", topic, partition, offset, exc)


def is_consumer_error(m: Message) -> bool:
    """True for an error event among consumed messages (logged, unless it is only a partition's end); a fatal
    one raises."""
    err = m.error()
    if err is None:
        return False
    if err.fatal():
        raise KafkaException(err)
    if err.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer error: %s", err.str())
    return True


def describe(m: Message) -> str:
    """``topic[partition]@offset`` for error messages."""
    return f"{m.topic()}[{m.partition()}]@{m.offset()}"


def dead_letter(m: Message, dlq_topic: str, reason: str, detail: str = "", *,
                error_class: str = "RecordError") -> Output:
    """A dead-letter record: original key and value bytes plus the reason, the exception class and the source
    position in headers (:mod:`streams.runtime.dead_letters`; the loop cuts it to fit when producing it)."""
    return Output(dlq_topic, m.value() or b"", m.key(),
                  headers_for(m.topic(), m.partition(), m.offset(), reason, detail, error_class))
