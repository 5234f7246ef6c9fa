"""Scale-out and failover on the real broker and Redis: Kafka's consumer group is the scale-out engine.

Two or three pipeline workers share one consumer group on a 6-partition topic. Checked by id: every input event
gets exactly one champion prediction (duplicates after a crash are allowed by at-least-once, and identifiable by
``prediction_id``), and the window state in Redis equals an offline recomputation over the same events (no
double counting, also after ``kill -9``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from features.offline import compute_offline
from features.partitioning import kafka_partition
from features.records import parse_record
from features.redis_store import RedisFeatureStore
from features.views import VITALS_VIEW
from models.registry import Registry
from models.train import build_estimator
from streams import codec
from streams.local.procs import stop_pid
from streams.local.simulator import SimConfig, generate
from streams.runtime.topics import TopicSpec, ensure_topics
from streams.runtime.workers import build_pipeline, control_store
from streams.settings import PipelineSettings, Settings, TopicSettings

pytestmark = pytest.mark.integration
PARTITIONS = 6
MODEL = "risk"


@pytest.fixture()
def env(settings: Settings, unique: str, tmp_path: Path):  # noqa: ANN201
    topics = TopicSettings(predictions=f"pred-{unique}", labels=f"labels-{unique}", alerts=f"alerts-{unique}",
                           control=f"control-{unique}", source_partitions=PARTITIONS)
    s = settings.replace(topics=topics, pipeline=PipelineSettings(features_group=f"g-{unique}", batch_max_rows=200))
    view = dataclasses.replace(VITALS_VIEW, source_topic=f"vitals-{unique}")
    ensure_topics(s, [TopicSpec(view.source_topic, PARTITIONS), TopicSpec(f"{view.source_topic}.dlq", 1),
                      TopicSpec(s.topics.stale_features(view.source_topic), PARTITIONS),
                      TopicSpec(topics.predictions, 3), TopicSpec(topics.alerts, 1), TopicSpec(topics.control, 1)])
    reg = Registry(s.registry_dir)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, len(view.feature_names)))
    est = build_estimator("logistic").fit(X, (X[:, 0] > 0).astype(int))
    reg.promote(MODEL, reg.register(MODEL, est, feature_names=view.feature_names).version)
    sim = list(generate(SimConfig(entities=60, rate=1000, duration_s=4.0, seed=3, time_scale=30.0)))
    yield s, view, sim
    client = redis.Redis.from_url(s.redis_url)
    for key in client.scan_iter(match=f"*g:g-{unique}*".encode(), count=1000):
        client.delete(key)
    control_store(s, client, reg, MODEL).clear()  # the desired state and ledger of this test's registry
    client.close()


def worker_env(settings: Settings, run_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``driftline run pipeline`` child process on ``settings``' broker, Redis, registry,
    topics and consumer group, with the embedded broker's group timing, plus ``extra``."""
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
            "REDIS_URL": settings.redis_url, "DRIFTLINE_REGISTRY": settings.registry_dir,
            "DRIFTLINE_RUN_DIR": str(run_dir), "DRIFTLINE_CONTROL_KEY": settings.control_key,
            "DRIFTLINE_TOPIC_PREDICTIONS": settings.topics.predictions,
            "DRIFTLINE_TOPIC_CONTROL": settings.topics.control, "DRIFTLINE_TOPIC_ALERTS": settings.topics.alerts,
            "DRIFTLINE_FEATURES_GROUP": settings.pipeline.features_group,
            "DRIFTLINE_SESSION_TIMEOUT_MS": "2000", "DRIFTLINE_HEARTBEAT_INTERVAL_MS": "200", **extra}


def produce_all(settings: Settings, topic: str, sim: list, pace_s: float = 0.0) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "partitioner": "murmur2_random",
                         "linger.ms": 5})
    for i, ev in enumerate(sim):
        producer.produce(topic, codec.encode(ev.value), ev.key)
        if pace_s and i % 100 == 99:
            producer.flush()
            time.sleep(pace_s)
    producer.flush(30)


def read_predictions(settings: Settings, expected_ids: set[str], timeout_s: float) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(settings.topics.predictions, p, OFFSET_BEGINNING) for p in range(3)])
    out: list[dict] = []
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline and not expected_ids <= {p["prediction_id"] for p in out}:
            out += [codec.decode(m.value()) for m in consumer.consume(1000, 0.5) if m.error() is None]
        time.sleep(1.0)  # late duplicates, if any, are part of what is checked
        out += [codec.decode(m.value()) for m in consumer.consume(10_000, 1.0) if m.error() is None]
    finally:
        consumer.close()
    return out


