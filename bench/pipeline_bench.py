"""``python -m bench.pipeline_bench [--tiny]``: the fused pipeline on the embedded stack, against baselines.

Three tables, one run, one stack (tansu + its own redis-server):

1. **Throughput**: the fused worker (consume → parse → validate → windows in Redis → score → produce →
   commit) over a pre-produced backlog, next to a raw confluent-kafka passthrough (consume → ``orjson.loads``
   → produce → commit) of the same records.
2. **Latency**: event time → prediction published, p50/p95/p99, with events produced live (event time = send
   time) at 20 %, 50 % and 80 % of the throughput just measured, for two ``batch_linger_ms`` settings (0: a
   batch is what is queued when the worker is free; 10: it also waits up to 10 ms for more, close to the
   former fixed 10 ms batch window), next to a bare consumer's latency (the broker's floor). Events are sent by a
   producer with driftline's default linger (``streams.runtime.clients.producer_config``), the one that sent the
   warm-up events (a fresh producer holds its first records ~0.5 s); a baseline row shows the broker's floor when
   they are sent with a 1 ms linger instead (on tansu, many small produce requests are slower than fewer larger
   ones). Every row, worker or bare consumer, leaves out the first second of the live stream.
3. **Scaling**: 1, 2 and 4 partitions with as many worker processes in one consumer group.

Workers run in child processes (``multiprocessing`` spawn), so the producer and the measuring code never
share a GIL with them. Rates and latencies are read off the predictions topic afterwards: a prediction's
record timestamp is when its worker produced it, and it carries its event's ``event_ts``. Rates use the
10th-90th percentile span of those timestamps, so group joins and the last partial batch are not counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing as mp
import tempfile
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench.common import (
    MODEL,
    Table,
    bench_settings,
    bench_stack,
    bench_view,
    percentiles,
    ratio,
    run_id,
    run_on_fresh_stack,
    to_records,
    train_models,
    vitals_stream,
)
from bench.store_bench import passthrough_run, prefill
from features.definitions import FeatureView
from streams.local.stack import StackInfo
from streams.runtime.batch import take_batch
from streams.runtime.clients import consumer_config, make_producer, producer_config
from streams.runtime.topics import ensure_topics, required_topics
from streams.settings import KafkaSettings, PipelineSettings, Settings

__all__ = ["PipelineConfig", "fresh_measurement", "run", "main", "rate_from_timestamps", "read_predictions"]


@dataclass(frozen=True)
class PipelineConfig:
    events: int = 40_000
    entities: int = 500
    partitions: int = 3
    latency_s: float = 12.0
    latency_levels: tuple[float, ...] = (0.2, 0.5, 0.8)
    latency_linger_ms: tuple[int, ...] = (0, 10)
    latency_partitions: int = 1  # one worker: a partition of its own (the comparison row uses ``partitions``)
    load_linger_ms: int | None = None  # the live events' producer linger (None: driftline's producer default)
    compare_load_linger_ms: int | None = 1  # a broker-only row with the events sent at this linger instead
    scaling: tuple[int, ...] = (1, 2, 4)
    scaling_events: int = 40_000
    timeout_s: float = 180.0
    # throughput rows at these checkpoint intervals besides the default (0 = state saved after every batch)
    checkpoint_intervals: tuple[int, ...] = (0, 100, 1000, 5000)
    # the headline ratio: this many (passthrough, fused at the default interval) pairs, run back to back; the
    # table reports the median pair (one run of each swings by 1.5x on a shared 2-core machine)
    rounds: int = 3

    @classmethod
    def tiny(cls) -> PipelineConfig:
        return cls(events=1_500, entities=50, latency_s=2.0, latency_levels=(0.2,), latency_linger_ms=(0,),
                   scaling=(1, 2), scaling_events=1_000, timeout_s=60.0, checkpoint_intervals=(0,), rounds=1)


# ----------------------------------------------------------------------------------------- worker processes
def _serve(settings: Settings, view: FeatureView, stop: Any) -> None:
    """Child process: one fused pipeline worker until ``stop`` is set."""
    from streams.runtime.heap import settle_heap
    from streams.runtime.workers import build_pipeline

    worker, _handler = build_pipeline(settings, view, MODEL)
    settle_heap()  # as `driftline run` does
    worker.start()
    try:
        while not stop.wait(0.1):
            if not worker.alive:
                raise RuntimeError(f"pipeline worker died: {worker.error!r}")
    finally:
        worker.stop()


class WorkerProcesses:
    """``n`` pipeline workers, each in its own spawned process, all in ``settings``' consumer group."""

    def __init__(self, settings: Settings, view: FeatureView, n: int) -> None:
        ctx = mp.get_context("spawn")
        self._stop = ctx.Event()
        self._procs = [ctx.Process(target=_serve, args=(settings, view, self._stop), name=f"bench-worker-{i}",
                                   daemon=True) for i in range(n)]

    def __enter__(self) -> WorkerProcesses:
        for p in self._procs:
            p.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for p in self._procs:
            p.join(20)
            if p.is_alive():
                p.kill()
                p.join(5)

    @property
    def alive(self) -> bool:
        return all(p.is_alive() for p in self._procs)


