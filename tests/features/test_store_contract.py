"""One contract, two stores: MemoryFeatureStore (unit) and RedisFeatureStore (integration: the session's Redis)."""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Iterator

import pytest
import redis

from features.definitions import FeatureView
from features.engine import FeatureEngine
from features.exceptions import FeatureError, OffsetRegressionError, StaleOffsetError
from features.partitioning import kafka_partition
from features.records import Event
from features.store import FeatureStore, MemoryFeatureStore, SourcePosition
from features.views import VITALS_VIEW

T0 = 1_700_000_000_000
VALUES = {"hr": 80.0, "rr": 12.0, "spo2": 98.0, "temp": 37.0, "sbp": 120.0, "dbp": 80.0}


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration),
                        pytest.param("cluster", marks=pytest.mark.integration)])
def env(request: pytest.FixtureRequest) -> Iterator[tuple[FeatureStore, object]]:
    # a unique view name per test: keys never collide with other tests or runs, and are easy to clean up
    view = dataclasses.replace(VITALS_VIEW, name=f"test-{uuid.uuid4().hex[:10]}")
    if request.param == "memory":
        yield MemoryFeatureStore(), view
        return
    from features.redis_store import RedisFeatureStore

    # tests/conftest.py: the session's Redis (its own when none answers), or the session's 3-master Redis Cluster
    client = request.getfixturevalue("client" if request.param == "redis" else "cluster_client")
    try:
        yield RedisFeatureStore(client), view
    finally:
        _delete_view_keys(client, view)


def _delete_view_keys(client: redis.Redis, view: FeatureView) -> None:
    """Every key of ``view`` (test views have unique names)."""
    keys = list(client.scan_iter(match=f"dl:*:fv:{view.name}:*", count=1000))
    if keys:
        client.delete(*keys)


def events(start_offset: int, n: int, entities: str = "ab", t0: int = T0, step: int = 7_000) -> list[Event]:
    out = []
    for i in range(n):
        vals = dict(VALUES, hr=60.0 + (i * 7) % 50, sbp=110.0 + i)
        out.append(
            Event(entities[i % len(entities)], t0 + i * step, vals, offset=start_offset + i, partition=0)
        )
    return out


def run_batch(store: FeatureStore, view, pos: SourcePosition, batch: list[Event], wm: int | None = None):
    states, off = store.load(view, pos, {e.entity_id for e in batch})
    res = FeatureEngine(view).process(states, batch, watermark_ms=wm, min_offset=off)
    store.save(
        view, pos, states, expected_offset=off, new_offset=max(off, res.last_offset), ttl_ms=view.retention_ms
    )
    return res


def test_is_a_feature_store(env) -> None:
    store, _ = env
    assert isinstance(store, FeatureStore)


def test_load_unknown_entities(env) -> None:
    store, view = env
    states, off = store.load(view, SourcePosition("g", "vitals", 0), ["nobody", "nobody-else"])
    assert off == -1 and set(states) == {"nobody", "nobody-else"} and all(s.is_empty for s in states.values())


def test_save_load_roundtrip(env) -> None:
    store, view = env
    pos = SourcePosition("g", "vitals", 0)
    res = run_batch(store, view, pos, events(0, 20))
    assert store.last_offset(view, pos) == 19
    states, off = store.load(view, pos, ["a", "b"])
    assert off == 19
    last_a = [vec for e, vec in res.vectors if e.entity_id == "a"][-1]
    now = [e.ts_ms for e, _ in res.vectors if e.entity_id == "a"][-1]
    got = states["a"].features(view, now)
    assert got == last_a or all(
        math.isclose(got[k], last_a[k]) or (math.isnan(got[k]) and math.isnan(last_a[k])) for k in got
    )
    raw = store.raw_state(view, pos, "a")
    assert raw and all(k.isdigit() for k in raw)
    assert dict(states["a"].to_redis()[0]) == {}  # loaded state is clean


def test_offset_cas_refuses_a_stale_writer(env) -> None:
    store, view = env
    pos = SourcePosition("g", "vitals", 1)
    run_batch(store, view, pos, events(0, 10))
    before = store.raw_state(view, pos, "a")
    states, off = store.load(view, pos, ["a"])
    FeatureEngine(view).process(
        states, events(10, 4, "a", t0=T0 + 100_000), watermark_ms=None, min_offset=off
    )
    with pytest.raises(StaleOffsetError) as info:
        store.save(view, pos, states, expected_offset=5, new_offset=13, ttl_ms=view.retention_ms)
    assert info.value.actual == 9 and info.value.expected == 5
    assert store.raw_state(view, pos, "a") == before and store.last_offset(view, pos) == 9
    assert states["a"].is_dirty  # nothing was marked saved
    with pytest.raises(StaleOffsetError):  # a fresh writer must not overwrite either
        store.save(view, pos, states, expected_offset=-1, new_offset=13, ttl_ms=view.retention_ms)
    store.save(view, pos, states, expected_offset=9, new_offset=13, ttl_ms=view.retention_ms)
    assert store.last_offset(view, pos) == 13 and store.raw_state(view, pos, "a") != before


