"""A real pipeline worker against the session's broker and Redis, served by HealthServer: its /metrics passes
``promtool check metrics``, the key series move while vitals flow, and /health answers 200 with the model."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from features.views import VITALS_VIEW
from streams.local.demo import MODEL, DemoConfig, prepare
from streams.local.produce import produce_stream
from streams.metrics import HealthServer
from streams.runtime.clients import make_producer
from streams.runtime.topics import ensure_topics, required_topics
from streams.runtime.workers import build_pipeline
from streams.settings import Settings
from streams.timeline import Timeline

pytestmark = pytest.mark.integration
EVENTS = 400


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool is missing in CI: .ci/run installs it (apt-get install prometheus)")
        pytest.skip("promtool not installed (Debian package `prometheus`: apt-get install prometheus)")
    return path


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - a local test server
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, lbls), v in samples.items() if n == name and set(labels.items()) <= set(lbls))


def _wait(done: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if done():
            return True
        time.sleep(0.2)
    return done()


def test_worker_metrics_move_and_health_reports_the_model(settings: Settings, unique: str) -> None:
    promtool = _promtool()
    s = settings.replace(pipeline=dataclasses.replace(settings.pipeline, features_group=f"obs-features-{unique}",
                                                      monitor_group=f"obs-monitor-{unique}",
                                                      max_future_skew_ms=0))  # the demo's event time runs ahead
    ensure_topics(s, required_topics(s, [VITALS_VIEW.source_topic]))
    prepared = prepare(s, DemoConfig(entities=30, rate=300.0, duration_s=3.0, train_duration_s=60.0,
                                     scenario="stable", seed=3), Timeline(echo=lambda _line: None))
    worker, handler = build_pipeline(s, VITALS_VIEW, MODEL)
    server = HealthServer(worker.metrics, worker.health, port=0, host="127.0.0.1").start()
    base = f"http://127.0.0.1:{server.port}"
    producer = make_producer(s.kafka)
    try:
        worker.start()
        assert _wait(lambda: _get(f"{base}/health")[0] == 200, 30), _get(f"{base}/health")
        _wait(lambda: time.time() - (worker.loop.health.last_poll_at or 0) < 1, 5)
        before = _samples(_get(f"{base}/metrics")[1].decode())
        consumed_before, scored_before = handler.stats.consumed, handler.stats.scored
        stats = produce_stream(producer, VITALS_VIEW.source_topic, prepared.live[:EVENTS], rate=4000.0,
                               entity_field=VITALS_VIEW.entity_key)
        producer.flush(10)
        produced_at = time.time()  # nothing was consumed before: any later commit covers these events
        assert stats.events == EVENTS
        # consumed counts at the start of a batch: wait for its predictions, then for the commit after them
        assert _wait(lambda: handler.stats.consumed - consumed_before >= EVENTS
                     and handler.stats.scored - scored_before >= 0.9 * EVENTS, 60), (handler.stats, worker.health())
        assert _wait(lambda: (worker.loop.health.last_commit_at or 0) > produced_at, 30), worker.health()

        status, body = _get(f"{base}/metrics")
        assert status == 200
        text = body.decode()
        check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        after = _samples(text)

        def moved(name: str, **labels: str) -> float:
            return _total(after, name, **labels) - _total(before, name, **labels)

        assert moved("driftline_records_consumed_total", stage="pipeline", topic="vitals") >= EVENTS
        assert moved("driftline_predictions_total", model=MODEL, version=str(prepared.v2)) >= 0.9 * EVENTS
        assert moved("driftline_batch_size_records_count", stage="pipeline") >= 1
        assert moved("driftline_batch_size_records_sum", stage="pipeline") >= EVENTS
        assert moved("driftline_event_to_prediction_seconds_count") >= 0.9 * EVENTS
        assert moved("driftline_redis_roundtrip_seconds_count", op="load") >= 1
        assert moved("driftline_redis_roundtrip_seconds_count", op="save") >= 1
        assert _total(after, "driftline_active_model_version", model=MODEL) == prepared.v2
        assert _total(after, "driftline_healthy", stage="pipeline") == 1
        assert _total(after, "driftline_last_commit_timestamp_seconds", stage="pipeline") > time.time() - 60
        lag = {dict(lbls)["partition"]: v for (n, lbls), v in after.items() if n == "driftline_consumer_lag_records"}
        # one series per partition consumed, labelled with a partition of the source topic; whole records
        partitions = {str(p) for p in range(s.topics.source_partitions)}
        assert lag and set(lag) <= partitions and all(v == int(v) for v in lag.values()), lag

        status, body = _get(f"{base}/health")
        health = json.loads(body)
        assert status == 200 and health["healthy"] is True, health
        assert health["active_version"] == prepared.v2 and health["model"] == MODEL and health["redis"] == "ok"
        assert _get(f"{base}/nope")[0] == 404
    finally:
        producer.flush(5)
        worker.stop()
        server.stop()
    assert not worker.alive and worker.error is None
