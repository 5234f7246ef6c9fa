"""Smoke test of ``bench.faust_bench`` at tiny size: the three-row table's STRUCTURE (never timings), the per-event
agent's bound, cleanup, and that the per-event Faust agent computes the same features as the default engine."""

from __future__ import annotations

import collections
import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

pytest.importorskip("faust")

# bench/ is not an installed package: import it from the checkout root (see test_bench_smoke.py)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench import faust_bench  # noqa: E402
from bench.common import bench_stack, run_id  # noqa: E402
from streams.local.stack import StackInfo  # noqa: E402

COLUMNS = ["engine", "records", "seconds", "records/s", "vs default"]


@pytest.fixture(scope="module")
def stack() -> Iterator[StackInfo]:
    with bench_stack() as info:
        yield info


def _predictions(info: StackInfo, topic: str, timeout_s: float = 30.0, idle_s: float = 3.0) -> list[dict[str, Any]]:
    """Every record of ``topic`` from the start (a fresh group; tansu: first record after ~1.2 s)."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": info.bootstrap_servers, "group.id": f"check-{run_id()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 2000, "heartbeat.interval.ms": 200})
    consumer.subscribe([topic])
    out: list[dict[str, Any]] = []
    deadline, last = time.time() + timeout_s, None
    try:
        while time.time() < deadline:
            m = consumer.poll(0.2)
            if m is None or m.error():
                if last is not None and time.time() - last > idle_s:
                    break
                continue
            last = time.time()
            out.append(orjson.loads(m.value()))
    finally:
        consumer.close()
    return out


@pytest.mark.integration
def test_faust_bench_three_engines(stack: StackInfo) -> None:
    import redis

    rid = run_id()
    (table,) = faust_bench.run(stack, events=1_200, naive_events=200, naive_seconds=20.0, rid=rid)
    assert table.bench == "faust" and table.columns == COLUMNS
    assert [r[0] for r in table.rows] == [faust_bench.ENGINES[e] for e in ("default", "faust", "naive")]
    assert table.limit.startswith("limit: ")
    assert any("prefix" in n and "200 records" in n for n in table.notes)
    default, ours, naive = table.rows
    assert default[1] == ours[1] == 1_200
    assert 0 < naive[1] <= 200  # a bounded prefix: the agent skips what comes after its limit
    for row in table.rows:
        assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in row[2:])
    assert default[4] == 1.0
    assert sum(1 for ln in table.render().splitlines() if ln.startswith("| ")) == 5

    client = redis.Redis.from_url(stack.redis_url)
    try:  # every engine's state was deleted
        assert not list(client.scan_iter(match=f"dl:*:g:bench-features-{rid}*", count=1000))
    finally:
        client.close()

    # the per-event agent's predictions match the batched engines' for the same events (same features; scores
    # equal up to floating point, since predict_proba runs on one row instead of a batch)
    by_id: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for p in _predictions(stack, f"bench-predictions-{rid}"):
        by_id[p["prediction_id"]].append(p)
    triples = [v for v in by_id.values() if len(v) == 3]
    assert triples and abs(len(triples) - naive[1]) <= 3  # the agent may finish an event or two around the stop
    for a, b, c in triples:
        assert a["features"] == b["features"] == c["features"]
        assert a["model_version"] == b["model_version"] == c["model_version"]
        assert math.isclose(a["score"], c["score"], rel_tol=1e-9, abs_tol=1e-12)