def test_offset_cas_refuses_a_writer_ahead_of_the_store(env) -> None:
    """A writer whose cache is ahead of the store (a Redis failover lost the last writes) must reload, not save:
    the CAS refuses any expected offset other than the stored one, above it too."""
    store, view = env
    pos = SourcePosition("g", "vitals", 7)
    run_batch(store, view, pos, events(0, 6))  # the store is at 5
    before = store.raw_state(view, pos, "a")
    states, _ = store.load(view, pos, ["a"])
    states["a"].apply(view, events(20, 1, "a", t0=T0 + 50_000)[0])
    with pytest.raises(StaleOffsetError) as info:
        store.save(view, pos, states, expected_offset=9, new_offset=20, ttl_ms=view.retention_ms)
    assert (info.value.expected, info.value.actual) == (9, 5) and not isinstance(info.value, OffsetRegressionError)
    assert store.raw_state(view, pos, "a") == before and store.last_offset(view, pos) == 5


def test_offsets_only_move_forward(env) -> None:
    store, view = env
    pos = SourcePosition("g", "vitals", 2)
    run_batch(store, view, pos, events(0, 6))
    states, _ = store.load(view, pos, ["a"])
    states["a"].apply(view, events(99, 1, "a")[0])
    with pytest.raises(OffsetRegressionError):
        store.save(view, pos, states, expected_offset=5, new_offset=4, ttl_ms=1000)
    assert store.last_offset(view, pos) == 5
    store.save(view, pos, {}, expected_offset=5, new_offset=5, ttl_ms=1000)  # standing still is fine
    assert store.last_offset(view, pos) == 5


def test_ttl_is_set_on_touched_keys(env) -> None:
    store, view = env
    pos = SourcePosition("g", "vitals", 3)
    run_batch(store, view, pos, events(0, 4))
    ttl = store.entity_ttl_ms(view, pos, "a")
    assert ttl is not None and view.retention_ms - 60_000 < ttl <= view.retention_ms
    assert store.entity_ttl_ms(view, pos, "zz") is None


def test_replay_changes_nothing(env) -> None:
    store, view = env
    pos = SourcePosition("g", "vitals", 4)
    first = events(0, 12)
    run_batch(store, view, pos, first)
    snapshot = {e: store.raw_state(view, pos, e) for e in "ab"}
    res = run_batch(store, view, pos, first)  # consumer restarted from an older committed offset
    assert res.skipped == 12 and res.vectors == []
    assert {e: store.raw_state(view, pos, e) for e in "ab"} == snapshot
    assert store.last_offset(view, pos) == 11


def test_reprocessing_after_a_crash_is_deterministic(env) -> None:
    store, view = env
    pos = SourcePosition("g", "vitals", 5)
    run_batch(store, view, pos, events(0, 10))
    second = events(10, 10, t0=T0 + 70_000)
    outputs = []
    for _ in range(2):  # the first attempt "crashes" before saving: only the encoded bytes are compared
        states, off = store.load(view, pos, {"a", "b"})
        FeatureEngine(view).process(states, second, watermark_ms=None, min_offset=off)
        outputs.append({e: s.to_redis() for e, s in states.items()})
    assert outputs[0] == outputs[1]


def test_expired_buckets_are_deleted(env) -> None:
    store, view = env
    pos = SourcePosition("g", "vitals", 6)
    run_batch(store, view, pos, events(0, 3, "a"))
    old = set(store.raw_state(view, pos, "a"))
    later = T0 + view.retention_ms + 100_000
    run_batch(store, view, pos, events(3, 2, "a", t0=later))
    now = set(store.raw_state(view, pos, "a"))
    assert old and not (old & now) and len(now) == 1


