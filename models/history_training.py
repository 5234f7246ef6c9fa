"""Training from a user's own history: an event file + labels → the view's features, point in time → a version.

Steps (``driftline train --view V --events PATH ...``):

1. read the event file (JSON Lines, CSV, Parquet) through the online record checks, bad rows counted;
2. order the events by event time (what ``driftline produce --from`` sends, so serving sees the same order)
   and compute the view's features with :func:`features.offline.compute_offline`, the online engine;
3. label the rows: a label column of the events (each event's own row), or a label file joined as of each
   label's time (:func:`features.historical.as_of_join`): no feature ever sees an event after its label;
4. leave out the warm-up (rows in the first longest-window of the history, whose windows are not full yet),
   when the history is long enough to spare it (at least twice that);
5. split by time (validation = the latest share of rows, or the rows from ``split_at``), fit, and register
   with the metrics and the reference profile of the validation period (for the monitor's PSI).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from features.definitions import FeatureView
from features.event_files import FileStats, in_event_time_order, read_events
from features.historical import LabelError, as_of_join, read_labels, to_binary
from features.offline import compute_offline
from models.exceptions import ModelError
from models.registry import ModelVersion, Registry
from models.training_job import TrainingSet, build_training_set, train_and_register


@dataclass(frozen=True)
class HistorySpec:
    """What to train from: the view, the event file and where the labels are."""

    view: FeatureView
    events: Path
    label_field: str | None = None
    labels: Path | None = None
    target: str | None = None
    positive: str | None = None
    features: Sequence[str] | None = None
    validation: float = 0.25
    split_at_ms: int | None = None
    warmup_ms: int | None = None  # None: the longest window, if the history is at least twice that long
    label_tolerance_ms: int | None = None  # label file: oldest usable event before a label; None: longest window

    def __post_init__(self) -> None:
        if (self.label_field is None) == (self.labels is None):
            raise ModelError("give the labels either as a column of the events (--label-field FIELD) or as a "
                             "file (--labels PATH --target FIELD)")
        if self.labels is not None and not self.target:
            raise ModelError("--labels needs --target FIELD: the label file's column holding the class")
        if self.label_field is not None and self.label_field in {f.name for f in self.view.fields}:
            raise ModelError(f"--label-field {self.label_field!r} is a field of view {self.view.name!r}: a label "
                             "must not be a model input (it would leak the answer); remove it from the view")
        if not 0 < self.validation < 1:
            raise ModelError(f"--validation must be within (0, 1), got {self.validation}")


def _iso(ms: int | float) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat().replace("+00:00", "Z")


def build_history_set(spec: HistorySpec) -> tuple[TrainingSet, dict[str, Any]]:
    """The training set of ``spec`` and a report of what was read, joined and left out."""
    view = spec.view
    stats = FileStats()
    events = in_event_time_order(read_events(view, spec.events, label_field=spec.label_field, stats=stats))
    if not events:
        raise ModelError(f"{spec.events}: no valid events for view {view.name!r} ({stats.summary()})")
    rows = compute_offline(view, (fe.event for fe in events))
    longest = view.retention_ms - view.allowed_lateness_ms
    first, last = events[0].event.ts_ms, events[-1].event.ts_ms
    warmup = spec.warmup_ms if spec.warmup_ms is not None else (longest if last - first >= 2 * longest else 0)
    report: dict[str, Any] = {"events": stats.to_dict(), "events_summary": stats.summary(),
                              "history": [_iso(first), _iso(last)], "rows": len(rows), "warmup_ms": warmup}
    if spec.label_field is not None:
        labels: dict[tuple[str, int], int] = {}
        bad: list[LabelError] = []
        for fe in events:
            try:
                labels[(fe.event.entity_id, fe.event.ts_ms)] = to_binary(fe.label, spec.positive)
            except LabelError as exc:
                bad.append(exc)
        if bad and not labels:
            raise LabelError(f"{spec.events}, column {spec.label_field!r}: {bad[0]}")
        data = build_training_set(view, rows, labels, spec.features, min_ts_ms=first + warmup)
        report["labels"] = {"from": f"column {spec.label_field!r}", "labelled_rows": len(data.y),
                            "bad_labels": len(bad)}
        return data, report
    assert spec.labels is not None and spec.target is not None
    label_stats = FileStats()
    label_list = read_labels(view, spec.labels, spec.target, positive=spec.positive, stats=label_stats)
    tolerance = spec.label_tolerance_ms if spec.label_tolerance_ms is not None else longest
    joined = as_of_join(rows, label_list, tolerance)
    pairs = [p for p in joined.pairs if p.row.ts_ms >= first + warmup]
    if not pairs:
        raise ModelError(f"{spec.labels}: no label could be joined to an event of its entity at or before its time "
                         f"(within {tolerance} ms; {label_stats.summary()}, {joined.unmatched} unmatched)")
    # one training row per label: key each pair by a synthetic (entity, label time) so duplicates stay apart
    keyed_rows = [type(p.row)(p.row.entity_id, p.label_ts_ms, p.row.features) for p in pairs]
    data = build_training_set(view, keyed_rows, {(r.entity_id, r.ts_ms): p.label for r, p in zip(keyed_rows, pairs,
                                                                                                strict=True)},
                              spec.features)
    report["labels"] = {"from": str(spec.labels), "read": label_stats.to_dict(), "joined": len(pairs),
                        "unmatched": joined.unmatched, "tolerance_ms": tolerance}
    return data, report


def train_from_history(registry: Registry, model: str, spec: HistorySpec, *, kind: str = "logistic", seed: int = 0,
                       registered_by: str = "driftline train") -> tuple[ModelVersion, dict[str, Any]]:
    """Build the set, fit with a time split, register; returns the version and the report (with metrics)."""
    data, report = build_history_set(spec)
    tags = {"view": spec.view.name, "view_version": str(spec.view.version),
            "view_fingerprint": spec.view.fingerprint(), "events": str(spec.events), "split": "time"}
    mv = train_and_register(registry, model, data, seed=seed, kind=kind, registered_by=registered_by, tags=tags,
                            split="time", validation=spec.validation, split_at_ms=spec.split_at_ms)
    metrics = dict(mv.metrics)
    report["split"] = {"validation_from": _iso(metrics["split_ts_ms"]), "train_until": _iso(metrics["train_until_ts_ms"]),
                       "n_train": int(metrics["n_train"]), "n_validation": int(metrics["n_test"])}
    return mv, report
