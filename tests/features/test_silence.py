"""SilenceTracker: the heap-based tracker against the original scan-everything logic, and its work at scale."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from features.silence import SilenceTracker


class ReferenceTracker:
    """The original tracker (a full scan per ``due``, a ``min`` over every entry per eviction), kept as the
    specification. One deliberate difference: eviction ties on the timestamp go to the smallest id (the
    original took the first in dict order, an accident of insertion history)."""

    def __init__(self, idle_ms: int, max_entities: int) -> None:
        self.idle_ms, self.max_entities = idle_ms, max_entities
        self.last_seen: dict[int, dict[str, int]] = {}
        self.reported: dict[int, set[str]] = {}
        self.last_activity: dict[int, float] = {}

    def observe(self, partition: int, entity_id: str, ts_ms: int, wall_s: float = 0.0) -> None:
        seen = self.last_seen.setdefault(partition, {})
        if ts_ms >= seen.get(entity_id, ts_ms):
            seen[entity_id] = ts_ms
        if len(seen) > self.max_entities:
            oldest = min(seen, key=lambda e: (seen[e], e))
            del seen[oldest]
        self.reported.setdefault(partition, set()).discard(entity_id)
        self.last_activity[partition] = max(self.last_activity.get(partition, 0.0), wall_s)

    def due(self, partition: int, watermark_ms: int | None) -> list[tuple[str, int]]:
        if watermark_ms is None:
            return []
        cutoff = watermark_ms - self.idle_ms
        reported = self.reported.setdefault(partition, set())
        out = [(e, ts) for e, ts in self.last_seen.get(partition, {}).items() if ts < cutoff and e not in reported]
        reported.update(e for e, _ in out)
        return sorted(out)

    def idle_partitions(self, now_s: float, idle_wall_s: float) -> list[int]:
        return [p for p, t in self.last_activity.items() if t and now_s - t > idle_wall_s]

    def forget(self, partition: int) -> None:
        self.last_seen.pop(partition, None)
        self.reported.pop(partition, None)
        self.last_activity.pop(partition, None)


partitions = st.integers(0, 1)
ops = st.one_of(
    st.tuples(st.just("observe"), partitions, st.sampled_from("abcdefgh"), st.integers(0, 40),
              st.integers(0, 5).map(float)),
    st.tuples(st.just("due"), partitions, st.one_of(st.none(), st.integers(0, 60))),
    st.tuples(st.just("forget"), partitions),
    st.tuples(st.just("idle"), st.integers(0, 8).map(float)),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(ops, max_size=80), st.integers(1, 9), st.integers(0, 12), st.sampled_from([0, 64]))
def test_same_answers_as_the_reference(steps: list[tuple], max_entities: int, idle_ms: int, slack: int) -> None:
    new, ref = SilenceTracker(idle_ms, max_entities), ReferenceTracker(idle_ms, max_entities)
    new.compact_slack = slack  # 0: rebuild the heaps as often as possible
    for step in steps:
        if step[0] == "observe":
            new.observe(*step[1:])
            ref.observe(*step[1:])
        elif step[0] == "due":
            assert new.due(*step[1:]) == ref.due(*step[1:])
        elif step[0] == "forget":
            new.forget(step[1])
            ref.forget(step[1])
        else:
            assert new.idle_partitions(step[1], 2.0) == ref.idle_partitions(step[1], 2.0)
        assert {p: d for p, d in new.last_seen.items() if d} == {p: d for p, d in ref.last_seen.items() if d}
    for p in (0, 1):  # what is still owed comes out the same at the end of time
        assert new.due(p, 10**9) == ref.due(p, 10**9)


def test_out_of_order_event_does_not_move_last_seen_back_but_ends_the_silence() -> None:
    t = SilenceTracker(idle_ms=10)
    t.observe(0, "a", 100)
    assert t.due(0, 200) == [("a", 100)]
    t.observe(0, "a", 50)  # late: last_seen stays 100, yet it sent something
    assert t.last_seen[0]["a"] == 100
    assert t.due(0, 200) == [("a", 100)]
    assert t.due(0, 300) == []


def test_forget_drops_the_partition() -> None:
    t = SilenceTracker(idle_ms=10)
    t.observe(0, "a", 100, 5.0)
    t.observe(1, "b", 100, 5.0)
    t.forget(0)
    assert t.due(0, 1000) == [] and 0 not in t.last_seen and t.idle_partitions(100.0, 1.0) == [1]
    t.observe(0, "a", 100)  # a re-assigned partition starts afresh
    assert t.due(0, 1000) == [("a", 100)]


# ------------------------------------------------------------------------------------------- work at scale
N = 100_000


def _filled(max_entities: int = 1_000_000) -> SilenceTracker:
    t = SilenceTracker(idle_ms=60_000, max_entities=max_entities)
    for i in range(N):
        t.observe(0, f"P{i:06d}", 1_000_000 + i, 1.0)
    return t


def test_due_with_nothing_due_inspects_no_entry_of_100k() -> None:
    t = _filled()
    assert t.due(0, 1_000_000 + 60_000) == [] and t.popped == 0
    assert t.due(0, 1_000_000 + 60_005) == [("P000000", 1_000_000), ("P000001", 1_000_001),
                                             ("P000002", 1_000_002), ("P000003", 1_000_003),
                                             ("P000004", 1_000_004)]
    assert t.popped == 5  # only the due ones


def test_reported_entities_are_not_inspected_again() -> None:
    t = _filled()
    assert len(t.due(0, 10**12)) == N
    before = t.popped
    assert t.due(0, 10**12 + 1) == [] and t.popped == before


def test_busy_entities_cost_one_requeue_each_not_one_entry_per_event() -> None:
    t = _filled()
    for rnd in range(5):  # every entity sends 5 more events, newer each time
        for i in range(N):
            t.observe(0, f"P{i:06d}", 2_000_000 + rnd * N + i)
    assert len(t._waiting[0]) == N  # noqa: SLF001 - updates of a queued entity push nothing
    assert t.due(0, 2_000_000 + 60_000) == [] and t.popped <= N  # each lagging entry re-queued once
    assert t.due(0, 2_000_000 + 60_000) == [] and t.popped <= N


def test_eviction_pops_the_oldest_instead_of_scanning() -> None:
    t = _filled(max_entities=N)
    for i in range(1000):
        t.observe(0, f"Q{i:06d}", 5_000_000 + i)
    assert len(t.last_seen[0]) == N
    assert "P000999" not in t.last_seen[0] and "P001000" in t.last_seen[0]  # the 1,000 oldest went
    assert t.popped == 1000


def test_heaps_stay_within_twice_the_live_entities() -> None:
    t = SilenceTracker(idle_ms=10)
    for rnd in range(50):  # every entity reported, then heard from again: each cycle strands an entry
        for i in range(1000):
            t.observe(0, f"e{i}", rnd * 100)
        assert len(t.due(0, rnd * 100 + 1000)) == 1000
    assert len(t._waiting[0]) + len(t._silent[0]) <= 2 * 1000 + t.compact_slack  # noqa: SLF001


class _Ev:
    __slots__ = ("entity_id", "ts_ms")

    def __init__(self, entity_id: str, ts_ms: int) -> None:
        self.entity_id, self.ts_ms = entity_id, ts_ms


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 1), st.lists(
    st.tuples(st.sampled_from("abcdefg"), st.integers(0, 50_000)), max_size=8), st.integers(0, 80_000)),
    max_size=25), st.integers(2, 8))
def test_a_batch_observed_at_once_leaves_what_its_events_one_by_one_leave(
        steps: list[tuple[bool, int, list[tuple[str, int]], int]], cap: int) -> None:
    """``observe_events`` (the pipeline's per-batch call) against ``observe`` per event, with ``due`` between
    batches and a small entity cap (evictions): the same reports, the same state."""
    one, many = SilenceTracker(10_000, max_entities=cap), SilenceTracker(10_000, max_entities=cap)
    for wall, (_, partition, batch, watermark) in enumerate(steps):
        for entity, ts in batch:
            one.observe(partition, entity, ts, float(wall))
        many.observe_events(partition, [_Ev(e, ts) for e, ts in batch], float(wall))
        assert one.due(partition, watermark) == many.due(partition, watermark)
        assert (one.last_seen, one.reported, one.last_activity) == (many.last_seen, many.reported,
                                                                    many.last_activity)
