"""Smoke test of the memory bench: tiny sizes, output STRUCTURE only (never timings or exact byte counts)."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# bench/ is not an installed package: import it from the checkout root (see test_bench_smoke.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import memory_bench  # noqa: E402
from bench.common import Table, bench_stack  # noqa: E402
from streams.local.stack import StackInfo  # noqa: E402


def _check(table: Table, columns: list[str], n_rows: int) -> None:
    assert table.bench == "memory"
    assert table.columns == columns
    assert len(table.rows) == n_rows
    assert all(len(r) == len(columns) for r in table.rows)
    assert table.limit.startswith("limit: ")
    assert sum(1 for ln in table.render().splitlines() if ln.startswith("| ")) == n_rows + 2


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_tiny_config_is_small_and_the_passes_cover_every_kind() -> None:
    cfg = memory_bench.MemoryConfig.tiny()
    assert max(cfg.sizes) <= 1000 and not cfg.default_cap_pass
    assert {(k, m) for k, m, _ in memory_bench._passes(cfg)} == set(memory_bench.WHAT)
    assert ("fresh", "handler", memory_bench.DEFAULT_CACHE_CAP) in memory_bench._passes(memory_bench.MemoryConfig())


@pytest.fixture(scope="module")
def stack() -> Iterator[StackInfo]:
    with bench_stack() as info:
        yield info


@pytest.mark.integration
def test_memory_bench_tables_and_cleanup(stack: StackInfo) -> None:
    import redis

    cfg = memory_bench.MemoryConfig.tiny()
    redis_t, worker_t = memory_bench.run(stack, cfg)

    _check(redis_t, ["state", "entities", "buckets", "raw bytes", "MEMORY USAGE", "used_memory delta",
                     "used_memory / raw", "total GiB", "how"], 2 * len(cfg.sizes))
    assert [(r[0], r[1]) for r in redis_t.rows] == [(k, n) for k in memory_bench.KINDS for n in cfg.sizes]
    assert all(r[8] == "measured" and all(_positive(v) for v in r[2:8]) for r in redis_t.rows)
    by_kind = {r[0]: r for r in redis_t.rows}
    assert by_kind["fresh"][2] == 1 and by_kind["full"][2] > 20  # one bucket vs 30 min of buckets
    assert by_kind["full"][3] > 10 * by_kind["fresh"][3]
    assert all(r[4] > r[3] for r in redis_t.rows)  # Redis holds more than the raw values
    assert not any("differs" in n for n in redis_t.notes)  # replicas are byte-for-byte their templates

    _check(worker_t, ["state", "cache cap", "entities", "cached", "silence entries", "sensor records", "RSS MiB",
                      "delta MiB", "bytes/entity", "RSS / empty", "Redis B/entity (real save)"], 1 + 3 * len(cfg.sizes))
    empty, *rows = worker_t.rows
    assert empty[2] == 0 and _positive(empty[6])
    assert [r[2] for r in rows] == list(cfg.sizes) * 3
    for r in rows:
        alone = r[0] == memory_bench.WHAT[("fresh", "silence")]
        assert r[4] == r[2]  # every entity touched is tracked for silence
        assert r[3] == r[5] == (0 if alone else r[2])  # uncapped: all cached, each with its sensor record
        assert _positive(r[8]) and r[9] >= 1.0
    fresh, full = rows[len(cfg.sizes) - 1], rows[2 * len(cfg.sizes) - 1]
    assert full[8] > 2 * fresh[8] and _positive(fresh[10])  # a cached history costs more than one bucket

    client = redis.Redis.from_url(stack.redis_url)
    try:  # the run flushed its own redis-server
        assert client.dbsize() == 0
    finally:
        client.close()
