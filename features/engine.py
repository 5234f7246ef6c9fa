"""The feature engine: apply a batch of events to in-memory entity state, in order, with watermarks.

The same code serves the online path (per Kafka batch: load state, ``process``, save) and the offline
path (``features.offline``), so training and serving features cannot drift apart.

Per event, in order:

1. ``offset <= min_offset`` (when ``min_offset >= 0``) -> skipped: already applied before a crash/replay;
2. with a watermark (the max event time seen on the partition): ``ts < watermark - allowed_lateness``
   -> ``late`` with reason ``"late"``; ``ts > watermark + max_future_ms`` -> reason ``"too_far_future"``;
3. otherwise applied into its own bucket, the watermark advances, and the feature vector is computed
   at ``now = event.ts``.

After the batch, buckets older than ``watermark - retention_ms`` are expired. That never changes a
result: an accepted event has ``ts >= watermark - lateness``, so its windows start after that bound.

Example:
    >>> from features.definitions import FeatureView, FieldSpec, FeatureSpec, Window
    >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x"),),
    ...                    (FeatureSpec("n", "x", "count", Window("sliding", 60_000)),),
    ...                    allowed_lateness_ms=10_000)
    >>> events = [Event("a", 100_000, {"x": 1.0}, offset=0), Event("a", 80_000, {"x": 2.0}, offset=1),
    ...           Event("a", 95_000, {"x": 3.0}, offset=2)]
    >>> res = FeatureEngine(view).process({}, events, watermark_ms=None)
    >>> [(e.offset, v["n"]) for e, v in res.vectors], [(e.offset, r) for e, r in res.late], res.watermark_ms
    ([(0, 1.0), (2, 1.0)], [(1, 'late')], 100000)

    (At now=95 s the window holds buckets up to the one of 95 s: the event at 100 s is not seen.)
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field

from features.definitions import FeatureView
from features.records import Event
from features.state import EntityState, plan_for


@dataclass
class EngineResult:
    """What one ``process`` call did: vectors of accepted events, rejected events, replays skipped."""

    vectors: list[tuple[Event, dict[str, float]]] = field(default_factory=list)
    late: list[tuple[Event, str]] = field(default_factory=list)
    skipped: int = 0
    watermark_ms: int | None = None
    last_offset: int = -1  # highest offset seen in the batch (accepted, late or skipped); -1 if none


class FeatureEngine:
    """Applies events of one feature view to entity states; pure (no I/O)."""

    def __init__(self, view: FeatureView) -> None:
        self.view = view
        plan_for(view)  # compile (and validate) once, up front

    def process(
        self,
        states: MutableMapping[str, EntityState],
        events: Sequence[Event],
        *,
        watermark_ms: int | None,
        min_offset: int = -1,
    ) -> EngineResult:
        """Apply ``events`` in order to ``states`` (missing entities are created); see the module doc."""
        view = self.view
        plan = plan_for(view)
        lateness = view.allowed_lateness_ms
        future = view.max_future_ms
        res = EngineResult()
        vectors = res.vectors
        wm = watermark_ms
        last_offset = -1
        for ev in events:
            off = ev.offset
            if off > last_offset:
                last_offset = off
            if min_offset >= 0 and off <= min_offset:
                res.skipped += 1
                continue
            ts = ev.ts_ms
            if wm is not None:
                if ts < wm - lateness:
                    res.late.append((ev, "late"))
                    continue
                if ts > wm + future:
                    res.late.append((ev, "too_far_future"))
                    continue
                if ts > wm:
                    wm = ts
            else:
                wm = ts
            st = states.get(ev.entity_id)
            if st is None:
                st = EntityState()
                states[ev.entity_id] = st
            vectors.append((ev, st.step(plan, ts, ev.values)))
        if wm is not None:
            cutoff = wm - view.retention_ms
            for st in states.values():
                st.expire(cutoff)
        res.watermark_ms = wm
        res.last_offset = last_offset
        return res

    def stale_entities(
        self, states: MutableMapping[str, EntityState], watermark_ms: int, idle_ms: int
    ) -> Iterable[str]:
        """Entities whose newest bucket ended more than ``idle_ms`` before ``watermark_ms`` (or are empty)."""
        bucket_ms = self.view.bucket_ms
        for entity_id, st in states.items():
            last = st.last_bucket_ms
            if last is None or last + bucket_ms < watermark_ms - idle_ms:
                yield entity_id
