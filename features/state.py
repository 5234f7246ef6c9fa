"""Per-entity bucketed state: apply events, read windowed features, expire, (de)serialise for Redis.

One :class:`EntityState` holds all live buckets of one entity: ``{bucket_start_ms: {field: partial}}``
(partials are the lists of ``features.aggregations``). It remembers which buckets changed (``to_redis``
returns them as full values, never increments, so a replayed save is idempotent) and which expired.

Hash encoding (one Redis hash field per bucket): field = bucket start in ms as ASCII decimal, value =
orjson of ``{field_name: [13 numbers] (+ [sorted distinct values])}``. Floats round-trip exactly.

Feature reads fold the window's buckets in time order. The fold of the buckets *before* the bucket of
``now`` is cached per (window, field) and reused while no older bucket changes, so scoring many events
of one bucket costs one fold per feature group; the arithmetic is identical with or without the cache.

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson

from features.aggregations import (
    AGGREGATIONS,
    NUM_SLOTS,
    add_number,
    add_string,
    fold,
    new_accumulator,
    new_partial,
)
from features.definitions import FeatureView, Window
from features.records import Event

# (field name, is_str, needs_angle, needs_distinct)
_FieldPlan = tuple[str, bool, bool, bool]
# (field name, needs_angle, needs_distinct, [(feature name, result fn)])
_GroupPlan = tuple[str, bool, bool, list[tuple[str, Callable[[list], float]]]]


@dataclass(frozen=True)
class _Plan:
    bucket_ms: int
    names: tuple[str, ...]
    fields: tuple[_FieldPlan, ...]
    windows: tuple[tuple[Window, tuple[_GroupPlan, ...]], ...]


_PLANS: dict[int, tuple[FeatureView, _Plan]] = {}


def _compile(view: FeatureView) -> _Plan:
    angle = {f.field for f in view.features if AGGREGATIONS[f.agg].needs_angle}
    distinct = {f.field for f in view.features if AGGREGATIONS[f.agg].needs_distinct}
    fields = tuple((f.name, f.type == "str", f.name in angle, f.name in distinct) for f in view.fields)
    by_window: dict[Window, dict[str, list[tuple[str, Callable[[list], float]]]]] = {}
    for feat in view.features:
        by_window.setdefault(feat.window, {}).setdefault(feat.field, []).append(
            (feat.name, AGGREGATIONS[feat.agg].result)
        )
    windows = tuple(
        (w, tuple((fname, fname in angle, fname in distinct, feats) for fname, feats in groups.items()))
        for w, groups in by_window.items()
    )
    return _Plan(view.bucket_ms, view.feature_names, fields, windows)


def plan_for(view: FeatureView) -> _Plan:
    """The compiled (cached) evaluation plan of ``view``."""
    entry = _PLANS.get(id(view))
    if entry is None or entry[0] is not view:
        entry = (view, _compile(view))
        _PLANS[id(view)] = entry
    return entry[1]


def _copy_acc(acc: list) -> list:
    out = acc.copy()
    if out[14] is not None:
        out[14] = set(out[14])
    return out


class EntityState:
    """All live buckets of one entity: {bucket_start_ms: {field: partial}}; tracks dirty/deleted buckets."""

    __slots__ = ("buckets", "_order", "_dirty", "_deleted", "_cache", "_cache_last")

    def __init__(self) -> None:
        self.buckets: dict[int, dict[str, list]] = {}
        self._order: list[int] = []
        self._dirty: set[int] = set()
        self._deleted: set[int] = set()
        self._cache: dict[tuple[int, int], tuple[int, int, list]] = {}
        self._cache_last = -1

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
        if b < self._cache_last:
            self._cache.clear()
            self._cache_last = -1
        values = event.values
        for name, is_str, angle, distinct in plan.fields:
            x = values.get(name)
            if x is None:
                continue
            p = bucket.get(name)
            if p is None:
                p = new_partial(distinct)
                bucket[name] = p
            if is_str:
                add_string(p, ts, x)  # type: ignore[arg-type]
            else:
                add_number(p, b, ts, x, angle)  # type: ignore[arg-type]

    def features(self, view: FeatureView, now_ms: int) -> dict[str, float]:
        """The feature vector at ``now_ms`` (buckets after the bucket of ``now_ms`` are ignored)."""
        plan = plan_for(view)
        out = dict.fromkeys(plan.names, 0.0)
        order = self._order
        buckets = self.buckets
        cache = self._cache
        for wi, (window, groups) in enumerate(plan.windows):
            start, last = window.bucket_range(plan.bucket_ms, now_ms)
            lo = bisect_left(order, start)
            hi = bisect_left(order, last, lo)
            current = buckets.get(last) if hi < len(order) and order[hi] == last else None
            for gi, (fname, angle, distinct, feats) in enumerate(groups):
                key = (wi, gi)
                hit = cache.get(key)
                if hit is not None and hit[0] == start and hit[1] == last:
                    prefix = hit[2]
                else:
                    prefix = new_accumulator(distinct)
                    for i in range(lo, hi):
                        b = order[i]
                        p = buckets[b].get(fname)
                        if p is not None:
                            fold(prefix, p, b, start, angle)
                    cache[key] = (start, last, prefix)
                    if last > self._cache_last:
                        self._cache_last = last
                p = current.get(fname) if current is not None else None
                if p is not None:
                    acc = _copy_acc(prefix)
                    fold(acc, p, last, start, angle)
                else:
                    acc = prefix
                for name, result in feats:
                    out[name] = result(acc)
        return out

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
        self._cache.clear()
        self._cache_last = -1

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
        loads = orjson.loads
        for raw_b, raw in mapping.items():
            bucket = loads(raw)
            for p in bucket.values():
                if len(p) > NUM_SLOTS:
                    p[NUM_SLOTS] = set(p[NUM_SLOTS])
            st.buckets[int(raw_b)] = bucket
        st._order = sorted(st.buckets)
        return st
