"""``kill -9`` with a checkpoint interval, on the real broker and Redis: the killed worker's partitions replay from
their last checkpoint (state, latest vectors and offset saved in one atomic step), so every event gets a
prediction, every replayed prediction repeats the same ``prediction_id`` with the same features and score, and
the window state in Redis equals an offline recomputation (nothing counted twice)."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from urllib.request import urlopen

import pytest

from streams.local.procs import stop_pid

from .test_scale_out import (  # noqa: F401 - the env fixture and helpers shared with the scale-out tests
    MODEL,
    assert_state_matches_offline,
    env,
    expected_prediction_ids,
    produce_all,
    read_predictions,
    worker_env,
)

pytestmark = pytest.mark.integration


def _assigned(health_url: str) -> list[str]:
    try:
        with urlopen(health_url, timeout=5) as resp:  # noqa: S310 - our own worker on 127.0.0.1
            return json.loads(resp.read())["assigned"]
    except Exception as exc:  # noqa: BLE001 - /health answers 503 with the same body when unhealthy
        body = getattr(exc, "read", lambda: b"{}")()
        return json.loads(body or b"{}").get("assigned", [])


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)


def test_kill_9_between_checkpoints_replays_the_same_features_and_ids(env, tmp_path: Path) -> None:  # noqa: ANN001, F811
    settings, view, sim = env
    child_env = worker_env(settings, tmp_path / "run", DRIFTLINE_BATCH_MAX_ROWS="50",
                           DRIFTLINE_CHECKPOINT_INTERVAL_MS="30000")
    cmd = [sys.executable, "-m", "streams.local.cli", "run", "pipeline", "--model", MODEL, "--topic", view.source_topic]
    procs = [subprocess.Popen(cmd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(2)]
    try:
        health = []
        for p in procs:  # each prints its /metrics and /health URLs once it is built
            assert p.stdout is not None
            health.append(json.loads(p.stdout.readline())["health"])
        half = len(sim) // 2
        produce_all(settings, view.source_topic, sim[:half], pace_s=0.02)
        first = expected_prediction_ids(view, sim[:half])
        assert first <= {p["prediction_id"] for p in read_predictions(settings, first, timeout_s=60)}
        # every event so far is predicted and none checkpointed (30 s interval): kill a worker that owns partitions
        owners = [i for i, url in enumerate(health) if _assigned(url)]
        victim = procs[owners[0]]
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        produce_all(settings, view.source_topic, sim[half:], pace_s=0.01)
        expected = expected_prediction_ids(view, sim)
        preds = read_predictions(settings, expected, timeout_s=90)
    finally:
        for p in procs:
            stop_pid(p.pid, timeout_s=15)  # SIGTERM first: a clean stop checkpoints what is pending
    by_id: dict[str, list[dict]] = defaultdict(list)
    for p in preds:
        if p["variant"] == "champion":
            by_id[p["prediction_id"]].append(p)
    assert set(by_id) == expected  # nothing lost
    replayed = {i: ps for i, ps in by_id.items() if len(ps) > 1}
    for i, ps in replayed.items():  # a replay recomputes exactly what was published before the crash
        assert all(_same(ps[0]["features"], q["features"]) and ps[0]["score"] == q["score"] for q in ps[1:]), i
    assert replayed, "the killed worker's uncheckpointed events were not replayed"
    assert_state_matches_offline(settings, view, sim)  # replays skipped by the stored offset: no double counting
