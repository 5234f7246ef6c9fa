"""FusedHandler over MemoryFeatureStore and a real Scorer on a tmp registry, fed fake Kafka messages."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from features.store import MemoryFeatureStore, state_key_for
from models.prediction import Prediction
from models.registry import Registry
from streams.runtime.pipeline import FusedHandler

from .pipeline_fakes import (
    T0,
    TOPIC,
    VIEW,
    dead,
    make_handler,
    msg,
    pos,
    predictions,
    run,
    snapshot,
)


def test_good_records_become_predictions_and_state(handler: FusedHandler, store: MemoryFeatureStore) -> None:
    batch = [msg(0, "p1", T0, 70.0), msg(1, "p2", T0 + 1_000, 90.0), msg(2, "p1", T0 + 2_000, 110.0)]
    result = run(handler, batch)
    preds = predictions(result)
    assert [p.prediction_id for p in preds] == ["vitals-0-0-champion", "vitals-0-1-champion", "vitals-0-2-champion"]
    assert [o.key for o in result.outputs] == ["p1", "p2", "p1"]
    assert [(p.entity_id, p.event_ts, p.model_version) for p in preds] == [
        ("p1", T0, 1), ("p2", T0 + 1_000, 1), ("p1", T0 + 2_000, 1)]
    assert preds[2].features == {"hr_mean_1m": 90.0, "hr_count_1m": 2.0}  # windows include the earlier event
    assert dead(result) == []
    assert store.last_offset(VIEW, pos()) == 2
    assert store.raw_state(VIEW, pos(), "p1") and store.raw_state(VIEW, pos(), "p2")
    assert (handler.stats.consumed, handler.stats.scored, handler.stats.replayed) == (3, 3, 0)


def test_state_is_written_only_by_finalize(handler: FusedHandler, store: MemoryFeatureStore) -> None:
    result = run(handler, [msg(0), msg(1, ts=T0 + 1)], finalize=False)
    assert len(predictions(result)) == 2
    assert store.hashes == {} and store.last_offset(VIEW, pos()) == -1
    assert result.finalize is not None
    result.finalize()
    assert store.last_offset(VIEW, pos()) == 1


def test_on_predictions_callback(registry: Registry, store: MemoryFeatureStore) -> None:
    got: list[list[Prediction]] = []
    h = make_handler(registry, store, on_predictions=got.append)
    run(h, [msg(0), msg(1, ts=T0 + 5)])
    assert [[p.prediction_id for p in batch] for batch in got] == [["vitals-0-0-champion", "vitals-0-1-champion"]]


def test_partitions_are_independent(handler: FusedHandler, store: MemoryFeatureStore) -> None:
    run(handler, [msg(5, "a", partition=0), msg(9, "b", partition=1), msg(6, "a", T0 + 1, partition=0)])
    assert store.last_offset(VIEW, pos(0)) == 6 and store.last_offset(VIEW, pos(1)) == 9
    assert store.raw_state(VIEW, pos(1), "a") == {} and store.raw_state(VIEW, pos(1), "b")


# ------------------------------------------------------------------------------------------ bad records
BAD = [
    (b'{"id": "p1", "ts": ', b"p1", "malformed_json"),
    (b"[1, 2]", b"p1", "not_an_object"),
    (b'{"id": "p1", "ts": 1700000000000}', b"p1", "missing_field"),
    (b'{"id": "p1", "ts": 1700000000000, "hr": 999}', b"p1", "out_of_range"),
    (b'{"id": "p1", "ts": 1700000000000, "hr": "fast"}', b"p1", "wrong_type"),
    (b'{"id": "p1", "ts": "yesterday", "hr": 80}', b"p1", "bad_timestamp"),
    (b'{"id": "p1", "ts": 1700000000000, "hr": 80}', b"someone-else", "key_mismatch"),
]


@pytest.mark.parametrize("raw,key,reason", BAD)
def test_bad_record_goes_to_dlq_with_original_bytes(handler: FusedHandler, store: MemoryFeatureStore,
                                                    raw: bytes, key: bytes, reason: str) -> None:
    result = run(handler, [msg(0), msg(1, raw=raw, key=key), msg(2, ts=T0 + 1)])
    (dl,) = dead(result)
    assert (dl.value, dl.key) == (raw, key)
    headers = dict(dl.headers or [])
    assert headers["error"] == reason.encode()
    assert (headers["source_topic"], headers["source_partition"], headers["source_offset"]) == (
        b"vitals", b"0", b"1")
    assert headers.get("error_detail")
    assert [p.prediction_id for p in predictions(result)] == ["vitals-0-0-champion", "vitals-0-2-champion"]
    assert handler.stats.dead_lettered == {reason: 1}
    assert store.last_offset(VIEW, pos()) == 2  # the bad record's offset is consumed too


def test_batch_of_only_bad_records_still_advances_the_offset(handler: FusedHandler,
                                                             store: MemoryFeatureStore) -> None:
    result = run(handler, [msg(3, raw=b"nope")])
    assert len(dead(result)) == 1 and predictions(result) == []
    assert store.last_offset(VIEW, pos()) == 3


# ------------------------------------------------------------------------------------------ replays
def test_replay_after_finalize_changes_nothing_and_counts_nothing_twice(handler: FusedHandler,
                                                                        store: MemoryFeatureStore) -> None:
    batch = [msg(0, "p1", T0, 70.0), msg(1, raw=b"{bad"), msg(2, "p2", T0 + 1, 80.0), msg(3, "p1", T0 + 2, 90.0)]
    first = run(handler, batch)
    before = snapshot(store)
    stats_before = (handler.stats.scored, dict(handler.stats.dead_lettered))
    again = run(handler, batch)
    assert snapshot(store) == before
    assert again.outputs == []  # no prediction, no dead letter a second time
    assert (handler.stats.scored, dict(handler.stats.dead_lettered)) == stats_before
    assert handler.stats.replayed >= 3
    assert len(predictions(first)) == 3


def test_replay_by_a_new_instance_after_restart(registry: Registry, store: MemoryFeatureStore) -> None:
    batch = [msg(0, "p1", T0), msg(1, "p1", T0 + 1)]
    run(make_handler(registry, store), batch)
    before = snapshot(store)
    fresh = make_handler(registry, store)
    result = run(fresh, batch)
    assert predictions(result) == [] and snapshot(store) == before and fresh.stats.replayed == 2


def test_overlapping_batch_scores_only_the_new_events(handler: FusedHandler, store: MemoryFeatureStore) -> None:
    run(handler, [msg(0, ts=T0), msg(1, ts=T0 + 1)])
    result = run(handler, [msg(1, ts=T0 + 1), msg(2, ts=T0 + 2)])
    assert [p.prediction_id for p in predictions(result)] == ["vitals-0-2-champion"]
    assert predictions(result)[0].features == {"hr_mean_1m": 80.0, "hr_count_1m": 3.0}  # counted once each
    assert handler.stats.replayed == 1 and store.last_offset(VIEW, pos()) == 2


def test_failed_batch_retried_gives_the_same_outputs(handler: FusedHandler, store: MemoryFeatureStore) -> None:
    """A delivery failure means finalize never ran: the retry must see exactly the same state."""
    batch = [msg(0, "p1", T0), msg(1, "p2", T0 + 30_000), msg(2, "p1", T0 + 5_000)]
    first = handler.process(batch)  # type: ignore[arg-type]  # not finalized: the loop rewinds
    retry = run(handler, batch)
    assert [(o.topic, o.key) for o in retry.outputs] == [(o.topic, o.key) for o in first.outputs]
    assert [p.prediction_id for p in predictions(retry)] == [p.prediction_id for p in predictions(first)]
    assert [dict(o.headers or [])["source_offset"] for o in dead(retry)] == [b"2"]  # late in both passes


def test_same_prediction_ids_on_crash_replay(registry: Registry) -> None:
    """Delivered but not saved (crash before finalize): the replay yields identifiable duplicates."""
    batch = [msg(0, "p1", T0), msg(1, "p2", T0 + 1)]
    first = make_handler(registry, MemoryFeatureStore()).process(batch)  # type: ignore[arg-type]
    second = make_handler(registry, MemoryFeatureStore()).process(batch)  # type: ignore[arg-type]
    assert [(p.prediction_id, p.score) for p in predictions(first)] == [
        (p.prediction_id, p.score) for p in predictions(second)]


# ------------------------------------------------------------------------------------------ lateness
def test_late_event_goes_to_dlq_with_reason_late(handler: FusedHandler, store: MemoryFeatureStore) -> None:
    run(handler, [msg(0, "p1", T0 + 60_000)])
    state_before = store.raw_state(VIEW, pos(), "p1")
    late = msg(1, "p1", T0 + 60_000 - 10_001, 120.0)
    result = run(handler, [late, msg(2, "p1", T0 + 60_000 - 10_000, 100.0)])
    (dl,) = dead(result)
    headers = dict(dl.headers or [])
    assert headers["error"] == b"late" and headers["source_offset"] == b"1" and dl.value == late.value_
    assert [p.prediction_id for p in predictions(result)] == ["vitals-0-2-champion"]  # at the boundary: accepted
    assert handler.stats.dead_lettered == {"late": 1}
    assert store.raw_state(VIEW, pos(), "p1") != state_before


def test_too_far_future_event(registry: Registry, store: MemoryFeatureStore) -> None:
    """Without the wall-clock bound (DRIFTLINE_MAX_FUTURE_SKEW_MS=0: replays, fast simulations) the view's
    max_future applies against the partition's watermark."""
    handler = make_handler(registry, store, max_future_skew_ms=0)
    result = run(handler, [msg(0, "p1", T0), msg(1, "p1", T0 + VIEW.max_future_ms + 1)])
    assert [dict(o.headers or [])["error"] for o in dead(result)] == [b"too_far_future"]
    assert dict(dead(result)[0].headers or [])["error_detail"] == b"newer than watermark + max_future"


