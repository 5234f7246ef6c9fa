"""Training from the user's history: each file format, a label column or a label file (as of), a time split,
metrics and reference profile in the registry, no leakage from after the labels; and the CLI around it."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features.views import VITALS_VIEW
from models.exceptions import ModelError, TrainingError
from models.history_training import HistorySpec, build_history_set, train_from_history
from models.registry import Registry
from streams.local.cli import main
from streams.local.simulator import SimConfig, generate


@pytest.fixture(scope="module")
def history() -> list[dict[str, Any]]:
    sim = generate(SimConfig(entities=30, rate=400, duration_s=40, time_scale=90, seed=3))
    return [{**e.value, "deteriorating": e.label} for e in sim]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    if path.suffix == ".csv":
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    elif path.suffix == ".parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("name", ["h.jsonl", "h.csv", "h.parquet"])
def test_training_from_each_format_registers_the_same_model(tmp_path: Path, history: list[dict[str, Any]],
                                                            name: str) -> None:
    registry = Registry(tmp_path / "reg")
    spec = HistorySpec(VITALS_VIEW, _write(tmp_path / name, history), label_field="deteriorating")
    mv, report = train_from_history(registry, "risk", spec, seed=1)
    assert mv.stage == "staging" and mv.feature_names == VITALS_VIEW.feature_names
    assert 0.75 < mv.metrics["auc"] <= 1.0, mv.metrics
    assert mv.reference["features"] and mv.tags["view"] == "vitals" and mv.tags["split"] == "time"
    assert report["events"]["skipped"] == 0 and report["labels"]["labelled_rows"] == mv.metrics["n_train"] + \
        mv.metrics["n_test"]
    # time split: every validation row is later than every training row
    assert mv.metrics["train_until_ts_ms"] < mv.metrics["split_ts_ms"]
    # same numbers whatever the file format
    ref = train_from_history(Registry(tmp_path / "ref"), "risk",
                             HistorySpec(VITALS_VIEW, _write(tmp_path / "r.jsonl", history),
                                         label_field="deteriorating"), seed=1)[0]
    assert mv.metrics == ref.metrics


def test_validation_rows_come_after_training_rows(tmp_path: Path, history: list[dict[str, Any]]) -> None:
    spec = HistorySpec(VITALS_VIEW, _write(tmp_path / "h.jsonl", history), label_field="deteriorating")
    data, _ = build_history_set(spec)
    assert data.ts is not None and len(data.ts) == len(data.y)
    from models.train import time_split
    train, val = time_split(data.ts, 0.25)
    assert data.ts[train].max() <= data.ts[val].min() and len(val) == round(len(data.y) * 0.25)


def test_label_file_join_never_sees_later_events(tmp_path: Path, history: list[dict[str, Any]]) -> None:
    """Labels at times t_i: changing every event AFTER the last label time cannot change any training row."""
    events = [{k: v for k, v in r.items() if k != "deteriorating"} for r in history]
    labelled = history[len(history) // 2: len(history) * 3 // 4: 7]
    labels = [{"patient_id": r["patient_id"], "label_ts": r["ts"] + 500, "outcome": r["deteriorating"]}
              for r in labelled]
    last = max(lab["label_ts"] for lab in labels)
    future = [dict(r, hr=249.0, spo2=50.0) if r["ts"] > last else r for r in events]
    sets = []
    for name, evs in (("a", events), ("b", future)):
        spec = HistorySpec(VITALS_VIEW, _write(tmp_path / f"{name}.jsonl", evs),
                           labels=_write(tmp_path / f"{name}-labels.csv", labels), target="outcome")
        sets.append(build_history_set(spec))
    (a, report), (b, _) = sets
    assert report["labels"]["joined"] == len(labels) and report["labels"]["unmatched"] == 0
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, [lab["outcome"] for lab in labels])
    assert sorted(a.ts.tolist()) == sorted(lab["label_ts"] for lab in labels)


def test_bad_specs_say_what_to_do(tmp_path: Path, history: list[dict[str, Any]]) -> None:
    path = _write(tmp_path / "h.jsonl", history)
    with pytest.raises(ModelError, match="either as a column"):
        HistorySpec(VITALS_VIEW, path)
    with pytest.raises(ModelError, match="would leak the answer"):
        HistorySpec(VITALS_VIEW, path, label_field="hr")
    with pytest.raises(ModelError, match="--labels needs --target"):
        HistorySpec(VITALS_VIEW, path, labels=path)
    only_ones = [dict(r, deteriorating=1) for r in history]
    with pytest.raises(TrainingError, match="exactly two classes"):
        train_from_history(Registry(tmp_path / "r"), "m", HistorySpec(
            VITALS_VIEW, _write(tmp_path / "ones.jsonl", only_ones), label_field="deteriorating"))


def test_cli_train_validate_and_show(tmp_path: Path, history: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DRIFTLINE_REGISTRY", str(tmp_path / "reg"))
    monkeypatch.setenv("DRIFTLINE_RUN_DIR", str(tmp_path / "run"))
    view_file = tmp_path / "vitals.toml"
    assert main(["views", "show", "vitals"]) == 0
    view_file.write_text(capsys.readouterr().out.replace('name = "vitals"', 'name = "my-vitals"'))
    events = _write(tmp_path / "h.csv", history)
    assert main(["views", "validate", str(view_file), "--events", str(events), "--label-field", "deteriorating"]) == 0
    assert json.loads(capsys.readouterr().out)["events"]["rows"] == len(history)
    assert main(["train", "--view", str(view_file), "--events", str(events), "--label-field", "deteriorating",
                 "--validation", "0.3", "--promote"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "my-vitals-model" and out["stage"] == "production" and out["metrics"]["auc"] > 0.75
    stored = Registry(tmp_path / "reg").production("my-vitals-model")
    assert stored is not None and stored.metrics["n_test"] == out["split"]["n_validation"]
    view_file.write_text(view_file.read_text().replace('agg = "std"', 'agg = "stdev"'))
    assert main(["train", "--view", str(view_file), "--events", str(events), "--label-field", "deteriorating"]) == 2
    assert "line 31, features[1].agg: unknown aggregation 'stdev'" in capsys.readouterr().err
