"""The fused pipeline on a real 3-master Redis Cluster (and, for comparison, on one Redis), with slots moved and a
replica promoted while events stream: every event gets exactly one champion prediction (a crash-free run) or at
least one (at-least-once), and the window state in the cluster equals an offline recomputation (nothing lost,
nothing counted twice).

The session's cluster (``tests/conftest.py``: 3 masters + 3 replicas from ``redis-server --cluster-enabled yes``)
is shared: the reshard test moves its topic's slots to other masters and the failover test swaps one master with its
replica; both leave every slot served.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from features.offline import compute_offline
from features.partitioning import kafka_partition
from features.records import parse_record
from features.redis_store import RedisFeatureStore
from features.store import SourcePosition, latest_key_for
from features.views import VITALS_VIEW
from models.registry import Registry
from models.train import build_estimator
from streams import codec
from streams.local.redis_cluster import LocalCluster
from streams.local.simulator import SimConfig, generate
from streams.redis_client import RedisSetupError, make_redis
from streams.runtime.topics import TopicSpec, ensure_topics
from streams.runtime.workers import build_pipeline, control_store
from streams.settings import PipelineSettings, Settings, TopicSettings
from tests.integration.test_scale_out import expected_prediction_ids, produce_all, read_predictions

pytestmark = pytest.mark.integration
PARTITIONS = 6  # as test_scale_out (its helpers count offsets over 6 partitions)
MODEL = "risk"


@dataclasses.dataclass
class Env:
    settings: Settings
    view: object
    sim: list
    cluster: LocalCluster | None


@pytest.fixture(params=["redis", "cluster"])
def env(request: pytest.FixtureRequest, settings: Settings, unique: str, tmp_path: Path) -> Iterator[Env]:
    cluster = request.getfixturevalue("redis_cluster") if request.param == "cluster" else None
    topics = TopicSettings(predictions=f"pred-{unique}", labels=f"labels-{unique}", alerts=f"alerts-{unique}",
                           control=f"control-{unique}", source_partitions=PARTITIONS)
    s = settings.replace(topics=topics, pipeline=PipelineSettings(features_group=f"g-{unique}", batch_max_rows=200),
                         redis_url=cluster.url if cluster is not None else settings.redis_url)
    view = dataclasses.replace(VITALS_VIEW, source_topic=f"vitals-{unique}")
    ensure_topics(s, [TopicSpec(view.source_topic, PARTITIONS), TopicSpec(f"{view.source_topic}.dlq", 1),
                      TopicSpec(s.topics.stale_features(view.source_topic), PARTITIONS),
                      TopicSpec(topics.predictions, 3), TopicSpec(topics.alerts, 1), TopicSpec(topics.control, 1)])
    reg = Registry(s.registry_dir)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, len(view.feature_names)))
    est = build_estimator("logistic").fit(X, (X[:, 0] > 0).astype(int))
    reg.promote(MODEL, reg.register(MODEL, est, feature_names=view.feature_names).version)
    sim = list(generate(SimConfig(entities=60, rate=1000, duration_s=3.0, seed=5, time_scale=30.0)))
    yield Env(s, view, sim, cluster)
    client = make_redis(s.redis_url)
    for key in client.scan_iter(match=f"*g:g-{unique}*".encode(), count=1000):
        client.delete(key)
    control_store(s, client, reg, MODEL).clear()
    client.close()


def assert_state_matches_offline(env: Env) -> None:
    """Each entity's online features (read through the store, on the cluster too) at its last event time equal the
    offline recomputation's row for that event."""
    view, settings = env.view, env.settings
    events = []
    for ev in env.sim:
        e = parse_record(view, ev.key.encode(), codec.encode(ev.value))  # type: ignore[arg-type]
        e.partition = kafka_partition(ev.key.encode(), PARTITIONS)
        events.append(e)
    last = {row.entity_id: row for row in compute_offline(view, events)}  # type: ignore[arg-type]
    client = make_redis(settings.redis_url)
    store = RedisFeatureStore(client)
    try:
        for entity, row in last.items():
            vec = store.read_features(view, [entity], row.ts_ms,  # type: ignore[arg-type]
                                      partition_of=lambda e: kafka_partition(e.encode(), PARTITIONS),
                                      group=settings.pipeline.features_group)[entity]
            for name, value in row.features.items():
                same = (math.isnan(value) and math.isnan(vec[name])) or vec[name] == pytest.approx(
                    value, rel=1e-9, abs=1e-9)
                assert same, (entity, name, value, vec[name])
    finally:
        client.close()


