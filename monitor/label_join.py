"""Joining delayed labels to the predictions they judge, in Redis with a TTL.

Keys (prefix ``dl:lj:``): ``p:<prediction_id>`` and ``e:<entity_id>:<event_ts>`` hold the served prediction
(``{"m": model, "v": version, "y": predicted label, "s": score}``, plus ``"q": 1`` when the sensor checks
marked the prediction); ``l:<entity_id>:<event_ts>`` and
``lp:<prediction_id>`` hold a label that arrived before its prediction. Every call is one pipelined round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from models.prediction import Prediction
from streams import codec

PREFIX = b"dl:lj:"


@dataclass(frozen=True, slots=True)
class Outcome:
    """A joined label: ``error`` is 1 when the served prediction's label was wrong."""

    model: str
    version: int
    error: int
    label: int
    score: float
    slice: str | None = None  # the served prediction's slice, when the monitor slices (per-slice concept drift)
    suspect: bool = False     # the prediction was marked by the sensor checks (its entity's sensors look broken)


@dataclass
class JoinStats:
    matched: int = 0
    pending: int = 0
    unmatched_labels: int = 0
    malformed_labels: int = 0


class RedisLabelJoin:
    def __init__(self, client: redis.Redis, ttl_s: int = 6 * 3600) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.stats = JoinStats()

    def remember(self, predictions: Iterable[Prediction],
                 slice_of: Callable[[Prediction], str | None] | None = None) -> list[Outcome]:
        """Store served predictions (with their slice, when ``slice_of`` is given); returns outcomes for labels
        that were already waiting for them."""
        served = [p for p in predictions if p.variant in ("champion", "challenger") and p.label is not None]
        if not served:
            return []
        pipe = self.client.pipeline(transaction=False)
        for p in served:
            stored = {"m": p.model, "v": p.model_version, "y": p.label, "s": p.score}
            if p.quality:
                stored["q"] = 1
            if slice_of is not None:
                stored["sl"] = slice_of(p)
            body = codec.encode(stored)
            pipe.set(PREFIX + b"p:" + p.prediction_id.encode(), body, ex=self.ttl_s)
            pipe.set(_entity_key(b"e:", p.entity_id, p.event_ts), body, ex=self.ttl_s)
            pipe.getdel(_entity_key(b"l:", p.entity_id, p.event_ts))
            pipe.getdel(PREFIX + b"lp:" + p.prediction_id.encode())
        replies = pipe.execute()
        outcomes = []
        for p, by_entity, by_id in zip(served, replies[2::4], replies[3::4], strict=True):
            waiting = by_entity if by_entity is not None else by_id
            if waiting is not None:
                self.stats.pending -= 1
                outcomes.append(_outcome({"m": p.model, "v": p.model_version, "y": p.label, "s": p.score,
                                          "sl": slice_of(p) if slice_of is not None else None,
                                          "q": 1 if p.quality else 0}, int(waiting)))
        self.stats.matched += len(outcomes)
        return outcomes

    def match(self, labels: Iterable[Mapping[str, Any]]) -> list[Outcome]:
        """Join labels (``prediction_id`` or ``entity_id`` + ``event_ts``, and ``label``) to stored predictions."""
        valid: list[tuple[bytes, int, Mapping[str, Any]]] = []
        for lab in labels:
            try:
                y = int(lab["label"])
                key = (PREFIX + b"p:" + str(lab["prediction_id"]).encode() if lab.get("prediction_id")
                       else _entity_key(b"e:", str(lab["entity_id"]), int(lab["event_ts"])))
            except (KeyError, TypeError, ValueError):
                self.stats.malformed_labels += 1
                continue
            valid.append((key, y, lab))
        if not valid:
            return []
        pipe = self.client.pipeline(transaction=False)
        for key, _, _ in valid:
            pipe.get(key)
        found = pipe.execute()
        outcomes: list[Outcome] = []
        pipe = self.client.pipeline(transaction=False)
        for (_, y, lab), raw in zip(valid, found, strict=True):
            if raw is not None:
                outcomes.append(_outcome(codec.decode(raw), y))
            elif lab.get("entity_id") is not None and lab.get("event_ts") is not None:
                pipe.set(_entity_key(b"l:", str(lab["entity_id"]), int(lab["event_ts"])), str(y), ex=self.ttl_s)
                self.stats.pending += 1
            elif lab.get("prediction_id"):  # its prediction has not been consumed yet: wait for it
                pipe.set(PREFIX + b"lp:" + str(lab["prediction_id"]).encode(), str(y), ex=self.ttl_s)
                self.stats.pending += 1
            else:
                self.stats.unmatched_labels += 1
        pipe.execute()
        self.stats.matched += len(outcomes)
        return outcomes


def _entity_key(kind: bytes, entity_id: str, event_ts: int) -> bytes:
    return PREFIX + kind + entity_id.encode() + b":" + str(event_ts).encode()


def _outcome(pred: Mapping[str, Any], label: int) -> Outcome:
    return Outcome(str(pred["m"]), int(pred["v"]), int(int(pred["y"]) != label), label, float(pred["s"]),
                   pred.get("sl"), bool(pred.get("q")))
