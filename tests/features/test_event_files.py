"""Event files: the same events from JSON Lines, CSV, gzip and Parquet; bad rows counted with row numbers;
timestamp formats; and the online/offline parity of a file-defined view (hypothesis)."""

from __future__ import annotations

import csv
import gzip
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.engine import FeatureEngine
from features.event_files import EventFileError, FileStats, in_event_time_order, read_events
from features.offline import compute_offline
from features.records import parse_record
from features.store import MemoryFeatureStore, SourcePosition
from features.view_files import loads_view
from streams import codec

VIEW_TOML = """
name = "machines"
entity_key = "machine"
bucket = "{bucket}"
allowed_lateness = "0s"
unknown_fields = "{unknown}"

[timestamp]
field = "at"
format = "{fmt}"

[fields]
temp = {{ type = "float", min = -50, max = 150 }}
rpm = {{ type = "int", min = 0, max = 20000 }}
mode = {{ type = "str", required = false }}

[[features]]
field = "temp"
aggs = ["mean", "max", "std", "slope"]
window = "{win}"

[[features]]
field = "rpm"
aggs = ["sum", "last"]
window = {{ kind = "hopping", length = "{win}", step = "{bucket}" }}

[[features]]
name = "modes"
field = "mode"
agg = "distinct_count"
window = {{ kind = "tumbling", length = "{win}" }}
"""


def machines_view(fmt: str = "epoch_s", bucket: str = "10s", win: str = "1m", unknown: str = "ignore"):  # noqa: ANN201
    return loads_view(VIEW_TOML.format(fmt=fmt, bucket=bucket, win=win, unknown=unknown), "toml")


T0 = 1_700_000_000  # seconds


