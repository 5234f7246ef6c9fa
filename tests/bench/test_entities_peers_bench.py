"""Smoke tests of the entities and peers benches at tiny sizes: table structure and event accounting, never
timings. The peers' jobs need the `bench` venv (``make peers-venv``); without it their rows are left out and
a note says so, which is what is checked then."""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is imported from the checkout root

from bench import entities_bench, peers_bench  # noqa: E402
from bench.common import bench_stack  # noqa: E402


@pytest.mark.integration
def test_entities_bench_rows_per_size_with_full_windows() -> None:
    cfg = entities_bench.EntitiesConfig.tiny()
    with bench_stack() as info:
        [table] = entities_bench.run(info, cfg)
    # every size, then the baseline again; the same recurring readings in every row
    assert [r[0] for r in table.rows] == [*cfg.sizes, f"{cfg.sizes[0]:,} (again)"]
    for size, row in zip([*cfg.sizes, cfg.sizes[0]], table.rows, strict=True):
        assert row[1] == size + cfg.recurring() >= size + max(cfg.events, *cfg.sizes)  # one prediction each
        assert math.isfinite(row[3]) and row[3] > 0 and row[6] > 1000  # a full window is kilobytes in Redis
    first, again = table.rows[0][3], table.rows[-1][3]
    for row in table.rows:  # ratios to the mean of the baseline's two rates
        assert row[5] == pytest.approx(row[3] / ((first + again) / 2), rel=0.01)
    assert "interleaved" not in table.notes[0]


@pytest.mark.integration
def test_entities_bench_rounds_interleave_the_sizes_and_compare_means() -> None:
    """``--rounds 2``: every size twice, interleaved, then the baseline; each row's ratio is to the mean of all the
    baseline's rates, and the notes give each size's mean against the baseline's mean."""
    cfg = dataclasses.replace(entities_bench.EntitiesConfig.tiny(), sizes=(50, 400), rounds=2)
    with bench_stack() as info:
        [table] = entities_bench.run(info, cfg)
    assert [r[0] for r in table.rows] == [50, 400, "50 (again)", "400 (again)", "50 (3rd)"]
    base = [table.rows[i][3] for i in (0, 2, 4)]
    for row in table.rows:
        assert row[5] == pytest.approx(row[3] / (sum(base) / 3), rel=0.01)
    mean_400 = (table.rows[1][3] + table.rows[3][3]) / 2
    assert f"400 entities: {mean_400 / (sum(base) / 3):.3g}x over 2 rows" in table.notes[0]


def test_the_recurring_readings_span_a_bucket_of_event_time_at_the_largest_size() -> None:
    """Every entity of the largest row starts a new bucket within its recurring readings (their bucket starts are
    part of the steady state, not left to where the first one falls)."""
    from bench.common import bench_view
    from bench.memory_bench import history

    cfg = entities_bench.EntitiesConfig(sizes=(50, 400), events=1_200, minutes=10.0)
    view = bench_view("x")
    n = max(cfg.sizes)
    records, second = entities_bench._backlog(history(view, cfg), n, n + cfg.recurring(), cfg.interval_s)
    first_bucket: dict[str, int] = {}
    crossed = set()
    for key, value in records[n:]:
        ts = orjson.loads(value)["ts"]
        bucket = ts - ts % view.bucket_ms
        if first_bucket.setdefault(key.decode(), bucket) != bucket:
            crossed.add(key.decode())
    assert len(crossed) == n


@pytest.mark.parametrize("entities", [400, 500, 1_000])
def test_entities_backlog_does_not_look_like_broken_sensors(entities: int) -> None:
    """Every row's readings trip none of the worker's sensor checks: with the values of template ``k % 8`` at the
    k-th reading, an entity count that 8 divides gave every entity the same values at every reading, and its row
    measured the stuck-sensor path (the 10,000-entity row's later readings)."""
    from bench.common import bench_view, faulty_sensors
    from bench.memory_bench import history

    cfg = entities_bench.EntitiesConfig()
    view = bench_view("x")
    records, _ = entities_bench._backlog(history(view, cfg), entities, 12 * entities, cfg.interval_s)
    bodies = ((key.decode(), orjson.loads(value)) for key, value in records)
    assert faulty_sensors(view, ((e, body["ts"], body) for e, body in bodies)) == []


@pytest.mark.integration
def test_peers_bench_checks_every_output_against_driftline() -> None:
    cfg = peers_bench.PeersConfig.tiny()
    with bench_stack() as info:
        [table] = peers_bench.run(info, cfg)
    driftline, *peers, raw = table.rows
    assert driftline[1] == driftline[5] and driftline[6] == 0 and driftline[7] == 0  # compared, identical
    assert raw[0].startswith("raw confluent-kafka passthrough") and raw[3] == 1.0
    if not peers_bench.PEERS_PYTHON.exists():
        assert peers == [] and sum("make peers-venv" in n for n in table.notes) == len(peers_bench.JOBS)
        return
    assert len(peers) == len(peers_bench.JOBS)
    for row in peers:
        assert row[1] > 0 and row[5] == row[1] and row[6] == 0  # every output compared, no mismatch
