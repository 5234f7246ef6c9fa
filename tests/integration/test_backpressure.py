"""Back-pressure: when producers outpace the scorer, the worker's memory stays bounded (one batch in flight,
librdkafka's prefetch capped by ``prefetch_kbytes``); the backlog waits in Kafka, visible as consumer lag."""

from __future__ import annotations

import dataclasses
import threading
import time

import psutil
import pytest

from streams.local.simulator import SimConfig, generate
from streams.runtime.workers import build_pipeline

from .test_scale_out import MODEL, env, produce_all  # noqa: F401 - shared fixture

pytestmark = pytest.mark.integration


def test_memory_stays_bounded_when_producers_outpace_the_scorer(env) -> None:  # noqa: ANN001, F811
    settings, view, _ = env
    settings = settings.replace(kafka=dataclasses.replace(settings.kafka, prefetch_kbytes=1024))
    big = list(generate(SimConfig(entities=60, rate=1000, duration_s=80.0, seed=9, time_scale=30.0)))  # 80k
    worker, handler = build_pipeline(settings, view, MODEL, instance="slow")
    real_score = handler.scorer.score

    def slow_score(rows):  # noqa: ANN001, ANN202 - a scorer ~30x slower than the producer
        time.sleep(0.05)
        return real_score(rows)

    handler.scorer.score = slow_score  # type: ignore[method-assign]
    process = psutil.Process()
    worker.start()
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.1)

    try:
        time.sleep(2)  # joined the group, model loaded: the baseline
        baseline = process.memory_info().rss
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        produce_all(settings, view.source_topic, big)  # ~16 MB of records, far faster than 4,000 rows/s
        time.sleep(5)
        done.set()
        sampler.join()
        consumed = handler.stats.consumed
        lag = sum(v for (name, labels), v in _samples(worker).items() if name == "driftline_consumer_lag_records")
        assert worker.alive and worker.error is None
    finally:
        done.set()
        worker.stop()
    assert consumed < len(big) // 2, consumed  # the worker really was outpaced: most records still wait in Kafka
    assert lag > len(big) // 4, lag  # ... and the backlog is visible as lag
    growth_mb = (peak[0] - baseline) / 2**20
    print(f"backpressure: consumed {consumed} of {len(big)}, lag {lag:.0f}, RSS growth {growth_mb:.1f} MB")
    assert growth_mb < 120, f"RSS grew by {growth_mb:.0f} MB while {len(big) - consumed} records waited"


def _samples(worker) -> dict:  # noqa: ANN001
    out = {}
    for family in worker.metrics.registry.collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out
