"""OnlineLearningHandler around a real FusedHandler (memory feature store, river champion on a tmp registry)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import TopicPartition
from river import compose, linear_model, preprocessing
from sklearn.linear_model import LogisticRegression

from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window
from features.store import MemoryFeatureStore
from models.prediction import Prediction
from models.registry import Registry
from models.scorer import Scorer
from streams.runtime.online_learning import (
    PREFIX,
    MemorySnapshotStore,
    OnlineLearningHandler,
    RedisSnapshotStore,
    label_key,
    snapshot_keys,
)
from streams.runtime.pipeline import FusedHandler

from .fake_message import FakeMessage

TOPIC, LABELS, MODEL = "vitals", "labels", "risk"
T0 = 1_700_000_000_000
VIEW = FeatureView(
    name="vt", version=1, source_topic=TOPIC, entity_key="id", ts_field="ts",
    fields=(FieldSpec("hr", min=0, max=300),),
    features=(FeatureSpec("hr_mean_1m", "hr", "mean", Window("sliding", 60_000)),
              FeatureSpec("hr_count_1m", "hr", "count", Window("sliding", 60_000))),
    bucket_ms=10_000, allowed_lateness_ms=10_000,
)


class Offsets:
    def __init__(self) -> None:
        self.source = 0
        self.labels = 0

    def event(self, entity: str, ts: int, hr: float = 120.0) -> FakeMessage:
        self.source += 1
        return FakeMessage(TOPIC, 0, self.source - 1, orjson.dumps({"id": entity, "ts": ts, "hr": hr}), entity.encode())

    def label(self, body: dict[str, Any]) -> FakeMessage:
        self.labels += 1
        return FakeMessage(LABELS, 0, self.labels - 1, orjson.dumps(body), None)


def river_registry(root: Path) -> Registry:
    reg = Registry(root)
    m = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    for i in range(40):
        m.learn_one({"hr_mean_1m": 60.0 + i, "hr_count_1m": 1.0 + i % 3}, i % 2 == 0)
    reg.promote(MODEL, reg.register(MODEL, m, feature_names=list(VIEW.feature_names), flavor="river").version)
    return reg


def handler(reg: Registry, checkpoint_every: int = 0) -> tuple[OnlineLearningHandler, MemorySnapshotStore]:
    scorer = Scorer(reg, MODEL)
    scorer.start()
    fused = FusedHandler(VIEW, MemoryFeatureStore(), scorer, group="g", predictions_topic="predictions",
                         dlq_topic="vitals.dlq")
    store = MemorySnapshotStore()
    return OnlineLearningHandler(fused, store, labels_topic=LABELS, registry=reg,
                                 checkpoint_every=checkpoint_every), store


def champion_score(h: OnlineLearningHandler, x: dict[str, float]) -> float:
    return float(h.inner.scorer.active.champion.estimator.predict_proba_one(x)[True])


def served(h: OnlineLearningHandler, batch: list[FakeMessage]) -> list[Prediction]:
    out = h.process(batch)
    if out.finalize:
        out.finalize()
    return [Prediction.from_dict(orjson.loads(o.value)) for o in out.outputs if o.topic == "predictions"]


def test_labels_teach_the_champion_and_the_next_batch_is_scored_by_the_update(tmp_path: Path) -> None:
    h, store = handler(river_registry(tmp_path))
    off = Offsets()
    preds = served(h, [off.event(f"e{i}", T0 + i) for i in range(20)])
    assert len(preds) == 20 and len(store.data) == 40  # by id and by entity + event time
    x = preds[0].features
    assert x is not None
    before = champion_score(h, x)
    labels = [off.label({"prediction_id": p.prediction_id, "label": 0}) for p in preds[:10]]
    labels += [off.label({"entity_id": p.entity_id, "event_ts": p.event_ts, "label": 0}) for p in preds[10:]]
    after_batch = served(h, labels + [off.event("z", T0 + 100)])
    assert h.stats.learned == 20 and h.stats.unmatched == 0
    assert champion_score(h, x) < before
    # the event in the same batch was scored after learning, by the published copy, still as v1
    assert after_batch[0].model_version == 1
    assert h.inner.scorer.active.champion is h.learner.published  # type: ignore[union-attr]


def test_a_label_teaches_once(tmp_path: Path) -> None:
    h, _ = handler(river_registry(tmp_path))
    off = Offsets()
    [p] = served(h, [off.event("e", T0)])
    lab = {"prediction_id": p.prediction_id, "label": 1}
    served(h, [off.label(lab), off.label(lab)])
    assert (h.stats.learned, h.stats.unmatched) == (1, 1)


def test_malformed_and_unknown_labels_are_counted_not_learned(tmp_path: Path) -> None:
    h, _ = handler(river_registry(tmp_path))
    off = Offsets()
    served(h, [off.event("e", T0)])
    w = champion_score(h, {"hr_mean_1m": 120.0, "hr_count_1m": 1.0})
    served(h, [FakeMessage(LABELS, 0, 0, b"{not json", None), off.label({"prediction_id": "x"}), off.label({"label": 1}),
               off.label({"prediction_id": "nobody-champion", "label": 1})])
    assert (h.stats.malformed, h.stats.unmatched, h.stats.learned) == (3, 1, 0)
    assert champion_score(h, {"hr_mean_1m": 120.0, "hr_count_1m": 1.0}) == w


def test_checkpoint_registers_a_staging_version_with_lineage(tmp_path: Path) -> None:
    reg = river_registry(tmp_path)
    h, _ = handler(reg, checkpoint_every=5)
    off = Offsets()
    preds = served(h, [off.event(f"e{i}", T0 + i) for i in range(12)])
    served(h, [off.label({"prediction_id": p.prediction_id, "label": 1}) for p in preds[:6]])
    served(h, [off.label({"prediction_id": p.prediction_id, "label": 1}) for p in preds[6:]])
    assert h.stats.checkpoints == [2, 3]
    v2 = reg.get(MODEL, 2)
    assert v2.stage == "staging" and v2.flavor == "river"
    assert v2.tags == {"origin": "online", "parent": "1", "labels_learned": "6"}
    assert reg.production(MODEL).version == 1  # type: ignore[union-attr]  # never auto-promoted
    assert reg.load(MODEL, 3).predict_proba_one(preds[0].features)[True] == pytest.approx(
        champion_score(h, preds[0].features))  # type: ignore[arg-type]


def test_hot_swap_rebases_the_learner(tmp_path: Path) -> None:
    reg = river_registry(tmp_path)
    h, _ = handler(reg)
    off = Offsets()
    preds = served(h, [off.event(f"e{i}", T0 + i) for i in range(4)])
    served(h, [off.label({"prediction_id": preds[0].prediction_id, "label": 1})])
    reg.register(MODEL, reg.load(MODEL, 1), feature_names=list(VIEW.feature_names), flavor="river")
    h.inner.scorer.swap_to(2)
    served(h, [off.label({"prediction_id": preds[1].prediction_id, "label": 1})])
    assert h.learner is not None and h.learner.version == 2 and h.learner.stats.rebased == 1
    assert h.inner.scorer.active_version == 2


def test_a_sklearn_champion_ignores_labels(tmp_path: Path) -> None:
    import numpy as np

    reg = Registry(tmp_path)
    X = np.column_stack([np.linspace(50, 150, 50), np.ones(50)])
    reg.promote(MODEL, reg.register(MODEL, LogisticRegression().fit(X, (X[:, 0] > 100).astype(int)),
                                    feature_names=list(VIEW.feature_names)).version)
    h, _ = handler(reg)
    off = Offsets()
    [p] = served(h, [off.event("e", T0)])
    served(h, [off.label({"prediction_id": p.prediction_id, "label": 1})])
    assert h.learner is None and h.stats.learned == 0 and h.stats.labels == 1


def test_labels_partitions_are_not_handed_to_the_fused_handler(tmp_path: Path) -> None:
    h, _ = handler(river_registry(tmp_path))
    h.on_assign([TopicPartition(TOPIC, 0), TopicPartition(LABELS, 3)])
    assert set(h.inner.watermarks) == {0}
    h.on_revoke([TopicPartition(LABELS, 0)])
    assert set(h.inner.watermarks) == {0}


def test_existing_on_predictions_callback_still_runs(tmp_path: Path) -> None:
    reg = river_registry(tmp_path)
    scorer = Scorer(reg, MODEL)
    scorer.start()
    seen: list[int] = []
    fused = FusedHandler(VIEW, MemoryFeatureStore(), scorer, group="g", predictions_topic="predictions",
                         dlq_topic="vitals.dlq", on_predictions=lambda ps: seen.append(len(ps)))
    h = OnlineLearningHandler(fused, MemorySnapshotStore(), labels_topic=LABELS)
    served(h, [Offsets().event("e", T0)])
    assert seen == [1] and h.stats.snapshots == 1


# ------------------------------------------------------------------------------------------ Redis twin
@pytest.fixture
def model_name(client: redis.Redis) -> Iterator[str]:
    name = f"m{uuid.uuid4().hex[:10]}"
    yield name
    keys = list(client.scan_iter(match=PREFIX + name.encode() + b":*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.mark.parametrize("make", [lambda c: RedisSnapshotStore(c, ttl_s=60), lambda c: MemorySnapshotStore()])
def test_store_contract(make: Any, client: redis.Redis, model_name: str) -> None:
    store = make(client)
    ps = [Prediction(f"v-0-{i}-champion", f"e{i}", T0 + i, model_name, 1, "champion", 0.5, 1, T0, {"a": float(i)})
          for i in range(3)]
    ps += [Prediction("v-0-0-shadow", "e0", T0, model_name, 2, "shadow", 0.5, 1, T0, {"a": 0.0}),
           Prediction("v-0-9-champion", "e9", T0, model_name, 1, "champion", 0.5, 1, T0, None)]
    assert store.remember(model_name, ps) == 3  # shadow and feature-less predictions are not kept
    keys = [label_key(model_name, {"prediction_id": "v-0-1-champion", "label": 1})[0],
            label_key(model_name, {"entity_id": "e2", "event_ts": T0 + 2, "label": 1})[0],
            label_key(model_name, {"prediction_id": "v-0-0-shadow", "label": 1})[0]]
    got = store.recall(model_name, keys)
    assert got == [{"v": 1, "x": {"a": 1.0}}, {"v": 1, "x": {"a": 2.0}}, None]
    assert store.recall(model_name, keys[:2]) == [None, None]  # taken: each snapshot teaches once


def test_redis_keys_carry_a_ttl_and_pinned_bytes(client: redis.Redis, model_name: str) -> None:
    p = Prediction("v-0-1-champion", "e1", 5, model_name, 1, "champion", 0.5, 1, 6, {"a": 1.0})
    RedisSnapshotStore(client, ttl_s=60).remember(model_name, [p])
    by_id, by_entity = snapshot_keys(model_name, p)
    assert by_id == b"dl:ol:" + model_name.encode() + b":p:v-0-1-champion"
    assert by_entity == b"dl:ol:" + model_name.encode() + b":e:e1:5"
    assert 0 < client.ttl(by_id) <= 60 and 0 < client.ttl(by_entity) <= 60
