"""The pipeline's write-through state cache: no Redis load for entities it saved itself, never trusted after a
failed batch, a lost partition or another writer, and the latest vector saved with the state."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

from features.exceptions import StaleOffsetError
from features.store import MemoryFeatureStore
from models.registry import Registry

from . import pipeline_fakes as fakes


def test_second_batch_of_known_entities_needs_no_load(registry: Registry) -> None:
    store = fakes.CountingStore()
    handler = fakes.make_handler(registry, store)
    fakes.run(handler, [fakes.msg(0, "a"), fakes.msg(1, "b")])
    fakes.run(handler, [fakes.msg(2, "a", fakes.T0 + 1000), fakes.msg(3, "b", fakes.T0 + 2000)])
    assert store.loaded == [{"a", "b"}]
    fakes.run(handler, [fakes.msg(4, "c", fakes.T0 + 3000), fakes.msg(5, "a", fakes.T0 + 3000)])
    assert store.loaded[-1] == {"c"}  # only the new entity


def test_a_failed_batch_is_retried_from_redis_not_from_mutated_memory(registry: Registry) -> None:
    store = fakes.CountingStore()
    handler = fakes.make_handler(registry, store)
    fakes.run(handler, [fakes.msg(0, "a", hr=80.0)])
    batch = [fakes.msg(1, "a", fakes.T0 + 1000, hr=100.0)]
    fakes.run(handler, batch, finalize=False)  # delivery failed: no save
    retried = fakes.run(handler, batch)
    [pred] = fakes.predictions(retried)
    assert pred.features["hr_count_1m"] == 2.0  # not 3: the failed attempt's mutation was thrown away
    assert store.loaded[-1] == {"a"}


def test_lost_partition_or_another_writer_invalidates_the_cache(registry: Registry) -> None:
    store = fakes.CountingStore()
    handler = fakes.make_handler(registry, store)
    fakes.run(handler, [fakes.msg(0, "a")])
    handler.on_revoke([TopicPartition(fakes.TOPIC, 0)])
    fakes.run(handler, [fakes.msg(1, "a", fakes.T0 + 1000)])
    assert store.loaded[-1] == {"a"}  # reloaded after the revoke
    # another worker applies offset 2 behind our back (a zombie's rebalance): our save's CAS refuses
    other = fakes.make_handler(registry, store)
    fakes.run(other, [fakes.msg(2, "a", fakes.T0 + 2000)])
    stale = handler.process([fakes.msg(3, "a", fakes.T0 + 3000)])  # type: ignore[list-item]
    with pytest.raises(StaleOffsetError):
        stale.finalize()
    retried = fakes.run(handler, [fakes.msg(3, "a", fakes.T0 + 3000)])
    [pred] = fakes.predictions(retried)
    assert pred.features["hr_count_1m"] == 4.0  # built on the other writer's state, each event once


def test_latest_vector_is_saved_with_the_state(registry: Registry) -> None:
    store = MemoryFeatureStore()
    handler = fakes.make_handler(registry, store)
    result = fakes.run(handler, [fakes.msg(0, "a", hr=80.0), fakes.msg(1, "a", fakes.T0 + 5000, hr=90.0)])
    last = fakes.predictions(result)[-1]
    got = store.read_latest(fakes.VIEW, ["a"], partition_of=lambda e: 0, group=fakes.GROUP)
    assert got["a"][0] == fakes.T0 + 5000 and got["a"][1] == last.features