def test_read_features_across_partitions(env) -> None:
    store, view = env
    group = "serve"
    parts = 3
    by_part: dict[int, list[Event]] = {}
    for i, entity in enumerate(["p1", "p2", "p3", "p4", "p5"]):
        p = kafka_partition(entity.encode(), parts)
        by_part.setdefault(p, []).append(
            Event(entity, T0 + i, dict(VALUES, hr=50.0 + i), offset=len(by_part.get(p, [])))
        )
    for p, evs in by_part.items():
        run_batch(store, view, SourcePosition(group, view.source_topic, p), evs)
    got = store.read_features(
        view,
        ["p1", "p3", "p5", "ghost"],
        T0 + 10,
        partition_of=lambda e: kafka_partition(e.encode(), parts),
        group=group,
    )
    assert [got[e]["hr_mean_5m"] for e in ("p1", "p3", "p5")] == [50.0, 52.0, 54.0]
    assert math.isnan(got["ghost"]["hr_mean_5m"])
    assert list(got["p1"]) == list(view.feature_names)


def test_latest_vector_is_saved_atomically_and_read_in_one_call(env) -> None:
    store, view = env
    parts = 3
    part = lambda e: kafka_partition(e.encode(), parts)  # noqa: E731
    latest: dict[str, tuple[int, dict[str, float]]] = {}
    for i, entity in enumerate(["p1", "p2"]):
        pos = SourcePosition("serve", view.source_topic, part(entity))
        states, off = store.load(view, pos, {entity})
        batch = [Event(entity, T0 + i * 1000 + k, dict(VALUES, hr=60.0 + k), offset=off + 1 + k) for k in range(3)]
        res = FeatureEngine(view).process(states, batch, watermark_ms=None, min_offset=off)
        ev, vec = res.vectors[-1]
        latest = {entity: (ev.ts_ms, vec)}
        store.save(view, pos, states, expected_offset=off, new_offset=res.last_offset, ttl_ms=view.retention_ms,
                   latest=latest)
    got = store.read_latest(view, ["p1", "p2", "ghost"], partition_of=part, group="serve")
    assert set(got) == {"p1", "p2"}  # never-seen entities are absent, not zeros
    as_of, vec = got["p2"]
    assert as_of == latest["p2"][0] and vec["hr_mean_5m"] == latest["p2"][1]["hr_mean_5m"] == 61.0
    ttl = store.entity_ttl_ms(view, SourcePosition("serve", view.source_topic, part("p2")), "p2", latest=True)
    assert ttl is not None and view.retention_ms - 60_000 < ttl <= view.retention_ms  # it expires with the state
    assert math.isnan(vec["sbp_slope_30m"]) == math.isnan(latest["p2"][1]["sbp_slope_30m"])
    # it is what an exact recomputation at that time gives
    exact = store.read_features(view, ["p2"], as_of, partition_of=part, group="serve")["p2"]
    assert exact["hr_mean_5m"] == vec["hr_mean_5m"]
    # a stale writer writes neither the state nor the latest vector
    pos = SourcePosition("serve", view.source_topic, part("p1"))
    states, off = store.load(view, pos, {"p1"})
    with pytest.raises(StaleOffsetError):
        store.save(view, pos, states, expected_offset=off - 1, new_offset=off + 5, ttl_ms=view.retention_ms,
                   latest={"p1": (0, {"hr_mean_5m": -1.0})})
    assert store.read_latest(view, ["p1"], partition_of=part, group="serve")["p1"][1]["hr_mean_5m"] != -1.0


def test_latest_matrix_rows_follow_the_request_across_partitions(env) -> None:
    store, view = env
    parts = 3
    part = lambda e: kafka_partition(e.encode(), parts)  # noqa: E731
    entities = [f"p{i}" for i in range(12)]
    assert len({part(e) for e in entities}) == parts
    for p in range(parts):
        pos = SourcePosition("serve", view.source_topic, p)
        mine = [e for e in entities if part(e) == p]
        latest = {e: (T0 + i, {"hr_mean_5m": 60.0 + i, "rr_mean_5m": float("nan")}) for i, e in enumerate(entities)
                  if e in mine}
        store.save(view, pos, {}, expected_offset=-1, new_offset=0, ttl_ms=view.retention_ms, latest=latest)
    asked = ["ghost", *reversed(entities)]
    m = store.read_latest_matrix(view, asked, partition_of=part, group="serve")
    hr, rr = view.feature_names.index("hr_mean_5m"), view.feature_names.index("rr_mean_5m")
    assert m.ids == asked and m.feature_names == view.feature_names and m.values.shape == (13, len(view.feature_names))
    assert m.found.tolist() == [False] + [True] * 12 and m.as_of[0] == -1 and all(math.isnan(x) for x in m.values[0].tolist())
    assert m.values[1:, hr].tolist() == [60.0 + i for i in reversed(range(12))]
    assert m.as_of[1:].tolist() == [T0 + i for i in reversed(range(12))]
    assert all(math.isnan(x) for x in m.values[1:, rr].tolist())
    as_dicts = store.read_latest(view, asked, partition_of=part, group="serve")
    assert list(as_dicts) == asked[1:]  # the dict form: found entities, request order
    assert [(t, v["hr_mean_5m"]) for t, v in as_dicts.values()] == list(zip(m.as_of[1:].tolist(),
                                                                            m.values[1:, hr].tolist(), strict=True))