def test_with_the_wall_clock_bound_a_pause_in_the_stream_does_not_brick_the_partition(
        registry: Registry, store: MemoryFeatureStore) -> None:
    """The soak's finding: a watermark left behind by a pause longer than max_future (or by an earlier run) made
    every later event too_far_future, for good; with the clock bounding event time, the stream resumes."""
    handler = make_handler(registry, store, clock=lambda: (T0 + 3_600_000) / 1000)
    result = run(handler, [msg(0, "p1", T0), msg(1, "p1", T0 + 3_000_000), msg(2, "p1", T0 + 3_000_001)])
    assert dead(result) == [] and len(predictions(result)) == 3


def test_watermark_survives_a_restart(registry: Registry, store: MemoryFeatureStore) -> None:
    run(make_handler(registry, store), [msg(0, "p1", T0 + 60_000)])
    fresh = make_handler(registry, store)
    fresh.on_assign([_TP(TOPIC, 0)])  # type: ignore[list-item]
    result = run(fresh, [msg(1, "p1", T0)])
    assert [dict(o.headers or [])["error"] for o in dead(result)] == [b"late"]


def test_revoke_forgets_the_watermark(handler: FusedHandler) -> None:
    run(handler, [msg(0, "p1", T0)])
    assert handler.watermarks == {0: T0}
    handler.on_revoke([_TP(TOPIC, 0)])  # type: ignore[list-item]
    assert handler.watermarks == {}


@dataclass
class _TP:
    topic: str
    partition: int


def test_state_key_pins_group_and_partition(store: MemoryFeatureStore, handler: FusedHandler) -> None:
    run(handler, [msg(0, "p1", partition=2)])
    assert state_key_for(VIEW, pos(2), "p1") in store.hashes


def test_tmp_registry_is_not_modified(registry: Registry, handler: FusedHandler) -> None:
    rev = registry.revision("risk")
    run(handler, [msg(0)])
    assert registry.revision("risk") == rev