# -------------------------------------------------------------------------------------- reading predictions
def read_predictions(settings: Settings, want: int, timeout_s: float,
                     alive: Any = lambda: True) -> list[tuple[int, int]]:
    """``(record timestamp ms, event_ts)`` of predictions on ``settings.topics.predictions`` until ``want`` of
    them (or ``timeout_s``, or ``alive()`` turning false); read from the beginning without a group."""
    topic = settings.topics.predictions
    consumer = Consumer(consumer_config(settings.kafka, f"bench-reader-{run_id()}"))
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                         for p in range(settings.topics.predictions_partitions)])
        out: list[tuple[int, int]] = []
        deadline = time.time() + timeout_s
        while len(out) < want and time.time() < deadline and alive():
            for m in consumer.consume(1000, 0.2):
                if m.error() is None:
                    out.append((m.timestamp()[1], int(orjson.loads(m.value())["event_ts"])))
        return out
    finally:
        consumer.close()


def rate_from_timestamps(ts_ms: Sequence[int], lo: float = 10.0, hi: float = 90.0) -> float:
    """Records per second between the ``lo`` and ``hi`` percentiles of the timestamps (skips start-up and tail).

    >>> rate_from_timestamps(list(range(0, 10_001, 10)))  # one record every 10 ms: 801 records in 8 s
    100.1
    """
    arr = np.sort(np.asarray(ts_ms, dtype=np.float64))
    if arr.size < 10:
        return float("nan")
    t_lo, t_hi = np.percentile(arr, [lo, hi])
    inside = int(np.count_nonzero((arr >= t_lo) & (arr <= t_hi)))
    return round(float(inside / ((t_hi - t_lo) / 1000.0)), 1) if t_hi > t_lo else float("nan")


# ------------------------------------------------------------------------------------------------- setup
def fresh_measurement(info: StackInfo, registry: str, *, partitions: int, batch_linger_ms: int = 0,
                      checkpoint_interval_ms: int | None = None) -> tuple[Settings, FeatureView]:
    """Per-measurement topics (source and predictions) and group, so measurements never see each other."""
    rid = run_id()
    settings = bench_settings(info, rid, registry_dir=registry, batch_linger_ms=batch_linger_ms,
                              checkpoint_interval_ms=checkpoint_interval_ms)
    settings = settings.replace(topics=dataclasses.replace(settings.topics, source_partitions=partitions,
                                                           predictions_partitions=partitions))
    view = bench_view(rid)
    ensure_topics(settings, required_topics(settings, [view.source_topic]))
    return settings, view


