"""Online-store benchmarks on a real Redis (the embedded stack's own redis-server) for VITALS_VIEW.

Run ``python -m bench.store_bench``:

* (b) memory: ``--entities`` patients, ``--minutes`` of vitals at one reading per ``--interval-s`` each,
  applied to ``EntityState`` and saved with ``RedisFeatureStore.save`` (state + offset, Lua); reported:
  ``MEMORY USAGE`` of the state keys (averaged), the ``INFO used_memory`` delta per entity, and the raw
  bytes of the hash fields and values (what the encoding needs before Redis' own overhead).
* (a) batch read (``bench.store_read_bench``): ``read_latest_matrix`` and ``read_latest`` of all the entities
  next to a raw MGET of the same keys, and ``read_features`` next to a raw pipelined ``HGETALL``, p50/p95/p99.
* (c) aggregator throughput: a topic pre-filled with ``--stream-events`` events; a :class:`BatchLoop` with
  :class:`FeaturesOnlyHandler` (consume → parse → engine → Redis save → commit, no scoring) next to a raw
  confluent-kafka passthrough (consume → ``orjson.loads`` → produce → flush → commit) on the same topic in the
  same run. Events/s are counted from the first batch handed to the code to the last one finished (group
  join time excluded).

Keys, topics and groups are unique to the run; the run's keys are deleted at the end (SCAN of the group).
"""

from __future__ import annotations

import argparse
import gc
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
import redis
from confluent_kafka import Message, TopicPartition

from bench.common import (
    Table,
    bench_settings,
    bench_view,
    delete_group_keys,
    ratio,
    run_id,
    run_on_fresh_stack,
    to_records,
    vitals_stream,
)
from bench.store_read_bench import fill_store, read_table
from features.definitions import FeatureView
from features.engine import FeatureEngine
from features.exceptions import RecordError
from features.records import Event, parse_record
from features.redis_store import RedisFeatureStore
from features.state import EntityState
from features.store import FeatureStore, SourcePosition, state_key_for
from streams.local.demo import to_events
from streams.local.stack import StackInfo
from streams.runtime.batch import BatchResult, Output, dead_letter
from streams.runtime.clients import make_consumer, make_producer
from streams.runtime.loop import BatchLoop
from streams.runtime.topics import TopicSpec, ensure_topics
from streams.runtime.workers import redis_client
from streams.settings import Settings

log = logging.getLogger(__name__)
PARTITIONS = 3


@dataclass(frozen=True)
class StoreConfig:
    """Sizes of the three parts (the brief's 200 reads take ~2.5 s each at 30 min of state: see ``reads``)."""

    entities: int = 1000
    minutes: float = 30.0
    interval_s: float = 10.0
    reads: int = 20
    save_chunk: int = 100
    stream_entities: int = 500
    stream_events: int = 20_000
    batch: int = 500

    @classmethod
    def tiny(cls) -> StoreConfig:
        """For the smoke test."""
        return cls(entities=20, minutes=2.0, reads=5, stream_entities=20, stream_events=400, batch=100)


class FeaturesOnlyHandler:
    """Batch handler of the aggregator alone: parse, load state, engine, save state + offset; no scoring.

    Bad and late records go to the dead-letter topic, as in the fused pipeline. ``events`` counts the feature
    vectors computed (one per accepted event).
    """

    def __init__(self, view: FeatureView, store: FeatureStore, *, group: str, dlq_topic: str) -> None:
        self.view = view
        self.store = store
        self.engine = FeatureEngine(view)
        self.group = group
        self.dlq_topic = dlq_topic
        self.watermarks: dict[int, int | None] = {}
        self.events = 0

    def on_assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Start each new partition from its saved watermark."""
        for p in partitions:
            self.watermarks.setdefault(p.partition, None)

    def on_revoke(self, partitions: Sequence[TopicPartition]) -> None:
        """Forget revoked partitions."""
        for p in partitions:
            self.watermarks.pop(p.partition, None)

    def process(self, messages: Sequence[Message]) -> BatchResult:
        """One batch: dead letters to produce, and a finalize that saves every partition's state."""
        outputs: list[Output] = []
        by_partition: dict[int, list[Event]] = defaultdict(list)
        last: dict[int, int] = {}
        originals: dict[tuple[int, int], Message] = {}
        for m in messages:
            p, off = m.partition(), m.offset()
            last[p] = max(last.get(p, -1), off)
            try:
                ev = parse_record(self.view, m.key(), m.value())
            except RecordError as err:
                outputs.append(dead_letter(m, self.dlq_topic, err.reason, err.detail))
                continue
            ev.offset, ev.partition = off, p
            originals[(p, off)] = m
            by_partition[p].append(ev)
        saves: list[Callable[[], None]] = []
        for p, new_offset in last.items():
            events = by_partition.get(p, [])
            pos = SourcePosition(self.group, self.view.source_topic, p)
            states, stored = self.store.load(self.view, pos, {e.entity_id for e in events})
            if self.watermarks.get(p) is None:
                self.watermarks[p] = self.store.position(self.view, pos)[1]  # type: ignore[attr-defined]
            res = self.engine.process(states, events, watermark_ms=self.watermarks[p], min_offset=stored)
            for ev, reason in res.late:
                outputs.append(dead_letter(originals[(p, ev.offset)], self.dlq_topic, reason, "late"))
            self.events += len(res.vectors)
            saves.append(self._saver(pos, states, stored, new_offset, res.watermark_ms))
        return BatchResult(outputs, finalize=lambda: [s() for s in saves] and None)

    def _saver(self, pos: SourcePosition, states: dict[str, EntityState], expected: int, new: int,
               watermark: int | None) -> Callable[[], None]:
        def save() -> None:
            self.store.save(self.view, pos, states, expected_offset=expected, new_offset=max(expected, new),
                            ttl_ms=self.view.retention_ms, watermark_ms=watermark)
            self.watermarks[pos.partition] = watermark
        return save


