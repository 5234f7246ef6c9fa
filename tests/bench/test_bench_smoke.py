"""Smoke tests of the benchmarks: tiny sizes, output STRUCTURE only (never timings)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# bench/ is not an installed package (pyproject lists streams, features, models, monitor): import it from the
# checkout root, which --import-mode=importlib does not put on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import __main__ as runner  # noqa: E402
from bench import cluster_bench, control_bench, scorer_bench, store_bench  # noqa: E402
from bench.common import Table, bench_stack, delete_group_keys, fmt  # noqa: E402
from streams.local.stack import StackInfo  # noqa: E402


def _check(table: Table, bench: str, columns: list[str], n_rows: int) -> None:
    assert table.bench == bench
    assert table.columns == columns
    assert len(table.rows) == n_rows
    assert all(len(r) == len(columns) for r in table.rows)
    assert table.limit.startswith("limit: ")
    rendered = table.render().splitlines()
    assert rendered[0] == f"### {table.title}"
    assert sum(1 for ln in rendered if ln.startswith("| ")) == n_rows + 2  # header, rule, rows


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_table_render_and_dict() -> None:
    t = Table("x", "T", ["a", "b"], [["r", 1.5], ["s", None]], limit="limit: y", notes=["n"])
    md = t.render()
    assert "| a | b |" in md and "| --- | --- |" in md and "| s | - |" in md
    assert md.endswith("limit: y")
    assert json.loads(json.dumps(t.to_dict()))["rows"] == [["r", 1.5], ["s", None]]
    assert fmt(1500.0) == "1,500"


def test_scorer_bench_tables() -> None:
    cfg = scorer_bench.ScorerConfig.tiny()
    champ, canary = scorer_bench.run(cfg)
    _check(champ, "scorer", ["batch", "rows", "scorer rows/s", "model call rows/s", "predict_proba rows/s",
                             "overhead x", "plan x", "scorer us/row", "model us/row"], len(cfg.batches))
    assert [r[0] for r in champ.rows] == list(cfg.batches)
    assert all(_positive(v) for r in champ.rows for v in r)
    _check(canary, "scorer", ["batch", "rows", "scorer rows/s", "predictions/s", "baseline rows/s", "overhead x"],
           len(cfg.batches))
    for r in canary.rows:  # shadow on: more predictions than rows, never fewer
        assert r[3] >= r[2] > 0


def test_features_output_parser() -> None:
    out = "100 events, 5 entities, batches of 10, best of 1\nview     stage   events/s   us/event\n" \
          "vitals   parse                       156,657        6.4\n" \
          "gps      online (store)                6,167      162.2\n"
    t = runner.parse_features_output(out)
    assert t.rows == [["vitals", "parse", 156657, 6.4], ["gps", "online (store)", 6167, 162.2]]
    assert t.notes == ["100 events, 5 entities, batches of 10, best of 1"]


def test_runner_cpu_benches_json_and_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = tmp_path / "RESULTS.md"
    tables = runner.main(["--json", "--tiny", "--only", "features,scorer", "--results", str(results)])
    data = json.loads(capsys.readouterr().out)
    assert [d["bench"] for d in data] == ["features", "scorer", "scorer"] == [t.bench for t in tables]
    assert {"title", "columns", "rows", "limit", "notes"} <= set(data[0])
    assert {r[0] for r in data[0]["rows"]} == {"vitals", "gps"}
    md = results.read_text()
    assert md.startswith("# driftline benchmark results")
    assert "## features" in md and "## scorer" in md and "## store" not in md
    assert md.count("limit: ") == 3


def test_partial_run_keeps_the_other_sections_of_the_results_file(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# driftline benchmark results\n\nold\n\n## pipeline\n\nkept pipeline table\n\n"
                       "## scorer\n\nstale scorer table\n")
    runner.main(["--tiny", "--only", "scorer", "--results", str(results)])
    md = results.read_text()
    assert "kept pipeline table" in md and "stale scorer table" not in md and "### Scorer.score" in md
    assert md.index("## pipeline") < md.index("## scorer") and "sections scorer regenerated" in md


def test_runner_rejects_unknown_bench(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        runner.main(["--only", "nope", "--results", str(tmp_path / "r.md")])


@pytest.fixture(scope="module")
def stack() -> Iterator[StackInfo]:
    with bench_stack() as info:
        yield info


@pytest.mark.integration
def test_control_bench_table(stack: StackInfo) -> None:
    cfg = control_bench.ControlConfig.tiny()
    (table,) = control_bench.run(stack, cfg)
    _check(table, "control", ["workers", "commands", "all acked median", "all acked max", "first ack median",
                              "ack stamped median", "all applied"], len(cfg.workers))
    assert [r[0] for r in table.rows] == list(cfg.workers)
    for r in table.rows:
        assert r[1] == cfg.repeats and r[6] is True
        assert 0 < r[4] <= r[2] <= r[3]  # first ack <= median of all-acked <= max
    assert any(f"batch_max_ms = {cfg.batch_max_ms}" in n for n in table.notes)


@pytest.mark.integration
def test_store_bench_tables_and_cleanup(stack: StackInfo) -> None:
    import redis

    cfg = store_bench.StoreConfig.tiny()
    reads, mem, thr = store_bench.run(stack, cfg)
    _check(reads, "store", ["read", "p50 ms", "p95 ms", "p99 ms", "entities/s at p50"], 8)
    measured = [reads.rows[i] for i in (0, 1, 2, 5, 6)]  # rows 3, 4 and 7 are ratios
    assert all(_positive(v) for r in measured for v in r[1:])
    assert all(r[1] <= r[2] <= r[3] for r in measured)  # percentiles are ordered
    _check(mem, "store", ["metric", "value"], 8)
    metrics = dict((r[0], r[1]) for r in mem.rows)
    assert metrics["entities"] == cfg.entities
    assert metrics["buckets (hash fields) per entity"] > 0 and metrics["MEMORY USAGE per entity (bytes)"] > 0
    _check(thr, "store", ["path", "events", "events/s", "us/event"], 3)
    assert thr.rows[0][1] == thr.rows[1][1] == cfg.stream_events
    client = redis.Redis.from_url(stack.redis_url)
    try:  # the run deleted what it wrote
        assert not list(client.scan_iter(match="dl:*:g:bench-*", count=1000))
        assert delete_group_keys(client, "bench-none") == 0
    finally:
        client.close()


@pytest.mark.integration
def test_cluster_bench_tables(stack: StackInfo) -> None:
    cfg = cluster_bench.ClusterConfig.tiny()
    reads, agg, pipe = cluster_bench.run(stack, cfg)
    _check(reads, "cluster", ["backend", "read", "p50 ms", "p95 ms", "p99 ms", "reads"], 8)
    assert [r[0] for r in reads.rows] == ["one Redis"] * 3 + ["3-master cluster"] * 3 + ["one Redis",
                                                                                        "3-master cluster"]
    assert all(r[2] <= r[3] <= r[4] and r[5] == cfg.reads for r in reads.rows[:6])  # the last two are ratios
    _check(agg, "cluster", ["backend", "events", "events/s (mean)", "vs one Redis", "runs"], 2)
    assert all(r[1] == cfg.stream_events and _positive(r[2]) for r in agg.rows)
    _check(pipe, "cluster", ["backend", "workers", "events", "events/s (mean)", "vs one Redis, 1 worker", "runs"], 2)
    assert all(r[2] == cfg.pipeline_events for r in pipe.rows)


def test_runner_detection_tables(tmp_path: Path) -> None:
    tables = runner.main(["--tiny", "--only", "detection", "--results", str(tmp_path / "r.md")])
    multi, targets, warmup, quality, speed = tables
    assert multi.columns[:2] == ["family", "detector"] and {r[1] for r in multi.rows} >= {"river ADWIN()",
                                                                                         "policy: pages"}
    assert [r[0] for r in targets.rows][0].startswith("changes detected") and len(warmup.rows) >= 2
    assert quality.columns == ["detector", "stream", "median delay", "missed", "seeds", "false alarms /100k"]
    assert any(str(r[0]).startswith("every_") for r in quality.rows)  # the trivial baseline is in the table
    assert {r[0] for r in speed.rows} >= {"adwin.update", "ddm.update", "rolling_psi.update"}
    assert all(_positive(r[1]) for r in speed.rows)
    assert "## detection" in (tmp_path / "r.md").read_text()
