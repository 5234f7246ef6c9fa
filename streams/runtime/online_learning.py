"""Online learning at the edge: the fused pipeline also consumes ``labels`` and a river champion learns from them.

:class:`OnlineLearningHandler` wraps a :class:`~streams.runtime.pipeline.FusedHandler` (unchanged). Per batch, in order:

1. label records → their feature snapshots (one pipelined Redis round trip) → ``learn_one`` on the learner's
   working copy → the published copy is swapped into the scorer (one assignment);
2. source records → the fused handler, scored by that copy;
3. the feature snapshot of every served prediction is stored (one pipelined round trip, with a TTL) for the
   labels still to come;
4. every ``checkpoint_every`` labels, the learned model is registered as a ``staging`` version tagged
   ``{"origin": "online", "parent": "<version>", "labels_learned": "<n>"}``: never promoted automatically.

Redis key schema (prefix ``dl:ol:``, ``<model>`` is the served model's name)::

    dl:ol:<model>:p:<prediction_id>           {"v": version, "x": {feature: value}}   TTL ttl_s
    dl:ol:<model>:e:<entity_id>:<event_ts>    same body                               TTL ttl_s

Labels address a prediction like the monitor's join does (``prediction_id``, else ``entity_id`` +
``event_ts``). Lookups use ``GETDEL``, so each snapshot teaches the model once: a replayed or duplicated label
finds nothing and is counted as unmatched (learning is at most once per prediction, never twice).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import Message, TopicPartition

from models.exceptions import ModelError
from models.online import LabeledExample, OnlineLearner, install, is_river
from models.prediction import Prediction
from streams import codec
from streams.runtime.batch import BatchResult, describe
from streams.runtime.pipeline import FusedHandler

log = logging.getLogger(__name__)

PREFIX = b"dl:ol:"
SERVED = ("champion", "challenger", "fallback")


def snapshot_keys(model: str, p: Prediction) -> tuple[bytes, bytes]:
    """The two keys a prediction's snapshot is stored under (by id, and by entity + event time).

    >>> p = Prediction("vitals-0-7-champion", "pat-1", 1000, "risk", 2, "champion", 0.4, 0, 1005)
    >>> snapshot_keys("risk", p)
    (b'dl:ol:risk:p:vitals-0-7-champion', b'dl:ol:risk:e:pat-1:1000')
    """
    base = PREFIX + model.encode() + b":"
    return base + b"p:" + p.prediction_id.encode(), base + b"e:" + p.entity_id.encode() + b":" + str(p.event_ts).encode()


def label_key(model: str, label: Mapping[str, Any]) -> tuple[bytes, int]:
    """``(key, label)`` of one label record; ``KeyError``/``TypeError``/``ValueError`` when it is malformed.

    >>> label_key("risk", {"prediction_id": "x-champion", "label": 1})
    (b'dl:ol:risk:p:x-champion', 1)
    >>> label_key("risk", {"entity_id": "pat-1", "event_ts": 1000, "label": "0"})
    (b'dl:ol:risk:e:pat-1:1000', 0)
    """
    y = int(label["label"])
    base = PREFIX + model.encode() + b":"
    if label.get("prediction_id"):
        return base + b"p:" + str(label["prediction_id"]).encode(), y
    return base + b"e:" + str(label["entity_id"]).encode() + b":" + str(int(label["event_ts"])).encode(), y


class SnapshotStore(Protocol):
    """Feature snapshots of served predictions, waiting for their labels."""

    def remember(self, model: str, predictions: Sequence[Prediction]) -> int:
        """Store the snapshots of served predictions (with features); returns how many were stored."""
        ...

    def recall(self, model: str, keys: Sequence[bytes]) -> list[dict[str, Any] | None]:
        """Take (get and delete) the snapshots under ``keys``; ``None`` where there is none."""
        ...


def _bodies(predictions: Sequence[Prediction]) -> Iterable[tuple[Prediction, bytes]]:
    for p in predictions:
        if p.variant in SERVED and p.features:
            yield p, codec.encode({"v": p.model_version, "x": p.features})


class RedisSnapshotStore:
    """:class:`SnapshotStore` in Redis: one pipelined round trip per call, every key with a TTL."""

    def __init__(self, client: Any, ttl_s: int = 6 * 3600) -> None:
        self.client = client
        self.ttl_s = ttl_s

    def remember(self, model: str, predictions: Sequence[Prediction]) -> int:
        """See :class:`SnapshotStore`."""
        pipe = self.client.pipeline(transaction=False)
        n = 0
        for p, body in _bodies(predictions):
            for key in snapshot_keys(model, p):
                pipe.set(key, body, ex=self.ttl_s)
            n += 1
        if n:
            pipe.execute()
        return n

    def recall(self, model: str, keys: Sequence[bytes]) -> list[dict[str, Any] | None]:
        """See :class:`SnapshotStore`."""
        if not keys:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.getdel(key)
        return [None if raw is None else codec.decode(raw) for raw in pipe.execute()]


class MemorySnapshotStore:
    """In-memory twin of :class:`RedisSnapshotStore` (no TTL) for unit tests.

    >>> s = MemorySnapshotStore()
    >>> s.remember("m", [Prediction("e-0-1-champion", "a", 5, "m", 1, "champion", 0.2, 0, 6, {"x": 1.0})])
    1
    >>> k, _ = label_key("m", {"entity_id": "a", "event_ts": 5, "label": 1})
    >>> s.recall("m", [k, k])
    [{'v': 1, 'x': {'x': 1.0}}, None]
    """

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def remember(self, model: str, predictions: Sequence[Prediction]) -> int:
        """See :class:`SnapshotStore`."""
        n = 0
        for p, body in _bodies(predictions):
            for key in snapshot_keys(model, p):
                self.data[key] = body
            n += 1
        return n

    def recall(self, model: str, keys: Sequence[bytes]) -> list[dict[str, Any] | None]:
        """See :class:`SnapshotStore`."""
        out = []
        for key in keys:
            raw = self.data.pop(key, None)
            out.append(None if raw is None else codec.decode(raw))
        return out


@dataclass
class OnlineStats:
    """Counters of the online-learning edge (``/health`` reports them)."""

    labels: int = 0
    matched: int = 0
    unmatched: int = 0
    malformed: int = 0
    learned: int = 0
    snapshots: int = 0
    checkpoints: list[int] | None = None  # registered versions


class OnlineLearningHandler:
    """A batch handler over the source topic and ``labels``: the fused handler plus online learning.

    ``registry`` is needed only for checkpoints (``checkpoint_every > 0``). A champion that is not a river
    model consumes the labels and learns nothing (logged once); a hot swap re-bases the learner on the new
    champion.
    """

    def __init__(self, inner: FusedHandler, store: SnapshotStore, *, labels_topic: str, registry: Any = None,
                 checkpoint_every: int = 0, metrics: Any = None) -> None:
        self.inner = inner
        self.store = store
        self.labels_topic = labels_topic
        self.registry = registry
        self.checkpoint_every = checkpoint_every
        self.metrics = metrics if metrics is not None else inner.metrics
        self.stats = OnlineStats(checkpoints=[])
        self.learner: OnlineLearner | None = None
        self._warned_version: int | None = None
        self._chained = inner.on_predictions
        inner.on_predictions = self._on_predictions

    @property
    def model(self) -> str:
        """The served model's name."""
        return self.inner.scorer.model

    def on_assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Source-topic partitions go to the fused handler (labels need no per-partition state)."""
        self.inner.on_assign([p for p in partitions if p.topic != self.labels_topic])

    def on_revoke(self, partitions: Sequence[TopicPartition]) -> None:
        """See :meth:`on_assign`."""
        self.inner.on_revoke([p for p in partitions if p.topic != self.labels_topic])

    def rollback(self) -> None:
        """See :meth:`FusedHandler.rollback` (the loop calls it after a failed batch)."""
        self.inner.rollback()

    def process(self, messages: Sequence[Message]) -> BatchResult:
        """Learn from the batch's labels first, then score its events with the updated copy."""
        labels = [m for m in messages if m.topic() == self.labels_topic]
        events = [m for m in messages if m.topic() != self.labels_topic]
        if labels:
            self._learn(labels)
        if not events:
            return BatchResult([])
        return self.inner.process(events)

    def _on_predictions(self, predictions: list[Prediction]) -> None:
        self.stats.snapshots += self.store.remember(self.model, predictions)
        if self._chained is not None:
            self._chained(predictions)

    def _current_learner(self) -> OnlineLearner | None:
        champion = self.inner.scorer.active.champion
        if self.learner is not None and self.learner.follows(champion):
            return self.learner
        if not is_river(champion):
            if self._warned_version != champion.version:
                self._warned_version = champion.version
                log.warning("online learning: %s v%d is not a river model with learn_one; labels are ignored",
                            self.model, champion.version)
            self.learner = None
            return None
        if self.learner is None:
            self.learner = OnlineLearner(champion, checkpoint_every=self.checkpoint_every)
        else:
            log.info("online learning: champion changed to v%d, learning restarts from it", champion.version)
            self.learner.rebase(champion)
        return self.learner

    def _learn(self, messages: Sequence[Message]) -> None:
        self.stats.labels += len(messages)
        self.metrics.consumed.labels("pipeline", self.labels_topic).inc(len(messages))
        learner = self._current_learner()
        if learner is None:
            return
        keys: list[bytes] = []
        ys: list[int] = []
        for m in messages:
            try:
                body = codec.decode(m.value() or b"")
                key, y = label_key(self.model, body)
            except (codec.DecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                self.stats.malformed += 1
                log.debug("online learning: malformed label %s: %s", describe(m), exc)
                continue
            keys.append(key)
            ys.append(y)
        snaps = self.store.recall(self.model, keys)
        examples = [LabeledExample(s["x"], y) for s, y in zip(snaps, ys, strict=True) if s is not None]
        self.stats.matched += len(examples)
        self.stats.unmatched += len(keys) - len(examples)
        if not examples:
            return
        n = learner.learn(examples)
        self.stats.learned += n
        self.metrics.online_learned.labels(self.model, str(learner.version)).inc(n)
        install(self.inner.scorer, learner.publish())  # between batches: the next events see the whole update
        if learner.checkpoint_due and self.registry is not None:
            self._checkpoint(learner)

    def _checkpoint(self, learner: OnlineLearner) -> None:
        estimator, tags = learner.checkpoint()
        meta = learner.base.meta
        try:
            rec = self.registry.register(self.model, estimator, feature_names=meta.feature_names,
                                         feature_types=meta.feature_types, reference=meta.reference,
                                         registered_by="driftline-online", flavor="river", tags=tags)
        except (ModelError, OSError) as exc:  # a full disk must not stop scoring: retried at the next checkpoint
            log.error("online learning: checkpoint of %s failed: %s", self.model, exc)
            return
        assert self.stats.checkpoints is not None
        self.stats.checkpoints.append(rec.version)
        self.metrics.online_checkpoints.labels(self.model).inc()
        log.info("online learning: %s v%d learned %d labels; checkpoint registered as v%d (staging)",
                 self.model, learner.version, learner.stats.learned, rec.version)

    def status(self) -> dict[str, Any]:
        """What ``/health`` reports about online learning."""
        learner = self.learner
        return {"labels": self.stats.labels, "matched": self.stats.matched, "unmatched": self.stats.unmatched,
                "malformed": self.stats.malformed, "learned": self.stats.learned, "snapshots": self.stats.snapshots,
                "checkpoints": list(self.stats.checkpoints or []),
                "learning_on": None if learner is None else learner.version}

    # the fused handler's public surface, for callers that read it through the loop
    @property
    def stats_pipeline(self) -> Any:
        """The fused handler's :class:`~streams.runtime.pipeline.PipelineStats`."""
        return self.inner.stats

    def idle_outputs(self, now_s: float, idle_wall_s: float) -> list:
        """Delegated to the fused handler."""
        return self.inner.idle_outputs(now_s, idle_wall_s)
