"""Smoke test of the pipeline bench at tiny sizes: table structure and event accounting, never timings."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is imported from the checkout root

from bench import pipeline_bench  # noqa: E402
from bench.common import bench_stack, faulty_sensors  # noqa: E402


def _finite_positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_rate_from_timestamps_ignores_start_up_and_tail() -> None:
    steady = list(range(0, 10_000, 10))  # 100/s for 10 s
    slow_start = [-5_000 + i * 500 for i in range(10)]  # a 5 s group join with a trickle
    assert pipeline_bench.rate_from_timestamps(slow_start + steady) == pytest.approx(100.0, rel=0.05)
    assert math.isnan(pipeline_bench.rate_from_timestamps([1, 2, 3]))


@pytest.mark.integration
def test_pipeline_bench_tables() -> None:
    cfg = pipeline_bench.PipelineConfig.tiny()
    with bench_stack() as info:
        throughput, latency, scaling = pipeline_bench.run(info, cfg)
    assert throughput.columns == ["path", "events", "events/s", "us/event", "vs passthrough"]
    fused, *other_intervals, raw = throughput.rows
    assert len(other_intervals) == len(cfg.checkpoint_intervals)  # the default is not among tiny's
    for row in (fused, *other_intervals):  # every event got exactly one prediction
        assert row[1] == raw[1] == cfg.events and all(_finite_positive(v) for v in row[2:] + raw[2:])
    # + a broker baseline per level, + one on the throughput table's partition count, + one with small requests
    assert len(latency.rows) == len(cfg.latency_levels) * (len(cfg.latency_linger_ms) + 1) + 2
    levels = len(cfg.latency_levels)
    assert [r[1] for r in latency.rows[-levels - 2:-2]] == ["broker only"] * levels
    assert cfg.partitions != cfg.latency_partitions
    assert latency.rows[-2][1] == f"broker only, {cfg.partitions} partitions"
    assert latency.rows[-1][1] == f"broker only, events sent with linger {cfg.compare_load_linger_ms} ms"
    for row in latency.rows:
        assert row[4] > 0 and row[5] <= row[6] <= row[7] <= row[8]  # measured, ordered percentiles
    assert [r[0] for r in scaling.rows] == list(cfg.scaling)
    assert all(r[2] == cfg.scaling_events for r in scaling.rows)
    assert scaling.rows[0][4] == 1.0
    for t in (throughput, latency, scaling):
        assert t.limit.startswith("limit: ") and t.render().startswith("### ")


def test_live_stream_does_not_look_like_broken_sensors() -> None:
    """The latency rows' live stream, in the order it is sent (warm-up, then the templates cycled), trips none of
    the worker's sensor checks: a latency measured on a stream of faulty sensors measures the fault path."""
    cfg = pipeline_bench.PipelineConfig()
    records = pipeline_bench.to_records(pipeline_bench.vitals_stream(cfg.entities, 2.0))
    templates = pipeline_bench.live_templates(records)
    sent = templates[: cfg.entities] + [templates[i % len(templates)] for i in range(3 * len(templates))]
    readings = ((key.decode(), ts * 10, value) for ts, (key, value) in enumerate(sent))  # stamped as sent
    assert faulty_sensors(pipeline_bench.bench_view("x"), readings) == []
