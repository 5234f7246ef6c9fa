"""Per-entity bucketed state: apply events, read windowed features, expire, (de)serialise for Redis.

One :class:`EntityState` holds all live buckets of one entity: ``{bucket_start_ms: {field: partial}}``
(partials are the lists of ``features.aggregations``). It remembers which buckets changed (``to_redis``
returns them as full values, never increments, so a replayed save is idempotent) and which expired.

Hash encoding (one Redis hash field per bucket): field = bucket start in ms as ASCII decimal, value =
orjson of ``{field_name: [13 numbers] (+ [sorted distinct values])}``. Floats round-trip exactly.

Feature reads fold the window's buckets in time order, with the code ``features.plan`` compiles per
view: one pass over the live buckets for all windows, merging only the slots the aggregations read
(bit-identical to ``features.aggregations.fold``). The fold of the buckets *before* the bucket of
``now`` is cached and reused while no older bucket changes, so scoring many events of one bucket costs
one small fold per window. The prefix is cached from the first read in a bucket when the entity's
previous bucket was read more than once (events arrive several per bucket: one full pass per bucket
instead of two), otherwise from the second read (one event per bucket: no split fold, no cache to
keep). The arithmetic is identical either way (a left fold continued from a prefix is the same left
fold).

Example:
    >>> from features.definitions import FeatureView, FieldSpec, FeatureSpec, Window
    >>> from features.records import Event
    >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x"),),
    ...                    (FeatureSpec("x_sum", "x", "sum", Window("sliding", 20_000)),))
    >>> st = EntityState()
    >>> for ts, x in [(1_000, 1.0), (12_000, 2.0), (25_000, 4.0)]:
    ...     st.apply(view, Event("a", ts, {"x": x}))
    >>> st.features(view, 25_000), st.features(view, 12_000)
    ({'x_sum': 6.0}, {'x_sum': 3.0})
    >>> restored = EntityState.from_redis(st.to_redis()[0])
    >>> restored.features(view, 25_000)
    {'x_sum': 6.0}
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Mapping

import orjson

from features.aggregations import NUM_SLOTS, add_number, add_string, first_number, first_string
from features.definitions import FeatureView
from features.plan import Plan, plan_for
from features.records import Event

__all__ = ["EntityState", "Plan", "plan_for"]


class EntityState:
    """All live buckets of one entity: {bucket_start_ms: {field: partial}}; tracks dirty/deleted buckets."""

    __slots__ = ("buckets", "_order", "_dirty", "_deleted", "_cache", "_read_last", "_reads")

    def __init__(self) -> None:
        self.buckets: dict[int, dict[str, list]] = {}
        self._order: list[int] = []
        self._dirty: set[int] = set()
        self._deleted: set[int] = set()
        self._cache: tuple[int, tuple[int, ...], tuple] | None = None  # (last, window starts, prefix fold)
        self._read_last = -1  # bucket of the previous read ...
        self._reads = 0  # ... and how many reads it had: more than one predicts more than one in the next

    def __repr__(self) -> str:
        return (
            f"EntityState(buckets={len(self._order)}, dirty={len(self._dirty)}, deleted={len(self._deleted)})"
        )

    @property
    def is_empty(self) -> bool:
        """True when no bucket is live."""
        return not self._order

    @property
    def last_bucket_ms(self) -> int | None:
        """Start of the newest live bucket (None when empty)."""
        return self._order[-1] if self._order else None

    @property
    def is_dirty(self) -> bool:
        """True when there are changes not yet saved."""
        return bool(self._dirty or self._deleted)

    def apply(self, view: FeatureView, event: Event) -> None:
        """Fold ``event`` into the bucket its timestamp falls in (out-of-order events included)."""
        plan = plan_for(view)
        ts = event.ts_ms
        b = ts - ts % plan.bucket_ms
        bucket = self.buckets.get(b)
        if bucket is None:
            bucket = {}
            self.buckets[b] = bucket
            insort(self._order, b)
            self._deleted.discard(b)
        self._dirty.add(b)
        if self._cache is not None and b < self._cache[0]:
            self._cache = None
        values = event.values
        for name, is_str, angle, distinct in plan.fields:
            x = values.get(name)
            if x is None:
                continue
            p = bucket.get(name)
            if p is None:
                bucket[name] = first_string(ts, x, distinct) if is_str else first_number(b, ts, x, distinct)  # type: ignore[arg-type]
            elif is_str:
                add_string(p, ts, x)  # type: ignore[arg-type]
            else:
                add_number(p, b, ts, x, angle)  # type: ignore[arg-type]

    def features(self, view: FeatureView, now_ms: int) -> dict[str, float]:
        """The feature vector at ``now_ms`` (buckets after the bucket of ``now_ms`` are ignored)."""
        plan = plan_for(view)
        if not plan.windows:
            return {}
        last = now_ms - now_ms % plan.bucket_ms
        starts = plan.starts(now_ms, last)
        order = self._order
        lo = bisect_left(order, min(starts))
        hi = bisect_left(order, last, lo)
        cur = hi < len(order) and order[hi] == last
        buckets = self.buckets
        if self._read_last != last:  # first read in this bucket
            repeated = self._reads > 1
            self._read_last, self._reads = last, 1
            if not repeated:  # one read per bucket so far: one pass, nothing cached
                return plan.emit(plan.fold(None, buckets, order, lo, hi + cur, starts))
        else:
            self._reads += 1
        hit = self._cache
        if hit is not None and hit[0] == last and hit[1] == starts:
            acc = hit[2]
        else:
            acc = plan.fold(None, buckets, order, lo, hi, starts)
            self._cache = (last, starts, acc)
        if cur:
            acc = plan.fold(acc, buckets, order, hi, hi + 1, starts)
        return plan.emit(acc)

    def expire(self, before_ms: int) -> None:
        """Drop buckets that start before ``before_ms`` (they are deleted from the store on save)."""
        order = self._order
        if not order or order[0] >= before_ms:
            return
        cut = bisect_left(order, before_ms)
        for b in order[:cut]:
            del self.buckets[b]
            self._dirty.discard(b)
            self._deleted.add(b)
        del order[:cut]
        self._cache = None

    def to_redis(self) -> tuple[dict[bytes, bytes], list[bytes]]:
        """(dirty buckets as hash fields to HSET, expired bucket fields to HDEL); full values, sorted."""
        dumps = orjson.dumps
        sets: dict[bytes, bytes] = {}
        for b in sorted(self._dirty):
            enc = {
                name: (p if len(p) == NUM_SLOTS else [*p[:NUM_SLOTS], sorted(p[NUM_SLOTS])])
                for name, p in self.buckets[b].items()
            }
            sets[str(b).encode()] = dumps(enc)
        return sets, [str(b).encode() for b in sorted(self._deleted)]

    def mark_saved(self) -> None:
        """Forget the dirty/deleted marks after a successful save."""
        self._dirty.clear()
        self._deleted.clear()

    @classmethod
    def from_redis(cls, mapping: Mapping[bytes, bytes]) -> EntityState:
        """Rebuild a clean state from a Redis hash (``HGETALL`` result)."""
        st = cls()
        if not mapping:
            return st
        joined = b",".join(mapping.values())
        parsed = orjson.loads(b"[" + joined + b"]")  # one decode for the whole hash
        if b",[" in joined:  # only a distinct-value list nests a list in a partial: back into a set
            for bucket in parsed:
                for p in bucket.values():
                    if len(p) > NUM_SLOTS:
                        p[NUM_SLOTS] = set(p[NUM_SLOTS])
        st.buckets = dict(zip(map(int, mapping), parsed, strict=True))
        st._order = sorted(st.buckets)
        return st
