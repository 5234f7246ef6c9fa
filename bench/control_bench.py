"""Control-loop latency: a signed command on ``control`` → the ack of EVERY running scorer.

Run ``python -m bench.control_bench``. On the embedded stack (own temp run dir, stopped at the end), with a
temp registry holding v1 and v2 (v2 in production), it starts N = 1, 2, 3 fused pipeline workers
(``streams.runtime.workers.build_pipeline``, distinct instance ids, one consumer group, idle source topic), then
publishes signed commands (``new_command`` + ``publish_command``) alternating ``rollback`` to v1 and
``promote`` to v2, and reads the acks with ``ControlReader(settings, verifier=None)``.

Per command, the latency runs from just before the produce to the moment this process has read the ack of
every worker (``all acked``); ``first ack`` is the fastest worker. ``ack stamped`` uses the ``at`` field the
worker writes before applying the swap (a lower bound without our read latency). One unmeasured warm-up
command per N first. Workers poll ``control`` between batches, so an idle worker notices a command after at
most one ``consume`` timeout (``batch_max_ms``), printed with the table.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import tempfile
import time
from dataclasses import dataclass

from bench.common import (
    MODEL,
    Table,
    bench_settings,
    bench_view,
    delete_group_keys,
    run_id,
    run_on_fresh_stack,
    train_models,
)
from models.registry import Registry
from streams.control.channel import ControlReader, publish_command
from streams.control.protocol import Ack, new_command
from streams.local.stack import StackInfo
from streams.runtime.clients import make_producer
from streams.runtime.topics import ensure_topics, required_topics
from streams.runtime.workers import Worker, build_pipeline, control_store, redis_client
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControlConfig:
    """Worker counts, measured commands per count, the workers' ``batch_max_ms`` and the ack timeout."""

    workers: tuple[int, ...] = (1, 2, 3)
    repeats: int = 5
    batch_max_ms: int = 50
    ack_timeout_s: float = 20.0
    train_entities: int = 100
    train_minutes: float = 10.0

    @classmethod
    def tiny(cls) -> ControlConfig:
        """For the smoke test."""
        return cls(workers=(1, 2), repeats=2, train_entities=20)


@dataclass(frozen=True)
class Round:
    """One command: seconds to the first and to the last ack read, and to the last ``at`` stamp."""

    first_s: float
    all_s: float
    stamped_s: float
    applied: bool


def send_and_wait(settings: Settings, producer: object, reader: ControlReader, instances: set[str], command: str,
                  version: int, timeout_s: float) -> Round:
    """Publish one signed command and wait until every instance acked it."""
    t0 = time.time()
    cmd = new_command(command, model=MODEL, to_version=version, reason="bench", issued_by="bench",
                      now_ms=int(t0 * 1000))
    publish_command(producer, settings, cmd, settings.control_key.encode())  # type: ignore[arg-type]
    seen: dict[str, tuple[float, Ack]] = {}
    deadline = t0 + timeout_s
    while set(seen) < instances:
        if time.time() > deadline:
            raise TimeoutError(f"{command} v{version}: acks from {sorted(seen)} of {sorted(instances)} after "
                               f"{timeout_s:g} s")
        for item in reader.poll(0.002):
            if isinstance(item, Ack) and item.ack_for == cmd["command_id"] and item.instance in instances:
                seen.setdefault(item.instance, (time.time(), item))
    times = [t for t, _ in seen.values()]
    applied = all(a.status == "applied" and a.active_version == version for _, a in seen.values())
    stamped = max(a.at for _, a in seen.values()) / 1000
    return Round(min(times) - t0, max(times) - t0, stamped - t0, applied)


def run(info: StackInfo, cfg: ControlConfig = ControlConfig()) -> list[Table]:
    """Start workers incrementally (1, then 2, ...) and measure ``cfg.repeats`` commands at each count."""
    rid = run_id()
    with tempfile.TemporaryDirectory(prefix="driftline-bench-registry-") as tmp:
        settings = bench_settings(info, rid, registry_dir=tmp, batch_max_ms=cfg.batch_max_ms)
        view = bench_view(rid)
        ensure_topics(settings, required_topics(settings, [view.source_topic]))
        trained = train_models(tmp, entities=cfg.train_entities, minutes=cfg.train_minutes)
        producer = make_producer(settings.kafka)
        reader = ControlReader(settings, verifier=None)
        workers: list[Worker] = []
        instances: set[str] = set()
        rows: list[list] = []
        try:
            for n in cfg.workers:
                while len(workers) < n:
                    instance = f"bench-{rid}-{len(workers)}"
                    worker, _ = build_pipeline(settings, view, MODEL, instance=instance)
                    workers.append(worker.start())
                    instances.add(instance)
                send_and_wait(settings, producer, reader, instances, "promote", trained.v2, cfg.ack_timeout_s)
                rounds = []
                for i in range(cfg.repeats):
                    command, version = ("rollback", trained.v1) if i % 2 == 0 else ("promote", trained.v2)
                    rounds.append(send_and_wait(settings, producer, reader, instances, command, version,
                                                cfg.ack_timeout_s))
                dead = [w.name for w in workers if w.error is not None]
                if dead:
                    raise RuntimeError(f"workers died during the bench: {dead}")
                all_ms = [r.all_s * 1000 for r in rounds]
                rows.append([n, len(rounds), statistics.median(all_ms), max(all_ms),
                             statistics.median(r.first_s * 1000 for r in rounds),
                             statistics.median(r.stamped_s * 1000 for r in rounds),
                             all(r.applied for r in rounds)])
        finally:
            for w in workers:
                w.loop.stop()
            for w in workers:
                w.stop()
            reader.close()
            producer.flush(5)  # type: ignore[attr-defined]
            workers.clear()
            gc.collect()  # free the workers' librdkafka clients before the broker stops
            client = redis_client(settings)
            try:
                delete_group_keys(client, settings.pipeline.features_group)
                control_store(settings, client, Registry(tmp), MODEL).clear()  # the run's desired state and ledger
            finally:
                client.close()
    return [Table("control", "Control loop: signed command → ack of every scorer (ms)",
                  ["workers", "commands", "all acked median", "all acked max", "first ack median",
                   "ack stamped median", "all applied"], rows,
                  notes=[f"batch_max_ms = {cfg.batch_max_ms} (an idle worker polls `control` once per consume "
                         "timeout); workers are threads of this process; commands alternate rollback to "
                         f"v{trained.v1} / promote to v{trained.v2}; embedded tansu broker."],
                  limit=f"limit: the workers' poll cadence: an idle worker sees a command at its next tick, "
                        f"up to batch_max_ms ({cfg.batch_max_ms} ms) later, then produces and flushes its ack; "
                        "'all acked' is the slowest of N such waits, so it sits near batch_max_ms whatever N.")]


def main(argv: list[str] | None = None) -> list[Table]:
    """Start a stack, run, print, stop."""
    ap = argparse.ArgumentParser(prog="python -m bench.control_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=ControlConfig.repeats)
    ap.add_argument("--batch-max-ms", type=int, default=ControlConfig.batch_max_ms)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (smoke test)")
    args = ap.parse_args(argv)
    cfg = ControlConfig.tiny() if args.tiny else ControlConfig(repeats=args.repeats,
                                                               batch_max_ms=args.batch_max_ms)
    return run_on_fresh_stack(run, cfg)


if __name__ == "__main__":
    main()