def run_stream(env: Env, during: object = None, workers: int = 2, marks: dict | None = None) -> Counter:
    """Start ``workers`` pipeline workers, produce the simulation paced over about 3 s while ``during`` runs in a
    thread (if given), and return the champion predictions' counts by id; ``marks["produced"]`` is the time the
    last event was sent."""
    ws = [build_pipeline(env.settings, env.view, MODEL, instance=f"w{i}")[0].start()  # type: ignore[arg-type]
          for i in range(workers)]
    side = threading.Thread(target=during, daemon=True) if callable(during) else None
    try:
        if side is not None:
            side.start()
        produce_all(env.settings, env.view.source_topic, env.sim, pace_s=0.1)  # type: ignore[attr-defined]
        if marks is not None:
            marks["produced"] = time.monotonic()
        if side is not None:
            side.join(60)
            assert not side.is_alive(), "the cluster change did not finish"
        expected = expected_prediction_ids(env.view, env.sim)
        preds = read_predictions(env.settings, expected, timeout_s=90)
        assert all(w.alive for w in ws), [w.error for w in ws]
        health = [w.health() for w in ws]
    finally:
        for w in ws:
            w.stop()
    counts = Counter(p["prediction_id"] for p in preds if p["variant"] == "champion")
    missing = expected - set(counts)
    assert not missing, (len(missing), sorted({m.rsplit("-", 3)[1] for m in missing}), health)  # nothing lost
    assert set(counts) == expected
    return counts


def test_the_pipeline_on_one_redis_and_on_a_cluster_gives_the_same_complete_output(env: Env) -> None:
    counts = run_stream(env)
    assert max(counts.values()) == 1  # no fault here: exactly one prediction per event
    assert_state_matches_offline(env)


def _tag_slots(cluster: redis.RedisCluster, topic: str) -> list[int]:
    return sorted({cluster.keyslot(f"{{{topic}:{p}}}") for p in range(PARTITIONS)})


