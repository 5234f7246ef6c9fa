"""Online-store batch-read benchmark: the serving read paths next to a raw Redis read of the same keys.

Part (a) of ``bench.store_bench`` (which calls :func:`fill_store` and :func:`read_table`); run alone with
``python -m bench.store_read_bench [--entities 1000] [--runs 3]`` to repeat the read table on one fill.

Rows, all over the same entities and interleaved (the order rotates every round):

* ``read_latest_matrix``: the serving fast path, ids + ``as_of`` + a 2-D float array in the view's feature order
  (one pipelined MGET per partition, one ``numpy.frombuffer``; ``features.latest``);
* ``read_latest``: the mapping API over it, with every entity's ``{feature: value}`` dict built (it builds them
  on access: a caller that looks up a few pays close to the matrix row);
* baseline: a raw pipelined MGET per partition of the same prebuilt keys, no decoding;
* ``read_features`` (recompute every window at ``now`` from the bucket hashes) next to its raw
  pipelined ``HGETALL`` baseline; ``reads`` rounds only, since one read folds every bucket.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import redis

from bench.common import (
    Table,
    bench_settings,
    bench_stack,
    bench_view,
    delete_group_keys,
    percentiles,
    ratio,
    run_id,
    vitals_stream,
)
from features.definitions import FeatureView
from features.partitioning import entity_partitioner, kafka_partition
from features.records import Event
from features.redis_store import RedisFeatureStore
from features.state import EntityState
from features.store import SourcePosition, latest_key_for, state_key_for
from streams.local.demo import to_events
from streams.runtime.workers import redis_client

PARTITIONS = 3
FAST_READS = 200  # the fast paths are cheap: always this many rounds, for a real p99


def fill_store(client: redis.Redis, view: FeatureView, group: str, events: Sequence[Event], chunk: int,
               partitions: int) -> dict[str, int]:
    """Apply ``events`` to per-entity states and save them (chunks of ``chunk`` entities); entity → partition."""
    states: dict[str, EntityState] = {}
    for ev in events:
        st = states.get(ev.entity_id)
        if st is None:
            st = states[ev.entity_id] = EntityState()
        st.apply(view, ev)
    part = {e: kafka_partition(e.encode(), partitions) for e in states}
    store = RedisFeatureStore(client)
    for p in range(partitions):
        ids = [e for e in states if part[e] == p]
        pos = SourcePosition(group, view.source_topic, p)
        for i in range(0, len(ids), chunk):
            part_ids = ids[i:i + chunk]
            latest = {e: (states[e].last_bucket_ms, states[e].features(view, states[e].last_bucket_ms))
                      for e in part_ids}
            store.save(view, pos, {e: states[e] for e in part_ids}, expected_offset=-1, new_offset=-1,
                       ttl_ms=view.retention_ms, latest=latest)
    return part


def _timed(fns: list[tuple[Callable[[], object], list[float]]], rounds: int) -> None:
    """Call every function once per round, rotating the order, appending each call's ms to its list."""
    for i in range(rounds):
        k = i % len(fns)
        for fn, acc in fns[k:] + fns[:k]:
            t0 = time.perf_counter()
            fn()
            acc.append((time.perf_counter() - t0) * 1000)


