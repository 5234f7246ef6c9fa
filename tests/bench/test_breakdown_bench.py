"""The stage breakdown at tiny sizes: the stages account for the worker's wall time, never timings."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is imported from the checkout root

from bench import breakdown_bench  # noqa: E402
from bench.common import bench_stack  # noqa: E402


def test_stage_clock_accumulates_per_name_and_still_raises() -> None:
    clock = breakdown_bench.StageClock()
    ok = clock.wrap("ok", lambda: 1)
    boom = clock.wrap("boom", lambda: 1 / 0)
    assert ok() + ok() == 2
    with pytest.raises(ZeroDivisionError):
        boom()
    assert clock.calls == {"ok": 2, "boom": 1}
    assert all(v >= 0 for v in clock.seconds.values())


@pytest.mark.integration
def test_breakdown_stages_add_up_to_the_wall_time() -> None:
    cfg = breakdown_bench.BreakdownConfig.tiny()
    with bench_stack() as info:
        (table,) = breakdown_bench.run(info, cfg)
    stages = table.rows[: len(breakdown_bench.STAGES)]
    assert [r[0] for r in stages] == [name for name, _, _ in breakdown_bench.STAGES]
    assert all(r[2] >= 0 and math.isfinite(r[3]) for r in stages)
    # the stages partition the worker's loop: their shares add up to its wall time (first batch → last commit)
    assert sum(r[3] for r in stages) == pytest.approx(100.0, abs=3.0)
    totals = {r[1]: r[2] for r in table.rows if r[0].startswith("all ")}
    assert set(totals) == {"Python", "JSON", "Redis", "broker", "model"}
    assert table.rows[-1][3] == 100.0 and table.limit.startswith("limit: ")
    assert "0 interval checkpoint(s) in the span" in table.notes[0]  # a tiny drain is shorter than one interval


def test_the_default_drain_spans_several_checkpoint_intervals() -> None:
    """The default breakdown drains long enough for the interval checkpoints to be in its span (at ~150,000
    events/s, the fastest this machine kind measured, 400,000 events last more than two default intervals)."""
    from streams.settings import PipelineSettings

    assert breakdown_bench.BreakdownConfig().events / 150_000 >= 2 * PipelineSettings().checkpoint_interval_ms / 1000