def _backlog_rate(info: StackInfo, registry: str, records: list[tuple[bytes, bytes]], *, partitions: int,
                  workers: int, timeout_s: float, checkpoint_interval_ms: int | None = None) -> tuple[float, int]:
    """(predictions/s, predictions) of ``workers`` processes draining ``records`` pre-produced on
    ``partitions`` partitions."""
    settings, view = fresh_measurement(info, registry, partitions=partitions,
                                       checkpoint_interval_ms=checkpoint_interval_ms)
    prefill(settings, view.source_topic, records)
    with WorkerProcesses(settings, view, workers) as procs:
        got = read_predictions(settings, len(records), timeout_s, alive=lambda: procs.alive)
    return rate_from_timestamps([t for t, _ in got]), len(got)


# -------------------------------------------------------------------------------------------- 1. throughput
def throughput_table(info: StackInfo, registry: str, records: list[tuple[bytes, bytes]],
                     cfg: PipelineConfig) -> tuple[Table, float]:
    default = PipelineSettings.checkpoint_interval_ms
    pairs = [(_passthrough_rate(info, registry, records, cfg),
              *_backlog_rate(info, registry, records, partitions=cfg.partitions, workers=1, timeout_s=cfg.timeout_s))
             for _ in range(max(1, cfg.rounds))]
    raw, fused, n_fused = median_pair(pairs)
    others = [(ms, *_backlog_rate(info, registry, records, partitions=cfg.partitions, workers=1,
                                  timeout_s=cfg.timeout_s, checkpoint_interval_ms=ms))
              for ms in cfg.checkpoint_intervals if ms != default]
    rows = [[f"fused pipeline (1 worker process), {_interval(default)} (default)", n_fused, fused, 1e6 / fused,
             ratio(fused, raw)]]
    rows += [[f"fused pipeline, {_interval(ms)}", n, rate, 1e6 / rate, ratio(rate, raw)] for ms, rate, n in others]
    rows.append(["raw passthrough (consume → loads → produce → commit)", len(records), raw, 1e6 / raw, 1.0])
    each = ", ".join(f"{ratio(f, r):.3f} ({f:,.0f} / {r:,.0f})" for r, f, _ in pairs)
    table = Table("pipeline", "Fused pipeline throughput vs a raw confluent-kafka passthrough (events/s)",
                  ["path", "events", "events/s", "us/event", "vs passthrough"], rows,
                  notes=[f"{len(records):,} vitals of {cfg.entities} patients pre-produced on {cfg.partitions} "
                         "partitions; batches of up to 500; sklearn logistic v2 (10 features); cold Redis state; "
                         "embedded tansu broker and a redis-server of the bench's own, all on this machine. "
                         f"The default row and the passthrough are the median of {len(pairs)} back-to-back pairs "
                         f"(fused / passthrough each: {each}); the other intervals ran once, against that "
                         "passthrough."],
                  limit="limit: Python CPU in the worker: per-event parse/validate and window fold, dict→matrix, "
                        "the model call and one prediction JSON per event (the state encode, the Lua save and the "
                        "delivery wait run once per checkpoint); the passthrough only moves bytes through "
                        "librdkafka.")
    return table, fused


def _passthrough_rate(info: StackInfo, registry: str, records: list[tuple[bytes, bytes]],
                      cfg: PipelineConfig) -> float:
    settings, view = fresh_measurement(info, registry, partitions=cfg.partitions)
    prefill(settings, view.source_topic, records)
    return passthrough_run(settings, view.source_topic, f"{view.source_topic}-out", f"bench-pass-{run_id()}",
                           len(records), 500, cfg.timeout_s)


