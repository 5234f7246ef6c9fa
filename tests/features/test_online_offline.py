"""Property: the online path (random batches through the store) equals compute_offline, event by event.

Covers every aggregation x every window kind, random entities, out-of-order and late events, crashes
before a save (the batch is reprocessed) and replays after a save (the batch is skipped).
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from features.aggregations import AGGREGATIONS
from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window
from features.engine import FeatureEngine
from features.offline import compute_offline
from features.records import Event
from features.store import MemoryFeatureStore, SourcePosition

WINDOWS = {
    "sl": Window("sliding", 30_000),
    "tu": Window("tumbling", 60_000),
    "ho": Window("hopping", 40_000, 20_000),
}
NUMERIC = [a for a, spec in AGGREGATIONS.items() if spec.numeric_only and a != "angle_change_rate"]
VIEW = FeatureView(
    "prop",
    1,
    "src",
    "id",
    "ts",
    (FieldSpec("x"), FieldSpec("h", min=0, max=360), FieldSpec("s", "str", required=False)),
    tuple(FeatureSpec(f"x_{a}_{w}", "x", a, win) for a in NUMERIC for w, win in WINDOWS.items())
    + tuple(FeatureSpec(f"h_turn_{w}", "h", "angle_change_rate", win) for w, win in WINDOWS.items())
    + tuple(
        FeatureSpec(f"s_{a}_{w}", "s", a, win)
        for a in ("count", "distinct_count")
        for w, win in WINDOWS.items()
    ),
    bucket_ms=10_000,
    allowed_lateness_ms=25_000,
    max_future_ms=90_000,
)
assert {f.agg for f in VIEW.features} == set(AGGREGATIONS)
POS = SourcePosition("g", "src", 0)


@st.composite
def event_logs(draw: st.DrawFn) -> list[Event]:
    n = draw(st.integers(1, 60))
    t = 1_700_000_000_000 + draw(st.integers(0, 9_999))
    events = []
    for i in range(n):
        t += draw(st.integers(0, 15_000))
        lag = draw(st.sampled_from([0, 0, 0, 1_000, 12_000, 30_000]))  # some disorder, some late
        if draw(st.integers(0, 20)) == 0:
            lag = -100_000  # far future
        values: dict[str, float | int | str] = {
            "x": draw(st.integers(0, 400)) / 4,
            "h": float(draw(st.integers(0, 359))),
        }
        if draw(st.booleans()):
            values["s"] = draw(st.sampled_from("abcde"))
        events.append(Event(draw(st.sampled_from("abc")), t - lag, values, offset=i, partition=0))
    return events


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-9)
        for k in a
    )


@settings(max_examples=100, deadline=None)
@given(event_logs(), st.data())
def test_online_equals_offline(events: list[Event], data: st.DataObject) -> None:
    offline = [(r.entity_id, r.ts_ms, r.features) for r in compute_offline(VIEW, events)]

    store = MemoryFeatureStore()
    engine = FeatureEngine(VIEW)
    online: list[tuple[str, int, dict[str, float]]] = []
    i = 0
    while i < len(events):
        j = min(len(events), i + data.draw(st.integers(1, 12)))
        batch = events[i:j]
        fate = data.draw(st.sampled_from(["ok", "ok", "crash_before_save", "replay_after_save"]))
        runs = 2 if fate != "ok" else 1
        for run in range(runs):
            states, off = store.load(VIEW, POS, {e.entity_id for e in batch})
            _, wm = store.position(VIEW, POS)
            res = engine.process(states, batch, watermark_ms=wm, min_offset=off)
            if fate == "crash_before_save" and run == 0:
                continue  # the process died: nothing saved, nothing emitted
            if fate == "replay_after_save" and run == 1:
                assert (
                    res.skipped == len(batch)
                    and not res.vectors
                    and not any(s.is_dirty for s in states.values())
                )
            store.save(
                VIEW,
                POS,
                states,
                expected_offset=off,
                new_offset=max(off, res.last_offset),
                ttl_ms=VIEW.retention_ms,
                watermark_ms=res.watermark_ms,
            )
            online.extend((e.entity_id, e.ts_ms, vec) for e, vec in res.vectors)
        i = j

    assert len(online) == len(offline)
    for got, want in zip(online, offline, strict=True):
        assert got[:2] == want[:2]
        assert _same(got[2], want[2]), (got, want)
    assert store.last_offset(VIEW, POS) == events[-1].offset