# ------------------------------------------------------------------------------------------- (b) memory
def memory_table(client: redis.Redis, view: FeatureView, group: str, events: Sequence[Event],
                 cfg: StoreConfig) -> tuple[Table, dict[str, int]]:
    """Part (b); also returns the entity → partition map for part (a)."""
    before = int(client.info("memory")["used_memory"])  # type: ignore[index]
    part = fill_store(client, view, group, events, cfg.save_chunk, PARTITIONS)
    after = int(client.info("memory")["used_memory"])  # type: ignore[index]
    keys = [state_key_for(view, SourcePosition(group, view.source_topic, p), e) for e, p in part.items()]
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.memory_usage(k, samples=0)
        pipe.hlen(k)
    res = pipe.execute()
    usage, buckets = res[0::2], res[1::2]
    raw = 0
    for i in range(0, len(keys), 100):
        pipe = client.pipeline(transaction=False)
        for k in keys[i:i + 100]:
            pipe.hgetall(k)
        raw += sum(len(f) + len(v) for h in pipe.execute() for f, v in h.items())
    n = len(keys)
    mem = sum(usage) / n
    rows = [["entities", n], ["events applied", len(events)], ["buckets (hash fields) per entity", sum(buckets) / n],
            ["raw field+value bytes per entity", raw / n], ["MEMORY USAGE per entity (bytes)", mem],
            ["INFO used_memory delta per entity (bytes)", (after - before) / n],
            ["MEMORY USAGE / raw bytes", ratio(mem, raw / n)],
            ["total MEMORY USAGE (MiB)", sum(usage) / 2**20]]
    table = Table("store", f"Redis memory per entity after a backfill ({cfg.minutes:g} min of vitals, one reading "
                  f"per {cfg.interval_s:g} s per entity)", ["metric", "value"], rows,
                  limit=f"limit: one hash field per {view.bucket_ms // 1000} s bucket per entity, each an orjson "
                        f"object of {len(view.fields)} fields x 13 numbers; the 30 min slope keeps "
                        f"{view.retention_ms // view.bucket_ms} buckets alive, so size grows linearly with the "
                        "longest window / bucket_ms.")
    return table, part


# ------------------------------------------------------------------------------------------- (c) throughput
def prefill(settings: Settings, topic: str, records: Sequence[tuple[bytes, bytes]]) -> None:
    """Produce every record and wait for delivery."""
    producer = make_producer(settings.kafka)
    for k, v in records:
        while True:
            try:
                producer.produce(topic, v, k)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60):
        raise RuntimeError(f"pre-filling {topic}: records left undelivered")


