"""Smoke test of bench.control_loop_bench: one tiny end-to-end run, output STRUCTURE only (never timings)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # bench/ is a directory of commands next to the packages, not an installed package
    sys.path.insert(0, ROOT)

from bench import control_loop_bench  # noqa: E402
from bench.common import bench_stack  # noqa: E402
from streams.local.stack import StackInfo, broker_reachable, redis_reachable  # noqa: E402

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack() -> Iterator[StackInfo]:
    with bench_stack() as info:
        yield info


def test_tiny_table(stack: StackInfo) -> None:
    cfg = control_loop_bench.ControlLoopConfig.tiny()
    (table,) = control_loop_bench.run(stack, cfg)
    assert table.bench == "control_loop"
    assert table.columns == control_loop_bench.COLUMNS
    assert [r[0] for r in table.rows] == list(cfg.scenarios)
    assert all(len(r) == len(table.columns) for r in table.rows)
    assert table.limit.startswith("limit: ")
    assert any("bench.detection_bench" in n for n in table.notes)
    rendered = table.render().splitlines()
    assert rendered[0] == f"### {table.title}"
    assert sum(1 for ln in rendered if ln.startswith("| ")) == len(cfg.scenarios) + 2
    cols = {c: i for i, c in enumerate(table.columns)}
    for row in table.rows:
        assert row[cols["runs"]] == len(cfg.seeds)
        assert 0 <= row[cols["ok runs"]] <= row[cols["runs"]]
        assert row[cols["alerts before onset max"]] >= 0
        assert row[cols["direct command→ack ms median"]] > 0
        for what in ("onset→alert s", "onset→alert events", "command→acks ms", "alert→ack ms"):
            med, mx = row[cols[f"{what} median"]], row[cols[f"{what} max"]]
            assert (med is None) == (mx is None)
            assert med is None or med <= mx
    # the demo runs were handed the bench stack: they neither started a second one nor stopped this one
    assert broker_reachable(stack.bootstrap_servers) and redis_reachable(stack.redis_url)
    assert not list(Path(stack.run_dir).glob("loop-*/stack.json"))


def test_config_sizes() -> None:
    tiny, full = control_loop_bench.ControlLoopConfig.tiny(), control_loop_bench.ControlLoopConfig()
    assert tiny.runs == 1 and full.runs == len(full.scenarios) * len(full.seeds)
    demo = full.demo("concept-drift", 11)
    assert (demo.scenario, demo.seed, demo.entities) == ("concept-drift", 11, full.entities)
    # training skips the view's warm-up (30 min of event time): the history must be longer
    assert tiny.train_duration_s * tiny.time_scale > 1800 and full.train_duration_s * full.time_scale > 1800
