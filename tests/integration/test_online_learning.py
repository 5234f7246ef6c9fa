"""Online learning on the real broker and Redis: a river champion learns from the labels topic (option on), and
learns nothing with the option off (the default).

One partition per topic and a unique model name, topics and group per test. The river model reads three
features that are always finite, so every event is scored by the champion.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from river import compose, linear_model, preprocessing

from features.views import VITALS_VIEW
from models.registry import Registry
from streams import codec
from streams.local.simulator import SimConfig, generate
from streams.runtime.online_learning import PREFIX, OnlineLearningHandler
from streams.runtime.pipeline import FusedHandler
from streams.runtime.topics import TopicSpec, ensure_topics
from streams.runtime.workers import build_pipeline
from streams.settings import PipelineSettings, Settings, TopicSettings

pytestmark = pytest.mark.integration
FEATURES = ["hr_mean_5m", "spo2_mean_5m", "temp_last"]
X_FIXED = {"hr_mean_5m": 80.0, "spo2_mean_5m": 97.0, "temp_last": 37.0}


@pytest.fixture()
def env(settings: Settings, unique: str, tmp_path: Path):  # noqa: ANN201
    topics = TopicSettings(predictions=f"pred-{unique}", labels=f"labels-{unique}", alerts=f"alerts-{unique}",
                           control=f"control-{unique}", source_partitions=1)
    s = settings.replace(topics=topics, pipeline=PipelineSettings(features_group=f"g-{unique}", batch_max_rows=100))
    view = dataclasses.replace(VITALS_VIEW, source_topic=f"vitals-{unique}")
    ensure_topics(s, [TopicSpec(view.source_topic, 1), TopicSpec(f"{view.source_topic}.dlq", 1),
                      TopicSpec(s.topics.stale_features(view.source_topic), 1), TopicSpec(topics.predictions, 1),
                      TopicSpec(topics.labels, 1), TopicSpec(topics.alerts, 1), TopicSpec(topics.control, 1)])
    model = f"river-{unique}"
    reg = Registry(s.registry_dir)
    est = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    rng = np.random.default_rng(0)
    for _ in range(200):  # warm start on noise: about 0.5 everywhere
        est.learn_one({"hr_mean_5m": float(rng.normal(80, 10)), "spo2_mean_5m": float(rng.normal(97, 1)),
                       "temp_last": float(rng.normal(37, 0.3))}, bool(rng.integers(0, 2)))
    reg.promote(model, reg.register(model, est, feature_names=FEATURES, flavor="river").version)
    sim = list(generate(SimConfig(entities=20, rate=200, duration_s=2.0, seed=3, time_scale=30.0)))
    yield s, view, model, reg, sim
    client = redis.Redis.from_url(s.redis_url)
    for pattern in (f"*g:g-{unique}*".encode(), PREFIX + model.encode() + b":*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)
    client.close()


def produce(settings: Settings, topic: str, records: list[tuple[str, dict]]) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 5})
    for key, value in records:
        producer.produce(topic, codec.encode(value), key)
    producer.flush(30)


def read_predictions(settings: Settings, n: int, timeout_s: float) -> list[dict]:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "reader",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(settings.topics.predictions, 0, OFFSET_BEGINNING)])
    out: list[dict] = []
    deadline = time.time() + timeout_s
    try:
        while time.time() < deadline and len(out) < n:
            out += [codec.decode(m.value()) for m in consumer.consume(1000, 0.5) if m.error() is None]
    finally:
        consumer.close()
    return out


def wait_for(predicate, timeout_s: float) -> bool:  # noqa: ANN001
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def v1_score(reg: Registry, model: str, x: dict) -> float:
    return float(reg.load(model, 1).predict_proba_one({k: x[k] for k in FEATURES})[True])  # type: ignore[attr-defined]


def test_river_champion_learns_from_labels_when_the_option_is_on(env) -> None:  # noqa: ANN001
    settings, view, model, reg, sim = env
    half = len(sim) // 2
    worker, fused = build_pipeline(settings, view, model, online_learning=True, online_checkpoint_every=100)
    online = worker.loop.handler
    assert isinstance(online, OnlineLearningHandler) and online.inner is fused
    worker.start()
    try:
        produce(settings, view.source_topic, [(e.key, e.value) for e in sim[:half]])
        first = [p for p in read_predictions(settings, half, 60) if p["variant"] == "champion"]
        assert len(first) == half
        start = fused.scorer.active.champion.estimator.predict_proba_one(X_FIXED)[True]
        # every served prediction was positive: the model should move toward 1
        produce(settings, settings.topics.labels,
                [(p["entity_id"], {"prediction_id": p["prediction_id"], "label": 1, "label_ts": p["scored_at"]})
                 for p in first])
        assert wait_for(lambda: online.stats.learned >= half, 30), online.status()
        learned = fused.scorer.active.champion.estimator.predict_proba_one(X_FIXED)[True]
        assert learned > start + 0.05, (start, learned)
        assert v1_score(reg, model, X_FIXED) == pytest.approx(start)  # the registry artifact is untouched
        # events after the labels are served by the learned copy, still as v1
        produce(settings, view.source_topic, [(e.key, e.value) for e in sim[half:]])
        preds = [p for p in read_predictions(settings, len(sim), 60) if p["variant"] == "champion"]
        later = preds[half:]
        assert len(later) == len(sim) - half and {p["model_version"] for p in later} == {1}
        moved = [p["score"] - v1_score(reg, model, p["features"]) for p in later]
        assert np.mean(moved) > 0.05, np.mean(moved)
        health = worker.health()
        assert health["online_learning"]["learned"] >= half
    finally:
        worker.stop()
    online_versions = [v for v in reg.versions(model) if v.tags.get("origin") == "online"]
    assert online_versions and all(v.stage == "staging" and v.tags["parent"] == "1" for v in online_versions)
    assert reg.production(model).version == 1  # type: ignore[union-attr]


def test_nothing_is_learned_with_the_option_off(env) -> None:  # noqa: ANN001
    settings, view, model, reg, sim = env
    half = len(sim) // 2
    worker, fused = build_pipeline(settings, view, model)
    assert isinstance(worker.loop.handler, FusedHandler)
    champion = fused.scorer.active.champion
    worker.start()
    try:
        produce(settings, view.source_topic, [(e.key, e.value) for e in sim[:half]])
        first = [p for p in read_predictions(settings, half, 60) if p["variant"] == "champion"]
        assert len(first) == half
        produce(settings, settings.topics.labels,
                [(p["entity_id"], {"prediction_id": p["prediction_id"], "label": 1}) for p in first])
        produce(settings, view.source_topic, [(e.key, e.value) for e in sim[half:]])
        preds = [p for p in read_predictions(settings, len(sim), 60) if p["variant"] == "champion"]
        time.sleep(1.0)
    finally:
        worker.stop()
    assert len(preds) == len(sim)
    assert fused.scorer.active.champion is champion
    assert all(p["score"] == pytest.approx(v1_score(reg, model, p["features"]), abs=1e-12) for p in preds)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        assert not list(client.scan_iter(match=PREFIX + model.encode() + b":*", count=1000))
    finally:
        client.close()
    assert [v.version for v in reg.versions(model)] == [1]