def expected_prediction_ids(view, sim: list) -> set[str]:  # noqa: ANN001
    """``<topic>-<partition>-<offset>-champion`` for every event, offsets counted per partition in send order."""
    next_offset: Counter = Counter()
    ids = set()
    for ev in sim:
        p = kafka_partition(ev.key.encode(), PARTITIONS)
        ids.add(f"{view.source_topic}-{p}-{next_offset[p]}-champion")
        next_offset[p] += 1
    return ids


def assert_state_matches_offline(settings: Settings, view, sim: list) -> None:  # noqa: ANN001
    events = []
    for ev in sim:
        e = parse_record(view, ev.key.encode(), codec.encode(ev.value))
        e.partition = kafka_partition(ev.key.encode(), PARTITIONS)
        events.append(e)
    last = {row.entity_id: row for row in compute_offline(view, events)}
    client = redis.Redis.from_url(settings.redis_url)
    store = RedisFeatureStore(client)
    try:  # each entity's online features, read at its last event time, equal the offline row for that event
        for entity, row in last.items():
            vec = store.read_features(view, [entity], row.ts_ms,
                                      partition_of=lambda e: kafka_partition(e.encode(), PARTITIONS),
                                      group=settings.pipeline.features_group)[entity]
            assert set(vec) == set(row.features)
            for name, value in row.features.items():
                same = (math.isnan(value) and math.isnan(vec[name])) or vec[name] == pytest.approx(
                    value, rel=1e-9, abs=1e-9)
                assert same, (entity, name, value, vec[name])
    finally:
        client.close()


def test_three_workers_split_partitions_and_output_is_complete(env) -> None:  # noqa: ANN001
    settings, view, sim = env
    workers = [build_pipeline(settings, view, MODEL, instance=f"w{i}")[0].start() for i in range(3)]
    try:
        produce_all(settings, view.source_topic, sim)
        expected = expected_prediction_ids(view, sim)
        preds = read_predictions(settings, expected, timeout_s=60)
        assignments = [set(w.loop.health.assigned) for w in workers]
    finally:
        for w in workers:
            w.stop()
    champion = [p for p in preds if p["variant"] == "champion"]
    counts = Counter(p["prediction_id"] for p in champion)
    assert set(counts) == expected
    assert max(counts.values()) == 1  # no crash here: exactly one prediction per event
    assert sum(len(a) for a in assignments) == PARTITIONS and all(assignments), assignments
    assert len(set().union(*assignments)) == PARTITIONS  # disjoint
    assert_state_matches_offline(settings, view, sim)


def test_kill_9_one_worker_mid_stream_loses_nothing_and_counts_nothing_twice(env, tmp_path: Path) -> None:  # noqa: ANN001
    settings, view, sim = env
    child_env = worker_env(settings, tmp_path / "run", DRIFTLINE_BATCH_MAX_ROWS="50")
    cmd = [sys.executable, "-m", "streams.local.cli", "run", "pipeline", "--model", MODEL, "--topic", view.source_topic]
    procs = [subprocess.Popen(cmd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(2)]
    try:
        for p in procs:  # each prints its /metrics URL once it is built
            assert p.stdout is not None and "metrics" in p.stdout.readline()
        half = len(sim) // 2
        produce_all(settings, view.source_topic, sim[:half], pace_s=0.02)
        procs[0].send_signal(signal.SIGKILL)  # no goodbye: its partitions come back after the session timeout
        procs[0].wait(10)
        produce_all(settings, view.source_topic, sim[half:], pace_s=0.01)
        expected = expected_prediction_ids(view, sim)
        preds = read_predictions(settings, expected, timeout_s=90)
    finally:
        for p in procs:
            stop_pid(p.pid, timeout_s=15)
    counts = Counter(p["prediction_id"] for p in preds if p["variant"] == "champion")
    assert set(counts) == expected  # nothing lost
    duplicates = sum(c - 1 for c in counts.values())
    assert duplicates <= 200, duplicates  # at-least-once: bounded by the in-flight batch (<= max rows x partitions)
    assert_state_matches_offline(settings, view, sim)  # replays skipped by the stored offset: no double counting
