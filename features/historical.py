"""Labels for training rows, point in time: each label gets the features its entity had AT the label's time.

Two ways to label a history:

* a label column in the event file (``--label-field``): each event is labelled, and its row holds the
  features as of that event (the event itself included, nothing after it);
* a separate label file (``--labels PATH --target FIELD``): rows ``(entity, time, target)``. Each label is
  joined "as of" its time, like a feature store's historical retrieval: to the entity's last event at or
  before the label's time, never a later one, and only if that event is at most ``tolerance_ms`` older.

Because the rows come from :func:`features.offline.compute_offline` (the online engine fed in event-time
order), a row's features only ever contain events up to its own time: no leakage from after the label.

Example:
    >>> from features.offline import TrainingRow
    >>> rows = [TrainingRow("a", 1_000, {"x": 1.0}), TrainingRow("a", 5_000, {"x": 2.0}),
    ...         TrainingRow("b", 2_000, {"x": 9.0})]
    >>> joined = as_of_join(rows, [Label("a", 4_999, 1), Label("a", 5_000, 0), Label("b", 1_000, 1)], 60_000)
    >>> [(j.row.ts_ms, j.label) for j in joined.pairs], joined.unmatched
    ([(1000, 1), (5000, 0)], 1)
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from features.definitions import FeatureView
from features.event_files import EventFileError, FileStats, read_rows
from features.exceptions import FeatureError, RecordError
from features.offline import TrainingRow
from features.records import parse_timestamp
from features.timestamps import timestamp_parser

_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


class LabelError(FeatureError):
    """A label cannot be read as a binary class; the message says which values are accepted."""


@dataclass(frozen=True, slots=True)
class Label:
    """The ground truth of ``entity_id`` at ``ts_ms``: 0 or 1."""

    entity_id: str
    ts_ms: int
    label: int


@dataclass(frozen=True, slots=True)
class LabelledRow:
    row: TrainingRow
    label: int
    label_ts_ms: int


@dataclass
class JoinResult:
    pairs: list[LabelledRow] = field(default_factory=list)
    unmatched: int = 0  # labels with no event of their entity at or before them (within the tolerance)


def to_binary(raw: Any, positive: str | None = None) -> int:
    """A label cell as 0/1: numbers 0/1, booleans, ``true/false``, ``yes/no``; or ``== positive`` if given.

    >>> to_binary(1.0), to_binary("no"), to_binary(True), to_binary("fraud", positive="fraud")
    (1, 0, 1, 1)
    >>> to_binary(3)
    Traceback (most recent call last):
    ...
    features.historical.LabelError: label 3 is not binary: use 0/1, true/false, yes/no, or name the positive class (--positive VALUE)
    """
    if positive is not None:
        return int(str(raw).strip() == positive or (not isinstance(raw, str) and str(raw) == positive))
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int | float) and raw in (0, 1):
        return int(raw)
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _TRUE:
            return 1
        if text in _FALSE:
            return 0
        try:
            return to_binary(float(text))
        except (ValueError, LabelError):
            pass
    raise LabelError(f"label {raw!r} is not binary: use 0/1, true/false, yes/no, or name the positive class "
                     "(--positive VALUE)")


def read_labels(view: FeatureView, path: str | Path, target: str, *, positive: str | None = None,
                entity_column: str | None = None, ts_column: str | None = None,
                stats: FileStats | None = None) -> list[Label]:
    """Labels from a file (JSON Lines, CSV, Parquet) with an entity column, a time column and ``target``.

    The entity column is the view's entity key (or ``entity_id``), the time column the view's timestamp field
    (or ``label_ts``, ``event_ts``, ``ts``), read with the view's timestamp format, else as epoch ms / RFC 3339.
    """
    stats = stats if stats is not None else FileStats()
    parse_view_ts = timestamp_parser(view.ts_format)
    out: list[Label] = []
    columns: tuple[str, str] | None = None
    for n, row in read_rows(path):
        stats.rows += 1
        if not isinstance(row, dict):
            stats.skip("not_an_object", n)
            continue
        if columns is None:
            columns = (_pick(row, entity_column, (view.entity_key, "entity_id"), path, "entity"),
                       _pick(row, ts_column, (view.ts_field, "label_ts", "event_ts", "ts"), path, "time"))
            if target not in row:
                raise EventFileError(f"{path}: no target column {target!r}; columns: {', '.join(row)}")
        entity, raw_ts, raw_label = row.get(columns[0]), row.get(columns[1]), row.get(target)
        if entity in (None, "") or isinstance(entity, bool) or not isinstance(entity, str | int):
            stats.skip("missing_field", n)
            continue
        if raw_label in (None, ""):
            stats.skip("missing_label", n)
            continue
        try:
            ts = _timestamp(parse_view_ts, raw_ts)
            label = to_binary(raw_label, positive)
        except RecordError as exc:
            stats.skip(exc.reason, n)
            continue
        except LabelError:
            stats.skip("bad_label", n)
            continue
        out.append(Label(str(entity), ts, label))
    return out


def _pick(row: dict[str, Any], given: str | None, candidates: Sequence[str], path: str | Path, what: str) -> str:
    if given is not None:
        if given not in row:
            raise EventFileError(f"{path}: no {what} column {given!r}; columns: {', '.join(row)}")
        return given
    for c in candidates:
        if c in row:
            return c
    raise EventFileError(f"{path}: no {what} column: expected one of {', '.join(candidates)}; columns: {', '.join(row)}")


def _timestamp(parse: Any, raw: Any) -> int:
    if isinstance(raw, str) and raw.strip().isdigit():
        raw_num: Any = int(raw.strip())
    else:
        raw_num = raw
    try:
        return parse(raw_num)
    except RecordError:
        return parse_timestamp(raw_num)


def as_of_join(rows: Iterable[TrainingRow], labels: Iterable[Label], tolerance_ms: int) -> JoinResult:
    """Each label joined to its entity's last row at or before the label's time (see the module docstring)."""
    by_entity: dict[str, tuple[list[int], list[TrainingRow]]] = {}
    for row in rows:
        times, items = by_entity.setdefault(row.entity_id, ([], []))
        if times and row.ts_ms < times[-1]:  # keep each entity's rows in time order (the log may not be)
            i = bisect.bisect_right(times, row.ts_ms)
            times.insert(i, row.ts_ms)
            items.insert(i, row)
        else:
            times.append(row.ts_ms)
            items.append(row)
    result = JoinResult()
    for lab in labels:
        times, items = by_entity.get(lab.entity_id, ([], []))
        i = bisect.bisect_right(times, lab.ts_ms) - 1
        if i < 0 or lab.ts_ms - times[i] > tolerance_ms:
            result.unmatched += 1
            continue
        result.pairs.append(LabelledRow(items[i], lab.label, lab.ts_ms))
    return result


def exact_labels(pairs: Iterator[tuple[str, int, Any]], positive: str | None = None) -> dict[tuple[str, int], int]:
    """``(entity, ts) -> 0/1`` from ``(entity, ts, raw label)`` triples (labels carried by the events)."""
    return {(e, ts): to_binary(raw, positive) for e, ts, raw in pairs}
