"""Offline computation of a feature view over an event log: point-in-time training rows.

The rows come from the very engine the online path uses (``FeatureEngine.process``), fed in log order
with one watermark per source partition, so each row holds the features "as of" its event, with the
same lateness decisions, buckets and float arithmetic as serving: no leak, no skew.

Example:
    >>> from features.definitions import FeatureView, FieldSpec, FeatureSpec, Window
    >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x"),),
    ...                    (FeatureSpec("x_max", "x", "max", Window("tumbling", 60_000)),))
    >>> rows = compute_offline(view, [Event("a", 1_000, {"x": 5.0}), Event("a", 2_000, {"x": 3.0}),
    ...                                Event("a", 61_000, {"x": 1.0})])
    >>> [(r.ts_ms, r.features["x_max"]) for r in rows]
    [(1000, 5.0), (2000, 5.0), (61000, 1.0)]
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from features.definitions import FeatureView
from features.engine import FeatureEngine
from features.exceptions import RecordError
from features.records import Event, parse_record
from features.state import EntityState

log = logging.getLogger(__name__)

CHUNK = 4096


@dataclass(frozen=True)
class TrainingRow:
    """Features of one entity as of one event (``ts_ms``), for training."""

    entity_id: str
    ts_ms: int
    features: dict[str, float]


def compute_offline(view: FeatureView, events: Iterable[Event]) -> list[TrainingRow]:
    """One row per accepted event, in log order (late events are dropped, as online)."""
    engine = FeatureEngine(view)
    states: dict[int, dict[str, EntityState]] = {}
    watermarks: dict[int, int | None] = {}
    rows: list[TrainingRow] = []
    pending: dict[int, list[Event]] = {}

    def flush(partition: int) -> None:
        batch = pending.pop(partition, [])
        if not batch:
            return
        res = engine.process(states.setdefault(partition, {}), batch, watermark_ms=watermarks.get(partition))
        watermarks[partition] = res.watermark_ms
        rows.extend(TrainingRow(ev.entity_id, ev.ts_ms, vec) for ev, vec in res.vectors)

    # Partitions are independent; flushing a partition's chunk before another's keeps log order per partition.
    last_partition: int | None = None
    for ev in events:
        if last_partition is not None and ev.partition != last_partition:
            flush(last_partition)
        last_partition = ev.partition
        batch = pending.setdefault(ev.partition, [])
        batch.append(ev)
        if len(batch) >= CHUNK:
            flush(ev.partition)
    if last_partition is not None:
        flush(last_partition)
    return rows


@dataclass
class JsonlStats:
    """Counters of ``events_from_jsonl``: lines read and lines skipped per reason."""

    lines: int = 0
    skipped: int = 0
    reasons: dict[str, int] | None = None


def events_from_jsonl(view: FeatureView, path: Path, stats: JsonlStats | None = None) -> Iterator[Event]:
    """Events from a file of JSON objects (one per line), validated like the online path.

    Bad lines are skipped and counted (in ``stats`` if given; a summary is logged at the end). The
    event offset is the 0-based line number. Blank lines are ignored.
    """
    stats = stats if stats is not None else JsonlStats()
    stats.reasons = stats.reasons if stats.reasons is not None else {}
    with Path(path).open("rb") as fh:
        for lineno, line in enumerate(fh):
            line = line.strip()
            if not line:
                continue
            stats.lines += 1
            try:
                ev = parse_record(view, None, line)
            except RecordError as exc:
                stats.skipped += 1
                stats.reasons[exc.reason] = stats.reasons.get(exc.reason, 0) + 1
                continue
            ev.offset = lineno
            yield ev
    if stats.skipped:
        log.warning("%s: skipped %d of %d lines: %s", path, stats.skipped, stats.lines, stats.reasons)
