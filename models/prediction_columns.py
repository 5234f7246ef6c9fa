"""The predictions of one scored group (a model version and a variant) of a batch, held in columns.

The scorer used to build one :class:`~models.prediction.Prediction` per event, which the pipeline then read back
field by field to encode it (about 1 µs of object work per event). :class:`PredictionColumns` keeps the batch's
columns as the scorer computed them (scores and labels in one numpy pass) and writes the wire records straight
from them (:meth:`PredictionColumns.encode`, the same bytes as :func:`~models.prediction.encode_predictions` of
:meth:`PredictionColumns.predictions`, checked by a property test); the objects are built only for a caller that
asks for them (tests, the online learner, the demo's swap check).

Example:
    >>> import numpy as np
    >>> cols = PredictionColumns.of(["t-0-7"], ["p1"], [1000], [{"hr": 80.0}], np.array([0.75]), model="risk",
    ...                             version=2, variant="champion", scored_at=1005, threshold=0.5)
    >>> cols.predictions()[0].label, cols.encode()[0][:38]
    (1, b'{"prediction_id":"t-0-7-champion","ent')
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import orjson

from models.prediction import Prediction


@dataclass
class PredictionColumns:
    """One (version, variant) group's predictions: row ``i`` of every column is one prediction.

    ``features`` is None when the scorer does not include feature maps; ``quality`` (the sensor checks' faults
    per row, see ``monitor.sensor_checks``) is None when no row has any."""

    model: str
    model_version: int
    variant: str
    scored_at: int
    event_keys: list[str]
    entity_ids: list[str]
    event_ts: list[int]
    scores: list[float]
    labels: list[int | None]
    features: list[dict[str, float]] | None
    quality: list[dict[str, str] | None] | None = None

    @classmethod
    def of(cls, event_keys: Sequence[str], entity_ids: Sequence[str], event_ts: Sequence[int],
           features: Sequence[dict[str, float]] | None, raw: np.ndarray, *, model: str, version: int,
           variant: str, scored_at: int, threshold: float) -> PredictionColumns:
        """The group from its rows' columns and the model's raw scores: a non-finite score is written as NaN,
        and its label is None only when the score is NaN (``int(score >= threshold)`` otherwise, as always)."""
        values = raw.tolist()
        finite = np.isfinite(raw)
        if bool(finite.all()):
            scores = values
            labels: list[int | None] = (raw >= threshold).astype(np.int64).tolist()
        else:
            isfinite, nan = math.isfinite, math.nan
            scores = [float(s) if isfinite(s) else nan for s in values]
            labels = [None if s != s else int(s >= threshold) for s in values]
        maps = None if features is None else list(features)
        if maps is not None and not set(map(type, maps)) <= {dict}:  # orjson writes dicts: other mappings copied
            maps = [f if f is None or type(f) is dict else dict(f) for f in maps]
        return cls(model, version, variant, scored_at, list(event_keys), list(entity_ids), list(event_ts),
                   scores, labels, maps)

    def __len__(self) -> int:
        return len(self.event_keys)

    def _rows(self) -> Iterator[tuple[str, str, int, float, int | None, dict[str, float] | None,
                                      dict[str, str] | None]]:
        """Per prediction: (prediction id, entity, event time, score, label, feature map, quality)."""
        n = len(self)
        suffix = f"-{self.variant}"
        return zip([key + suffix for key in self.event_keys], self.entity_ids, self.event_ts, self.scores,
                   self.labels, self.features if self.features is not None else [None] * n,
                   self.quality if self.quality is not None else [None] * n, strict=True)

    def predictions(self) -> list[Prediction]:
        """The group as :class:`Prediction` objects (``prediction_id`` = event key + ``-`` + variant)."""
        model, version, variant, now = self.model, self.model_version, self.variant, self.scored_at
        return [Prediction(pid, entity, ts, model, version, variant, score, label, now, feats, q)
                for pid, entity, ts, score, label, feats, q in self._rows()]

    def encode(self) -> list[bytes]:
        """The wire bytes of every prediction in one pass: the bytes of
        ``encode_predictions(self.predictions())`` without building the objects."""
        dumps, opt = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
        model, version, variant, now = self.model, self.model_version, self.variant, self.scored_at
        return [dumps({"prediction_id": pid, "entity_id": entity, "event_ts": ts, "model": model,
                       "model_version": version, "variant": variant, "score": score, "label": label,
                       "scored_at": now, "features": feats, "quality": q}, option=opt)
                for pid, entity, ts, score, label, feats, q in self._rows()]
