"""Shared fakes for pipeline tests: a fake Kafka message, a tiny view, a registry with one model, and helpers
that run a FusedHandler batch the way the loop does. Imported by the pipeline test modules (fixtures included)."""

from __future__ import annotations

from typing import Any

import orjson

from features.definitions import FeatureSpec, FeatureView, FieldSpec, Window
from features.store import MemoryFeatureStore, SourcePosition
from models.prediction import Prediction
from models.registry import Registry
from models.scorer import Scorer
from streams.runtime.batch import BatchResult, Output
from streams.runtime.pipeline import FusedHandler

from .fake_message import FakeMessage

TOPIC = "vitals"
GROUP = "g-test"
T0 = 1_700_000_000_000
VIEW = FeatureView(
    name="vt", version=1, source_topic=TOPIC, entity_key="id", ts_field="ts",
    fields=(FieldSpec("hr", min=0, max=300),),
    features=(FeatureSpec("hr_mean_1m", "hr", "mean", Window("sliding", 60_000)),
              FeatureSpec("hr_count_1m", "hr", "count", Window("sliding", 60_000))),
    bucket_ms=10_000, allowed_lateness_ms=10_000,
)


class CountingStore(MemoryFeatureStore):
    """A memory store that records the entity ids of every ``load`` (to count Redis round trips)."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[set[str]] = []

    def load(self, view, pos, entity_ids):  # noqa: ANN001, ANN201
        self.loaded.append(set(entity_ids))
        return super().load(view, pos, entity_ids)


def msg(offset: int, entity: str = "p1", ts: int = T0, hr: Any = 80.0, *, partition: int = 0,
        raw: bytes | None = None, key: bytes | None = None) -> FakeMessage:
    value = raw if raw is not None else orjson.dumps({"id": entity, "ts": ts, "hr": hr})
    return FakeMessage(TOPIC, partition, offset, value, key if key is not None else entity.encode())


def make_handler(registry: Registry, store: MemoryFeatureStore, **kw: Any) -> FusedHandler:
    scorer = Scorer(registry, "risk")
    scorer.start()
    return FusedHandler(VIEW, store, scorer, group=GROUP, predictions_topic="predictions",
                        dlq_topic="vitals.dlq", **kw)


def run(handler: FusedHandler, messages: list[FakeMessage], *, finalize: bool = True) -> BatchResult:
    result = handler.process(messages)  # type: ignore[arg-type]
    if finalize and result.finalize is not None:
        result.finalize()
    return result


def predictions(result: BatchResult) -> list[Prediction]:
    return [Prediction.from_dict(orjson.loads(o.value)) for o in result.outputs if o.topic == "predictions"]


def dead(result: BatchResult) -> list[Output]:
    return [o for o in result.outputs if o.topic == "vitals.dlq"]


def pos(partition: int = 0) -> SourcePosition:
    return SourcePosition(GROUP, TOPIC, partition)


def snapshot(store: MemoryFeatureStore) -> tuple[dict, dict]:
    return ({k: dict(v) for k, v in store.hashes.items()}, dict(store.strings))


# ------------------------------------------------------------------------------------------ good records
