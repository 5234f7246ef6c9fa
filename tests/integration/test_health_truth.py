"""/health tells the truth, on the real broker and a real Redis:

1. a Redis that answers PING but refuses every write (out of memory) fails every batch: /health is 503 and says
   ``redis: failing: ResponseError: OOM ...`` (not ``ok``), names it in ``failing`` with the last error's class;
   when Redis takes writes again the worker resumes by itself and every event is predicted once;
2. a consumer that stops fetching (its partitions paused behind the loop's back) while records wait: the watchdog
   turns /health red within the bound, re-creates the consumer (counted in the metric), and every event is
   predicted.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
import redis

from streams import codec
from streams.local.procs import stop_pid
from streams.local.redis_server import ensure_redis
from streams.runtime.workers import build_pipeline

from .rollback_chain import read_records
from .test_scale_out import MODEL, env, produce_all  # noqa: F401 - shared fixture

pytestmark = pytest.mark.integration


def _predicted(settings, n: int, timeout_s: float = 60.0) -> list[str]:  # noqa: ANN001
    ids: list[str] = []
    deadline = time.time() + timeout_s
    while time.time() < deadline and len(set(ids)) < n:
        ids = [codec.decode(m.value())["prediction_id"]
               for m in read_records(settings.kafka.bootstrap_servers, settings.topics.predictions, 3, idle_s=1.0)]
    return ids


def _wait(check, timeout_s: float, step_s: float = 0.2):  # noqa: ANN001, ANN202
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        got = check()
        if got:
            return got
        time.sleep(step_s)
    return check()


def test_a_redis_that_answers_ping_but_refuses_writes_is_named(env, tmp_path: Path) -> None:  # noqa: ANN001, F811
    settings, view, sim = env
    url, pid, _ = ensure_redis(None, tmp_path / "redis", prefer_own=True)
    own = redis.Redis.from_url(url)
    try:
        settings = settings.replace(redis_url=url)
        worker = build_pipeline(settings, view, MODEL, instance="oom")[0].start()
        try:
            first, rest = sim[:200], sim[200:600]
            produce_all(settings, view.source_topic, first)
            assert len(set(_predicted(settings, len(first)))) == len(first)
            own.config_set("maxmemory", "1")  # PING still answers; every write is refused (noeviction)
            produce_all(settings, view.source_topic, rest)
            state = _wait(lambda: (s := worker.health())["failing"] == "redis" and s, 30)
            assert state and state["healthy"] is False and state["consecutive_failures"] >= 1
            assert state["redis"].startswith("failing: OutOfMemoryError: ") and "maxmemory" in state["redis"]
            assert state["last_error_class"] and state["broker"] == "ok"
            assert own.ping()  # the probe alone would have said "ok"
            own.config_set("maxmemory", "0")
            assert _wait(lambda: worker.health()["healthy"], 30)  # resumed by itself
            ids = _predicted(settings, len(first) + len(rest))
            assert len(set(ids)) == len(first) + len(rest)
            assert worker.health()["failing"] is None and worker.health()["last_error_class"] is not None
        finally:
            worker.stop()
    finally:
        own.close()
        if pid is not None:
            stop_pid(pid)


def test_a_consumer_that_stops_fetching_is_red_then_re_created(env) -> None:  # noqa: ANN001, F811
    settings, view, sim = env
    settings = settings.replace(pipeline=dataclasses.replace(settings.pipeline, stall_after_s=3.0))
    worker = build_pipeline(settings, view, MODEL, instance="stall")[0]
    assert worker.watchdog is not None
    worker.watchdog.check_every_s = 0.5
    worker.start()
    try:
        produce_all(settings, view.source_topic, sim[:100])
        assert len(set(_predicted(settings, 100))) == 100
        consumer = worker.loop.consumer
        consumer.pause(consumer.assignment())  # behind the loop's back: it polls on, and fetches nothing
        produce_all(settings, view.source_topic, sim[100:700])
        red = _wait(lambda: (s := worker.health())["progress"]["stalled"] and s, 30)
        assert red and red["healthy"] is False and red["progress"]["records_waiting"] > 0
        assert _wait(lambda: worker.watchdog.restarts >= 1, 30)
        assert worker.loop.consumer is not consumer
        ids = _predicted(settings, 700)
        assert len(set(ids)) == 700  # every event predicted after the restart
        assert worker.metrics.consumer_restarts.labels("pipeline")._value.get() >= 1
        assert _wait(lambda: worker.health()["healthy"], 30)
        assert worker.alive and worker.error is None
    finally:
        worker.stop()
