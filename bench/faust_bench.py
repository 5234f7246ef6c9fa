"""``python -m bench.faust_bench [--events N] [--tiny]``: the fused pipeline's throughput, default engine vs Faust.

Both engines consume the same pre-produced source topic (each with its own consumer group, hence its own Redis
state) and run the same ``FusedHandler``; the figure is records / (last consumed - first consumed), so the group
join (~1 s for librdkafka, ~3 s for Faust on tansu) is not counted. Embedded tansu broker, own redis-server.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import tempfile
import time
from typing import Any

from bench.common import (
    MODEL,
    Table,
    bench_settings,
    bench_stack,
    bench_view,
    delete_group_keys,
    ratio,
    run_id,
    to_records,
    train_models,
    vitals_stream,
)
from streams.clients import make_producer
from streams.settings import Settings
from streams.stack import StackInfo
from streams.topics import ensure_topics, required_topics
from streams.workers import build_pipeline, redis_client


def _engine_run(settings: Settings, view: Any, engine: str, n: int, timeout_s: float) -> tuple[float, int]:
    """Seconds from the first to the last consumed record, and the records consumed."""
    group = f"{settings.pipeline.features_group}-{engine}"
    settings = settings.replace(pipeline=dataclasses.replace(settings.pipeline, features_group=group))
    worker, handler = build_pipeline(settings, view, MODEL)
    if engine == "faust":
        from streams.faust_app import to_faust

        runner: Any = to_faust(worker, group, settings)
    else:
        runner = worker
    runner.start()
    first: float | None = None
    deadline = time.time() + timeout_s
    try:
        while handler.stats.consumed < n and time.time() < deadline and runner.alive:
            if first is None and handler.stats.consumed > 0:
                first = time.perf_counter()
            time.sleep(0.005)
        last = time.perf_counter()
    finally:
        runner.stop()
        client = redis_client(settings)
        try:
            delete_group_keys(client, group)
        finally:
            client.close()
        gc.collect()
    return (last - first) if first is not None else float("nan"), handler.stats.consumed


def run(info: StackInfo, events: int = 40_000, timeout_s: float = 180.0) -> list[Table]:
    """Produce ``events`` vitals once, then drain them with each engine in turn."""
    rid = run_id()
    with tempfile.TemporaryDirectory(prefix="driftline-bench-registry-") as tmp:
        settings = bench_settings(info, rid, registry_dir=tmp)
        view = bench_view(rid)
        ensure_topics(settings, required_topics(settings, [view.source_topic]))
        train_models(tmp, entities=100, minutes=5.0)
        records = to_records(vitals_stream(500, events * 10 / 500 / 60))[:events]
        producer = make_producer(settings.kafka)
        for key, value in records:
            while True:
                try:
                    producer.produce(view.source_topic, value, key)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(30)
        rows = []
        for engine in ("default", "faust"):
            seconds, consumed = _engine_run(settings, view, engine, len(records), timeout_s)
            rows.append([engine, consumed, seconds, consumed / seconds if seconds > 0 else 0.0])
    base = rows[0][3]
    for row in rows:
        row.append(ratio(row[3], base))
    return [Table("faust", "Fused pipeline (features → score → produce → Redis state), default engine vs Faust",
                  ["engine", "records", "seconds", "records/s", "vs default"], rows,
                  notes=[f"{len(records):,} vitals pre-produced to 3 partitions; batch_max_rows="
                         f"{settings.pipeline.batch_max_rows}, batch_max_ms={settings.pipeline.batch_max_ms}; "
                         "one worker per engine, in this process; embedded tansu broker."],
                  limit="limit: the handler's Python work per batch (identical in both engines); Faust adds its "
                        "per-event stream machinery and an asyncio queue hop before the batch is formed.")]


def main(argv: list[str] | None = None) -> list[Table]:
    """Run on a fresh embedded stack and print the table."""
    p = argparse.ArgumentParser(prog="python -m bench.faust_bench", description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=40_000)
    p.add_argument("--tiny", action="store_true", help="2,000 events (smoke test)")
    args = p.parse_args(argv)
    with bench_stack() as info:
        tables = run(info, events=2_000 if args.tiny else args.events)
    for t in tables:
        print(t.render())
    return tables


if __name__ == "__main__":
    main()