def median_pair(pairs: list[tuple[float, float, int]]) -> tuple[float, float, int]:
    """The (passthrough, fused, events) pair of median ratio fused / passthrough.

    >>> median_pair([(100.0, 30.0, 9), (150.0, 30.0, 9), (100.0, 50.0, 9)])
    (100.0, 30.0, 9)
    """
    ranked = sorted(pairs, key=lambda p: p[1] / p[0])
    return ranked[(len(ranked) - 1) // 2]


def _interval(ms: int) -> str:
    """How a checkpoint interval reads in a row label.

    >>> _interval(0), _interval(1000)
    ('checkpoint every batch', 'checkpoint every 1,000 ms')
    """
    return "checkpoint every batch" if ms == 0 else f"checkpoint every {ms:,} ms"


# ---------------------------------------------------------------------------------------------- 2. latency
def live_producer(settings: Settings, linger_ms: int | None = None) -> Producer:
    """The producer of a latency row's live events (``linger_ms`` or driftline's default linger). It sends the
    warm-up events too, so the live events meet a producer that is already connected: a fresh idempotent producer
    holds its first records ~0.5 s on tansu (producer id and metadata), which would be counted as the worker's
    latency otherwise."""
    return make_producer(settings.kafka, **({} if linger_ms is None else {"linger_ms": linger_ms}))


def produce_live(producer: Producer, topic: str, templates: list[tuple[bytes, dict]], rate: float,
                 seconds: float) -> tuple[int, float]:
    """Send ``templates`` round-robin at ``rate`` events/s for ``seconds``, each stamped with the send time as
    its event time (so the producer's linger counts in every latency), then flush; returns (events sent, achieved
    rate)."""
    sent, started = 0, time.perf_counter()
    wall0_ms = time.time() * 1000.0
    try:
        while True:
            elapsed = time.perf_counter() - started
            if elapsed >= seconds:
                break
            due = int(rate * elapsed) + 1
            while sent < due:
                key, value = templates[sent % len(templates)]
                value["ts"] = int(wall0_ms + (time.perf_counter() - started) * 1000.0)
                try:
                    producer.produce(topic, orjson.dumps(value), key)
                except BufferError:
                    producer.poll(0.01)
                    continue
                sent += 1
            producer.poll(0)
            time.sleep(0.0005)
    finally:
        producer.flush(30)
    return sent, sent / (time.perf_counter() - started)


def live_templates(records: list[tuple[bytes, bytes]]) -> list[tuple[bytes, dict]]:
    """The live stream's templates: the whole recorded stream, cycled by :func:`produce_live` and stamped with
    the send time, so every patient's readings vary as recorded. (Cycling through one reading per patient
    repeated each patient's values: the sensor checks rightly marked every patient's sensors stuck, and the
    latency rows measured that fault path.)

    >>> live_templates([(b"p1", b'{"ts": 1, "hr": 70.0}')])
    [(b'p1', {'ts': 1, 'hr': 70.0})]
    """
    return [(k, orjson.loads(v)) for k, v in records]


def warm_up(producer: Producer, topic: str, templates: list[tuple[bytes, dict]], entities: int) -> int:
    """The stream's first ``entities`` events (one per patient) within 0.5 s, before a latency row's measured
    stream: every patient's state loaded, the producer connected; returns the events sent."""
    return produce_live(producer, topic, templates[:entities], entities / 0.5, 0.5)[0]


def _bare_consumer(settings: Settings, topic: str, partitions: int, ready: Any, stop: Any, out: Any) -> None:
    """Child process: a bare consumer (assigned, no group, no processing) taking records as the batch loop does
    (``streams.runtime.batch.take_batch``); sends back the event times and receive times, in ms. They are kept in
    two arrays of doubles, not a list of tuples: half a million tuples would make the collector's full passes
    (~100 ms each, at every 25 % of growth) stall this consumer, and the broker's floor would show them."""
    consumer = Consumer(consumer_config(settings.kafka, f"bench-lat-{run_id()}"))
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    sent_ms, received_ms = array("d"), array("d")
    ready.set()
    try:
        while not stop.is_set():
            batch = take_batch(consumer, 500, 0.05)
            now = time.time() * 1000
            for m in batch:
                if m.error() is None:
                    sent_ms.append(orjson.loads(m.value())["ts"])
                    received_ms.append(now)
    finally:
        consumer.close()
        out.send((sent_ms, received_ms))


def broker_latency(settings: Settings, topic: str, templates: list[tuple[bytes, dict]], entities: int,
                   rate: float, seconds: float, partitions: int, linger_ms: int | None = None,
                   warmup_ms: float = 1000.0) -> list[float]:
    """Baseline: event time → received by a bare consumer in a process of its own (like the worker), in ms, with
    events produced exactly as for the pipeline (the same warm-up events, then ``warmup_ms`` of the live stream
    left out). The broker's own produce → fetch floor under any worker."""
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_bare_consumer, args=(settings, topic, partitions, ready, stop, send),
                        name="bench-broker-latency", daemon=True)
    child.start()
    producer = live_producer(settings, linger_ms)
    try:
        if not ready.wait(60):
            raise RuntimeError("the bare consumer did not start")
        time.sleep(0.5)  # an assign() on tansu delivers after ~10 ms
        warm_up(producer, topic, templates, entities)
        time.sleep(0.5)
        start_ms = time.time() * 1000
        produce_live(producer, topic, templates, rate, seconds + warmup_ms / 1000)
        time.sleep(0.5)
        stop.set()
        sent_ms, received_ms = receive.recv() if receive.poll(30) else ([], [])
    finally:
        stop.set()
        child.join(10)
        if child.is_alive():
            child.kill()
    return [received - ts for ts, received in zip(sent_ms, received_ms, strict=True) if ts >= start_ms + warmup_ms]


