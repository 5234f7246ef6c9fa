"""Memory per entity: Redis bytes of the online store and the pipeline worker's RSS, at 10k, 100k and 1M entities.

Run ``python -m bench.memory_bench [--tiny]`` (its own redis-server via ``bench_stack``; nothing shared).

* **Redis** (VITALS_VIEW): a few real states are computed by the engine and saved by ``RedisFeatureStore.save``
  (``bench.store_read_bench.fill_store``): *fresh* (one event, 1 bucket) and *full* (30 min of readings every
  10 s, 31 buckets). Their stored bytes are replicated under other entity ids through the production key layout
  (``features.store.state_key_for`` / ``latest_key_for`` prefixes, the real partition of each id) with the save
  script's commands (``HSET`` of every bucket field, ``PEXPIRE``, ``SET ... PX``), streamed on one connection
  with ``CLIENT REPLY OFF`` (millions of events never go through Python). Per size: ``FLUSHDB``, write,
  ``INFO used_memory`` delta / N and a ``MEMORY USAGE`` sample, next to the baseline: the raw bytes of the
  values (hash fields + values + latest value). A size whose footprint (measured slope x N) would not fit in
  ``mem_share`` of the free memory is not written: its row says *extrapolated* and from which slope.
* **Worker** (``bench.memory_worker``): RSS of a spawned child holding the real ``FusedHandler``'s per-entity
  state after touching N entities through ``process`` + ``finalize``, next to the same child before the first
  batch (the empty worker), with the cache uncapped and at its default cap, and the ``SilenceTracker`` alone.
  A checkpoint whose estimated time exceeds ``worker_budget_s`` is skipped and says so.
"""

from __future__ import annotations

import argparse
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis

from bench.common import Table, bench_stack, bench_view, ratio, run_id, vitals_stream
from bench.memory_worker import Pass, entity_id, run_pass, used_memory
from bench.store_read_bench import PARTITIONS, fill_store
from features.definitions import FeatureView
from features.partitioning import kafka_partition
from features.plan import plan_for
from features.records import Event
from features.store import SourcePosition, latest_key_for, state_key_for
from streams.local.demo import to_events
from streams.local.stack import StackInfo
from streams.settings import PipelineSettings

KINDS = ("fresh", "full")
DEFAULT_CACHE_CAP = PipelineSettings().cache_max_entities  # worker-wide (DRIFTLINE_CACHE_MAX_ENTITIES)
UNCAPPED = 10**9
GROUP = "bench-memory"


@dataclass(frozen=True)
class MemoryConfig:
    """Sizes, and the guards: a size is written only if it fits in ``mem_share`` of the free memory."""

    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    templates: int = 8  # real states computed by the engine, replicated under other ids
    minutes: float = 30.0
    interval_s: float = 10.0
    samples: int = 1000  # MEMORY USAGE samples per size
    batch: int = 500  # worker batch (PipelineSettings.batch_max_rows)
    mem_share: float = 0.4
    worker_budget_s: float = 60.0  # per worker pass
    default_cap_pass: bool = True  # the handler again at the production cap (same as uncapped below it)

    @classmethod
    def tiny(cls) -> MemoryConfig:
        """For the smoke test (well under 10 s)."""
        return cls(sizes=(200, 1000), templates=4, samples=50, batch=100, worker_budget_s=20.0,
                   default_cap_pass=False)


