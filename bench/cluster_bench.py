"""Redis Cluster next to one Redis, in the same run (``python -m bench.cluster_bench``, about 1-2 minutes).

A local 3-master Redis Cluster (``streams.local.redis_cluster``: three ``redis-server --cluster-enabled yes`` on
this machine) beside the stack's own single redis-server; every table alternates the two backends so they share
the machine's state:

1. batch read of ``--entities`` (1,000) entities: ``read_latest_matrix`` with no partitioner (the index finds
   them; a reader that already read them: one round trip), the same from a reader that never saw them (the index
   first, then the vectors: two round trips), and a raw pipelined MGET per partition of the latest keys;
2. the aggregator alone (``bench.store_bench``'s features-only loop: parse → engine → Redis save → commit) over
   the same pre-filled topic, each backend with its own group, alternating;
3. the fused pipeline (one worker process) on each backend, and on the cluster 1 and 2 worker processes in one
   consumer group (``bench.pipeline_bench``'s backlog measurement).

On one machine a cluster cannot be faster than one Redis: it is the same CPU split into three processes, and a
cluster client groups each pipeline per node (more round trips per batch). The tables say what it costs; the
gain, capacity past one machine, is not measurable here.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    Table,
    bench_settings,
    bench_view,
    delete_group_keys,
    percentiles,
    ratio,
    run_id,
    run_on_fresh_stack,
    to_records,
    vitals_stream,
)
from bench.pipeline_bench import _backlog_rate
from bench.store_bench import aggregator_run, prefill
from bench.store_read_bench import _timed, fill_store
from features.redis_store import RedisFeatureStore
from features.store import SourcePosition, latest_key_for
from streams.local.demo import to_events
from streams.local.redis_cluster import LocalCluster
from streams.local.stack import StackInfo
from streams.redis_client import AnyRedis, make_redis
from streams.runtime.topics import TopicSpec, ensure_topics

PARTITIONS = 6


@dataclass(frozen=True)
class ClusterConfig:
    entities: int = 1000
    minutes: float = 2.0
    reads: int = 300
    stream_entities: int = 500
    stream_events: int = 20_000
    rounds: int = 2
    pipeline_events: int = 20_000
    scaling: tuple[int, ...] = (1, 2)
    timeout_s: float = 120.0

    @classmethod
    def tiny(cls) -> ClusterConfig:
        return cls(entities=50, minutes=1.0, reads=20, stream_entities=20, stream_events=400, rounds=1,
                   pipeline_events=400, scaling=(1,), timeout_s=60.0)


def read_table(clients: dict[str, AnyRedis], cfg: ClusterConfig, rid: str) -> Table:
    view, group = bench_view(f"cread-{rid}"), f"bench-cread-{rid}"
    events, _ = to_events(vitals_stream(cfg.entities, cfg.minutes, 10.0, seed=1), view)
    fns: list[tuple[str, str, Callable[[], object], list[float]]] = []
    try:
        for name, client in clients.items():
            part = fill_store(client, view, group, events, 100, PARTITIONS)
            ids = list(part)
            warm = RedisFeatureStore(client)
            if not warm.read_latest_matrix(view, ids, group=group).found.all():
                raise RuntimeError(f"{name}: the index did not find every entity")
            by_part: dict[int, list[bytes]] = {}
            for e in ids:
                by_part.setdefault(part[e], []).append(
                    latest_key_for(view, SourcePosition(group, view.source_topic, part[e]), e))

            def hot(store: RedisFeatureStore = warm, ids: list[str] = ids) -> None:
                store.read_latest_matrix(view, ids, group=group)

            def cold(client: AnyRedis = client, ids: list[str] = ids) -> None:
                RedisFeatureStore(client).read_latest_matrix(view, ids, group=group)

            def raw(client: AnyRedis = client, by_part: dict[int, list[bytes]] = by_part) -> None:
                pipe = client.pipeline(transaction=False)
                for keys in by_part.values():
                    pipe.execute_command("MGET", *keys)
                pipe.execute()

            for fn in (hot, cold, raw):
                fn()  # warm-up: connections, scripts, slot maps
            fns += [(name, "read_latest_matrix, no partitioner (reader knows the partitions)", hot, []),
                    (name, "read_latest_matrix, no partitioner, a reader that never saw them", cold, []),
                    (name, "raw MGET per partition of the same keys", raw, [])]
        _timed([(fn, acc) for _, _, fn, acc in fns], cfg.reads)
    finally:
        for client in clients.values():
            delete_group_keys(client, group)
    rows = []
    by: dict[tuple[str, str], list[float]] = {}
    for name, what, _, acc in fns:
        p = by[(name, what)] = percentiles(acc)
        rows.append([name, what, *p, len(acc)])
    for name in clients:
        hot_p = by[(name, "read_latest_matrix, no partitioner (reader knows the partitions)")]
        raw_p = by[(name, "raw MGET per partition of the same keys")]
        rows.append([name, "ratio (warm read_latest_matrix / raw MGET)",
                     *(ratio(a, b) for a, b in zip(hot_p, raw_p, strict=True)), None])
    singles = {what: percentiles(acc) for name, what, _, acc in fns if name == "one Redis"}
    hot_single = singles["read_latest_matrix, no partitioner (reader knows the partitions)"]
    return Table("cluster", f"Batch read of {cfg.entities:,} entities, one Redis vs a 3-master cluster (ms; "
                 f"{cfg.reads} reads each, alternating)",
                 ["backend", "read", "p50 ms", "p95 ms", "p99 ms", "reads"], rows,
                 limit=f"limit: one Redis: the raw MGET plus ≈{hot_single[0] - singles['raw MGET per partition of the same keys'][0]:.1f} ms "
                       "(index keys built and checked, one frombuffer); the cluster sends one MGET per index bucket "
                       "and per partition, grouped per node (3 connections, 3 replies to merge); a new reader pays "
                       "a second round trip.")


def aggregator_table(info: StackInfo, urls: dict[str, str], cfg: ClusterConfig, rid: str) -> Table:
    settings = bench_settings(info, rid)
    view = bench_view(f"cagg-{rid}")
    dlq = f"bench-cagg-{rid}.dlq"
    ensure_topics(settings, [TopicSpec(view.source_topic, PARTITIONS), TopicSpec(dlq, 1)])
    interval = 10.0
    minutes = cfg.stream_events / cfg.stream_entities * interval / 60
    records = to_records(vitals_stream(cfg.stream_entities, minutes, interval, seed=3))[: cfg.stream_events]
    prefill(settings, view.source_topic, records)
    rates: dict[str, list[float]] = {name: [] for name in urls}
    for r in range(cfg.rounds):
        for name, url in (list(urls.items()) if r % 2 == 0 else list(reversed(urls.items()))):
            client = make_redis(url)
            group = f"bench-cagg-{rid}-{r}-{len(rates[name])}-{'c' if 'cluster' in url else 's'}"
            try:
                rate, _ = aggregator_run(settings, view, client, group, dlq, len(records), 500, cfg.timeout_s)
                rates[name].append(rate)
            finally:
                delete_group_keys(client, group)
                client.close()
    base = sum(rates["one Redis"]) / len(rates["one Redis"])
    rows = [[name, len(records), sum(v) / len(v), ratio(sum(v) / len(v), base), ", ".join(f"{x:,.0f}" for x in v)]
            for name, v in rates.items()]
    return Table("cluster", f"Aggregator alone (parse → engine → Redis save → commit), {len(records):,} events on "
                 f"{PARTITIONS} partitions, one Redis vs a 3-master cluster (events/s, {cfg.rounds} runs each)",
                 ["backend", "events", "events/s (mean)", "vs one Redis", "runs"], rows,
                 limit="limit: the worker's Python CPU, as on one Redis; the cluster client splits each batch's "
                       "load and save pipelines per node, so a batch waits for the slowest of 3 nodes.")


def pipeline_table(info: StackInfo, urls: dict[str, str], cfg: ClusterConfig, registry: str) -> Table:
    stream = vitals_stream(cfg.stream_entities, cfg.pipeline_events * 10 / cfg.stream_entities / 60)
    records = to_records(stream)[: cfg.pipeline_events]
    specs = [(name, url, 1) for name, url in urls.items()]
    specs += [("3-master cluster", urls["3-master cluster"], n) for n in cfg.scaling if n != 1]
    rates: dict[tuple[str, int], list[float]] = {(name, n): [] for name, _, n in specs}
    got: dict[tuple[str, int], int] = {}
    for r in range(cfg.rounds):  # alternating: each round runs every row, the order rotating
        k = r % len(specs)
        for name, url, n in specs[k:] + specs[:k]:
            rate, count = _backlog_rate(dataclasses.replace(info, redis_url=url), registry, records,
                                        partitions=PARTITIONS, workers=n, timeout_s=cfg.timeout_s)
            rates[(name, n)].append(rate)
            got[(name, n)] = min(count, got.get((name, n), count))
    base = sum(rates[("one Redis", 1)]) / len(rates[("one Redis", 1)])
    rows = []
    for (name, n), v in rates.items():
        mean = sum(v) / len(v)
        rows.append([name, n, got[(name, n)], mean, ratio(mean, base), ", ".join(f"{x:,.0f}" for x in v)])
    return Table("cluster", f"Fused pipeline (worker processes in one group, {PARTITIONS} partitions, "
                 f"{len(records):,} events): one Redis vs a 3-master cluster (events/s, {cfg.rounds} runs each, "
                 "alternating)", ["backend", "workers", "events", "events/s (mean)", "vs one Redis, 1 worker", "runs"],
                 rows, limit="limit: 2 shared cores run the workers, tansu and the 4 redis-servers; workers past "
                             "2 only share them.")


def run(info: StackInfo, cfg: ClusterConfig = ClusterConfig()) -> list[Table]:
    """All three tables; the cluster lives for the run only."""
    from bench.common import train_models

    rid = run_id()
    with tempfile.TemporaryDirectory(prefix="driftline-bench-cluster-") as tmp, \
            LocalCluster(Path(tmp) / "cluster", masters=3) as lc:
        urls = {"one Redis": info.redis_url, "3-master cluster": lc.url}
        clients = {name: make_redis(url) for name, url in urls.items()}
        try:
            reads = read_table(clients, cfg, rid)
        finally:
            for c in clients.values():
                c.close()
        agg = aggregator_table(info, urls, cfg, rid)
        registry = str(Path(tmp) / "registry")
        train_models(registry, entities=100, minutes=5.0)
        pipe = pipeline_table(info, urls, cfg, registry)
        gc.collect()
    return [reads, agg, pipe]


def main(argv: list[str] | None = None) -> list[Table]:
    ap = argparse.ArgumentParser(prog="python -m bench.cluster_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    args = ap.parse_args(argv)
    return run_on_fresh_stack(run, ClusterConfig.tiny() if args.tiny else ClusterConfig())


if __name__ == "__main__":
    main()
