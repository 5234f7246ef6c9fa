"""The fused pipeline's uncheckpointed state: what the worker applied in memory since its last checkpoint.

Between two checkpoints a partition's changed entity states, each entity's latest feature vector and the
watermark live only in memory (:class:`PendingState`). A checkpoint (:meth:`PendingState.save`) writes them,
with the highest applied offset, in **one atomic step per partition** (``save_state.lua``: compare-and-set of
the offset, HSET/HDEL of the state deltas, SET of the latest vectors), after the batches' outputs were
delivered; the loop (:class:`streams.runtime.loop.BatchLoop`) then commits the Kafka offsets. So a hot entity's
state is written once per checkpoint interval instead of once per batch.

What a crash does: Redis holds the state at the last checkpoint's offset and Kafka's committed offset is at
most one past it; the restarted worker replays from there and the store skips what the checkpoint holds, so
the replayed events get the same features and the same ``prediction_id`` (identifiable duplicates of
predictions already published). A failed batch (Redis down, a delivery error) makes the loop call
:meth:`PendingState.rollback` and rewind to the first offset after the last checkpoint; a batch that starts
at or below an offset already applied in memory (a retry by another driver, e.g. Faust) is detected by
:meth:`PendingState.is_replay` and rolled back the same way.

Lookups go pending → cache → Redis: an entity evicted from the cache while it has unsaved changes is still
held here until the checkpoint.

Example:
    >>> from features.store import MemoryFeatureStore
    >>> from features.views import VITALS_VIEW
    >>> from streams.runtime.state_cache import StateCache
    >>> pending = PendingState(VITALS_VIEW, MemoryFeatureStore(), StateCache(10), "g")
    >>> states, stored = pending.load(0, {"p1"})
    >>> stored, pending.is_replay(0, 0)
    (-1, False)
    >>> pending.stage(0, states, stored, new_offset=7, watermark_ms=None, latest={})
    >>> pending.is_replay(0, 5), pending.dirty_partitions(), pending.save(), pending.dirty_partitions()
    (True, [0], 1, [])
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from features.definitions import FeatureView
from features.state import EntityState
from features.store import FeatureStore, SaveRequest, SaveTicket, SourcePosition
from streams.runtime.state_cache import StateCache

__all__ = ["PendingState"]


@dataclass
class _Partition:
    """One partition since its last checkpoint: the offset Redis holds, the highest applied in memory."""

    stored: int
    applied: int
    watermark_ms: int | None = None
    states: dict[str, EntityState] = field(default_factory=dict)
    latest: dict[str, tuple[int, Mapping[str, float]]] = field(default_factory=dict)

    @property
    def dirty(self) -> bool:
        return self.applied > self.stored


class PendingState:
    """Per-partition state applied since the last checkpoint, on top of a :class:`StateCache` and a store."""

    def __init__(self, view: FeatureView, store: FeatureStore, cache: StateCache[EntityState], group: str, *,
                 on_load: Callable[[float], None] | None = None) -> None:
        self.view = view
        self.store = store
        self.cache = cache
        self.group = group
        self.on_load = on_load  # seconds of each store load (a metric)
        self._parts: dict[int, _Partition] = {}

    def position(self, partition: int) -> SourcePosition:
        return SourcePosition(self.group, self.view.source_topic, partition)

    def is_replay(self, partition: int, first_offset: int) -> bool:
        """True when a batch starting at ``first_offset`` re-delivers offsets already applied in memory."""
        part = self._parts.get(partition)
        return part is not None and first_offset <= part.applied

    def dirty_partitions(self) -> list[int]:
        """Partitions with changes not yet checkpointed."""
        return [p for p, part in self._parts.items() if part.dirty]

    def pending_states(self, partition: int) -> Mapping[str, EntityState]:
        """The unsaved entity states of ``partition`` (they shadow the cache and the store)."""
        part = self._parts.get(partition)
        return {} if part is None else part.states

    def load(self, partition: int, ids: set[str]) -> tuple[dict[str, EntityState], int]:
        """(the states of ``ids``, the offset Redis holds for ``partition``): unsaved ones first, then cached
        ones (trusted only while Redis holds the offset they were saved at), then one round trip for the rest."""
        part = self._parts.get(partition)
        saved_offset = self.cache.take(partition)
        if part is not None and saved_offset != part.stored:  # a batch failed half-way: nothing in memory counts
            self.rollback([partition])
            part, saved_offset = None, None
        states: dict[str, EntityState] = {}
        if part is not None and part.states:
            states = {e: part.states[e] for e in ids if e in part.states}
        if saved_offset is not None:
            states.update(self.cache.get(partition, ids - states.keys()))
            missing = ids - states.keys()
            if not missing:
                return states, saved_offset
            loaded, stored = self._load(partition, missing)
            if stored == saved_offset:
                states.update(loaded)
                return states, stored
            self.rollback([partition])  # another writer moved the offset: nothing in memory is trusted
        return self._load(partition, ids)

    def _load(self, partition: int, ids: Collection[str]) -> tuple[dict[str, EntityState], int]:
        t0 = time.perf_counter()
        loaded, stored = self.store.load(self.view, self.position(partition), ids)
        if self.on_load is not None:
            self.on_load(time.perf_counter() - t0)
        return loaded, stored

    def stage(self, partition: int, states: Mapping[str, EntityState], stored: int, *, new_offset: int,
              watermark_ms: int | None, latest: Mapping[str, tuple[int, Mapping[str, float]]]) -> None:
        """After a batch was applied: its states, latest vectors, offset and watermark wait for the checkpoint;
        the states also go (back) into the cache, trusted at the offset Redis holds."""
        part = self._parts.get(partition)
        if part is None or part.stored != stored:
            part = _Partition(stored, stored)
            self._parts[partition] = part
        part.applied = max(part.applied, new_offset)
        part.watermark_ms = watermark_ms
        for e, st in states.items():
            if st.is_dirty:
                part.states[e] = st
        part.latest.update(latest)
        self.cache.put(partition, stored, states)

    def requests(self) -> list[SaveRequest]:
        """The save of every partition with unsaved changes (each its own atomic compare-and-set)."""
        ttl = self.view.retention_ms
        return [SaveRequest(self.position(p), part.states, part.stored, part.applied, ttl, part.watermark_ms,
                            part.latest) for p, part in self._parts.items() if part.dirty]

    def save(self) -> int:
        """Checkpoint every partition with unsaved changes in one round trip; returns how many were saved.
        On an error nothing is marked saved here (the caller rolls back and replays)."""
        requests = self.requests()
        if not requests:
            return 0
        self.store.save_many(self.view, requests)
        self._saved(requests)
        return len(requests)

    def start_save(self) -> SaveTicket | None:
        """:meth:`save`, started (``FeatureStore.start_save_many``): the changes are written now and counted as
        saved from here on, so the next batches build on them while Redis applies them; None when nothing was
        pending. The caller waits for the ticket before committing the offsets, and rolls back everything
        (:meth:`rollback`) when it raises."""
        requests = self.requests()
        if not requests:
            return None
        ticket = self.store.start_save_many(self.view, requests)
        self._saved(requests)
        return ticket

    def _saved(self, requests: Sequence[SaveRequest]) -> None:
        """The partitions of ``requests`` start over at their new offsets; their cached states are trusted there."""
        for r in requests:
            p = r.pos.partition
            part = self._parts[p]
            self._parts[p] = _Partition(r.new_offset, r.new_offset, part.watermark_ms)
            self.cache.put(p, r.new_offset, {})

    def rollback(self, partitions: Iterable[int] | None = None) -> None:
        """Forget what was applied since the last checkpoint (``None``: every partition): the next batch
        reloads from the store, whose offset makes it skip what was checkpointed."""
        parts = set(self._parts) | set(self.cache.partitions()) if partitions is None else set(partitions)
        for p in parts:
            self._parts.pop(p, None)
        self.cache.forget(parts)