def latency_table(info: StackInfo, registry: str, records: list[tuple[bytes, bytes]], max_rate: float,
                  cfg: PipelineConfig) -> Table:
    templates = live_templates(records)
    warmup_ms = 1000  # after the worker answered a first round of events (process start, group join, model)
    rows = []
    for linger_ms in cfg.latency_linger_ms:
        for level in cfg.latency_levels:
            settings, view = fresh_measurement(info, registry, partitions=cfg.latency_partitions,
                                               batch_linger_ms=linger_ms)
            producer = live_producer(settings, cfg.load_linger_ms)
            with WorkerProcesses(settings, view, 1) as procs:
                ready = warm_up(producer, view.source_topic, templates, cfg.entities)
                if len(read_predictions(settings, ready, cfg.timeout_s, alive=lambda p=procs: p.alive)) < ready:
                    raise RuntimeError("the worker did not answer the warm-up events")
                start_ms = time.time() * 1000
                sent, achieved = produce_live(producer, view.source_topic, templates, level * max_rate,
                                              cfg.latency_s + warmup_ms / 1000)
                got = read_predictions(settings, ready + sent, 30.0, alive=lambda p=procs: p.alive)
            lat = [t - e for t, e in got if e >= start_ms + warmup_ms]
            p50, p95, p99 = percentiles(lat) if lat else [float("nan")] * 3
            rows.append([f"{level:.0%}", linger_ms, round(level * max_rate), round(achieved), len(lat),
                         p50, p95, p99, max(lat) if lat else None])
    low, linger = cfg.latency_levels[0], cfg.load_linger_ms
    baselines = [(level, cfg.latency_partitions, linger, "broker only") for level in cfg.latency_levels]
    if cfg.partitions != cfg.latency_partitions:  # what spreading the same load over more partitions costs
        baselines.append((low, cfg.partitions, linger, f"broker only, {cfg.partitions} partitions"))
    if cfg.compare_load_linger_ms is not None:  # what smaller produce requests cost on this broker
        baselines.append((low, cfg.latency_partitions, cfg.compare_load_linger_ms,
                          f"broker only, events sent with linger {cfg.compare_load_linger_ms} ms"))
    for level, partitions, load_linger, label in baselines:
        settings, view = fresh_measurement(info, registry, partitions=partitions)
        lat = broker_latency(settings, view.source_topic, templates, cfg.entities, level * max_rate, cfg.latency_s,
                             partitions, load_linger, warmup_ms)
        p50, p95, p99 = percentiles(lat) if lat else [float("nan")] * 3
        rows.append([f"{level:.0%}", label, round(level * max_rate), None, len(lat), p50, p95, p99,
                     max(lat) if lat else None])
    return Table("pipeline", "Latency: event time → prediction published (ms), live stream at a share of the "
                             "measured maximum rate",
                 ["load", "batch_linger_ms", "target ev/s", "sent ev/s", "measured", "p50 ms", "p95 ms", "p99 ms",
                  "max ms"], rows,
                 notes=[f"maximum rate = the fused throughput of the table above ({max_rate:,.0f} events/s); "
                        f"{cfg.latency_s:g} s of steady state per row, after the worker answered one event per patient and "
                        f"{warmup_ms / 1000:g} s more; one "
                        f"worker process reading a topic of {cfg.latency_partitions} partition(s) (a worker owns "
                        f"whole partitions); event time = send time (producer linger {_load_linger(cfg)}); the "
                        "published time is the "
                        "prediction record's timestamp; a fresh embedded stack for this table. Baseline rows 'broker "
                        "only': the same events received by a bare consumer (no group, no processing), i.e. the "
                        "produce → broker → fetch floor under any worker."],
                 limit=_latency_limit(rows))


