"""Smoke test of bench.detection_bench: it runs with --tiny, its output has the documented structure, its scoring
follows the documented definitions, and the warm-up replay equals the full run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # bench/ is a directory of scripts next to the packages, not an installed package
    sys.path.insert(0, ROOT)

from bench import detection_bench, detection_shift  # noqa: E402
from bench.detection_streams import Family, error_stream, families  # noqa: E402


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    return detection_bench.run(tiny=True, cache=None)


def test_tiny_run_structure(tiny: dict[str, Any]) -> None:
    fams = families(tiny=True)
    assert {(r["family"], r["detector"]) for r in tiny["multi_change"]} == {
        (f.name, d) for f in fams for d in detection_bench.DETECTORS}
    for r in tiny["multi_change"]:
        assert r["false_alarms_per_100k"] >= 0
        if r["family"].endswith("stationary"):
            assert r["detected"] is None and r["median_delay"] is None
        else:
            found, total = map(int, r["detected"].split("/"))
            assert 0 <= found <= total == 3 * r["seeds"]
    assert [r["warmup"] for r in tiny["warmup"]] == list(detection_bench.WARMUPS)
    assert len(tiny["targets"]) == 4 and all(isinstance(t["met"], bool) for t in tiny["targets"])
    assert {r["detector"] for r in tiny["quality"]} >= set(detection_shift.DETECTORS)
    tables = detection_bench.as_tables(tiny)
    assert len(tables) == 5 and tables[0].title.startswith("Multi-change")
    assert "| policy: pages |" in tables[0].render()


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert detection_bench.main(["--tiny", "--json", "--no-shift", "--cache", ""]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"multi_change", "targets", "warmup", "families"} <= set(out) and "quality" not in out


def test_scoring_follows_the_definitions() -> None:
    fam = Family("f", "bernoulli", 1000, (10_000, 30_000), 50_000, 1)  # onsets 9,500 and 29,500
    s = detection_bench.Score()
    s.add([100, 9_600, 9_700, 19_499, 19_500, 29_400, 30_000, 39_499, 39_500], fam)
    assert (s.detected, s.changes, s.delays) == (2, 2, [100, 500])
    assert s.repeats == 3  # 9_700, 19_499 and 39_499: inside a window, after its first alarm
    assert s.false_alarms == 4 and s.fa_per_100k == 8.0  # 100; 19_500 (past the horizon); 29_400 (before); 39_500


def test_the_warmup_replay_equals_the_full_policy_run() -> None:
    prof = detection_bench._profile()
    for fam in families(tiny=True)[:2]:
        errors = error_stream(fam, 0)
        rec = detection_bench.record(errors, prof)
        for warmup in (0, 500):
            assert detection_bench.replay(rec, prof, warmup) == detection_bench.run_policy(errors, prof, warmup)


def test_streams_are_cached_and_read_back_identically(tmp_path: Path) -> None:
    fam = families(tiny=True)[0]
    first = error_stream(fam, 0, tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    assert np.array_equal(error_stream(fam, 0, tmp_path), first) and first.dtype == np.int8
    assert 0.0 < first.mean() < 0.5