def read_table(client: redis.Redis, view: FeatureView, group: str, part: dict[str, int], now_ms: int,
               reads: int) -> Table:
    """The batch-read table over every entity of ``part`` (entity → partition), already saved with latest
    vectors by ``group``."""
    store = RedisFeatureStore(client)
    ids = list(part)
    n = len(ids)
    partition_of = entity_partitioner(max(part.values()) + 1)  # what a serving caller passes: memoised murmur2
    if any(partition_of(e) != p for e, p in part.items()):  # (also warms its cache, as repeated reads would)
        raise AssertionError("entity_partitioner disagrees with the partitions the store was filled with")

    def matrix() -> None:
        store.read_latest_matrix(view, ids, partition_of=partition_of, group=group)

    def dicts() -> None:  # every entity's dict built: the full cost for a caller that walks them all
        for _ in store.read_latest(view, ids, partition_of=partition_of, group=group).values():
            pass

    by_part: dict[int, list[bytes]] = {}
    for e in ids:
        by_part.setdefault(part[e], []).append(latest_key_for(view, SourcePosition(group, view.source_topic,
                                                                                   part[e]), e))

    def raw_latest() -> None:
        pipe = client.pipeline(transaction=False)
        for keys_of_part in by_part.values():
            pipe.mget(keys_of_part)
        pipe.execute()

    state_keys = [state_key_for(view, SourcePosition(group, view.source_topic, part[e]), e) for e in ids]

    def recompute() -> None:
        store.read_features(view, ids, now_ms, partition_of=partition_of, group=group)

    def raw_hgetall() -> None:
        pipe = client.pipeline(transaction=False)
        for k in state_keys:
            pipe.hgetall(k)
        pipe.execute()

    found = store.read_latest_matrix(view, ids, partition_of=partition_of, group=group).found
    if not found.all():
        raise RuntimeError(f"{int((~found).sum())} of {n} entities have no latest vector: the fill is wrong")
    for fn in (matrix, dicts, raw_latest, recompute, raw_hgetall):  # warm-up (connections, caches)
        fn()
    t_m: list[float] = []
    t_d: list[float] = []
    t_rl: list[float] = []
    t_f: list[float] = []
    t_rh: list[float] = []
    _timed([(matrix, t_m), (dicts, t_d), (raw_latest, t_rl)], max(reads, FAST_READS))
    _timed([(recompute, t_f), (raw_hgetall, t_rh)], reads)
    pm, pd, prl, pf, prh = (percentiles(t) for t in (t_m, t_d, t_rl, t_f, t_rh))

    def per_s(p: list[float]) -> float:
        return n / (p[0] / 1000)

    rows = [["read_latest_matrix (serving path: ids + 2-D float array)", *pm, per_s(pm)],
            ["read_latest (mapping, every entity's dict built)", *pd, per_s(pd)],
            ["raw MGET per partition of the same keys", *prl, per_s(prl)],
            ["ratio (read_latest_matrix / raw)", *(ratio(a, b) for a, b in zip(pm, prl, strict=True)), None],
            ["ratio (read_latest / raw)", *(ratio(a, b) for a, b in zip(pd, prl, strict=True)), None],
            ["read_features (exact recompute at now)", *pf, per_s(pf)],
            ["raw pipelined HGETALL", *prh, per_s(prh)],
            ["ratio (read_features / raw)", *(ratio(a, b) for a, b in zip(pf, prh, strict=True)), None]]
    return Table("store", f"Batch read of {n:,} entities ({len(t_m)} fast-path reads, {reads} recompute reads, ms)",
                 ["read", "p50 ms", "p95 ms", "p99 ms", "entities/s at p50"], rows,
                 limit=f"limit: read_latest_matrix is the raw MGET (redis-py packing {n:,} keys, hiredis building "
                       f"{n:,} bytes objects) plus ≈{pm[0] - prl[0]:.1f} ms of key building and one frombuffer at "
                       f"p50; read_latest adds ≈{pd[0] - pm[0]:.1f} ms of Python dicts; read_features is CPU-bound "
                       f"folding every bucket's JSON (≈{pf[0] - prh[0]:.0f} ms of {pf[0]:.0f} ms beyond its raw read).")


def main(argv: list[str] | None = None) -> list[Table]:
    """Start a stack, fill the store once, print the read table ``--runs`` times, stop."""
    ap = argparse.ArgumentParser(prog="python -m bench.store_read_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--entities", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=5.0, help="state per entity (read_features folds it)")
    ap.add_argument("--reads", type=int, default=10, help="recompute reads per run")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    tables = []
    with bench_stack() as info:
        rid = run_id()
        view, group = bench_view(f"read-{rid}"), f"bench-read-{rid}"
        client = redis_client(bench_settings(info, rid))
        try:
            events, _ = to_events(vitals_stream(args.entities, args.minutes, 10.0, seed=1), view)
            part = fill_store(client, view, group, events, 100, PARTITIONS)
            for _ in range(args.runs):
                tables.append(read_table(client, view, group, part, max(e.ts_ms for e in events), args.reads))
                print(tables[-1].render(), end="\n\n", flush=True)
        finally:
            delete_group_keys(client, group)
            client.close()
    return tables


if __name__ == "__main__":
    main()
