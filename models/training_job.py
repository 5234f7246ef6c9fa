"""Training entry point: an event log → the SAME feature definitions the online path uses → a model version.

Features come from :func:`features.offline.compute_offline` or :func:`features.materialize.backfill` (point
in time, no future leak), which run the engine the online pipeline runs, so training and serving cannot disagree on what ``hr_mean_5m`` means.
The version is registered with its training metrics and a reference profile (quantile-binned histograms of
each feature and of the held-out scores) for the monitor's PSI.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from features.definitions import FeatureView
from features.offline import TrainingRow
from models.exceptions import ModelError
from models.registry import ModelVersion, Registry
from models.train import train_classifier
from monitor.reference import ReferenceProfile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingSet:
    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    rows_dropped: int  # rows whose label was unknown
    ts: np.ndarray | None = None  # each row's time (epoch ms): what a time-based split orders by


def build_training_set(view: FeatureView, rows: Iterable[TrainingRow], labels: Mapping[tuple[str, int], int],
                       feature_names: Sequence[str] | None = None, *, min_ts_ms: int | None = None) -> TrainingSet:
    """One row per labelled event, features as of that event's time (rows from :func:`compute_offline`).

    ``labels`` maps ``(entity_id, ts_ms)`` to the ground truth for that event. Rows before ``min_ts_ms`` are
    skipped: use it to leave out the warm-up of the log, where windows are not yet full.
    """
    names = tuple(feature_names or view.feature_names)
    unknown = [n for n in names if n not in view.feature_names]
    if unknown:
        raise ModelError(f"features {unknown} are not defined by view {view.name!r}")
    X, y, ts, dropped = [], [], [], 0
    for row in rows:
        if min_ts_ms is not None and row.ts_ms < min_ts_ms:
            continue
        label = labels.get((row.entity_id, row.ts_ms))
        if label is None:
            dropped += 1
            continue
        X.append([row.features.get(n, math.nan) for n in names])
        y.append(int(label))
        ts.append(row.ts_ms)
    if not X:
        raise ModelError("no labelled rows: check that labels are keyed by (entity_id, ts_ms)")
    return TrainingSet(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64), names, dropped,
                       np.asarray(ts, dtype=np.int64))


def train_and_register(registry: Registry, model: str, data: TrainingSet, *, seed: int = 0,
                       kind: str = "logistic", registered_by: str = "driftline train",
                       tags: Mapping[str, str] | None = None, bins: int = 10, split: str = "stratified",
                       validation: float = 0.25, split_at_ms: int | None = None) -> ModelVersion:
    """Fit, profile and register a new (staging) version. ``split="time"`` validates on the latest
    ``validation`` share of rows (or those at/after ``split_at_ms``); ``"stratified"`` on a random share."""
    if split not in ("stratified", "time"):
        raise ModelError(f"split must be 'stratified' or 'time', not {split!r}")
    if split == "time" and data.ts is None:
        raise ModelError("a time split needs the rows' times (TrainingSet.ts)")
    result = train_classifier(data.X, data.y, seed=seed, kind=kind, test_size=validation,
                              ts=data.ts if split == "time" else None, split_at_ms=split_at_ms)
    profile = ReferenceProfile.from_training(result.X_test, data.feature_names, result.scores_test, bins=bins,
                                             seed=seed)
    version = registry.register(model, result.estimator, feature_names=data.feature_names,
                                feature_types=["float"] * len(data.feature_names), metrics=result.metrics,
                                reference=profile.to_dict(), registered_by=registered_by, flavor="sklearn",
                                tags=dict(tags or {}))
    log.info("registered %s v%d: auc %.3f on %d rows", model, version.version, result.metrics["auc"], len(data.y))
    return version
