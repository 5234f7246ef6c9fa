"""FeatureEngine: lateness, future events, replays, expiry, out-of-order buckets; offline helpers."""

from __future__ import annotations

from pathlib import Path

import orjson

from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window
from features.engine import FeatureEngine
from features.offline import JsonlStats, compute_offline, events_from_jsonl
from features.records import Event
from features.state import EntityState

VIEW = FeatureView(
    "eng",
    1,
    "t",
    "id",
    "ts",
    (FieldSpec("x"),),
    (
        FeatureSpec("n_30s", "x", "count", Window("sliding", 30_000)),
        FeatureSpec("sum_1m", "x", "sum", Window("tumbling", 60_000)),
        FeatureSpec("last_30s", "x", "last", Window("sliding", 30_000)),
    ),
    bucket_ms=10_000,
    allowed_lateness_ms=20_000,
    max_future_ms=100_000,
)


def ev(ts: int, x: float, offset: int, entity: str = "a") -> Event:
    return Event(entity, ts, {"x": x}, offset=offset, partition=0)


def test_lateness_boundary() -> None:
    eng = FeatureEngine(VIEW)
    states: dict[str, EntityState] = {}
    res = eng.process(states, [ev(100_000, 1.0, 0)], watermark_ms=None)
    assert res.watermark_ms == 100_000
    res = eng.process(states, [ev(79_999, 2.0, 1), ev(80_000, 4.0, 2)], watermark_ms=res.watermark_ms)
    assert [(e.offset, r) for e, r in res.late] == [(1, "late")]
    # the in-lateness event went into its own bucket (80 s), not the current one
    [(e, vec)] = res.vectors
    assert e.offset == 2 and vec["n_30s"] == 1.0 and vec["sum_1m"] == 4.0 and vec["last_30s"] == 4.0
    assert states["a"].buckets(VIEW).keys() == {80_000, 100_000}
    assert res.watermark_ms == 100_000  # a late event never moves the watermark back
    after = states["a"].features(VIEW, 100_000)
    assert after["n_30s"] == 2.0 and after["sum_1m"] == 5.0 and after["last_30s"] == 1.0


def test_future_events_rejected() -> None:
    res = FeatureEngine(VIEW).process(
        {}, [ev(100_000, 1.0, 0), ev(200_001, 1.0, 1), ev(200_000, 1.0, 2)], watermark_ms=None
    )
    assert [(e.offset, r) for e, r in res.late] == [(1, "too_far_future")]
    assert res.watermark_ms == 200_000 and res.last_offset == 2


def test_replayed_offsets_are_skipped() -> None:
    eng = FeatureEngine(VIEW)
    states: dict[str, EntityState] = {}
    batch = [ev(1_000 * i, 1.0, i) for i in range(5)]
    eng.process(states, batch, watermark_ms=None)
    res = eng.process(states, batch, watermark_ms=4_000, min_offset=3)
    assert res.skipped == 4 and [e.offset for e, _ in res.vectors] == [4]


def test_expiry_keeps_what_accepted_events_need() -> None:
    eng = FeatureEngine(VIEW)
    states: dict[str, EntityState] = {}
    eng.process(states, [ev(0, 1.0, 0), ev(50_000, 1.0, 1)], watermark_ms=None)
    res = eng.process(states, [ev(130_000, 1.0, 2)], watermark_ms=50_000)
    # retention = 60 s + 20 s lateness -> buckets before 50 s go
    assert VIEW.retention_ms == 80_000
    assert sorted(states["a"].buckets(VIEW)) == [50_000, 130_000]
    sets, dels = states["a"].to_redis()
    assert dels == [b"0"] and set(sets) == {b"50000", b"130000"}
    assert res.vectors[0][1]["n_30s"] == 1.0
    assert sorted(eng.stale_entities(states, 130_000, 0)) == []
    assert sorted(eng.stale_entities(states, 200_000, 30_000)) == ["a"]


def test_features_as_of_each_event_do_not_see_the_future() -> None:
    rows = compute_offline(
        VIEW, [ev(1_000, 1.0, 0), ev(15_000, 2.0, 1), ev(12_000, 3.0, 2), ev(31_000, 5.0, 3)]
    )
    got = [(r.ts_ms, r.features["n_30s"], r.features["last_30s"]) for r in rows]
    assert got == [(1_000, 1.0, 1.0), (15_000, 2.0, 2.0), (12_000, 3.0, 2.0), (31_000, 3.0, 5.0)]


def test_entities_and_partitions_are_independent() -> None:
    evs = [ev(100_000, 1.0, 0, "a"), Event("b", 10_000, {"x": 2.0}, 0, 1), ev(100_000, 3.0, 1, "b")]
    rows = compute_offline(VIEW, evs)
    # partition 1 has its own watermark: its old event is not late
    assert [(r.entity_id, r.features["sum_1m"]) for r in rows] == [("a", 1.0), ("b", 2.0), ("b", 3.0)]


def test_events_from_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    lines = [
        orjson.dumps({"id": "a", "ts": 1_000, "x": 1.5}),
        b"{broken",
        b"",
        orjson.dumps({"id": "a", "ts": 2_000}),
        orjson.dumps({"id": "b", "ts": 3_000, "x": 2}),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    stats = JsonlStats()
    events = list(events_from_jsonl(VIEW, path, stats))
    assert [(e.entity_id, e.ts_ms, e.offset) for e in events] == [("a", 1_000, 0), ("b", 3_000, 4)]
    assert (
        stats.lines == 4 and stats.skipped == 2 and stats.reasons == {"malformed_json": 1, "missing_field": 1}
    )
    rows = compute_offline(VIEW, events)
    assert [r.features["sum_1m"] for r in rows] == [1.5, 2.0]
    assert compute_offline(VIEW, [ev(0, 1.0, 0)])[0].features["last_30s"] == 1.0