def _load_linger(cfg: PipelineConfig) -> str:
    """The live events' producer linger, as the notes say it.

    >>> _load_linger(PipelineConfig()), _load_linger(PipelineConfig(load_linger_ms=2))
    ("5 ms, driftline's default", '2 ms')
    """
    if cfg.load_linger_ms is None:
        return f"{producer_config(KafkaSettings())['linger.ms']} ms, driftline's default"
    return f"{cfg.load_linger_ms} ms"


def _latency_limit(rows: list[list[Any]]) -> str:
    """The limit line: what the worker adds over the broker-only row at the lowest load, and the floor itself.

    >>> rows = [["20%", 0, 2000, 2000, 9, 16.0, 37.0, 52.0, 70.0], ["20%", "broker only", 2000, None, 9, 10.0, 30.0,
    ...          47.6, 85.0], ["20%", "broker only, 3 partitions", 2000, None, 9, 12.0, 50.0, 80.0, 99.0],
    ...         ["20%", "broker only, events sent with linger 1 ms", 2000, None, 9, 15.0, 30.0, 39.0, 60.0]]
    >>> _latency_limit(rows)[:95]
    'limit: the broker. At 20%, a bare consumer of the same events sees p50 10 / p99 48 ms, and the '
    >>> text = _latency_limit(rows)
    >>> "p99 80 ms on 3 partitions" in text, "p99 39 ms when the events are sent with linger 1 ms" in text
    (True, True)
    """
    level = rows[0][0]
    broker = next((r for r in rows if r[0] == level and r[1] == "broker only"), None)
    worker = next((r for r in rows if r[0] == level and r[1] == 0), None)
    spread = next((r for r in rows if str(r[1]).startswith("broker only, ") and "partitions" in str(r[1])), None)
    small = next((r for r in rows if str(r[1]).startswith("broker only, events sent with linger ")), None)
    if broker is None or worker is None:
        return "limit: see the broker-only rows"
    others = []
    if spread is not None:
        others.append(f"p99 {spread[7]:.0f} ms on {spread[1].split(', ')[1]}")
    if small is not None:
        others.append(f"p99 {small[7]:.0f} ms when the events are sent with {small[1].split('sent with ')[1]}")
    return (f"limit: the broker. At {level}, a bare consumer of the same events sees p50 {broker[5]:.0f} / p99 "
            f"{broker[7]:.0f} ms, and the worker adds {worker[5] - broker[5]:.0f} ms at p50 and "
            f"{worker[7] - broker[7]:.0f} ms at p99 on top: its own batch's parse, fold and model call before the "
            "produce, and in the tail the wait behind a checkpoint (flush, state save: once per checkpoint interval). "
            "tansu's floor moves with how the load reaches it"
            f"{' (' + '; '.join(others) + ')' if others else ''}. A batch is what queued while the previous one ran "
            "(batch_linger_ms 0), so at low load batches are small; lingering 10 ms only adds the wait. Near the "
            "maximum rate the queue in front of the worker dominates.")


