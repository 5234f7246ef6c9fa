"""The fused pipeline's write-through cache of entity window states: bounded worker-wide, least recently used out.

A partition's cached states are trusted only while the cache holds the offset this worker saved them at:
:meth:`StateCache.take` gives that offset up for the duration of a batch (whose states the engine mutates in
place) and :meth:`StateCache.put` hands it back after a successful save. A batch that fails never calls ``put``,
so the partition's entries are dropped by the next ``take``. The caller still checks that Redis holds the same
offset before mixing cached and loaded states, and the save's compare-and-set is the final guard. An evicted
entity was saved: it is simply loaded from Redis next time.

Example:
    >>> c = StateCache(max_entities=2)
    >>> c.take(0) is None                       # nothing saved yet
    True
    >>> c.put(0, 10, {"a": "A", "b": "B"}); c.put(1, 4, {"x": "X"})
    >>> len(c), c.take(0), c.get(0, {"a", "b"}) # "a" (least recently used) made room for "x"
    (2, 10, {'b': 'B'})
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

S = TypeVar("S")

DEFAULT_MAX_ENTITIES = 100_000
"""Worker-wide default bound (``PipelineSettings.cache_max_entities``). A cached entity with 31 live buckets
(VITALS_VIEW after 30 min) measured ~8.4 KB (``bench.memory_bench``: the compact state of ``features.state``, 21
doubles per bucket, and its cached window prefix), so this bound allows ~0.8 GiB at worst; entities with one
bucket cost ~1.5 KB. 0 disables the cache. (Before the compact state, ~117 KB per such entity: the bound was 20,000.)"""


class StateCache(Generic[S]):
    """Entity states keyed by (partition, entity id), at most ``max_entities`` in all, in recency order."""

    def __init__(self, max_entities: int) -> None:
        self.max_entities = max_entities
        self._states: OrderedDict[tuple[int, str], S] = OrderedDict()
        self._offsets: dict[int, int] = {}  # partition -> the offset its cached states were saved at
        self._counts: dict[int, int] = {}  # partition -> cached entities
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._states)

    def count(self, partition: int) -> int:
        return self._counts.get(partition, 0)

    def partitions(self) -> list[int]:
        """Partitions with cached states or a trusted offset."""
        return sorted(self._offsets.keys() | self._counts.keys())

    def take(self, partition: int) -> int | None:
        """The offset the partition's states were saved at, or None (nothing trusted: they are dropped).
        Until :meth:`put`, the partition counts as untrusted."""
        offset = self._offsets.pop(partition, None)
        if offset is None:
            self.forget([partition])
        return offset

    def get(self, partition: int, ids: Iterable[str]) -> dict[str, S]:
        """The cached states among ``ids`` (only meaningful after a :meth:`take` that returned an offset)."""
        found = {}
        for e in ids:
            s = self._states.get((partition, e))
            if s is not None:
                found[e] = s
        return found

    def put(self, partition: int, offset: int, states: Mapping[str, S]) -> None:
        """After a successful save at ``offset``: ``states`` become the most recently used, the partition is
        trusted again, and the least recently used entities (of any partition) go beyond the bound."""
        cache, count = self._states, self._counts.get(partition, 0)
        for e, s in states.items():
            key = (partition, e)
            if key in cache:
                cache.move_to_end(key)
            else:
                count += 1
            cache[key] = s
        self._counts[partition] = count
        self._offsets[partition] = offset
        while len(cache) > self.max_entities:
            (p, _), _ = cache.popitem(last=False)
            self._counts[p] -= 1
            self.evicted += 1

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the partitions' states (revoked, failed, or written by someone else): one pass over the cache."""
        partitions = list(partitions)
        drop = {p for p in partitions if self._counts.get(p)}
        for p in partitions:
            self._offsets.pop(p, None)
        if drop:
            for key in [k for k in self._states if k[0] in drop]:
                del self._states[key]
            for p in drop:
                del self._counts[p]
