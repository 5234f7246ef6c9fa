"""Feature-engine throughput: parse, engine, encode, for the shipped views on simulated streams.

Run ``python -m bench.features_bench`` (``--help`` for options). For each view it simulates ``--entities``
entities with ``streams.local.simulator.generate`` (rate 400/s, time scale 40, so each entity reports every 50 s of
event time), turns every event into Kafka-like bytes and times, in batches of ``--batch`` events:

* ``parse``: ``parse_record`` alone;
* ``engine``: ``FeatureEngine.process`` alone (states kept in memory across batches, as offline/backfill);
* ``parse+engine+encode``: both, then ``EntityState.to_redis`` + ``mark_saved`` of every touched state per
  batch (what a save would send, without the network);
* ``online (store)``: the fused pipeline's per-batch cycle against ``MemoryFeatureStore``: parse, ``load``
  (``EntityState.from_redis`` of every entity of the batch), process, ``save`` (``to_redis``). States are
  rebuilt from bytes every batch, as with Redis, so no in-memory cache survives between batches.

Times are CPU time of this process (``time.process_time``): the shared 2-vCPU machine the numbers
below come from was loaded by other jobs, and wall time swung by 2x between identical runs.

Before/after the compiled fold (``features.plan``), 500 entities, 50k events, batches of 500, best of two
interleaved runs, us/event (lower is better):

=====================  ===========  ==========  ==========  =========
stage                  vitals old   vitals new  gps old     gps new
=====================  ===========  ==========  ==========  =========
parse                  7.0          7.0 (*)     4.5         4.5 (*)
engine                 242.7        86.3        61.5        26.0
parse+engine+encode    289.3        121.6       73.1        49.9
online (store)         1149.0       660.2       204.5       132.5
=====================  ===========  ==========  ==========  =========

(*) parsing is unchanged code; its runs ranged 7.0-11.8 (vitals) and 4.5-5.2 us (gps) on this machine.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import orjson

from features.definitions import FeatureView
from features.engine import FeatureEngine
from features.records import Event, parse_record
from features.state import EntityState
from features.store import MemoryFeatureStore, SourcePosition
from features.views import GPS_VIEW, VITALS_VIEW
from streams.local.simulator import SimConfig, generate


def records(source: str, entities: int, events: int) -> list[tuple[bytes, bytes]]:
    """``events`` simulated (key, value) byte pairs of ``source`` (rate 400/s, time scale 40)."""
    cfg = SimConfig(source=source, entities=entities, rate=400, duration_s=events / 400, time_scale=40)  # type: ignore[arg-type]
    return [(e.key.encode(), orjson.dumps(e.value)) for e in generate(cfg)][:events]


def _parse_all(view: FeatureView, recs: list[tuple[bytes, bytes]], base: int = 0) -> list[Event]:
    out = []
    for i, (k, v) in enumerate(recs):
        ev = parse_record(view, k, v)
        ev.offset = base + i
        out.append(ev)
    return out


def _batches(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + size)) for i in range(0, n, size)]


def bench_parse(view: FeatureView, recs: list[tuple[bytes, bytes]], batch: int) -> float:
    """Seconds to parse every record."""
    t0 = time.process_time()
    for i, j in _batches(len(recs), batch):
        _parse_all(view, recs[i:j], i)
    return time.process_time() - t0


def bench_engine(view: FeatureView, recs: list[tuple[bytes, bytes]], batch: int) -> float:
    """Seconds of ``FeatureEngine.process`` over pre-parsed events (states kept in memory)."""
    events = _parse_all(view, recs)
    engine = FeatureEngine(view)
    states: dict[str, EntityState] = {}
    wm: int | None = None
    elapsed = 0.0
    for i, j in _batches(len(events), batch):
        chunk = events[i:j]
        t0 = time.process_time()
        res = engine.process(states, chunk, watermark_ms=wm)
        elapsed += time.process_time() - t0
        wm = res.watermark_ms
    return elapsed


def bench_full(view: FeatureView, recs: list[tuple[bytes, bytes]], batch: int) -> float:
    """Seconds of parse + process + ``to_redis``/``mark_saved`` of the batch's entities."""
    engine = FeatureEngine(view)
    states: dict[str, EntityState] = {}
    wm: int | None = None
    t0 = time.process_time()
    for i, j in _batches(len(recs), batch):
        events = _parse_all(view, recs[i:j], i)
        res = engine.process(states, events, watermark_ms=wm)
        wm = res.watermark_ms
        for e in {ev.entity_id for ev in events}:
            st = states[e]
            st.to_redis()
            st.mark_saved()
    return time.process_time() - t0


def bench_online(view: FeatureView, recs: list[tuple[bytes, bytes]], batch: int) -> float:
    """Seconds of parse + store load (from bytes) + process + store save, per batch."""
    engine = FeatureEngine(view)
    store = MemoryFeatureStore()
    pos = SourcePosition("bench", view.source_topic, 0)
    wm: int | None = None
    t0 = time.process_time()
    for i, j in _batches(len(recs), batch):
        events = _parse_all(view, recs[i:j], i)
        states, off = store.load(view, pos, {ev.entity_id for ev in events})
        res = engine.process(states, events, watermark_ms=wm, min_offset=off)
        wm = res.watermark_ms
        store.save(
            view,
            pos,
            states,
            expected_offset=off,
            new_offset=max(off, res.last_offset),
            ttl_ms=view.retention_ms,
            watermark_ms=wm,
        )
    return time.process_time() - t0


STAGES: dict[str, Callable[[FeatureView, list[tuple[bytes, bytes]], int], float]] = {
    "parse": bench_parse,
    "engine": bench_engine,
    "parse+engine+encode": bench_full,
    "online (store)": bench_online,
}


def main(argv: list[str] | None = None) -> None:
    """Print a table of events/s and us/event per view and stage (best of ``--repeat`` runs)."""
    ap = argparse.ArgumentParser(prog="python -m bench.features_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--entities", type=int, default=500)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--views", default="vitals,gps")
    ap.add_argument("--stages", default=",".join(STAGES))
    args = ap.parse_args(argv)
    views = {"vitals": VITALS_VIEW, "gps": GPS_VIEW}
    print(f"{args.events} events, {args.entities} entities, batches of {args.batch}, best of {args.repeat}")
    print(f"{'view':<8} {'stage':<22} {'events/s':>12} {'us/event':>10}")
    for vname in args.views.split(","):
        view = views[vname]
        recs = records(vname, args.entities, args.events)
        for stage in args.stages.split(","):
            best = min(STAGES[stage](view, recs, args.batch) for _ in range(args.repeat))
            print(
                f"{vname:<8} {stage:<22} {len(recs) / best:>12,.0f} {best / len(recs) * 1e6:>10.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