# ---------------------------------------------------------------------------------------------- 3. scaling
def scaling_table(info: StackInfo, registry: str, records: list[tuple[bytes, bytes]],
                  cfg: PipelineConfig) -> Table:
    rows = []
    for n in cfg.scaling:
        rate, got = _backlog_rate(info, registry, records, partitions=n, workers=n, timeout_s=cfg.timeout_s)
        rows.append([n, n, got, rate])
    base = rows[0][3]
    for row in rows:
        row.append(ratio(row[3], base))
    return Table("pipeline", "Scaling: partitions and worker processes in one consumer group (events/s)",
                 ["partitions", "workers", "events", "events/s", "vs 1 worker"], rows,
                 notes=[f"{len(records):,} pre-produced vitals per row; each worker a process of its own; "
                        f"{mp.cpu_count()} CPUs shared with the broker and Redis."],
                 limit=f"limit: the CPUs: {mp.cpu_count()} cores run the workers, tansu and redis-server, so "
                       "beyond 2 workers processes only share the same cores (more partitions help on more "
                       "cores or machines, as Kafka scale-out intends).")


# --------------------------------------------------------------------------------------------------- run
def run(info: StackInfo, cfg: PipelineConfig = PipelineConfig()) -> list[Table]:
    """All three tables on one stack; a registry with v1/v2 of the vitals model is trained once."""
    stream = vitals_stream(cfg.entities, max(cfg.events, cfg.scaling_events) * 10 / cfg.entities / 60)
    records = to_records(stream)
    with tempfile.TemporaryDirectory(prefix="driftline-bench-registry-") as registry:
        train_models(registry, entities=100, minutes=5.0)
        throughput, max_rate = throughput_table(info, registry, records[: cfg.events], cfg)
        # a stack of its own: tansu keeps every record ever written in memory; latency is measured on a broker
        # that holds only this table's own records
        with bench_stack() as fresh:
            latency = latency_table(fresh, registry, records, max_rate, cfg)
        scaling = scaling_table(info, registry, records[: cfg.scaling_events], cfg)
    return [throughput, latency, scaling]


def main(argv: list[str] | None = None) -> list[Table]:
    """Run on a fresh embedded stack and print the tables."""
    p = argparse.ArgumentParser(prog="python -m bench.pipeline_bench", description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    p.add_argument("--throughput-only", action="store_true", help="only the throughput table (checkpoint intervals)")
    args = p.parse_args(argv)
    cfg = PipelineConfig.tiny() if args.tiny else PipelineConfig()
    return run_on_fresh_stack(run_throughput if args.throughput_only else run, cfg)


def run_throughput(info: StackInfo, cfg: PipelineConfig = PipelineConfig()) -> list[Table]:
    """Only the throughput table (the checkpoint interval rows and the passthrough)."""
    records = to_records(vitals_stream(cfg.entities, cfg.events * 10 / cfg.entities / 60))
    with tempfile.TemporaryDirectory(prefix="driftline-bench-registry-") as registry:
        train_models(registry, entities=100, minutes=5.0)
        return [throughput_table(info, registry, records[: cfg.events], cfg)[0]]


if __name__ == "__main__":
    main()
