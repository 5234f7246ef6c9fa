"""The state cache's worker-wide bound: least recently used entities out, reloaded from the store when they come
back, with the same window values as an unbounded cache (and as no cache at all)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from confluent_kafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from features.store import MemoryFeatureStore
from models.registry import Registry
from streams.exceptions import ConfigError
from streams.runtime.state_cache import DEFAULT_MAX_ENTITIES, StateCache
from streams.settings import PipelineSettings, Settings

from . import pipeline_fakes as fakes


# ------------------------------------------------------------------------------------------- StateCache
def test_the_bound_holds_across_partitions_least_recently_used_out_first() -> None:
    c: StateCache[str] = StateCache(max_entities=3)
    c.put(0, 5, {"a": "A", "b": "B"})
    c.put(1, 7, {"x": "X"})
    c.put(0, 6, {"a": "A2"})  # "a" is now the most recent; "b" the least
    c.put(2, 1, {"m": "M"})
    assert len(c) == 3 and c.evicted == 1
    assert c.take(0) == 6 and c.get(0, ["a", "b"]) == {"a": "A2"}
    assert c.count(0) == 1 and c.count(1) == 1 and c.count(2) == 1
    c.put(0, 6, {})  # reading and giving back touches nothing: the order stays x, a, m
    c.put(3, 0, {"q": "Q", "r": "R"})  # evicts "x" (partition 1) then "a" (partition 0)
    assert c.take(1) == 7 and c.get(1, ["x"]) == {} and c.get(0, ["a"]) == {}
    assert c.get(2, ["m"]) == {"m": "M"} and c.count(3) == 2 and c.evicted == 3


def test_a_partition_not_given_back_is_dropped_at_its_next_take() -> None:
    c: StateCache[str] = StateCache(max_entities=10)
    c.put(0, 5, {"a": "A"})
    c.put(1, 5, {"x": "X"})
    assert c.take(0) == 5  # the batch mutates "a", then fails: no put
    assert c.take(0) is None and c.get(0, ["a"]) == {} and len(c) == 1
    assert c.take(1) == 5 and c.get(1, ["x"]) == {"x": "X"}


def test_forget_clears_only_the_given_partitions() -> None:
    c: StateCache[str] = StateCache(max_entities=10)
    for p in range(3):
        c.put(p, p, {f"e{p}": "S"})
    c.forget(p for p in (0, 2))
    assert len(c) == 1 and c.take(0) is None and c.take(2) is None and c.take(1) == 1


def test_zero_disables_the_cache() -> None:
    c: StateCache[str] = StateCache(max_entities=0)
    c.put(0, 3, {"a": "A"})
    assert len(c) == 0 and c.take(0) == 3 and c.get(0, ["a"]) == {}


# ------------------------------------------------------------------------------------------- the handler
def test_handler_cache_is_bounded_for_the_whole_worker(registry: Registry) -> None:
    store = fakes.CountingStore()
    handler = fakes.make_handler(registry, store, cache_max_entities=4)
    offsets = [0, 0, 0]
    for i in range(12):  # 12 entities over 3 partitions: 4 each
        p = i % 3
        fakes.run(handler, [fakes.msg(offsets[p], f"e{i}", partition=p)])
        offsets[p] += 1
        assert len(handler.cache) <= 4
    assert len(handler.cache) == 4
    assert sum(handler.cache.count(p) for p in range(3)) == 4
    registry_ = handler.metrics.registry
    assert registry_.get_sample_value("driftline_state_cache_entities") == 4
    assert registry_.get_sample_value("driftline_state_cache_evictions_total") == 8 == handler.cache.evicted


def test_an_evicted_entity_is_reloaded_with_its_saved_state(registry: Registry) -> None:
    store = fakes.CountingStore()
    handler = fakes.make_handler(registry, store, cache_max_entities=1)
    fakes.run(handler, [fakes.msg(0, "a", hr=80.0)])
    fakes.run(handler, [fakes.msg(0, "b", hr=60.0, partition=1)])  # "a" goes (partition 0 stays trusted)
    assert store.loaded[-1] == {"b"}
    result = fakes.run(handler, [fakes.msg(1, "a", fakes.T0 + 1000, hr=100.0)])
    assert store.loaded[-1] == {"a"}  # reloaded, not read from memory
    [pred] = fakes.predictions(result)
    assert pred.features == {"hr_mean_1m": 90.0, "hr_count_1m": 2.0}  # each event once
    fakes.run(handler, [fakes.msg(2, "a", fakes.T0 + 2000)])
    assert store.loaded[-1] == {"a"}  # "a" is cached again: no new load (the last one is still the reload)
    assert len(store.loaded) == 3


def test_revoke_clears_the_partition_and_leaves_the_others(registry: Registry) -> None:
    store = fakes.CountingStore()
    handler = fakes.make_handler(registry, store)
    fakes.run(handler, [fakes.msg(0, "a"), fakes.msg(0, "x", partition=1)])
    handler.on_revoke([TopicPartition(fakes.TOPIC, 0)])
    assert handler.cache.count(0) == 0 and handler.cache.count(1) == 1
    handler.on_assign([TopicPartition(fakes.TOPIC, 0)])
    fakes.run(handler, [fakes.msg(1, "a", fakes.T0 + 1000), fakes.msg(1, "x", fakes.T0 + 1000, partition=1)])
    assert store.loaded[-1] == {"a"}  # partition 0 reloaded, partition 1 served from the cache


# ------------------------------------------------------------------------------------------- property
STEP = st.one_of(
    st.tuples(st.just("batch"),
              st.lists(st.tuples(st.integers(0, 2), st.sampled_from("abc"), st.integers(0, 30),
                                 st.integers(40, 140)), max_size=8),
              st.integers(1, 6),  # how many of the undelivered records the poll returns
              st.booleans()),  # delivered (finalize) or failed (rewound: polled again by the next step)
    st.tuples(st.just("revoke"), st.integers(0, 2)),
)


def _outputs(result) -> list[tuple]:  # noqa: ANN001
    out = []
    for o in result.outputs:
        body = orjson.loads(o.value)
        out.append((o.topic, o.key, body.get("entity_id"), body.get("features"), body.get("reason")))
    return out


def _replay(registry: Registry, cap: int, steps: list[tuple]) -> tuple[list, dict]:
    store = MemoryFeatureStore()
    handler = fakes.make_handler(registry, store, cache_max_entities=cap)
    offsets = [0, 0, 0]
    seen: list = []
    queue: list = []  # produced, not yet delivered: a failed batch is polled again (maybe fewer records)
    for step in steps:
        if step[0] == "revoke":
            handler.on_revoke([TopicPartition(fakes.TOPIC, step[1])])
            handler.on_assign([TopicPartition(fakes.TOPIC, step[1])])
            continue
        _, events, n, delivered = step
        for p, entity, second, hr in events:
            queue.append(fakes.msg(offsets[p], f"{entity}{p}", fakes.T0 + second * 1000, float(hr), partition=p))
            offsets[p] += 1
        if not queue:
            continue
        result = fakes.run(handler, queue[:n], finalize=delivered)
        if delivered:
            seen += _outputs(result)
            del queue[:n]
        assert len(handler.cache) <= cap
    if queue:
        seen += _outputs(fakes.run(handler, queue))
    return seen, fakes.snapshot(store)


@settings(max_examples=100, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=12), st.integers(1, 4))
def test_a_bounded_cache_gives_the_same_windows_as_an_unbounded_one(registry: Registry, steps: list[tuple],
                                                                      cap: int) -> None:
    """Outputs (predictions with their features, dead letters) and the stored states: bounded == unbounded ==
    no cache at all (every state from the store: the ground truth)."""
    got = _replay(registry, cap, steps)
    assert got == _replay(registry, 10**6, steps)
    assert got == _replay(registry, 0, steps)


# ------------------------------------------------------------------------------------------- settings
def test_the_bound_is_a_setting_from_env_and_toml(tmp_path: Path) -> None:
    assert PipelineSettings().cache_max_entities == DEFAULT_MAX_ENTITIES
    assert Settings.from_env({"DRIFTLINE_CACHE_MAX_ENTITIES": "123"}).pipeline.cache_max_entities == 123
    path = tmp_path / "d.toml"
    path.write_text("[pipeline]\ncache_max_entities = 7\n")
    assert Settings.from_env({}, path).pipeline.cache_max_entities == 7
    assert Settings.from_env({"DRIFTLINE_CACHE_MAX_ENTITIES": "9"}, path).pipeline.cache_max_entities == 9
    with pytest.raises(ConfigError):
        Settings.from_env({"DRIFTLINE_CACHE_MAX_ENTITIES": "-1"})
    with pytest.raises(ConfigError):
        Settings.from_env({"DRIFTLINE_CACHE_MAX_ENTITIES": "lots"})


def test_a_cached_state_mutated_by_a_failed_batch_is_never_reused(registry: Registry) -> None:
    """The retry may be a shorter poll: an entity the failed batch touched but the retry does not must still
    come from the store, not from the cache the failed attempt mutated."""
    store = fakes.CountingStore()
    handler = fakes.make_handler(registry, store)
    fakes.run(handler, [fakes.msg(0, "a", hr=80.0)])  # "a" cached at offset 0
    failed = [fakes.msg(1, "b", fakes.T0 + 1000), fakes.msg(2, "a", fakes.T0 + 1000, hr=100.0)]
    fakes.run(handler, failed, finalize=False)  # mutated the cached "a", then the delivery failed
    fakes.run(handler, failed[:1])  # the retry polls only offset 1
    [pred] = fakes.predictions(fakes.run(handler, failed[1:]))
    assert pred.features == {"hr_mean_1m": 90.0, "hr_count_1m": 2.0}