def aggregator_run(settings: Settings, view: FeatureView, client: redis.Redis, group: str, dlq: str, n: int,
                   batch: int, timeout_s: float = 120.0) -> tuple[float, float]:
    """(events/s, share of wall time inside the handler) of the features-only BatchLoop over ``n`` records."""
    handler = FeaturesOnlyHandler(view, RedisFeatureStore(client), group=group, dlq_topic=dlq)
    consumer = make_consumer(settings.kafka, group)
    producer = make_producer(settings.kafka)
    seen = {"records": 0, "start": 0.0, "end": 0.0, "busy": 0.0}

    def on_batch(records: int, elapsed: float) -> None:
        now = time.perf_counter()
        if not seen["records"]:
            seen["start"] = now - elapsed
        seen["records"] += records
        seen["busy"] += elapsed
        seen["end"] = now
        if seen["records"] >= n:
            loop.stop()

    loop = BatchLoop(consumer, producer, handler, [view.source_topic], max_rows=batch, max_ms=50,
                     on_batch=on_batch, stage="bench")
    thread = threading.Thread(target=loop.run, name="bench-aggregator", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        loop.stop()
        thread.join(10)
        raise TimeoutError(f"aggregator handled {seen['records']} of {n} records in {timeout_s:g} s")
    if loop.health.last_error:
        log.warning("aggregator had failures: %s", loop.health.last_error)
    span = seen["end"] - seen["start"]
    return seen["records"] / span, seen["busy"] / span


def passthrough_run(settings: Settings, topic: str, out_topic: str, group: str, n: int, batch: int,
                    timeout_s: float = 120.0) -> float:
    """Events/s of raw confluent-kafka: consume → orjson.loads → produce → flush → commit."""
    consumer = make_consumer(settings.kafka, group)
    producer = make_producer(settings.kafka)
    consumer.subscribe([topic])
    count, start, end = 0, 0.0, 0.0
    deadline = time.time() + timeout_s
    try:
        while count < n:
            if time.time() > deadline:
                raise TimeoutError(f"passthrough handled {count} of {n} records in {timeout_s:g} s")
            msgs = [m for m in consumer.consume(batch, 0.05) if m.error() is None]
            if not msgs:
                continue
            if not count:
                start = time.perf_counter()
            for m in msgs:
                orjson.loads(m.value())
                producer.produce(out_topic, m.value(), m.key())
            producer.flush(30)
            last: dict[int, int] = {}
            for m in msgs:
                last[m.partition()] = max(last.get(m.partition(), -1), m.offset())
            consumer.commit(offsets=[TopicPartition(topic, p, o + 1) for p, o in last.items()],
                            asynchronous=False)
            count += len(msgs)
            end = time.perf_counter()
    finally:
        consumer.close()
    return count / (end - start)


def throughput_table(settings: Settings, rid: str, cfg: StoreConfig, client: redis.Redis) -> Table:
    """Part (c)."""
    view = bench_view(f"agg-{rid}")
    out, dlq = f"bench-pass-{rid}", f"bench-agg-{rid}.dlq"
    ensure_topics(settings, [TopicSpec(view.source_topic, PARTITIONS), TopicSpec(out, PARTITIONS),
                             TopicSpec(dlq, 1)])
    interval = 10.0
    minutes = cfg.stream_events / cfg.stream_entities * interval / 60
    records = to_records(vitals_stream(cfg.stream_entities, minutes, interval, seed=3))[:cfg.stream_events]
    prefill(settings, view.source_topic, records)
    n = len(records)
    group = f"bench-agg-{rid}"
    try:
        agg, busy = aggregator_run(settings, view, client, group, dlq, n, cfg.batch)
    finally:
        delete_group_keys(client, group)
    raw = passthrough_run(settings, view.source_topic, out, f"bench-pass-{rid}", n, cfg.batch)
    rows = [["aggregator (parse → engine → Redis save → commit)", n, agg, 1e6 / agg],
            ["raw passthrough (consume → loads → produce → commit)", n, raw, 1e6 / raw],
            ["ratio (aggregator / passthrough)", None, ratio(agg, raw), None]]
    return Table("store", f"Aggregator-alone throughput ({n:,} vitals events, {cfg.stream_entities} entities, "
                 f"{PARTITIONS} partitions, batches of {cfg.batch})",
                 ["path", "events", "events/s", "us/event"], rows,
                 limit=f"limit: the aggregator spends {busy:.0%} of its wall time handling batches (Python parse, "
                       "engine fold per event, state JSON decode/encode, Redis load + Lua save, commit), the "
                       "rest waiting in consume; the "
                       "passthrough is bound by librdkafka and the tansu broker on 2 shared cores.")


def run(info: StackInfo, cfg: StoreConfig = StoreConfig()) -> list[Table]:
    """All three parts against the stack's Redis; the run's keys are deleted at the end."""
    rid = run_id()
    settings = bench_settings(info, rid)
    view = bench_view(f"store-{rid}")
    group = f"bench-store-{rid}"
    client = redis_client(settings)
    try:
        events, _ = to_events(vitals_stream(cfg.entities, cfg.minutes, cfg.interval_s, seed=1), view)
        try:
            mem, part = memory_table(client, view, group, events, cfg)
            reads = read_table(client, view, group, part, max(e.ts_ms for e in events), cfg.reads)
        finally:
            delete_group_keys(client, group)
        thr = throughput_table(settings, rid, cfg, client)
    finally:
        client.close()
        gc.collect()  # free librdkafka clients before the broker stops
    return [reads, mem, thr]


def main(argv: list[str] | None = None) -> list[Table]:
    """Start a stack, run, print, stop."""
    ap = argparse.ArgumentParser(prog="python -m bench.store_bench", description=__doc__.split("\n")[0])
    d = StoreConfig()
    ap.add_argument("--entities", type=int, default=d.entities)
    ap.add_argument("--minutes", type=float, default=d.minutes)
    ap.add_argument("--interval-s", type=float, default=d.interval_s)
    ap.add_argument("--reads", type=int, default=d.reads)
    ap.add_argument("--stream-events", type=int, default=d.stream_events)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test)")
    args = ap.parse_args(argv)
    cfg = StoreConfig.tiny() if args.tiny else StoreConfig(
        entities=args.entities, minutes=args.minutes, interval_s=args.interval_s, reads=args.reads,
        stream_events=args.stream_events)
    return run_on_fresh_stack(run, cfg)


if __name__ == "__main__":
    main()
