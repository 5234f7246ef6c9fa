"""Event logs in files (JSON Lines, CSV, Parquet) read as a view's events, validated like the online path.

Formats by suffix: ``.jsonl`` / ``.ndjson`` / ``.json`` (one object per line; a ``.json`` file holding one
array works too), ``.csv`` / ``.tsv``, ``.parquet`` / ``.pq`` (needs ``pyarrow``: ``pip install
'driftline[parquet]'``); ``.gz`` on top of the text formats. CSV cells are text, so they are typed by the view
first: an empty cell is a missing value, a number field's cell becomes a number (a cell that is not one stays
text and is rejected as ``wrong_type``, as online). Parquet timestamps and dates become RFC 3339 text (read by
the ``auto`` and ``rfc3339`` formats).

Each row goes through :func:`features.records.parse_object`, the compiled checks of the online path; a bad row
is skipped and counted by reason, with the first few row numbers kept for the message.

Example:
    >>> import tempfile, pathlib
    >>> from features.definitions import FeatureView, FieldSpec
    >>> view = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x", max=10),), ())
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "ev.csv"
    >>> _ = path.write_text("id,ts,x,y\\na,2000,1.5,1\\nb,1000,99,0\\nc,3000,,1\\n")
    >>> stats = FileStats()
    >>> [(r.event.entity_id, r.label) for r in read_events(view, path, label_field="y", stats=stats)]
    [('a', '1')]
    >>> stats.rows, stats.skipped, stats.summary()
    (3, 2, 'skipped 2 of 3 rows: missing_field 1 (row 4), out_of_range 1 (row 3)')
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from features.definitions import FeatureView
from features.exceptions import FeatureError, RecordError
from features.records import Event, parse_object

TEXT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv"}
PARQUET_SUFFIXES = (".parquet", ".pq")
_EXAMPLES = 3


class EventFileError(FeatureError):
    """An event or label file cannot be read at all (missing, unknown format, no pyarrow, bad header)."""


@dataclass
class FileStats:
    """Rows read and rows skipped per reason (with the first row numbers of each reason)."""

    rows: int = 0
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[int]] = field(default_factory=dict)

    def skip(self, reason: str, row: int) -> None:
        self.skipped += 1
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        rows = self.examples.setdefault(reason, [])
        if len(rows) < _EXAMPLES:
            rows.append(row)

    def summary(self) -> str:
        """``skipped N of M rows: reason count (row a, b, c), ...`` (or ``read M rows``)."""
        if not self.skipped:
            return f"read {self.rows} rows"
        parts = [f"{r} {n} (row {', '.join(map(str, self.examples[r]))})" for r, n in sorted(self.reasons.items())]
        return f"skipped {self.skipped} of {self.rows} rows: {', '.join(parts)}"

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "skipped": self.skipped, "reasons": dict(self.reasons)}


@dataclass(frozen=True, slots=True)
class FileEvent:
    """One valid row: its validated event, the record as it goes to Kafka (label field removed), its label
    cell (``None`` without a label field) and its row number (1 = the first data row; CSV: header is 1)."""

    event: Event
    record: dict[str, Any]
    label: Any
    row: int


def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open("r", encoding="utf-8", newline="")


def file_format(path: Path) -> str:
    """``jsonl``, ``csv``, ``tsv`` or ``parquet`` from the suffix (``.gz`` looked through)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in TEXT_FORMATS:
        return TEXT_FORMATS[last]
    if last in PARQUET_SUFFIXES:
        return "parquet"
    raise EventFileError(f"{path}: unknown event file type {last or '(no suffix)'!r}; use .jsonl, .ndjson, "
                         ".json, .csv, .tsv (optionally .gz) or .parquet")