def available_bytes() -> int:
    """``MemAvailable`` of the machine (Linux)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


# ------------------------------------------------------------------------------------------- templates
@dataclass(frozen=True)
class Template:
    """The stored bytes of one real entity: its state hash and its latest-vector string."""

    fields: dict[bytes, bytes]
    latest: bytes

    @property
    def raw(self) -> int:
        """Field + value bytes of the hash plus the latest value (what the encoding needs, no key names).

        >>> Template({b"60000": b"{}"}, b"xyz").raw
        10
        """
        return sum(len(f) + len(v) for f, v in self.fields.items()) + len(self.latest)


def history(view: FeatureView, cfg: MemoryConfig | Any) -> list[Event]:
    """``cfg.minutes`` of simulated vitals for ``cfg.templates`` patients (one per ``cfg.interval_s``), renamed
    ``entity_id(0..)``; ``cfg`` is this bench's config or another with those three fields (the entities bench's)."""
    events, _ = to_events(vitals_stream(cfg.templates, cfg.minutes, cfg.interval_s, seed=5), view)
    names = {e: entity_id(i) for i, e in enumerate(sorted({ev.entity_id for ev in events}))}
    return [replace(ev, entity_id=names[ev.entity_id]) for ev in events]


def save_templates(client: redis.Redis, view: FeatureView, events: Sequence[Event], kind: str, *,
                   group: str = GROUP) -> list[Template]:
    """Save the template entities' ``kind`` states with the store's real save path (under ``group``'s keys); their
    stored bytes."""
    if kind == "fresh":
        firsts: dict[str, Event] = {}
        for ev in events:
            firsts.setdefault(ev.entity_id, ev)
        events = list(firsts.values())
    part = fill_store(client, view, group, events, 100, PARTITIONS)
    out = []
    for e in sorted(part):
        pos = SourcePosition(group, view.source_topic, part[e])
        out.append(Template(client.hgetall(state_key_for(view, pos, e)),  # type: ignore[arg-type]
                            client.get(latest_key_for(view, pos, e))))  # type: ignore[arg-type]
    return out


class KeyLayout:
    """Production keys of ``entity_id(i)``: per-partition prefixes + the id; partitions memoised."""

    def __init__(self, view: FeatureView) -> None:
        self.prefixes = [(state_key_for(view, pos, ""), latest_key_for(view, pos, ""))
                         for pos in (SourcePosition(GROUP, view.source_topic, p) for p in range(PARTITIONS))]
        self._parts: list[int] = []

    def keys(self, i: int) -> tuple[bytes, bytes]:
        """(state hash key, latest string key)."""
        while len(self._parts) <= i:
            self._parts.append(kafka_partition(entity_id(len(self._parts)).encode(), PARTITIONS))
        s, lt = self.prefixes[self._parts[i]]
        e = entity_id(i).encode()
        return s + e, lt + e


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


def _cmd(*parts: bytes) -> bytes:
    """One command in the Redis protocol (RESP).

    >>> _cmd(b"GET", b"k")
    b'*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n'
    """
    return b"*%d\r\n" % len(parts) + b"".join(map(_bulk, parts))


def replicate(client: redis.Redis, view: FeatureView, layout: KeyLayout, tpl: Sequence[Template], start: int,
              n: int, flush_bytes: int = 4 << 20) -> None:
    """Entities ``start..n-1`` get template ``i % len(tpl)``'s bytes with the save script's commands and TTLs,
    streamed with replies off; then the key count is checked."""
    kw = client.connection_pool.connection_kwargs
    ttl = _bulk(str(view.retention_ms).encode())
    parts = [(b"*%d\r\n$4\r\nHSET\r\n" % (2 + 2 * len(t.fields)),
              b"".join(_bulk(f) + _bulk(v) for f, v in sorted(t.fields.items())),
              _bulk(t.latest) + b"$2\r\nPX\r\n" + ttl) for t in tpl]
    before = int(client.dbsize())  # type: ignore[arg-type]
    with socket.create_connection((kw.get("host", "127.0.0.1"), kw.get("port", 6379))) as sock:
        sock.sendall(_cmd(b"CLIENT", b"REPLY", b"OFF") + _cmd(b"SELECT", str(kw.get("db", 0)).encode()))
        buf: list[bytes] = []
        size = 0
        for i in range(start, n):
            head, fields, latest = parts[i % len(parts)]
            skey, lkey = layout.keys(i)
            sk = _bulk(skey)
            chunk = b"".join((head, sk, fields, b"*3\r\n$7\r\nPEXPIRE\r\n", sk, ttl,
                              b"*5\r\n$3\r\nSET\r\n", _bulk(lkey), latest))
            buf.append(chunk)
            size += len(chunk)
            if size >= flush_bytes:
                sock.sendall(b"".join(buf))
                buf, size = [], 0
        sock.sendall(b"".join(buf) + _cmd(b"CLIENT", b"REPLY", b"ON"))
        reply = b""
        while not reply.endswith(b"\r\n"):
            reply += sock.recv(64)
    if reply != b"+OK\r\n" or int(client.dbsize()) != before + 2 * max(0, n - start):  # type: ignore[arg-type]
        raise RuntimeError(f"replicating {n - start} entities: reply {reply!r}, dbsize {client.dbsize()}")


def fill(client: redis.Redis, view: FeatureView, layout: KeyLayout, events: Sequence[Event], kind: str,
         n: int) -> list[Template]:
    """Flush, then ``n`` entities of ``kind``: the templates saved for real, the rest replicated."""
    client.flushdb()
    tpl = save_templates(client, view, events, kind)
    replicate(client, view, layout, tpl, len(tpl), n)
    return tpl


# ------------------------------------------------------------------------------------------- Redis
def redis_row(client: redis.Redis, view: FeatureView, layout: KeyLayout, events: Sequence[Event], kind: str,
              n: int, cfg: MemoryConfig) -> dict[str, Any]:
    """Write ``n`` entities of ``kind`` on an empty database and measure them."""
    client.flushdb()
    before = used_memory(client)
    tpl = fill(client, view, layout, events, kind, n)
    delta = used_memory(client) - before
    ids = random.Random(n).sample(range(n), min(cfg.samples, n))
    pipe = client.pipeline(transaction=False)
    for i in ids:
        for k in layout.keys(i):
            pipe.memory_usage(k, samples=0)
    usage = pipe.execute()
    same = [client.memory_usage(k, samples=0) for k in layout.keys(len(tpl))] == \
        [client.memory_usage(k, samples=0) for k in layout.keys(0)]  # a replica == its template saved for real
    raw = sum(tpl[i % len(tpl)].raw for i in range(n)) / n
    return {"n": n, "buckets": sum(len(t.fields) for t in tpl) / len(tpl), "raw": raw,
            "usage": sum(usage) / len(ids), "delta": delta / n, "same": same or n <= len(tpl)}


def redis_table(client: redis.Redis, view: FeatureView, layout: KeyLayout, events: Sequence[Event],
                cfg: MemoryConfig) -> tuple[Table, dict[str, float]]:
    """The Redis table, and the measured bytes per entity of each kind (at the largest size written)."""
    rows: list[list[Any]] = []
    notes: list[str] = []
    slopes: dict[str, float] = {}
    for kind in KINDS:
        last: dict[str, Any] | None = None
        for n in cfg.sizes:
            need = last["delta"] * n * 1.3 if last else 0.0  # allocator + rehash headroom
            free = available_bytes()
            if last is not None and need > cfg.mem_share * free:
                rows.append([kind, n, last["buckets"], last["raw"], None, last["delta"],
                             ratio(last["delta"], last["raw"]), last["delta"] * n / 2**30,
                             f"extrapolated ({last['n']:,} slope)"])
                notes.append(f"{kind} x {n:,} not written: ~{need / 2**30:.1f} GiB needed, {free / 2**30:.1f} "
                             f"GiB free; linear extrapolation of the {last['n']:,}-entity slope "
                             f"({last['delta']:,.0f} B/entity).")
                continue
            last = redis_row(client, view, layout, events, kind, n, cfg)
            slopes[kind] = last["delta"]
            rows.append([kind, n, last["buckets"], last["raw"], last["usage"], last["delta"],
                         ratio(last["delta"], last["raw"]), last["delta"] * n / 2**30, "measured"])
            if not last["same"]:
                notes.append(f"{kind} x {n:,}: a replica's MEMORY USAGE differs from its template's (saved by Lua)")
        client.flushdb()
    notes.insert(0, f"{cfg.templates} real states per kind (engine + RedisFeatureStore.save) replicated with the "
                    f"save script's commands; {PARTITIONS} partitions; MEMORY USAGE = state hash + latest string "
                    f"(mean of {cfg.samples} sampled entities, key names included); raw = hash fields + values + "
                    "latest value (no key names); used_memory delta includes the keyspace and expires tables.")
    table = Table("memory", "Redis bytes per entity (state hash + latest vector, VITALS_VIEW)",
                  ["state", "entities", "buckets", "raw bytes", "MEMORY USAGE", "used_memory delta",
                   "used_memory / raw", "total GiB", "how"], rows, notes=notes,
                  limit=f"limit: the bucket values: one hashtable field per {view.bucket_ms // 1000} s bucket, a "
                        f"binary row of the {plan_for(view).width} doubles the view reads (too long for a listpack); "
                        "linear in entities x live buckets; the 30 min slope keeps 31 buckets per entity.")
    return table, slopes


# ------------------------------------------------------------------------------------------- worker
WHAT = {("fresh", "handler"): "fresh: 1 event each, FusedHandler",
        ("full", "handler"): "full: 31 buckets loaded, FusedHandler",
        ("fresh", "silence"): "SilenceTracker alone"}


def _passes(cfg: MemoryConfig) -> list[tuple[str, str, int]]:
    """(kind, mode, cache cap) of each child run. Full states at the default cap are not run: below ``cap``
    entities they equal the uncapped run, above it they hold ``cap`` states (GiBs, see the note the table
    computes from the measured slope)."""
    capped = [("fresh", "handler", DEFAULT_CACHE_CAP)] if cfg.default_cap_pass else []
    return [("fresh", "handler", UNCAPPED), *capped, ("full", "handler", UNCAPPED), ("fresh", "silence", UNCAPPED)]


def _fitting(sizes: Sequence[int], cfg: MemoryConfig, worker_b: float, redis_b: float) -> list[int]:
    """Sizes whose states (held by the worker and stored in Redis) fit in ``mem_share`` of the free memory."""
    free = cfg.mem_share * available_bytes()
    return [n for n in sizes if n * (worker_b + redis_b) <= free]


def worker_table(info: StackInfo, client: redis.Redis, view: FeatureView, layout: KeyLayout,
                 events: Sequence[Event], cfg: MemoryConfig, redis_slopes: dict[str, float]) -> Table:
    record = {**events[-1].values, view.ts_field: max(ev.ts_ms for ev in events) + int(cfg.interval_s * 1000)}
    rows: list[list[Any]] = []
    notes: list[str] = []
    slopes: dict[tuple[str, str, int], float] = {}
    for kind, mode, cap in _passes(cfg):
        what = WHAT[(kind, mode)]
        cap_label = "-" if mode == "silence" else "none" if cap == UNCAPPED else f"{cap:,}/worker"
        sizes = list(cfg.sizes)
        client.flushdb()
        if kind == "full":
            tpl_raw = sum(t.raw for t in save_templates(client, view, events, "full")) / cfg.templates
            sizes = _fitting(sizes, cfg, 6 * tpl_raw, redis_slopes.get("full", 1.3 * tpl_raw))  # boxed numbers
            if sizes:
                fill(client, view, layout, events, "full", max(sizes))
        spec = Pass(mode, tuple(sizes), cap, PARTITIONS, cfg.batch, cfg.worker_budget_s)
        got = run_pass(info.redis_url, view, GROUP, record, spec) if sizes else []
        base = got[0]["rss"] if got else 0
        if got and not rows:
            rows.append(["empty worker (handler built, nothing touched)", "-", 0, 0, 0, 0, base / 2**20, 0.0, None,
                         1.0, None])
        for r in got[1:]:
            if "skipped" in r:
                slope = slopes.get((kind, mode, cap), 0.0)
                extra = f"; linear extrapolation {slope * r['n'] / 2**30:.1f} GiB" if cap == UNCAPPED else ""
                notes.append(f"{what}, cap {cap_label}, {r['n']:,}: not run: ~{r['skipped']:.0f} s at the measured "
                             f"{r['rate']:,.0f} entities/s (budget {cfg.worker_budget_s:g} s){extra}.")
                continue
            d = r["rss"] - base
            slopes[(kind, mode, cap)] = d / r["n"]
            if r["n"] <= cap < UNCAPPED:
                continue  # under the cap: the uncapped row already says it
            rows.append([what, cap_label, r["n"], r["cached"], r["silence"], r["sensors"], r["rss"] / 2**20, d / 2**20,
                         d / r["n"], ratio(r["rss"], base),
                         r["redis"] / r["n"] if (kind, mode) == ("fresh", "handler") else None])
        if kind == "full":
            slope = slopes.get((kind, mode, cap), 6 * tpl_raw)
            for n in (n for n in cfg.sizes if n not in sizes):
                notes.append(f"{what}, cap {cap_label}, {n:,}: not run: the worker would hold "
                             f"{slope * n / 2**30:.1f} GiB (linear extrapolation of the measured "
                             f"{slope / 1e3:.0f} KB/entity) plus Redis, more than {cfg.mem_share:.0%} of the "
                             "free memory.")
    client.flushdb()
    full = slopes.get(("full", "handler", UNCAPPED))
    if full:
        notes.append(f"Default cap ({DEFAULT_CACHE_CAP:,} entities for the whole worker, "
                     f"DRIFTLINE_CACHE_MAX_ENTITIES): at the measured {full / 1e3:.0f} KB per cached 31-bucket "
                     f"entity it allows {DEFAULT_CACHE_CAP * full / 2**30:.1f} GiB however many partitions the "
                     "worker owns (derived, not run); above the cap the least recently used states are evicted "
                     "(and reloaded from Redis when their entity comes back).")
    notes.insert(0, f"RSS of a child interpreter (/proc statm after gc.collect) before and after touching N "
                    f"entities, one record each, through FusedHandler.process + finalize ({cfg.batch}-record "
                    f"batches, {PARTITIONS} partitions, Redis store, SilenceTracker and sensor checks as build_pipeline "
                    "builds them; "
                    "a stub scorer: the real one keeps nothing per entity). 'full' entities are loaded from Redis "
                    "with 31 buckets of history. Capped rows appear only above the cap (below, they equal the "
                    "uncapped ones). Last column: Redis used_memory delta / N written by the handler's "
                    "own save (cross-check of the Redis table).")
    return Table("memory", "Pipeline worker RSS per entity touched",
                 ["state", "cache cap", "entities", "cached", "silence entries", "sensor records", "RSS MiB", "delta MiB",
                  "bytes/entity", "RSS / empty", "Redis B/entity (real save)"], rows, notes=notes,
                 limit="limit: the cached EntityState objects: one array of doubles per entity (per bucket, the "
                       "slots the view reads), about its bytes in Redis; the silence tracker adds a dict entry "
                       "and an id string per entity, the sensor checks three small arrays per entity (up to 1M per partition); the handler path itself "
                       "(~5k entities/s here) bounds the sizes measured in the time budget.")


def run(info: StackInfo, cfg: MemoryConfig = MemoryConfig()) -> list[Table]:
    """Both tables against the stack's Redis, which is FLUSHDB'd between sizes and at the end: give it a
    dedicated one (``bench_stack()``; :func:`standalone` starts one)."""
    view = bench_view(f"mem-{run_id()}")
    layout = KeyLayout(view)
    client = redis.Redis.from_url(info.redis_url, socket_timeout=300)  # FLUSHDB of GiBs outlasts the 5 s default
    try:
        events = history(view, cfg)
        redis_t, slopes = redis_table(client, view, layout, events, cfg)
        return [redis_t, worker_table(info, client, view, layout, events, cfg, slopes)]
    finally:
        client.flushdb()
        client.close()


def standalone(cfg: MemoryConfig = MemoryConfig()) -> list[Table]:
    """:func:`run` on a stack of its own (``used_memory`` deltas must not see another bench's keys)."""
    with bench_stack() as info:
        return run(info, cfg)


def main(argv: list[str] | None = None) -> list[Table]:
    """Start a stack, run, print, stop."""
    ap = argparse.ArgumentParser(prog="python -m bench.memory_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test)")
    args = ap.parse_args(argv)
    cfg = MemoryConfig.tiny() if args.tiny else MemoryConfig()
    tables = standalone(cfg)
    for t in tables:
        print(t.render(), end="\n\n", flush=True)
    return tables


if __name__ == "__main__":
    main()
