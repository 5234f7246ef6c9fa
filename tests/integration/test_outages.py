"""Outages: Redis dies mid-stream and comes back; the worker stops committing, says it is unhealthy, retries with
backoff and resumes by itself with nothing lost and nothing counted twice."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from streams.procs import free_port, spawn, stop_pid, wait_for_port
from streams.stack import find_redis_server
from streams.workers import build_pipeline

from .test_scale_out import (  # noqa: F401 - fixtures and helpers shared with the scale-out tests
    MODEL,
    assert_state_matches_offline,
    env,
    expected_prediction_ids,
    produce_all,
    read_predictions,
)

pytestmark = pytest.mark.integration


def start_redis(port: int, data_dir: Path, log: Path) -> int:
    binary = find_redis_server()
    assert binary, "no redis-server"
    proc = spawn([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                  "--appendfsync", "always", "--dir", str(data_dir)], log)
    wait_for_port("127.0.0.1", port, 10)
    return proc.pid


@pytest.fixture()
def own_redis(tmp_path: Path):  # noqa: ANN201
    port = free_port()
    pids = [start_redis(port, tmp_path, tmp_path / "redis.log")]
    yield port, pids, tmp_path
    for pid in pids:
        stop_pid(pid)


def test_redis_down_10s_mid_stream(own_redis, env) -> None:  # noqa: ANN001, F811 - env is the shared fixture
    port, pids, data_dir = own_redis
    settings, view, sim = env
    settings = settings.replace(redis_url=f"redis://127.0.0.1:{port}/0")
    worker = build_pipeline(settings, view, MODEL, instance="outage")[0].start()
    try:
        third = len(sim) // 3
        produce_all(settings, view.source_topic, sim[:third])
        expected_first = expected_prediction_ids(view, sim[:third])
        read_predictions(settings, expected_first, timeout_s=60)
        stop_pid(pids.pop(), timeout_s=0.1)  # SIGTERM then SIGKILL: Redis is gone
        produce_all(settings, view.source_topic, sim[third:2 * third])
        saw_unhealthy = False
        commit_before = worker.loop.health.last_commit_at
        deadline = time.time() + 10
        while time.time() < deadline:
            state = worker.health()
            saw_unhealthy |= not state["healthy"]
            time.sleep(0.5)
        assert saw_unhealthy, worker.health()
        assert worker.loop.health.last_commit_at == commit_before  # nothing committed while Redis was down
        assert worker.loop.health.consecutive_failures > 0
        pids.append(start_redis(port, data_dir, data_dir / "redis2.log"))  # back, with its append-only file
        produce_all(settings, view.source_topic, sim[2 * third:])
        preds = read_predictions(settings, expected_prediction_ids(view, sim), timeout_s=90)
        assert worker.alive and worker.error is None  # the worker never died
        assert worker.health()["healthy"]
    finally:
        worker.stop()
    counts = Counter(p["prediction_id"] for p in preds if p["variant"] == "champion")
    assert set(counts) == expected_prediction_ids(view, sim)  # nothing lost
    assert_state_matches_offline(settings, view, sim)  # nothing counted twice
