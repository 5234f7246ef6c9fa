"""``python -m bench.entities_bench [--tiny]``: fused-pipeline throughput at realistic entity counts, windows full.

The pipeline table's 500 patients all fit in the worker's state cache. Here the same worker (one process, the
default settings: checkpoint interval, cache bound) drains a backlog spread over 500, 10,000 and 100,000
entities whose 30-minute windows are **already full** in Redis: 8 real template states (30 min of readings
every 10 s, 31 one-minute buckets, computed by the engine and saved by the store's real save path) are
replicated under every other entity id with the save script's commands (``bench.memory_bench.replicate``), so
the first event of an entity loads 31 buckets from Redis, as after a restart or an eviction.

Readings go to entities in round-robin order (each entity once per round), event times continuing the templates'
history, in two phases with the same worker: *first touch*, one round (every event loads its entity's full
window from Redis and folds all of it), drained completely; then *recurring*, ``EntitiesConfig.recurring()`` more
readings for every size (the steady state of a stream whose entities come back: cached states, as long as the
cache holds them all; the same count in every row, so that every row is measured over a stretch of about the same
length, and one bucket of event time at the largest size, so that its entities' bucket starts weigh as in a
steady stream). Rates come from the predictions' timestamps (10th-90th percentile, as in ``bench.pipeline_bench``); the
500-entity row is the baseline of the same run, measured first and again last (the ratios are to the mean of the
two, so a machine that changed speed during the run moves the baseline with it).
Redis bytes per entity: ``INFO used_memory`` delta of the fill / entities.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from bench.common import Table, delete_group_keys, ratio, run_on_fresh_stack, train_models
from bench.memory_bench import KeyLayout, replicate, save_templates
from bench.memory_bench import history as memory_history
from bench.memory_worker import entity_id, used_memory
from bench.pipeline_bench import WorkerProcesses, fresh_measurement, rate_from_timestamps, read_predictions
from bench.store_bench import prefill
from bench.store_read_bench import PARTITIONS
from features.definitions import FeatureView
from features.records import Event
from features.store import SourcePosition, latest_key_for, state_key_for
from features.views import VITALS_VIEW
from streams import codec
from streams.local.stack import StackInfo
from streams.settings import PipelineSettings

__all__ = ["EntitiesConfig", "run", "main"]


@dataclass(frozen=True)
class EntitiesConfig:
    sizes: tuple[int, ...] = (500, 10_000, 100_000)
    events: int = 40_000
    templates: int = 8
    minutes: float = 30.0
    interval_s: float = 10.0
    timeout_s: float = 180.0
    rebaseline: bool = True  # measure the first size again after the others: the baseline is the mean of both
    rounds: int = 1  # every size this many times, interleaved (--rounds): ratios of means over more of the run

    def sequence(self) -> tuple[int, ...]:
        """The rows' sizes in the order they are measured: every size, ``rounds`` times over, then (``rebaseline``)
        the first size again.

        >>> EntitiesConfig().sequence(), EntitiesConfig(sizes=(500, 100_000), rounds=2).sequence()
        ((500, 10000, 100000, 500), (500, 100000, 500, 100000, 500))
        """
        seq = self.sizes * self.rounds
        return (*seq, self.sizes[0]) if self.rebaseline and len(seq) > 1 else seq

    def recurring(self) -> int:
        """Recurring readings of every row: the same count for every size, so that every row is measured over a
        stretch of about the same length (a 0.5 s row against a 5 s one compared two moments of a machine whose
        speed moves 1.5-2x within minutes, not two entity counts), and at least one bucket of event time for the
        largest size: every entity starts a new bucket once per bucket (a full fold of its window, an expired
        bucket, a new row), all of them in the same round after the bucket's start. One round of the largest
        size held that round or not depending on where the bucket started, and was not the steady state.

        >>> EntitiesConfig().recurring(), EntitiesConfig(sizes=(500,), events=1_000).recurring()
        (600000, 3000)
        """
        rounds_per_bucket = math.ceil(VITALS_VIEW.bucket_ms / (self.interval_s * 1000))
        return max(self.events, max(self.sizes) * rounds_per_bucket)

    @classmethod
    def tiny(cls) -> EntitiesConfig:
        return cls(sizes=(50, 400), events=1_200, minutes=10.0, timeout_s=60.0)


def _fill(client: redis.Redis, view: FeatureView, group: str, history: Sequence[Event], n: int) -> int:
    """Full-window states for ``entity_id(0..n-1)`` in the run's keys; returns Redis ``used_memory`` growth."""
    before = used_memory(client)
    templates = save_templates(client, view, history, "full", group=group)
    layout = KeyLayout(view)
    layout.prefixes = [(state_key_for(view, pos, ""), latest_key_for(view, pos, ""))
                       for pos in (SourcePosition(group, view.source_topic, p) for p in range(PARTITIONS))]
    replicate(client, view, layout, templates, len(templates), n)
    return used_memory(client) - before