def _plain(value: Any) -> Any:
    """A Parquet cell as JSON-ready Python: datetimes and dates to RFC 3339 text (UTC when naive), which the
    ``auto`` and ``rfc3339`` timestamp formats read; decimals to float."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).isoformat()
    if type(value).__name__ == "Decimal":
        return float(value)
    return value


def read_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row number, raw row)`` of an event file; CSV cells stay text (see :func:`typed_row`)."""
    p = Path(path)
    fmt = file_format(p)
    if not p.is_file():
        raise EventFileError(f"{p}: no such file")
    if fmt == "parquet":
        yield from _parquet_rows(p)
        return
    with _open_text(p) as fh:
        if fmt in ("csv", "tsv"):
            reader = csv.DictReader(fh, delimiter="\t" if fmt == "tsv" else ",")
            if not reader.fieldnames:
                raise EventFileError(f"{p}: empty CSV file (a header row names the columns)")
            for n, row in enumerate(reader, start=2):
                yield n, {k: v for k, v in row.items() if k is not None}
            return
        first = fh.read(1)
        while first and first.isspace():
            first = fh.read(1)
        if first == "[":  # one JSON array
            try:
                items = json.loads(first + fh.read())
            except json.JSONDecodeError as exc:
                raise EventFileError(f"{p}: not a JSON array nor JSON Lines: {exc}") from None
            for n, item in enumerate(items, start=1):
                yield n, item
            return
        rest = first + fh.read() if first else ""
        for n, line in enumerate(rest.splitlines(), start=1):
            if line.strip():
                yield n, _json_line(line)


def _json_line(line: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            return json.loads(line)  # NaN / Infinity: decoded, then refused as not_finite
        except (ValueError, RecursionError):
            return _Malformed(line[:80])


class _Malformed:
    def __init__(self, text: str) -> None:
        self.text = text


def _parquet_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise EventFileError(f"{path}: reading Parquet needs pyarrow: pip install 'driftline[parquet]' "
                             "(or convert the file to JSON Lines or CSV)") from None
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid / OSError
        raise EventFileError(f"{path}: not a readable Parquet file: {exc}") from None
    n = 0
    for batch in pf.iter_batches(batch_size=8192):
        for row in batch.to_pylist():
            n += 1
            yield n, {k: _plain(v) for k, v in row.items()}


def _number(text: str, kind: str) -> Any:
    """A number cell as a number (``"3.0"`` in an int column is 3); text that is not a number stays text."""
    try:
        return int(text) if kind == "int" else float(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if math.isfinite(value) and value.is_integer() else value


def typed_row(view: FeatureView, row: dict[str, Any]) -> dict[str, Any]:
    """A CSV row with the view's cells typed: empty → missing, number fields → numbers, an integer-looking
    auto timestamp → int. Other columns are kept as text.

    >>> from features.definitions import FieldSpec
    >>> v = FeatureView("v", 1, "t", "id", "ts", (FieldSpec("x"), FieldSpec("n", "int"), FieldSpec("s", "str")), ())
    >>> typed_row(v, {"id": "a", "ts": "5", "x": "1.5", "n": "3", "s": "", "other": "z"})
    {'id': 'a', 'ts': 5, 'x': 1.5, 'n': 3, 'other': 'z'}
    """
    types = {f.name: f.type for f in view.fields}
    out: dict[str, Any] = {}
    for key, cell in row.items():
        if not isinstance(cell, str):
            out[key] = cell
        elif cell == "" and key != view.entity_key:
            continue
        elif types.get(key) in ("float", "int"):
            out[key] = _number(cell.strip(), types[key])
        elif key == view.ts_field and view.ts_format == "auto" and cell.strip().isdigit():
            out[key] = int(cell.strip())
        else:
            out[key] = cell
    return out


def read_events(view: FeatureView, path: str | Path, *, label_field: str | None = None,
                stats: FileStats | None = None) -> Iterator[FileEvent]:
    """Valid events of an event file, in file order; bad rows counted in ``stats`` and skipped."""
    stats = stats if stats is not None else FileStats()
    p = Path(path)
    text_cells = file_format(p) in ("csv", "tsv")
    for n, raw in read_rows(p):
        stats.rows += 1
        if isinstance(raw, _Malformed):
            stats.skip("malformed_json", n)
            continue
        if not isinstance(raw, dict):
            stats.skip("not_an_object", n)
            continue
        row = typed_row(view, raw) if text_cells else raw
        label = None
        if label_field is not None:
            label = row.pop(label_field, None)
            if label is None or label == "":
                stats.skip("missing_label", n)
                continue
        try:
            ev = parse_object(view, row)
        except RecordError as exc:
            stats.skip(exc.reason, n)
            continue
        ev.offset = n
        yield FileEvent(ev, row, label, n)


def in_event_time_order(events: Iterable[FileEvent]) -> list[FileEvent]:
    """Events sorted by event time; ties keep file order (a stable sort)."""
    return sorted(events, key=lambda fe: fe.event.ts_ms)