def _rows() -> list[dict[str, Any]]:
    return [
        {"machine": "m1", "at": T0 + 5, "temp": 20.5, "rpm": 1000, "mode": "run", "broken": 0},
        {"machine": "m2", "at": T0 + 1, "temp": 30.0, "rpm": 1500, "broken": 1},
        {"machine": "m1", "at": T0 + 9, "temp": 200.0, "rpm": 1000, "broken": 0},  # out of range
        {"machine": "m1", "at": T0 + 12, "temp": 22.0, "rpm": 900, "mode": "idle", "broken": 1},
        {"machine": "m2", "at": "yesterday", "temp": 1.0, "rpm": 1, "broken": 0},  # bad timestamp
        {"machine": "m2", "at": T0 + 30, "rpm": 1400, "broken": 0},  # temp missing
    ]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    fmt = path.name.split(".")[1]
    opener = gzip.open if path.suffix == ".gz" else open
    if fmt == "parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq
        cols = sorted({k for r in rows for k in r})
        pq.write_table(pa.table({c: [str(r.get(c)) if c == "at" else r.get(c) for r in rows] for c in cols}), path)
        return path
    with opener(path, "wt", newline="") as fh:
        if fmt == "csv":
            w = csv.DictWriter(fh, fieldnames=sorted({k for r in rows for k in r}))
            w.writeheader()
            w.writerows(rows)
        else:
            fh.write("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("name", ["ev.jsonl", "ev.csv", "ev.jsonl.gz", "ev.csv.gz", "ev.parquet"])
def test_every_format_gives_the_same_events_and_counts(tmp_path: Path, name: str) -> None:
    view = machines_view()
    stats = FileStats()
    got = list(read_events(view, _write(tmp_path / name, _rows()), label_field="broken", stats=stats))
    assert [(fe.event.entity_id, fe.event.ts_ms, fe.event.values, int(fe.label)) for fe in got] == [
        ("m1", (T0 + 5) * 1000, {"temp": 20.5, "rpm": 1000, "mode": "run"}, 0),
        ("m2", (T0 + 1) * 1000, {"temp": 30.0, "rpm": 1500}, 1),
        ("m1", (T0 + 12) * 1000, {"temp": 22.0, "rpm": 900, "mode": "idle"}, 1),
    ]
    assert "broken" not in got[0].record  # the label column never reaches Kafka as a field
    assert stats.rows == 6 and stats.reasons == {"out_of_range": 1, "bad_timestamp": 1, "missing_field": 1}
    first_row = 2 if "csv" in name else 1
    assert stats.examples["out_of_range"] == [first_row + 2]
    assert [fe.event.ts_ms for fe in in_event_time_order(got)] == sorted(fe.event.ts_ms for fe in got)


def test_parquet_timestamps_are_read_as_rfc3339(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    view = machines_view(fmt="rfc3339")
    when = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    pq.write_table(pa.table({"machine": ["a"], "at": [when], "temp": [1.0], "rpm": [3]}), tmp_path / "t.parquet")
    (fe,) = read_events(view, tmp_path / "t.parquet")
    assert fe.event.ts_ms == int(when.timestamp() * 1000)


@pytest.mark.parametrize(("fmt", "cell", "ms"), [
    ("epoch_ms", "1700000000123", 1_700_000_000_123),
    ("epoch_s", "1700000000.5", 1_700_000_000_500),
    ("rfc3339", "2023-11-14T22:13:20+00:00", 1_700_000_000_000),
    ("%Y-%m-%d %H:%M:%S", "2023-11-14 22:13:20", 1_700_000_000_000),
    ("auto", "1700000000000", 1_700_000_000_000),
])
def test_csv_timestamps_in_each_declared_format(tmp_path: Path, fmt: str, cell: str, ms: int) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"machine,at,temp,rpm\na,{cell},1.0,2\n")
    (fe,) = read_events(machines_view(fmt=fmt), path)
    assert fe.event.ts_ms == ms
    # what produce sends is read back online, by the same view, to the same time
    assert parse_record(machines_view(fmt=fmt), b"a", codec.encode(fe.record)).ts_ms == ms


def test_unreadable_files_say_why(tmp_path: Path) -> None:
    view = machines_view()
    with pytest.raises(EventFileError, match="unknown event file type '.xlsx'"):
        list(read_events(view, tmp_path / "a.xlsx"))
    with pytest.raises(EventFileError, match="no such file"):
        list(read_events(view, tmp_path / "a.csv"))
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(EventFileError, match="empty CSV file"):
        list(read_events(view, tmp_path / "e.csv"))


def test_malformed_lines_and_non_objects_are_counted(tmp_path: Path) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text('{"machine": "a", "at": 1700000000, "temp": 1, "rpm": 1}\n{oops\n[1, 2]\n\n'
                    '{"machine": "a", "at": 1700000001, "temp": NaN, "rpm": 1}\n')
    stats = FileStats()
    assert len(list(read_events(machines_view(), path, stats=stats))) == 1
    assert stats.reasons == {"malformed_json": 1, "not_an_object": 1, "not_finite": 1}
    assert stats.summary() == ("skipped 3 of 4 rows: malformed_json 1 (row 2), not_an_object 1 (row 3), "
                               "not_finite 1 (row 5)")


# --- parity: the file-defined view, offline from the file == online from the records produce sends --------

@st.composite
def event_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    t = T0 * 1000 + draw(st.integers(0, 999))
    rows = []
    for _ in range(draw(st.integers(1, 50))):
        t += draw(st.integers(0, 20_000))
        row: dict[str, Any] = {"machine": draw(st.sampled_from(["m1", "m2", "m3"])),
                               "at": datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S"),
                               "temp": draw(st.integers(-200, 600)) / 4, "rpm": draw(st.integers(0, 20_000))}
        if draw(st.booleans()):
            row["mode"] = draw(st.sampled_from(["run", "idle", "stop"]))
        if draw(st.integers(0, 15)) == 0:
            row["rpm"] = -1  # a bad row, on both paths
        rows.append(row)
    return rows


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or math.isclose(a[k], b[k], rel_tol=1e-9, abs_tol=1e-9) for k in a)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_rows(), st.sampled_from(["ev.csv", "ev.jsonl"]), st.data())
def test_file_view_offline_equals_online(tmp_path: Path, rows: list[dict[str, Any]], name: str,
                                         data: st.DataObject) -> None:
    view = machines_view(fmt="%Y-%m-%d %H:%M:%S", bucket="5s", win="30s")
    path = _write(tmp_path / name, rows)
    events = in_event_time_order(read_events(view, path))
    offline = [(r.entity_id, r.ts_ms, r.features) for r in compute_offline(view, (fe.event for fe in events))]

    # online: the bytes `driftline produce --from` sends, parsed by the pipeline's parser, in random batches
    store, engine, pos = MemoryFeatureStore(), FeatureEngine(view), SourcePosition("g", view.source_topic, 0)
    records = [(fe.event.entity_id.encode(), codec.encode(fe.record)) for fe in events]
    online: list[tuple[str, int, dict[str, float]]] = []
    i = 0
    while i < len(records):
        j = min(len(records), i + data.draw(st.integers(1, 8)))
        batch = []
        for offset, (key, value) in enumerate(records[i:j], start=i):
            ev = parse_record(view, key, value)
            ev.offset, ev.partition = offset, 0
            batch.append(ev)
        states, off = store.load(view, pos, {e.entity_id for e in batch})
        _, wm = store.position(view, pos)
        res = engine.process(states, batch, watermark_ms=wm, min_offset=off)
        store.save(view, pos, states, expected_offset=off, new_offset=max(off, res.last_offset),
                   ttl_ms=view.retention_ms, watermark_ms=res.watermark_ms)
        online.extend((e.entity_id, e.ts_ms, vec) for e, vec in res.vectors)
        i = j
    assert len(online) == len(offline) == len(events)
    for got, want in zip(online, offline, strict=True):
        assert got[:2] == want[:2] and _same(got[2], want[2]), (got, want)
