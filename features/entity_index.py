"""The entity -> partition index: what serving reads use to find an entity whatever partitioner its producer used.

State is stored per (topic, partition) (one Redis Cluster slot each, so a partition's offset and state are saved
in one atomic step). A reader that knows only an entity id must learn its partition. Guessing with the Java
client's murmur2 fails for producers that use another partitioner (librdkafka's ``consistent_random`` = CRC-32,
a custom one); so every save first records, per entity, the partition its events were consumed from
(``index_entities.lua``; key schema in ``features.keys``), and readers look it up.

Why the index is written *before* the state's atomic step, not inside it: the index is keyed by entity and the
state by partition, so on a Redis Cluster they live in different slots and no script can touch both. Written
first, it states a fact about Kafka (this entity's events arrive on partition p), true whether or not the save
that follows succeeds; a failed save leaves an index entry pointing at a partition whose state is not there
yet (the reader finds nothing, as before the event), never state that no index entry points to. A save is only
attempted after its index write succeeded, so a state the store holds is always indexed.

The writer remembers what it indexed (:class:`IndexCache`): an entity costs one index write when first seen
and one per half state TTL after that (index entries live twice the state's TTL, so they outlive the state they
point to). An entity indexed on another partition than the one its events now come from is a
:class:`PartitionConflict`: its windows are split between two partitions (:class:`ConflictReporter` logs it once
per entity and counts it).

Example:
    >>> cache = IndexCache(max_entities=2)
    >>> cache.due_on(1, ["a", "b"], now_ms=0, refresh_ms=100)
    {'a': 1, 'b': 1}
    >>> cache.mark({"a": 1, "b": 1}, now_ms=0)
    >>> cache.due_on(1, ["a"], now_ms=50, refresh_ms=100), cache.due_on(3, ["b"], now_ms=50, refresh_ms=100)
    ({}, {'b': 3})
    >>> cache.due_on(1, ["a"], now_ms=150, refresh_ms=100)
    {'a': 1}
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, KeysView, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

log = logging.getLogger(__name__)

__all__ = ["ConflictReporter", "IndexCache", "PartitionConflict"]


@dataclass(frozen=True)
class PartitionConflict:
    """``entity_id``'s events arrived on ``new`` after ``old`` (same topic, view and group)."""

    topic: str
    entity_id: str
    old: int
    new: int


class IndexCache:
    """What this writer indexed recently: entity -> (partition, when, ms); bounded (oldest first out).

    A save asks about the entities of one partition at a time (:meth:`due_on`): it first drops, in one C-level set
    difference of the entity ids, those marked on that partition within the current window of ``refresh_ms`` (none
    of them can be due: marked less than ``refresh_ms`` ago), and checks only the rest one by one; at 100,000
    entities every checkpoint asks about each entity saved (~0.5 us each in the worker, against ~1.2 for a check
    of (entity, partition) pairs).
    """

    def __init__(self, max_entities: int = 1 << 18) -> None:
        self.max_entities = max_entities
        self._seen: OrderedDict[str, tuple[int, int]] = OrderedDict()  # write order: the oldest out in O(1)
        # partition -> entities marked on it at or after _recent_since, all of them still in _seen (so within its bound)
        self._recent: dict[int, set[str]] = {}
        self._recent_since: int | None = None

    def due_on(self, partition: int, entities: Iterable[str], *, now_ms: int,
               refresh_ms: int) -> dict[str, int]:
        """The index entries to write for ``entities``, whose events all came from ``partition`` (entity ->
        partition): new, moved, or written ``refresh_ms`` ago. A dict's keys (or a set) are taken as they are: a set
        difference, no copy."""
        since = self._recent_since
        if since is None or not since <= now_ms < since + refresh_ms:  # a new window: nothing marked in it yet
            self._recent.clear()
            self._recent_since = now_ms
        recent = self._recent.get(partition)
        candidates = entities - recent if recent and isinstance(entities, (KeysView, AbstractSet)) else entities
        get, out = self._seen.get, {}
        for entity in candidates:
            seen = get(entity)
            if seen is None or seen[0] != partition or now_ms - seen[1] >= refresh_ms:
                out[entity] = partition
        return out

    def mark(self, written: Mapping[str, int], *, now_ms: int) -> None:
        """Remember that ``written`` was indexed at ``now_ms``."""
        seen, recent = self._seen, self._recent
        for entity, p in written.items():
            old = seen.get(entity)
            seen[entity] = (p, now_ms)
            if old is not None:
                seen.move_to_end(entity)  # the order is the write order
                if old[0] != p and old[0] in recent:  # moved: not recent on the old partition
                    recent[old[0]].discard(entity)
        if self._recent_since is not None and written:
            if now_ms < self._recent_since:
                recent.clear()  # a mark older than the window: the one-by-one check serves
            else:
                for entity, p in written.items():
                    recent.setdefault(p, set()).add(entity)
        while len(seen) > self.max_entities:  # the oldest out, one at a time (no copy of the whole order); the
            entity, (p, _) = seen.popitem(last=False)  # recent sets keep only what is remembered: within the bound
            if p in recent:
                recent[p].discard(entity)

    def __len__(self) -> int:
        return len(self._seen)


class ConflictReporter:
    """Logs each conflicting entity once (bounded memory) and hands every conflict to ``on_conflict``
    (the worker counts them in ``driftline_entity_partition_conflicts_total``).

    >>> got = []
    >>> r = ConflictReporter(got.append)
    >>> r.report([PartitionConflict("vitals", "p-1", 3, 5), PartitionConflict("vitals", "p-1", 5, 3)])
    >>> len(got), r.logged
    (2, 1)
    """

    def __init__(self, on_conflict: Callable[[PartitionConflict], None] | None = None,
                 max_logged: int = 100_000) -> None:
        self.on_conflict = on_conflict
        self.max_logged = max_logged
        self._logged: set[tuple[str, str]] = set()
        self.count = 0

    @property
    def logged(self) -> int:
        return len(self._logged)

    def report(self, conflicts: list[PartitionConflict]) -> None:
        for c in conflicts:
            self.count += 1
            if self.on_conflict is not None:
                self.on_conflict(c)
            key = (c.topic, c.entity_id)
            if key not in self._logged and len(self._logged) < self.max_logged:
                self._logged.add(key)
                log.warning("entity %r of topic %s arrived on partition %d after partition %d: its windows are "
                            "split between the two (a producer changed its partitioner, or partitions were "
                            "added). Serving reads follow the newer partition. See README, 'Redis Cluster': "
                            "what a producer must do about keys", c.entity_id, c.topic, c.new, c.old)
