"""Per-entity bucketed state: apply events, read windowed features, expire, (de)serialise for Redis.

One :class:`EntityState` holds all live buckets of one entity as **one flat array of doubles**: a row per
bucket (buckets in time order, ``_order`` holds their starts), and in each row, per field, only the partial
slots the view's features read (``features.plan`` computes that layout: VITALS_VIEW keeps 21 doubles per
one-minute bucket instead of 6 fields x 13 boxed numbers, so a 31-bucket entity holds ~5 KB instead of
~117 KB). Distinct values (``distinct_count``) are kept beside the array, per bucket and field. The state
remembers which buckets changed (``to_redis`` returns them as full values, never increments, so a replayed
save is idempotent) and which expired.

Hash encoding (one Redis hash field per bucket): field = bucket start in ms as ASCII decimal, value =
``b"B"`` + the row width as a little-endian uint16 + the row's doubles (little-endian IEEE 754, so
floats round-trip exactly) + optionally ``b"|"`` and the orjson of ``{field index: sorted distinct values}``.
The layout is a function of the view's definition, whose fingerprint is in every key. Values written by
earlier versions (orjson of ``{field: [13 numbers] (+ [distinct values])}``) are still read
(``from_redis(..., view)``).

Feature reads fold the window's buckets in time order, with the code ``features.plan`` compiles per
view: one pass over the live buckets for all windows, merging only the slots the aggregations read
(bit-identical to ``features.aggregations.fold``). The fold of the buckets *before* the bucket of
``now`` is cached and reused while no older bucket changes, so scoring many events of one bucket costs
one small fold per window. The prefix is cached from the first read in a bucket when the entity's
previous bucket was read more than once (events arrive several per bucket: one full pass per bucket
instead of two) or when it spans ``LONG_PREFIX`` buckets or more (a full window just loaded from Redis: its
second read in the bucket would otherwise fold it all again), otherwise from the second read (one event per
bucket, short window: no split fold, no cache to keep). The arithmetic is identical either way (a left fold
continued from a prefix is the same left fold).

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

import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Mapping

import orjson

from features.aggregations import DISTINCT_CAP
from features.definitions import FeatureView
from features.plan import Plan, plan_for
from features.records import Event

__all__ = ["EntityState", "Plan", "plan_for"]

_HEAD = struct.Struct("<cH")  # b"B", row width
LONG_PREFIX = 8  # a prefix of this many buckets is cached on a bucket's first read whatever the read pattern
_BIG = sys.byteorder == "big"


class EntityState:
    """All live buckets of one entity as rows of one flat array of doubles; tracks dirty/deleted buckets."""

    __slots__ = ("_order", "_data", "_w", "_sets", "_dirty", "_deleted", "_cache", "_read_last", "_reads")

    def __init__(self) -> None:
        self._order = array("q")  # bucket starts, ascending; row i of _data is bucket _order[i]
        self._data = array("d")
        self._w = 0  # doubles per row (0 until the first apply or decode)
        self._sets: dict[int, dict[int, set]] | None = None  # bucket -> layout index -> distinct values
        self._dirty: set[int] | None = None  # buckets changed since the last save (a set only while any: fewer
        self._deleted: set[int] | None = None  # objects for the garbage collector to walk per cached entity)
        # (last, window starts, prefix fold: its accumulators, or their doubles' bytes when Plan.pack packed them)
        self._cache: tuple[int, tuple[int, ...], tuple | bytes] | None = None
        self._read_last = -1  # bucket of the previous read ...
        self._reads = 0  # ... and how many reads it had: more than one predicts more than one in the next

    def __repr__(self) -> str:
        return (
            f"EntityState(buckets={len(self._order)}, dirty={len(self._dirty or ())}, "
            f"deleted={len(self._deleted or ())})"
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

    def nbytes(self) -> int:
        """Bytes of the bucket array and the bucket starts (what grows with the window)."""
        return self._data.itemsize * len(self._data) + self._order.itemsize * len(self._order)

    def buckets(self, view: FeatureView) -> dict[int, dict[str, list]]:
        """The live buckets as ``{start: {field: 13-slot partial (+ distinct set)}}`` (for tests and debugging;
        slots the view does not keep read 0)."""
        plan = plan_for(view)
        w = self._w
        out = {}
        for i, b in enumerate(self._order):
            parts = plan.partials_of(self._data[i * w:(i + 1) * w])
            for fi, name in plan.distinct:
                if name in parts:
                    parts[name].append(set((self._sets or {}).get(b, {}).get(fi, ())))
            out[b] = parts
        return out

    def _row(self, plan: Plan, b: int) -> int:
        """The row index of bucket ``b``, inserted (zeros) when new."""
        order = self._order
        n = len(order)
        if n and order[-1] == b:
            return n - 1
        i = bisect_left(order, b)
        if i == n or order[i] != b:
            if not self._w:
                self._w = plan.width
            w = self._w
            order.insert(i, b)
            if i == n:
                self._data.extend(plan_zero(plan))
            else:
                self._data[i * w:i * w] = plan_zero(plan)
            if self._deleted:
                self._deleted.discard(b)
        return i

    def apply(self, view: FeatureView, event: Event) -> None:
        """Fold ``event`` into the bucket its timestamp falls in (out-of-order events included)."""
        self.apply_values(plan_for(view), event.ts_ms, event.values)

    def apply_values(self, plan: Plan, ts: int, values: Mapping[str, float | int | str]) -> int:
        """:meth:`apply` with the view's plan already at hand; returns the row of the event's bucket."""
        b = ts - ts % plan.bucket_ms
        i = self._row(plan, b)
        dirty = self._dirty
        if dirty is None:
            dirty = self._dirty = set()
        dirty.add(b)
        if self._cache is not None and b < self._cache[0]:
            self._cache = None
        plan.apply(self._data, i * self._w, b, ts, values)  # type: ignore[misc]
        if plan.distinct:
            sets = self._sets
            if sets is None:
                sets = self._sets = {}
            for fi, name in plan.distinct:
                x = values.get(name)
                if x is not None:
                    seen = sets.setdefault(b, {}).setdefault(fi, set())
                    if len(seen) < DISTINCT_CAP:
                        seen.add(x)
        return i

    def features(self, view: FeatureView, now_ms: int) -> dict[str, float]:
        """The feature vector at ``now_ms`` (buckets after the bucket of ``now_ms`` are ignored)."""
        return self.features_of(plan_for(view), now_ms)

    def features_of(self, plan: Plan, now_ms: int) -> dict[str, float]:
        """:meth:`features` with the view's plan already at hand."""
        if not plan.windows:
            return {}
        last = now_ms - now_ms % plan.bucket_ms
        order = self._order
        hi = bisect_left(order, last)
        return self._read(plan, now_ms, last, hi, hi < len(order) and order[hi] == last)

    def step(self, plan: Plan, ts: int, values: Mapping[str, float | int | str]) -> dict[str, float]:
        """Apply one event and read the features at its time (the engine's per-event call): what
        ``apply_values`` then ``features_of(plan, ts)`` give, without looking the event's bucket up twice.

        >>> from features.definitions import FeatureView, FieldSpec, FeatureSpec, Window
        >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x"),),
        ...                    (FeatureSpec("s", "x", "sum", Window("sliding", 20_000)),))
        >>> st = EntityState()
        >>> st.step(plan_for(view), 1_000, {"x": 1.0}), st.step(plan_for(view), 12_000, {"x": 2.0})
        ({'s': 1.0}, {'s': 3.0})
        """
        fast = plan.step  # the common case in C (features.kernel): the newest bucket, its prefix fold cached
        if fast is not None:
            vector = fast(self, ts, values)
            if vector is not None:
                return vector
        row = self.apply_values(plan, ts, values)
        if not plan.windows:
            return {}
        return self._read(plan, ts, ts - ts % plan.bucket_ms, row, True)

    def _read(self, plan: Plan, now_ms: int, last: int, hi: int, cur: bool) -> dict[str, float]:
        """The features at ``now_ms`` whose bucket starts at ``last``: rows before ``hi`` are older buckets,
        ``cur`` says whether row ``hi`` is the bucket of ``last``."""
        starts = plan.starts(now_ms, last)
        order = self._order
        lo = bisect_left(order, min(starts), 0, hi)
        data, sets = self._data, self._sets
        if self._read_last != last:  # first read in this bucket
            repeated = self._reads > 1
            self._read_last, self._reads = last, 1
            if not repeated and hi - lo < LONG_PREFIX:  # one read per bucket so far, short window: one pass
                return plan.emit(plan.fold(None, data, order, lo, hi + cur, starts, sets))
        else:
            self._reads += 1
        hit = self._cache
        if hit is not None and hit[0] == last and hit[1] == starts:
            acc = hit[2]
            if type(acc) is bytes:  # packed (Plan.pack): the same doubles, bit for bit
                acc = tuple(memoryview(acc).cast("d"))
        else:
            acc = plan.fold(None, data, order, lo, hi, starts, sets)
            self._cache = (last, starts, acc if plan.pack is None else plan.pack(acc))
        if cur:
            acc = plan.fold(acc, data, order, hi, hi + 1, starts, sets)
        return plan.emit(acc)

    def expire(self, before_ms: int) -> None:
        """Drop buckets that start before ``before_ms`` (they are deleted from the store on save)."""
        order = self._order
        if not order or order[0] >= before_ms:
            return
        cut = bisect_left(order, before_ms)
        if self._deleted is None:
            self._deleted = set()
        for b in order[:cut]:
            if self._dirty:
                self._dirty.discard(b)
            self._deleted.add(b)
            if self._sets:
                self._sets.pop(b, None)
        del order[:cut]
        del self._data[:cut * self._w]
        self._cache = None

    def to_redis(self) -> tuple[dict[bytes, bytes], list[bytes]]:
        """(dirty buckets as hash fields to HSET, expired bucket fields to HDEL); full values, sorted."""
        sets: dict[bytes, bytes] = {}
        w, order, data = self._w, self._order, self._data
        head = _HEAD.pack(b"B", w)
        for b in sorted(self._dirty or ()):
            i = bisect_left(order, b)
            row = data[i * w:(i + 1) * w]
            if _BIG:
                row.byteswap()
            value = head + row.tobytes()
            distinct = self._sets.get(b) if self._sets else None
            if distinct:
                value += b"|" + orjson.dumps({str(fi): sorted(v) for fi, v in sorted(distinct.items())})
            sets[str(b).encode()] = value
        return sets, [str(b).encode() for b in sorted(self._deleted or ())]

    def mark_saved(self) -> None:
        """Forget the dirty/deleted marks after a successful save."""
        self._dirty = self._deleted = None

    @classmethod
    def from_redis(cls, mapping: Mapping[bytes, bytes], view: FeatureView | None = None) -> EntityState:
        """Rebuild a clean state from a Redis hash (``HGETALL`` result). ``view`` is needed only for values
        in the former JSON encoding."""
        st = cls()
        if not mapping:
            return st
        items = sorted(zip(map(int, mapping), mapping.values(), strict=True))
        values = [v for _, v in items]
        first = values[0]
        size = len(first)
        if first[:1] == b"B" and size == _HEAD.size + 8 * _HEAD.unpack_from(first)[1] and all(
                len(v) == size and v[:1] == b"B" for v in values):  # the common case: binary rows, no sets
            st._order = array("q", [b for b, _ in items])
            st._data.frombytes(b"".join([v[3:] for v in values]))
            if _BIG:
                st._data.byteswap()
            st._w = (size - _HEAD.size) // 8
            return st
        rows: list[bytes] = []
        width = 0
        for b, v in items:
            if v[:1] == b"B":
                _, width = _HEAD.unpack_from(v)
                end = _HEAD.size + 8 * width
                rows.append(v[_HEAD.size:end])
                if len(v) > end:  # b"|" + the distinct values
                    distinct = orjson.loads(v[end + 1:])
                    if st._sets is None:
                        st._sets = {}
                    st._sets[b] = {int(fi): set(vals) for fi, vals in distinct.items()}
            else:
                rows.append(_legacy_row(st, b, v, view))
        st._order = array("q", [b for b, _ in items])
        st._data.frombytes(b"".join(rows))
        if _BIG:
            st._data.byteswap()
        st._w = len(st._data) // len(items)
        return st


def _legacy_row(st: EntityState, b: int, value: bytes, view: FeatureView | None) -> bytes:
    """One bucket in the former JSON encoding, as the bytes of a row of ``view``'s layout."""
    if view is None:
        raise ValueError("this state is in the former JSON encoding: pass the view to EntityState.from_redis")
    plan = plan_for(view)
    partials = orjson.loads(value)
    row = array("d", plan.row_from_partials(partials))
    for fi, name in plan.distinct:
        p = partials.get(name)
        if p is not None and len(p) > 13:
            if st._sets is None:
                st._sets = {}
            st._sets.setdefault(b, {})[fi] = set(p[13])
    if _BIG:
        row.byteswap()
    return row.tobytes()


_ZEROS: dict[int, array] = {}


def plan_zero(plan: Plan) -> array:
    """A row of zeros of ``plan``'s width (shared)."""
    z = _ZEROS.get(plan.width)
    if z is None:
        z = _ZEROS[plan.width] = array("d", bytes(8 * plan.width))
    return z