def _backlog(history: Sequence[Event], n: int, events: int, interval_s: float) -> tuple[list[tuple[bytes, bytes]],
                                                                                       int]:
    """(``events`` readings continuing the history: entity ``k % n`` at the k-th position, times increasing,
    the values of the templates' last readings, shifted by one template every round so that an entity's readings
    vary as a sensor's do; the event time where the second round starts)."""
    end = max(ev.ts_ms for ev in history)
    values = [ev.values for ev in history[-len({e.entity_id for e in history}):]]
    step = interval_s * 1000 / n
    out = []
    for k in range(events):
        e = entity_id(k % n)
        body = {"patient_id": e, "ts": int(end + 1000 + k * step), **values[(k + k // n) % len(values)]}
        out.append((e.encode(), codec.encode(body)))
    return out, int(end + 1000 + n * step)


def run(info: StackInfo, cfg: EntitiesConfig = EntitiesConfig()) -> list[Table]:
    """One row per entity count, in one run and on one stack; the first size is the baseline, measured first and
    (``rebaseline``) again last: the ratios are to the mean of all its rates, so a machine that slowed down or
    sped up during the run moves the baseline with it."""
    rows: list[list] = []
    sizes = cfg.sequence()
    with tempfile.TemporaryDirectory(prefix="driftline-bench-registry-") as registry:
        train_models(registry, entities=100, minutes=5.0)
        for n in sizes:
            settings, view = fresh_measurement(info, registry, partitions=PARTITIONS)
            client = redis.Redis.from_url(settings.redis_url)
            try:
                history = memory_history(view, cfg)
                grown = _fill(client, view, settings.pipeline.features_group, history, n)
                records, second = _backlog(history, n, n + cfg.recurring(), cfg.interval_s)
                with WorkerProcesses(settings, view, 1) as procs:
                    # first touch: one event per entity, drained completely; then the recurring rounds
                    prefill(settings, view.source_topic, records[:n])
                    read_predictions(settings, n, cfg.timeout_s, alive=lambda p=procs: p.alive)
                    prefill(settings, view.source_topic, records[n:])
                    got = read_predictions(settings, len(records), cfg.timeout_s, alive=lambda p=procs: p.alive)
                cold = rate_from_timestamps([t for t, e in got if e < second])
                warm = rate_from_timestamps([t for t, e in got if e >= second])
                rows.append([n, len(got), cold, warm, 1e6 / warm, grown / n])
            finally:
                delete_group_keys(client, settings.pipeline.features_group)
                client.close()
    base = _mean(rows, sizes, cfg.sizes[0])  # every measurement of the first size: first, between rounds, last
    for row in rows:
        row.insert(5, ratio(row[3], base))
    seen: dict[int, int] = {}
    for row, n in zip(rows, sizes, strict=True):  # a size measured before: "(again)", "(3rd)", ...
        seen[n] = seen.get(n, 0) + 1
        if seen[n] > 1:
            row[0] = f"{n:,} ({'again' if seen[n] == 2 else _ordinal(seen[n])})"
    means = [f"{n:,} entities: {ratio(_mean(rows, sizes, n), base):.3g}x over {sizes.count(n)} rows"
             for n in cfg.sizes[1:]] if cfg.rounds > 1 else []
    cap = PipelineSettings().cache_max_entities
    return [Table("entities", "Fused pipeline throughput at realistic entity counts, 30-minute windows full "
                              "(events/s)",
                  ["entities", "events", "first touch ev/s", "recurring ev/s", "recurring us/event",
                   f"recurring vs {cfg.sizes[0]:,} entities", "Redis B/entity"],
                  rows,
                  notes=[f"entities + {cfg.recurring():,} readings per row (the same recurring count for every size: at least a "
                         "bucket of event time at the largest size), entities in "
                         "round-robin order, event times continuing "
                         f"{cfg.minutes:g} min of history already in Redis ({cfg.templates} real states replicated, "
                         f"{int(cfg.minutes) + 1} one-minute buckets each); one worker process, default settings (checkpoint every "
                         f"{PipelineSettings().checkpoint_interval_ms:,} ms, state cache of {cap:,} entities); "
                         "embedded tansu broker and the bench's own redis-server on this machine. First touch: the "
                         "first round (each event loads a full window from Redis and folds all of it); recurring: "
                         "the later rounds. The first size is measured again last; the ratio column is to the mean of "
                         "its recurring rates."
                         + (f" Every size measured {cfg.rounds} times, interleaved; the mean recurring rate of each "
                            f"size against the first size's mean: {'; '.join(means)}." if means else "")],
                  limit="limit: first touch: the Redis load of each event's window (HGETALL of 31 buckets, decode) "
                        "and a fold of every bucket; recurring: the per-event Python of the 500-entity row while "
                        "the cache holds every entity, the first-touch cost beyond that.")]


def _mean(rows: list[list], sizes: tuple[int, ...], n: int) -> float:
    """The mean recurring rate of the rows of size ``n``."""
    rates = [row[3] for row, size in zip(rows, sizes, strict=True) if size == n]
    return sum(rates) / len(rates)


def _ordinal(k: int) -> str:
    """
    >>> _ordinal(3), _ordinal(4), _ordinal(12), _ordinal(21)
    ('3rd', '4th', '12th', '21st')
    """
    suffix = "th" if k % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def main(argv: list[str] | None = None) -> list[Table]:
    """Run on a fresh embedded stack and print the table."""
    p = argparse.ArgumentParser(prog="python -m bench.entities_bench", description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure every size this many times, interleaved (a noisy machine: the ratios of means "
                        "over more of the run); default 1")
    args = p.parse_args(argv)
    cfg = EntitiesConfig.tiny() if args.tiny else EntitiesConfig()
    return run_on_fresh_stack(run, dataclasses.replace(cfg, rounds=max(1, args.rounds)))


if __name__ == "__main__":
    main()
