"""The batch loop's bookkeeping between two checkpoints (:class:`CheckpointLedger`), and a checkpoint whose state
write runs in the background (:class:`InFlightCheckpoint`): what the loop commits once it went through, and what
it goes back to if it did not (see :mod:`streams.runtime.checkpoint` for the handler's side).

Example:
    >>> from streams.runtime.batch import BatchResult
    >>> class M:  # a consumed record
    ...     def __init__(self, o): self.o = o
    ...     def topic(self): return "t"
    ...     def partition(self): return 0
    ...     def offset(self): return self.o
    >>> ledger = CheckpointLedger(interval_s=1.0)
    >>> ledger.clean
    True
    >>> ledger.begin_batch([M(4), M(5)]); ledger.handled([M(4), M(5)], BatchResult(finalize=print))
    >>> ledger.since, ledger.uncommitted, ledger.clean
    ({('t', 0): 4}, {('t', 0): 6}, False)
    >>> [tp.offset for tp in ledger.take()[1]], ledger.clean
    ([6], True)
    >>> from concurrent.futures import Future
    >>> save = Future()
    >>> cp = InFlightCheckpoint([save], [TopicPartition("t", 0, 10)], since={("t", 0): 4}, uncommitted={("t", 0): 10})
    >>> cp.done()
    False
    >>> save.set_exception(ConnectionError("redis down"))
    >>> since, uncommitted = {("t", 0): 10}, {("t", 0): 13}  # one batch handled after the checkpoint began
    >>> cp.merge_into(since, uncommitted)  # failed: the checkpoint before it is the last one again
    >>> since, uncommitted
    ({('t', 0): 4}, {('t', 0): 13})
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from confluent_kafka import Message, TopicPartition

from streams.runtime.batch import BatchResult, next_offsets

__all__ = ["CheckpointLedger", "Finalizer", "InFlightCheckpoint"]

#: a handler's checkpoint: ``finalize`` (synchronous) and its background form, if it has one
Finalizer = tuple[Callable[[], None], Callable[[], "Future[None] | None"] | None]


@dataclass
class InFlightCheckpoint:
    """The background saves of one checkpoint, the offsets to commit after them, and the loop's "since the last
    checkpoint" bookkeeping as it was when the checkpoint began."""

    saves: list[Future[None]]
    committed: list[TopicPartition]  # the next offsets, committed once every save succeeded
    since: dict[tuple[str, int], int]  # first offset handled after the checkpoint before this one
    uncommitted: dict[tuple[str, int], int]  # next offsets this checkpoint covers

    def done(self) -> bool:
        return all(f.done() for f in self.saves)

    def wait(self) -> None:
        """Wait for every save; raise the first one's error."""
        for f in self.saves:
            f.result()

    def merge_into(self, since: dict[tuple[str, int], int], uncommitted: dict[tuple[str, int], int]) -> None:
        """After a failed save: the loop's bookkeeping since the last checkpoint goes back to before this one."""
        for key, offset in self.since.items():
            since[key] = min(offset, since.get(key, offset))
        for key, offset in self.uncommitted.items():
            uncommitted.setdefault(key, offset)


class CheckpointLedger:
    """What the loop handled since its last checkpoint: per partition the first offset (where a rewind goes back
    to) and the next offset to commit, each handler's checkpoint once, and a background checkpoint in flight."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s  # 0: a checkpoint after every batch
        self.started_at = time.monotonic()  # when the oldest change not checkpointed yet was handled
        self.since: dict[tuple[str, int], int] = {}  # first offset handled after the last checkpoint
        self.uncommitted: dict[tuple[str, int], int] = {}  # next offset to commit at the checkpoint
        self.finalizers: list[Finalizer] = []
        self.inflight: InFlightCheckpoint | None = None

    @property
    def pending(self) -> bool:
        """Something was handled since the last checkpoint (a background one in flight aside)."""
        return bool(self.uncommitted or self.finalizers)

    @property
    def clean(self) -> bool:
        """The store holds everything handled so far: nothing pending, nothing in flight."""
        return not (self.pending or self.inflight)

    def due(self) -> bool:
        return time.monotonic() - self.started_at >= self.interval_s

    def begin_batch(self, records: Sequence[Message]) -> None:
        """Before a batch is handled: where a rewind would go back to (the interval counts from the first change)."""
        if not self.since:
            self.started_at = time.monotonic()
        self.note_since(records)

    def note_since(self, records: Sequence[Message]) -> None:
        for m in records:
            self.since.setdefault((m.topic(), m.partition()), m.offset())

    def handled(self, records: Sequence[Message], result: BatchResult) -> None:
        """After a batch went through the handler: its next offsets, and its handler's checkpoint (once)."""
        self.uncommitted.update({(tp.topic, tp.partition): tp.offset for tp in next_offsets(records)})
        if result.finalize is not None and all(f != result.finalize for f, _ in self.finalizers):
            self.finalizers.append((result.finalize, result.begin_finalize))

    def can_begin_in_background(self) -> bool:
        """Every pending checkpoint has a background form (and there is an interval)."""
        return self.interval_s > 0 and bool(self.finalizers) and all(b is not None for _, b in self.finalizers)

    def take(self) -> tuple[list[Finalizer], list[TopicPartition]]:
        """The pending checkpoints and the next offsets to commit; the ledger starts over (nothing pending)."""
        finalizers = list(self.finalizers)
        committed = [TopicPartition(t, p, o) for (t, p), o in self.uncommitted.items()]
        self.clear()
        return finalizers, committed

    def clear(self) -> None:
        """Forget what is pending (after a checkpoint, or a rewind to the last one)."""
        self.since.clear()
        self.uncommitted.clear()
        self.finalizers.clear()
