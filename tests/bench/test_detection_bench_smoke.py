"""Smoke test of bench.detection_bench: it runs with --small and its output has the documented structure."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # bench/ is a directory of scripts next to the packages, not an installed package
    sys.path.insert(0, ROOT)

from bench import detection_bench  # noqa: E402


def test_small_run_json_structure(capsys: pytest.CaptureFixture[str]) -> None:
    assert detection_bench.main(["--small", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"sizes", "quality", "speed"}
    rows = out["quality"]
    pairs = {(r["detector"], r["stream"]) for r in rows}
    for det in detection_bench.DETECTORS:
        assert (det, "stationary") in pairs
    assert {r["stream"] for r in rows} == set(detection_bench.STREAMS)
    baseline = [r for r in rows if r["detector"].startswith("every_")]
    assert {r["stream"] for r in baseline} == set(detection_bench.STREAMS)
    for r in rows:
        assert set(r) == {"detector", "stream", "median_delay", "missed", "seeds", "false_alarms_per_100k"}
        assert r["false_alarms_per_100k"] >= 0
        if r["stream"] == "stationary":
            assert r["median_delay"] is None and r["missed"] is None
        else:
            assert 0 <= r["missed"] <= r["seeds"]
    assert {s["what"] for s in out["speed"]} >= {"adwin.update", "ddm.update", "rolling_psi.update"}
    assert all(set(s) == {"what", "per_s", "us_each"} for s in out["speed"])


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert detection_bench.main(["--small"]) == 0
    text = capsys.readouterr().out
    assert "detection quality" in text and "median_delay" in text and "speed" in text