def migrate_slots(lc: LocalCluster, slots: list[int], pause_s: float = 0.05) -> int:
    """Move ``slots`` to another master the way ``redis-cli --cluster reshard`` does (IMPORTING / MIGRATING, then
    MIGRATE keys a few at a time, then SETSLOT NODE on every master), slowly, so batches meet ASK and TRYAGAIN."""
    masters = lc.primaries()
    ids = {p: lc.node(p).execute_command("CLUSTER MYID") for p in masters}
    moved = 0
    for slot in slots:
        src = next(p for p in masters if any(a <= slot <= b for a, b, *_ in _ranges(lc, p)))
        dst = masters[(masters.index(src) + 1) % len(masters)]
        s, d = lc.node(src), lc.node(dst)
        d.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", ids[src])
        s.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", ids[dst])
        while True:
            keys = s.execute_command("CLUSTER GETKEYSINSLOT", slot, 5)
            if not keys:
                break
            s.execute_command("MIGRATE", "127.0.0.1", dst, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            time.sleep(pause_s)
        for p in masters:
            lc.node(p).execute_command("CLUSTER SETSLOT", slot, "NODE", ids[dst])
    return moved


def wait_for_keys(lc: LocalCluster, slots: list[int], timeout_s: float = 20.0) -> None:
    """Until every slot holds keys (the workers saved state there): what follows then happens mid-stream."""
    deadline = time.monotonic() + timeout_s
    while not all(_count(lc, s) for s in slots):
        assert time.monotonic() < deadline, "no state was saved in the partitions' slots"
        time.sleep(0.05)


def _count(lc: LocalCluster, slot: int) -> int:
    owner = next(p for p in lc.primaries() if any(a <= slot <= b for a, b in _ranges(lc, p)))
    return int(lc.node(owner).execute_command("CLUSTER COUNTKEYSINSLOT", slot))


def _ranges(lc: LocalCluster, port: int) -> list[tuple[int, int]]:
    out = []
    for a, b, primary, *_ in lc.node(port).execute_command("CLUSTER SLOTS"):
        if int(primary[1]) == port:
            out.append((int(a), int(b)))
    return out


@pytest.mark.parametrize("env", ["cluster"], indirect=True)
def test_slots_moved_while_events_stream_lose_nothing_and_count_nothing_twice(env: Env) -> None:
    assert env.cluster is not None
    probe = make_redis(env.cluster.url)
    slots = _tag_slots(probe, env.view.source_topic)  # type: ignore[attr-defined]
    probe.close()

    marks: dict = {}
    owners = {s: [p for p in env.cluster.primaries() if any(a <= s <= b for a, b in _ranges(env.cluster, p))]
              for s in slots}

    def reshard() -> None:
        wait_for_keys(env.cluster, slots)  # type: ignore[arg-type]
        marks["start"] = time.monotonic()
        marks["moved"] = migrate_slots(env.cluster, slots)  # type: ignore[arg-type]

    counts = run_stream(env, during=reshard, marks=marks)
    assert marks["moved"] > 0 and marks["start"] < marks["produced"]  # keys moved while events were still sent
    assert all([p for p in env.cluster.primaries() if any(a <= s <= b for a, b in _ranges(env.cluster, p))]
               != owners[s] for s in slots)  # every slot of this test's partitions changed owner
    assert sum(c - 1 for c in counts.values()) <= 200  # a batch retried after an error may repeat its predictions
    assert_state_matches_offline(env)
    after = make_redis(env.cluster.url)
    try:  # the slots really moved, and the cluster still serves every slot
        assert after.cluster_info()["cluster_state"] == "ok"
    finally:
        after.close()


@pytest.mark.parametrize("env", ["cluster"], indirect=True)
def test_a_replica_promoted_while_events_stream_loses_nothing_and_counts_nothing_twice(env: Env) -> None:
    lc = env.cluster
    assert lc is not None
    probe = make_redis(lc.url)
    slot = _tag_slots(probe, env.view.source_topic)[0]  # type: ignore[attr-defined]
    probe.close()
    primary = next(p for p in lc.primaries() if any(a <= slot <= b for a, b in _ranges(lc, p)))
    replica = lc.replicas_of(primary)[0]

    marks: dict = {}

    def failover() -> None:
        wait_for_keys(lc, [slot])
        marks["start"] = time.monotonic()
        lc.node(replica).execute_command("CLUSTER FAILOVER")  # coordinated: the replica catches up, then takes over
        deadline = time.time() + 20
        while lc.node(replica).info("replication")["role"] != "master":
            assert time.time() < deadline, "the replica was not promoted"
            time.sleep(0.1)

    counts = run_stream(env, during=failover, marks=marks)
    assert marks["start"] < marks["produced"]  # promoted while events were still sent
    assert sum(c - 1 for c in counts.values()) <= 200
    assert_state_matches_offline(env)
    assert replica in lc.primaries() and primary not in lc.primaries()


@pytest.mark.parametrize("env", ["cluster"], indirect=True)
def test_serving_reads_find_every_entity_of_a_librdkafka_producer(env: Env) -> None:
    """The issue's second finding, end to end: events sent with librdkafka's default partitioner
    (consistent_random: CRC-32 of the key, what kcat and confluent-kafka use) are all found by a serving read,
    though murmur2 (the Java client's) names the right partition for only some of them."""
    from confluent_kafka import Producer

    entities = sorted({ev.key for ev in env.sim})
    group = env.settings.pipeline.features_group
    producer = Producer({"bootstrap.servers": env.settings.kafka.bootstrap_servers})  # default partitioner
    ws = [build_pipeline(env.settings, env.view, MODEL, instance=f"w{i}")[0].start()  # type: ignore[arg-type]
          for i in range(2)]
    client = make_redis(env.settings.redis_url)
    store = RedisFeatureStore(client)
    try:
        for ev in env.sim:
            producer.produce(env.view.source_topic, codec.encode(ev.value), ev.key)  # type: ignore[attr-defined]
        producer.flush(30)
        deadline = time.time() + 60
        m = store.read_latest_matrix(env.view, entities, group=group)  # type: ignore[arg-type]
        while not m.found.all() and time.time() < deadline:
            time.sleep(0.5)
            m = store.read_latest_matrix(env.view, entities, group=group)  # type: ignore[arg-type]
        assert [e for e, f in zip(entities, m.found.tolist(), strict=True) if not f] == []
        at_murmur2 = [latest_key_for(env.view, SourcePosition(group, env.view.source_topic,  # type: ignore[arg-type, attr-defined]
                                                              kafka_partition(e.encode(), PARTITIONS)), e)
                      for e in entities]
        found_by_murmur2 = sum(int(client.exists(k)) for k in at_murmur2)
        assert found_by_murmur2 < 0.6 * len(entities), found_by_murmur2  # the old read would have missed the rest
    finally:
        for w in ws:
            w.stop()
        client.close()


@pytest.mark.parametrize("env", ["redis"], indirect=True)
def test_a_worker_given_one_cluster_node_as_a_single_redis_refuses_to_start(env: Env, redis_cluster: LocalCluster,
                                                                             ) -> None:
    """The issue's operator: REDIS_URL at one node of a real cluster. Before, the worker started, every batch failed
    with MOVED and was retried forever (0 predictions) while /health said redis: ok. Now it does not start, and the
    message says what to set; with the cluster URL (or REDIS_CLUSTER=1) it starts and its health is ok."""
    one_node = env.settings.replace(redis_url=f"redis://127.0.0.1:{redis_cluster.ports[0]}/0")
    with pytest.raises(RedisSetupError, match="REDIS_URL=redis\\+cluster://"):
        build_pipeline(one_node, env.view, MODEL)  # type: ignore[arg-type]
    for fixed in (env.settings.replace(redis_url=redis_cluster.url), one_node.replace(redis_cluster=True)):
        worker, _ = build_pipeline(fixed, env.view, MODEL)  # type: ignore[arg-type]
        worker.start()
        try:
            deadline = time.time() + 20
            while worker.health().get("redis") != "ok" or not worker.health()["healthy"]:
                assert time.time() < deadline, worker.health()
                time.sleep(0.2)
        finally:
            worker.stop()
