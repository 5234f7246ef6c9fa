"""The worker side of ``bench.memory_bench``: a spawned child that holds per-entity state and reports its RSS.

A child process (``python -m bench.memory_worker``, so nothing of the parent's heap or imports is counted; its
arguments are pickled on stdin, its checkpoints come back as JSON lines on stdout) builds what
``streams.runtime.workers.build_pipeline`` builds per entity and reports ``/proc/self/statm`` RSS at checkpoints:

* ``handler`` mode: the real :class:`~streams.runtime.pipeline.FusedHandler` (Redis store, ``SilenceTracker``) fed one
  record per entity through ``process`` + ``finalize``, in batches, the way ``BatchLoop`` drives it. What it
  keeps per entity: the write-through state cache (at most ``cache_max_entities`` states for the whole worker,
  least recently used out) and the silence tracker's entry.
* ``silence`` mode: a :class:`~features.silence.SilenceTracker` alone, ``observe`` per entity (cheap enough
  for 1M, where the handler path is not: see ``bench.memory_bench``).

The scorer keeps nothing per entity (``models.scorer`` routes by a hash of the id), so a stub that scores
nothing stands in for it; prediction outputs are therefore not built.

Example:
    >>> entity_id(7), entity_id(999_999)
    ('P000007', 'P999999')
    >>> m = _Msg("t", 1, 5, b"k", b"v"); (m.partition(), m.offset(), m.key(), m.error())
    (1, 5, b'k', None)
"""

from __future__ import annotations

import gc
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from features.definitions import FeatureView
from features.partitioning import kafka_partition


def entity_id(i: int) -> str:
    """Simulator-style patient ids, wide enough for 1M."""
    return f"P{i:06d}"


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (Linux ``/proc/<pid>/statm``)."""
    with open(f"/proc/{pid or os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def used_memory(client: redis.Redis) -> int:
    """Redis ``INFO memory`` ``used_memory`` (bytes the allocator holds for data and overhead)."""
    return int(client.info("memory")["used_memory"])  # type: ignore[index]


@dataclass(frozen=True)
class Pass:
    """One child run: ``mode`` (handler | silence), checkpoints (entities touched), the handler's cache cap."""

    mode: str
    checkpoints: tuple[int, ...]
    cap: int
    partitions: int
    batch: int
    budget_s: float


class _Msg:
    """The parts of a Kafka message ``FusedHandler.process`` reads."""

    __slots__ = ("_k", "_o", "_p", "_topic", "_v")

    def __init__(self, topic: str, p: int, o: int, k: bytes, v: bytes) -> None:
        self._topic, self._p, self._o, self._k, self._v = topic, p, o, k, v

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return self._k

    def value(self) -> bytes:
        return self._v

    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, int(time.time() * 1000))


class _NoScorer:
    """Stands in for ``models.scorer.Scorer`` (which keeps nothing per entity): scores nothing."""

    model = "none"
    active_version = None

    def score(self, rows: Sequence[Any]) -> None:
        return None


def batches(view: FeatureView, record: dict[str, Any], start: int, stop: int, spec: Pass,
            offsets: list[int]) -> Iterator[list[_Msg]]:
    """Records of entities ``start..stop-1`` (one each), ``spec.batch`` at a time; ``offsets`` (next offset per
    partition) is advanced in place."""
    key = view.entity_key
    for lo in range(start, stop, spec.batch):
        msgs = []
        for i in range(lo, min(stop, lo + spec.batch)):
            e = entity_id(i)
            p = kafka_partition(e.encode(), spec.partitions)
            msgs.append(_Msg(view.source_topic, p, offsets[p], e.encode(), orjson.dumps({**record, key: e})))
            offsets[p] += 1
        yield msgs


def child(redis_url: str, view: FeatureView, group: str, record: dict[str, Any], spec: Pass, out: Any) -> None:
    """The child's body: one dict per checkpoint on ``out`` (the first is the empty worker), then None."""
    from features.redis_store import RedisFeatureStore
    from features.silence import SilenceTracker
    from streams.runtime.pipeline import FusedHandler
    from streams.runtime.workers import sensor_checks
    from streams.settings import PipelineSettings, Settings

    client = redis.Redis.from_url(redis_url)
    silence = SilenceTracker(PipelineSettings().silence_idle_ms)
    sensors = sensor_checks(Settings(), view)  # as build_pipeline builds them: a record per entity too
    handler = FusedHandler(view, RedisFeatureStore(client), _NoScorer(), group=group,  # type: ignore[arg-type]
                           predictions_topic="p", dlq_topic="d", silence=silence, cache_max_entities=spec.cap,
                           sensors=sensors)
    gc.collect()
    rss0, mem0, t0 = rss_bytes(), used_memory(client), time.perf_counter()
    out.put({"n": 0, "rss": rss0})
    done, offsets, ts = 0, [0] * spec.partitions, int(record[view.ts_field])
    for target in spec.checkpoints:
        took = time.perf_counter() - t0
        if done and took / done * target > spec.budget_s:
            out.put({"n": target, "skipped": took / done * target, "rate": done / took})
            break
        if spec.mode == "silence":
            for i in range(done, target):
                e = entity_id(i)
                silence.observe(kafka_partition(e.encode(), spec.partitions), e, ts, 1.0)
        else:
            for msgs in batches(view, record, done, target, spec, offsets):
                res = handler.process(msgs)  # type: ignore[arg-type]
                if res.finalize is not None:
                    res.finalize()
        done = target
        gc.collect()
        out.put({"n": target, "rss": rss_bytes(), "s": time.perf_counter() - t0,
                 "cached": len(handler.cache),
                 "silence": sum(len(d) for d in silence.last_seen.values()),
                 "sensors": len(sensors) if sensors is not None else 0,
                 "redis": used_memory(client) - mem0})
    client.close()
    out.put(None)


class _Lines:
    """``out.put(obj)`` as one JSON line on stdout."""

    def put(self, obj: dict[str, Any] | None) -> None:
        sys.stdout.write(orjson.dumps(obj).decode() + "\n")
        sys.stdout.flush()


def run_pass(redis_url: str, view: FeatureView, group: str, record: dict[str, Any], spec: Pass,
             ) -> list[dict[str, Any]]:
    """:func:`child` in a new interpreter; its checkpoint dicts. The child is always reaped."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.memory_worker"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    try:
        out, _ = proc.communicate(pickle.dumps((redis_url, view, group, record, spec)),
                                  timeout=spec.budget_s * 3 + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    got = [orjson.loads(line) for line in out.splitlines() if line.strip()]
    if proc.returncode or not got or got[-1] is not None:
        raise RuntimeError(f"memory worker exited with {proc.returncode} after {len(got)} checkpoints")
    return got[:-1]


__all__ = ["Pass", "entity_id", "rss_bytes", "run_pass", "used_memory"]


if __name__ == "__main__":
    child(*pickle.load(sys.stdin.buffer), out=_Lines())