def test_redis_store_needs_a_bytes_client() -> None:
    from features.redis_store import RedisFeatureStore

    with pytest.raises(FeatureError, match="decode_responses=False"):
        RedisFeatureStore(redis.Redis(decode_responses=True))


def test_save_many_applies_each_partition_and_raises_the_stale_one(env) -> None:
    from features.store import SaveRequest

    store, view = env
    p0, p1, p2 = (SourcePosition("g", "vitals", p) for p in (0, 1, 2))
    run_batch(store, view, p1, events(0, 4))  # p1 is at offset 3: a request expecting -1 there is stale
    engine = FeatureEngine(view)
    requests = []
    for pos, expected in ((p0, -1), (p1, -1), (p2, -1)):
        states, _ = store.load(view, pos, ["a", "b"])
        engine.process(states, events(10, 4, t0=T0 + 50_000), watermark_ms=None, min_offset=-1)
        requests.append(SaveRequest(pos, states, expected, 13, view.retention_ms, T0 + 60_000))
    with pytest.raises(StaleOffsetError) as info:
        store.save_many(view, requests)
    assert info.value.expected == -1 and info.value.actual == 3
    assert [store.last_offset(view, p) for p in (p0, p1, p2)] == [13, 3, 13]  # the others were applied
    assert store.position(view, p2) == (13, T0 + 60_000)
    assert not requests[0].states["a"].is_dirty and requests[1].states["a"].is_dirty  # only saved ones marked
    store.save_many(view, [])  # nothing to do is fine


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["redis", "cluster"])
def test_redis_save_many_survives_a_script_flush(backend: str, request: pytest.FixtureRequest) -> None:
    from features.redis_store import RedisFeatureStore
    from features.store import SaveRequest

    client = request.getfixturevalue("client" if backend == "redis" else "cluster_client")
    view = dataclasses.replace(VITALS_VIEW, name=f"test-{uuid.uuid4().hex[:10]}")
    store = RedisFeatureStore(client)
    try:
        client.script_flush()  # as after a restart or failover: EVALSHA answers NOSCRIPT
        states, _ = store.load(view, SourcePosition("g", "vitals", 0), ["a"])
        FeatureEngine(view).process(states, events(0, 3, "a"), watermark_ms=None, min_offset=-1)
        store.save_many(view, [SaveRequest(SourcePosition("g", "vitals", 0), states, -1, 2, view.retention_ms)])
        assert store.last_offset(view, SourcePosition("g", "vitals", 0)) == 2
    finally:
        _delete_view_keys(client, view)


def test_a_state_of_many_buckets_is_saved_and_expired_whole(env) -> None:
    """1,300 buckets: the save's HSET and HDEL of one hash span several chunks of the script (1,000 arguments
    each), and every bucket arrives and every expired one goes."""
    from features.state import EntityState

    store, view = env
    pos = SourcePosition("g", "vitals", 6)
    state = EntityState()
    for k in range(1300):
        state.apply(view, Event("big", T0 + k * view.bucket_ms, dict(VALUES, hr=50.0 + k % 90)))
    store.save(view, pos, {"big": state}, expected_offset=-1, new_offset=0, ttl_ms=view.retention_ms)
    assert repr(store.load(view, pos, {"big"})[0]["big"].buckets(view)) == repr(state.buckets(view))
    state.expire(T0 + 1250 * view.bucket_ms)
    store.save(view, pos, {"big": state}, expected_offset=0, new_offset=1, ttl_ms=view.retention_ms)
    loaded = store.load(view, pos, {"big"})[0]["big"].buckets(view)
    assert 40 < len(loaded) < 60 and repr(loaded) == repr(state.buckets(view))


