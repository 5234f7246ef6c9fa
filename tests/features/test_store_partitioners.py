"""Serving reads find every entity whatever partitioner the producer used, and an entity that changes partition is
detected: the same contract over MemoryFeatureStore, one Redis and a real 3-master Redis Cluster (the ``env``
fixture of ``test_store_contract``)."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import pytest

from features.partitioning import kafka_partition
from features.store import SourcePosition
from tests.features.test_store_contract import T0, env  # noqa: F401 - the parametrised store fixture

PARTS = 6


def murmur2(e: str) -> int:
    """The Java client's partitioner (librdkafka's murmur2_random)."""
    return kafka_partition(e.encode(), PARTS)


def crc32(e: str) -> int:
    """librdkafka's default for keyed records (consistent_random: CRC-32 of the key), e.g. kcat, confluent-kafka."""
    return zlib.crc32(e.encode()) % PARTS


def custom(e: str) -> int:
    """A home-made partitioner: by the last character."""
    return ord(e[-1]) % PARTS


def write_latest(store, view, entities: list[str], part: Callable[[str], int], hr0: float = 60.0,  # noqa: ANN001
                 group: str = "serve") -> None:
    for p in range(PARTS):
        mine = [e for e in entities if part(e) == p]
        if not mine:
            continue
        pos = SourcePosition(group, view.source_topic, p)
        off = store.last_offset(view, pos)
        latest = {e: (T0 + i, {"hr_mean_5m": hr0 + i}) for i, e in enumerate(entities) if e in mine}
        store.save(view, pos, {}, expected_offset=off, new_offset=off + 1, ttl_ms=view.retention_ms, latest=latest)


@pytest.mark.parametrize("producer", [murmur2, crc32, custom], ids=["murmur2", "crc32", "custom"])
def test_reads_find_every_entity_whatever_the_producers_partitioner(env, producer) -> None:  # noqa: ANN001, F811
    store, view = env
    entities = [f"patient-{i}" for i in range(50)]
    if producer is not murmur2:  # the guess alone would miss most of them (the issue: 14 of 50 found)
        assert sum(producer(e) != murmur2(e) for e in entities) >= 30
    write_latest(store, view, entities, producer)
    hr = view.feature_names.index("hr_mean_5m")
    for guess in (None, murmur2):  # no guess, or the guess serving code made before (wrong for crc32 / custom)
        m = store.read_latest_matrix(view, entities, partition_of=guess, group="serve")
        assert m.found.all(), [e for e, f in zip(entities, m.found.tolist(), strict=True) if not f]
        assert m.values[:, hr].tolist() == [60.0 + i for i in range(50)]
        again = store.read_latest_matrix(view, [*reversed(entities), "ghost"], partition_of=guess, group="serve")
        assert again.found.tolist() == [True] * 50 + [False]
    exact = store.read_features(view, entities[:3], T0, group="serve")
    assert all(math.isnan(v["hr_mean_5m"]) for v in exact.values())  # no bucket state was saved, only vectors
    assert store.conflicts.count == 0


def test_an_entity_on_a_second_partition_is_counted_and_reads_follow_it(env) -> None:  # noqa: ANN001, F811
    """A producer changed its partitioner: the entity's next events come from another partition. Detected (once
    logged, counted), and the serving read (also one that remembered the old partition) returns the new vector."""
    store, view = env
    if hasattr(store, "reads"):  # a Redis reader re-checks remembered partitions every 10 s: here at every read
        store.reads.revalidate_s = 0.0
    entities = [f"patient-{i}" for i in range(20)]
    write_latest(store, view, entities, murmur2)
    hr = view.feature_names.index("hr_mean_5m")
    before = store.read_latest_matrix(view, entities, group="serve")
    assert before.values[:, hr].tolist() == [60.0 + i for i in range(20)]
    write_latest(store, view, entities, crc32, hr0=100.0)
    moved = [e for e in entities if crc32(e) != murmur2(e)]
    assert moved and store.conflicts.count == len(moved)
    after = store.read_latest_matrix(view, entities, group="serve")
    assert after.values[:, hr].tolist() == [100.0 + i for i in range(20)]
    write_latest(store, view, entities, crc32, hr0=200.0)  # same partitions again: no new conflict
    assert store.conflicts.count == len(moved)


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["redis", "cluster"])
def test_a_remembered_partition_is_rechecked_when_the_vector_is_gone(backend: str, request) -> None:  # noqa: ANN001
    """A reader that remembers an entity's partition asks the index again when the vector is not there (it expired
    at the old partition after the entity moved), without waiting for the re-check period."""
    import dataclasses
    import uuid

    from features.redis_store import RedisFeatureStore
    from features.views import VITALS_VIEW
    from tests.features.test_store_contract import _delete_view_keys

    client = request.getfixturevalue("client" if backend == "redis" else "cluster_client")
    view = dataclasses.replace(VITALS_VIEW, name=f"test-{uuid.uuid4().hex[:10]}")
    store = RedisFeatureStore(client)
    try:
        write_latest(store, view, ["e1"], lambda e: 1)
        assert store.read_latest_matrix(view, ["e1"], group="serve").found.all()
        client.delete(store.reads._known[store.reads._scope(view, "serve")]["e1"][1])  # the old vector expired
        write_latest(store, view, ["e1"], lambda e: 4, hr0=7.0)  # the entity's events now come from partition 4
        m = store.read_latest_matrix(view, ["e1"], group="serve")
        assert m.found.all() and m.values[0, view.feature_names.index("hr_mean_5m")] == 7.0
    finally:
        _delete_view_keys(client, view)
