"""The batch loop's bookkeeping between two checkpoints: per partition the first offset handled since the last
checkpoint (where a rewind goes back to) and the next offset to commit, and each handler's checkpoint once.

Example:
    >>> from streams.runtime.batch import BatchResult
    >>> class M:  # a consumed record
    ...     def __init__(self, o): self.o = o
    ...     def topic(self): return "t"
    ...     def partition(self): return 0
    ...     def offset(self): return self.o
    >>> ledger = CheckpointLedger(interval_s=1.0)
    >>> ledger.begin_batch([M(4), M(5)]); ledger.handled([M(4), M(5)], BatchResult(finalize=print))
    >>> ledger.since, ledger.uncommitted, ledger.pending
    ({('t', 0): 4}, {('t', 0): 6}, True)
    >>> [tp.offset for tp in ledger.take()], ledger.pending
    ([6], False)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import Message, TopicPartition

from streams.runtime.batch import BatchResult, offset_bounds

__all__ = ["CheckpointLedger", "StartedCheckpoint"]


class CheckpointLedger:
    """What the loop handled since its last checkpoint (see the module docstring)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s  # 0: a checkpoint after every batch
        self.started_at = time.monotonic()  # when the oldest change not checkpointed yet was handled
        self.since: dict[tuple[str, int], int] = {}  # first offset handled after the last checkpoint
        self.uncommitted: dict[tuple[str, int], int] = {}  # next offset to commit at the checkpoint
        # each handler's state write, once, with its start when it can be started (BatchResult.start_finalize)
        self.finalizers: dict[Callable[[], None], Callable[[], Callable[[], None]] | None] = {}
        self.started: StartedCheckpoint | None = None  # a checkpoint whose writes were not answered yet

    @property
    def pending(self) -> bool:
        """Something was handled since the last checkpoint (the store does not hold all of it yet)."""
        return bool(self.uncommitted or self.finalizers)

    @property
    def settled(self) -> bool:
        """Nothing pending and no started checkpoint waiting for its answers: the store holds all that was handled."""
        return not self.pending and self.started is None

    def due(self) -> bool:
        return time.monotonic() - self.started_at >= self.interval_s

    def begin_batch(self, records: Sequence[Message], first: Mapping[tuple[str, int], int] | None = None) -> None:
        """Before a batch is handled: where a rewind would go back to (the interval counts from the first change).
        ``first``: the batch's first offsets when already at hand (``offset_bounds``)."""
        if not self.since:
            self.started_at = time.monotonic()
        self.note_since(records, first)

    def note_since(self, records: Sequence[Message], first: Mapping[tuple[str, int], int] | None = None) -> None:
        for key, offset in (offset_bounds(records)[0] if first is None else first).items():
            self.since.setdefault(key, offset)

    def handled(self, records: Sequence[Message], result: BatchResult,
                last: Mapping[tuple[str, int], int] | None = None) -> None:
        """After a batch went through the handler: its next offsets, and its handler's checkpoint (once).
        ``last``: the batch's last offsets when already at hand (``offset_bounds``)."""
        for key, offset in (offset_bounds(records)[1] if last is None else last).items():
            self.uncommitted[key] = offset + 1
        if result.finalize is not None:
            self.finalizers.setdefault(result.finalize, result.start_finalize)

    def start(self, waits: list[Callable[[], None]]) -> None:
        """After the pending checkpoints were started (``waits``: the waits for their writes): keep what to commit
        once they went through and what to take back if they do not (:attr:`started`); the rest starts over."""
        self.started = StartedCheckpoint(waits, dict(self.since), dict(self.uncommitted))
        self.clear()

    def settle(self, commit: Callable[[list[TopicPartition]], None]) -> bool:
        """Wait for the started checkpoint's writes, then ``commit`` its offsets; False when none was started. A
        write that failed raises, and its checkpoint is taken back (:meth:`absorb`): a rewind then goes back to the
        checkpoint before it.

        >>> ledger = CheckpointLedger(interval_s=1.0)
        >>> ledger.since, ledger.uncommitted = {("t", 0): 4}, {("t", 0): 6}
        >>> ledger.start([lambda: None]); ledger.settled, ledger.pending
        (False, False)
        >>> ledger.settle(lambda tps: print([tp.offset for tp in tps])), ledger.settled
        [6]
        (True, True)
        """
        started, self.started = self.started, None
        if started is None:
            return False
        try:
            for wait in started.waits:
                wait()
        except BaseException:
            self.absorb(started.since, started.uncommitted)
            raise
        if started.uncommitted:
            commit(_next_offsets(started.uncommitted))
        return True

    def take(self) -> list[TopicPartition]:
        """After the pending checkpoints ran: the next offsets to commit; the ledger starts over (nothing pending)."""
        committed = _next_offsets(self.uncommitted)
        self.clear()
        return committed

    def clear(self) -> None:
        """Forget what is pending (after a checkpoint, or a rewind to the last one)."""
        self.since.clear()
        self.uncommitted.clear()
        self.finalizers.clear()

    def absorb(self, since: Mapping[tuple[str, int], int], uncommitted: Mapping[tuple[str, int], int]) -> None:
        """Take back a checkpoint that was started but did not go through (``streams.runtime.loop``): its first
        offsets are older than this ledger's, its next offsets to commit not newer.

        >>> ledger = CheckpointLedger(interval_s=1.0)
        >>> ledger.since, ledger.uncommitted = {("t", 0): 9}, {("t", 0): 12}
        >>> ledger.absorb({("t", 0): 4, ("t", 1): 2}, {("t", 0): 9, ("t", 1): 3})
        >>> sorted(ledger.since.items()), sorted(ledger.uncommitted.items())
        ([(('t', 0), 4), (('t', 1), 2)], [(('t', 0), 12), (('t', 1), 3)])
        """
        self.since.update(since)
        for key, offset in uncommitted.items():
            self.uncommitted.setdefault(key, offset)


@dataclass
class StartedCheckpoint:
    """A checkpoint whose state writes were started, not yet answered (``BatchResult.start_finalize``): the waits
    for them, and the ledger's bookkeeping then: the next offsets to commit once they went through, and where a
    rewind goes back to if one failed."""

    waits: list[Callable[[], None]]
    since: dict[tuple[str, int], int]
    uncommitted: dict[tuple[str, int], int]


def _next_offsets(uncommitted: Mapping[tuple[str, int], int]) -> list[TopicPartition]:
    """The commit of ``{(topic, partition): next offset}``."""
    return [TopicPartition(t, p, o) for (t, p), o in uncommitted.items()]