def test_a_started_save_writes_what_save_many_writes_and_reads_see_it(env) -> None:
    """start_save_many: the same stored bytes and offsets as save_many; a read right after the start (without the
    ticket's wait) sees the save; the ticket then answers."""
    from features.store import SaveRequest

    store, view = env
    twin_view = dataclasses.replace(view, name=view.name + "-twin")
    engine = FeatureEngine(view)
    tickets, stored = [], []
    for v, start in ((view, True), (twin_view, False)):
        requests = []
        for p in (0, 1):
            pos = SourcePosition("g", "vitals", p)
            states, _ = store.load(v, pos, ["a", "b"])
            engine.process(states, events(0, 6), watermark_ms=None, min_offset=-1)
            requests.append(SaveRequest(pos, states, -1, 5, view.retention_ms, T0 + 9_000))
        if start:
            tickets.append(store.start_save_many(v, requests))
            assert all(not st.is_dirty for r in requests for st in r.states.values())  # taken at the start
        else:
            store.save_many(v, requests)
        pos = SourcePosition("g", "vitals", 1)
        stored.append((store.position(v, pos), store.load(v, pos, ["a", "b"])[0]["a"].features(v, T0 + 40_000),
                       {k: b for k, b in (store.raw_state(v, pos, "b") if hasattr(store, "raw_state")
                                          else {}).items()}))
    tickets[0].wait()
    tickets[0].wait()  # the same answer again
    assert stored[0] == stored[1] and stored[0][0] == (5, T0 + 9_000)
    if hasattr(store, "client"):
        _delete_view_keys(store.client, twin_view)


def test_a_change_after_a_started_save_goes_in_the_next_one(env) -> None:
    """The states' changes are taken at the start: a change made while the save is unanswered stays dirty and is
    written by the next save (a lost update otherwise)."""
    from features.store import SaveRequest

    store, view = env
    pos = SourcePosition("g", "vitals", 0)
    engine = FeatureEngine(view)
    states, _ = store.load(view, pos, ["a"])
    engine.process(states, events(0, 2, "a"), watermark_ms=None, min_offset=-1)
    ticket = store.start_save_many(view, [SaveRequest(pos, states, -1, 1, view.retention_ms)])
    engine.process(states, events(2, 2, "a", t0=T0 + 14_000), watermark_ms=None, min_offset=1)  # same bucket
    assert states["a"].is_dirty
    ticket.wait()
    store.save_many(view, [SaveRequest(pos, states, 1, 3, view.retention_ms)])
    reloaded, offset = store.load(view, pos, ["a"])
    assert offset == 3
    assert reloaded["a"].features(view, T0 + 30_000) == states["a"].features(view, T0 + 30_000)


def test_a_started_save_refused_raises_on_every_wait(env) -> None:
    from features.store import SaveRequest

    store, view = env
    pos = SourcePosition("g", "vitals", 0)
    run_batch(store, view, pos, events(0, 4))  # offset 3 stored
    states, _ = store.load(view, pos, ["a"])
    FeatureEngine(view).process(states, events(4, 2, "a", t0=T0 + 60_000), watermark_ms=None, min_offset=3)
    ticket = store.start_save_many(view, [SaveRequest(pos, states, -1, 5, view.retention_ms)])
    for _ in range(2):
        with pytest.raises(StaleOffsetError) as info:
            ticket.wait()
        assert info.value.actual == 3
    assert store.last_offset(view, pos) == 3  # the owner heard it; the store's next read does not raise it again


@pytest.mark.integration
def test_a_refused_started_save_nobody_waited_for_fails_the_next_read(client) -> None:
    """On a single Redis the started save is answered later: a read before anybody waited gets its error (the
    caller learns that the save it built on failed), and only once."""
    from features.redis_store import RedisFeatureStore
    from features.store import SaveRequest

    view = dataclasses.replace(VITALS_VIEW, name=f"test-{uuid.uuid4().hex[:10]}")
    store = RedisFeatureStore(client)
    pos = SourcePosition("g", "vitals", 0)
    try:
        run_batch(store, view, pos, events(0, 4))
        states, _ = store.load(view, pos, ["a"])
        ticket = store.start_save_many(view, [SaveRequest(pos, states, -1, 5, view.retention_ms)])
        assert not ticket.done
        with pytest.raises(StaleOffsetError):
            store.load(view, pos, ["a"])
        assert store.load(view, pos, ["a"])[1] == 3
        with pytest.raises(StaleOffsetError):
            ticket.wait()  # the owner still hears it
    finally:
        _delete_view_keys(client, view)


def test_a_ticket_waited_for_by_two_threads_reads_its_answers_once() -> None:
    import threading
    import time

    from features.store import SaveTicket

    calls = []

    def finish() -> None:
        calls.append(1)
        time.sleep(0.05)
        raise StaleOffsetError(1, 2)

    ticket, outcomes = SaveTicket(finish), []

    def waiter() -> None:
        try:
            ticket.wait()
        except StaleOffsetError as exc:
            outcomes.append(exc.actual)

    threads = [threading.Thread(target=waiter) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and outcomes == [2, 2] and ticket.done
