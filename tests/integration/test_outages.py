"""Outages: Redis dies mid-stream and comes back; the worker stops committing, says it is unhealthy, retries with
backoff and resumes by itself with nothing lost and nothing counted twice."""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from features.partitioning import kafka_partition
from features.views import VITALS_VIEW
from models.registry import Registry
from models.train import build_estimator
from streams.local.procs import free_port, spawn, stop_pid, wait_for_port
from streams.local.simulator import SimConfig, generate
from streams.local.stack import EmbeddedStack, find_redis_server
from streams.runtime.topics import TopicSpec, ensure_topics
from streams.runtime.workers import build_pipeline
from streams.settings import PipelineSettings, TopicSettings

from .test_scale_out import (  # noqa: F401 - fixtures and helpers shared with the scale-out tests
    MODEL,
    assert_state_matches_offline,
    env,
    expected_prediction_ids,
    produce_all,
    read_predictions,
)

pytestmark = pytest.mark.integration


def start_redis(port: int, data_dir: Path, log: Path) -> int:
    binary = find_redis_server()
    assert binary, "no redis-server"
    proc = spawn([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                  "--appendfsync", "always", "--dir", str(data_dir)], log)
    wait_for_port("127.0.0.1", port, 10)
    return proc.pid


@pytest.fixture()
def own_redis(tmp_path: Path):  # noqa: ANN201
    port = free_port()
    pids = [start_redis(port, tmp_path, tmp_path / "redis.log")]
    yield port, pids, tmp_path
    for pid in pids:
        stop_pid(pid)


def test_redis_down_10s_mid_stream(own_redis, env) -> None:  # noqa: ANN001, F811 - env is the shared fixture
    port, pids, data_dir = own_redis
    settings, view, sim = env
    settings = settings.replace(redis_url=f"redis://127.0.0.1:{port}/0")
    worker = build_pipeline(settings, view, MODEL, instance="outage")[0].start()
    try:
        third = len(sim) // 3
        produce_all(settings, view.source_topic, sim[:third])
        expected_first = expected_prediction_ids(view, sim[:third])
        read_predictions(settings, expected_first, timeout_s=60)
        stop_pid(pids.pop(), timeout_s=0.1)  # SIGTERM then SIGKILL: Redis is gone
        produce_all(settings, view.source_topic, sim[third:2 * third])
        saw_unhealthy = False
        commit_before = worker.loop.health.last_commit_at
        deadline = time.time() + 10
        while time.time() < deadline:
            state = worker.health()
            saw_unhealthy |= not state["healthy"]
            time.sleep(0.5)
        assert saw_unhealthy, worker.health()
        assert worker.loop.health.last_commit_at == commit_before  # nothing committed while Redis was down
        assert worker.loop.health.consecutive_failures > 0
        pids.append(start_redis(port, data_dir, data_dir / "redis2.log"))  # back, with its append-only file
        produce_all(settings, view.source_topic, sim[2 * third:])
        preds = read_predictions(settings, expected_prediction_ids(view, sim), timeout_s=90)
        assert worker.alive and worker.error is None  # the worker never died
        assert worker.health()["healthy"]
    finally:
        worker.stop()
    counts = Counter(p["prediction_id"] for p in preds if p["variant"] == "champion")
    assert set(counts) == expected_prediction_ids(view, sim)  # nothing lost
    assert_state_matches_offline(settings, view, sim)  # nothing counted twice


def test_broker_goes_away_and_comes_back(tmp_path: Path, settings, unique: str) -> None:  # noqa: ANN001
    """The worker survives the broker disappearing (no crash loop), reports it on /health, and works again once a
    broker answers on the same address. tansu keeps data in memory: a restart loses topics and offsets, so the
    test recreates the topics and uses a fresh consumer group, as an operator would (see README, Operations)."""

    port = free_port()
    view = dataclasses.replace(VITALS_VIEW, source_topic=f"vitals-{unique}")
    topics = TopicSettings(predictions=f"pred-{unique}", control=f"control-{unique}", alerts=f"alerts-{unique}",
                           source_partitions=2)
    specs = [TopicSpec(view.source_topic, 2), TopicSpec(f"{view.source_topic}.dlq", 1),
             TopicSpec(topics.stale_features(view.source_topic), 2), TopicSpec(topics.predictions, 3),
             TopicSpec(topics.alerts, 1), TopicSpec(topics.control, 1)]
    stack = EmbeddedStack(tmp_path / "run", broker_port=port, redis_url=settings.redis_url)
    info = stack.up()
    s = settings.replace(kafka=dataclasses.replace(settings.kafka, bootstrap_servers=info.bootstrap_servers),
                         topics=topics, pipeline=PipelineSettings(features_group=f"g-{unique}"))
    ensure_topics(s, specs)
    reg = Registry(s.registry_dir)
    X = np.random.default_rng(0).normal(size=(200, len(view.feature_names)))
    reg.promote(MODEL, reg.register(MODEL, build_estimator("logistic").fit(X, (X[:, 0] > 0).astype(int)),
                                    feature_names=view.feature_names).version)
    sim = list(generate(SimConfig(entities=20, rate=500, duration_s=0.6, seed=5, time_scale=30)))
    worker = build_pipeline(s, view, MODEL, instance="broker-loss")[0].start()
    try:
        produce_all(s, view.source_topic, sim)
        assert read_predictions(s, expected_prediction_ids_for(view, sim, 2), timeout_s=60)
        assert worker.health()["healthy"]
        stack.down()  # the broker is gone
        deadline = time.time() + 15
        unhealthy = False
        while time.time() < deadline and not unhealthy:
            unhealthy = not worker.health()["healthy"]
            time.sleep(0.5)
        assert unhealthy and worker.health()["broker"] != "ok"
        time.sleep(3)
        assert worker.alive and worker.error is None  # no crash, no exit
        info = EmbeddedStack(tmp_path / "run", broker_port=port, redis_url=settings.redis_url).up()
        ensure_topics(s, specs)
        deadline = time.time() + 30
        while time.time() < deadline and not worker.health()["healthy"]:
            time.sleep(0.5)
        assert worker.health()["healthy"], worker.health()
        assert worker.alive and worker.error is None
    finally:
        worker.stop()
        EmbeddedStack(tmp_path / "run", broker_port=port).down()


def expected_prediction_ids_for(view, sim: list, partitions: int) -> set[str]:  # noqa: ANN001
    offsets: Counter = Counter()
    ids = set()
    for ev in sim:
        p = kafka_partition(ev.key.encode(), partitions)
        ids.add(f"{view.source_topic}-{p}-{offsets[p]}-champion")
        offsets[p] += 1
    return ids
