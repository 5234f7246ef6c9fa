"""A checkpoint whose state write runs in the background: what the loop commits once it went through, and what
it goes back to if it did not (see :mod:`streams.runtime.checkpoint` for the handler's side).

Example:
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

from concurrent.futures import Future
from dataclasses import dataclass

from confluent_kafka import TopicPartition

__all__ = ["InFlightCheckpoint"]


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
