"""Noticing entities that went silent (a sensor that stops sending): for vitals, silence is itself a signal.

Peers that only advance time per key never emit a silent key's last window. Here time is the *partition's*
watermark: an entity whose last event is more than ``idle_ms`` behind it is due, once per silence, and is
due again only after it has sent something new. A partition that receives nothing at all is covered by a
wall-clock idle timeout (:meth:`SilenceTracker.idle_partitions`).

Cost: per partition a dict entity → last event time plus two min-heaps of ``(ts, entity)`` with lazy deletion,
one for entities not yet reported (what :meth:`~SilenceTracker.due` pops: only the entities whose time is below
the cutoff, plus one peek) and one for reported ones (they still count for eviction). ``observe`` of a known
entity is a dict update (its heap entry may lag behind: a lower bound, refreshed when popped); a new entity is
one push; eviction past ``max_entities`` pops the smallest. Stale entries are dropped when popped, and the heaps
are rebuilt when they hold more than twice the live entities, so every operation is O(log n) amortised.

Example:
    >>> t = SilenceTracker(idle_ms=60_000)
    >>> t.observe(0, "p1", 1_000); t.observe(0, "p2", 50_000)
    >>> t.due(0, watermark_ms=70_000)
    [('p1', 1000)]
    >>> t.due(0, watermark_ms=80_000)          # reported once per silence
    []
    >>> t.observe(0, "p1", 81_000); t.due(0, watermark_ms=200_000)
    [('p1', 81000), ('p2', 50000)]
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

_Entry = tuple[int, str]  # (event time, entity id) in a heap


class SilenceTracker:
    """Last event time per entity and partition; which entities the partition's watermark left behind.

    ``last_seen[p]`` (entity → last event time) and ``reported[p]`` (entities reported in their current
    silence) are readable; ``popped`` counts heap entries examined (work done, for tests and diagnostics).
    """

    compact_slack = 64  # stale heap entries tolerated beyond the live count before a rebuild

    def __init__(self, idle_ms: int, max_entities: int = 1_000_000) -> None:
        self.idle_ms = idle_ms
        self.max_entities = max_entities
        self.last_seen: dict[int, dict[str, int]] = {}
        self.reported: dict[int, set[str]] = {}
        self.last_activity: dict[int, float] = {}
        self.popped = 0
        # per partition: entries of unreported entities (ts <= the entity's last_seen: a lower bound) and of
        # reported ones (ts == last_seen); an entry whose entity left that state is stale, dropped when popped
        self._waiting: dict[int, list[_Entry]] = {}
        self._silent: dict[int, list[_Entry]] = {}

    def observe(self, partition: int, entity_id: str, ts_ms: int, wall_s: float = 0.0) -> None:
        """Record an event of ``entity_id``; an older ``ts_ms`` than the last one does not move it back, but
        any event ends the entity's reported silence."""
        seen = self.last_seen.get(partition)
        if seen is None:
            seen = self._partition(partition)
        old = seen.get(entity_id)
        reported = self.reported[partition]
        if old is None:
            seen[entity_id] = ts_ms
            heapq.heappush(self._waiting[partition], (ts_ms, entity_id))
            self._maybe_compact(partition)  # (an evicted entity's leftover entries: seldom)
        else:
            if ts_ms > old:
                seen[entity_id] = ts_ms  # its waiting entry (if any) is now a lower bound: refreshed when popped
            if entity_id in reported:
                reported.discard(entity_id)  # its entry in the silent heap goes stale
                heapq.heappush(self._waiting[partition], (seen[entity_id], entity_id))
                self._maybe_compact(partition)
        if len(seen) > self.max_entities:  # bound memory: forget the longest-silent entity
            self._evict_oldest(partition)
        self.last_activity[partition] = max(self.last_activity.get(partition, 0.0), wall_s)

    def observe_events(self, partition: int, events: Iterable[Any], wall_s: float = 0.0) -> None:
        """:meth:`observe` of every event of a batch (objects with ``entity_id`` and ``ts_ms``), in order: the
        common case (a known entity, not reported silent) without a call per event."""
        it = iter(events)
        first = next(it, None)
        if first is None:  # no event: nothing changes (not even the partition's activity)
            return
        self.observe(partition, first.entity_id, first.ts_ms, wall_s)
        seen, reported = self.last_seen[partition], self.reported[partition]
        get = seen.get
        for ev in it:
            entity_id, ts_ms = ev.entity_id, ev.ts_ms
            old = get(entity_id)
            if old is None or entity_id in reported:  # new, or ending a reported silence: the full step
                self.observe(partition, entity_id, ts_ms, wall_s)
            elif ts_ms > old:
                seen[entity_id] = ts_ms

    def due(self, partition: int, watermark_ms: int | None) -> list[tuple[str, int]]:
        """Entities of ``partition`` silent for more than ``idle_ms`` of event time, not yet reported (sorted
        by entity id); each is reported once per silence."""
        if watermark_ms is None or partition not in self.last_seen:
            return []
        cutoff = watermark_ms - self.idle_ms
        seen, reported = self.last_seen[partition], self.reported[partition]
        waiting, silent = self._waiting[partition], self._silent[partition]
        out = []
        while waiting and waiting[0][0] < cutoff:
            entry = heapq.heappop(waiting)
            self.popped += 1
            ts, entity = entry
            last = seen.get(entity)
            if last is None or entity in reported or last < ts:
                continue  # stale: evicted, already reported, or a newer entry stands for it
            if last > ts:
                heapq.heappush(waiting, (last, entity))  # a lower bound: re-queue at its real time
                continue
            reported.add(entity)
            heapq.heappush(silent, entry)
            out.append((entity, ts))
        return sorted(out)

    def idle_partitions(self, now_s: float, idle_wall_s: float) -> list[int]:
        """Partitions with no record for ``idle_wall_s`` of wall time (the watermark cannot advance there)."""
        return [p for p, t in self.last_activity.items() if t and now_s - t > idle_wall_s]

    def forget(self, partition: int) -> None:
        """The partition was revoked: its new owner tracks it."""
        for d in (self.last_seen, self.reported, self.last_activity, self._waiting, self._silent):
            d.pop(partition, None)

    def _partition(self, partition: int) -> dict[str, int]:
        self.reported.setdefault(partition, set())
        self._waiting[partition], self._silent[partition] = [], []
        seen: dict[str, int] = {}
        self.last_seen[partition] = seen
        return seen

    def _evict_oldest(self, partition: int) -> None:
        """Drop the entity with the smallest (last event time, id), reported or not."""
        seen, reported = self.last_seen[partition], self.reported[partition]
        waiting, silent = self._waiting[partition], self._silent[partition]
        while waiting or silent:
            heap = waiting if not silent or (waiting and waiting[0] < silent[0]) else silent
            ts, entity = heapq.heappop(heap)
            self.popped += 1
            last = seen.get(entity)
            if last is None or (entity in reported) != (heap is silent) or last < ts:
                continue  # stale: evicted, moved to the other heap, or a newer entry stands for it
            if last > ts:
                if heap is waiting:  # a lower bound: re-queue at its real time
                    heapq.heappush(waiting, (last, entity))
                continue  # (a silent entry from an earlier silence: stale)
            del seen[entity]
            reported.discard(entity)
            return

    def _maybe_compact(self, partition: int) -> None:
        """Rebuild the partition's heaps from the live entities once stale entries outnumber them."""
        seen, reported = self.last_seen[partition], self.reported[partition]
        if len(self._waiting[partition]) + len(self._silent[partition]) <= 2 * len(seen) + self.compact_slack:
            return
        waiting = [(ts, e) for e, ts in seen.items() if e not in reported]
        silent = [(seen[e], e) for e in reported if e in seen]
        heapq.heapify(waiting)
        heapq.heapify(silent)
        self._waiting[partition], self._silent[partition] = waiting, silent
