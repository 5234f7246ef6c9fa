"""``python -m bench.breakdown_bench [--tiny]``: where a fused-pipeline event's time goes, stage by stage.

The profile of the throughput table, as numbers: one worker (a thread of this process, so its stages can be
timed) drains a pre-produced backlog, with a :class:`StageClock` wrapped around each stage's function
(consume, parse, state load, window fold, model call, scoring, prediction JSON, produce + flush, state encode,
state save, commit). Each stage is reported in µs per event and as a share of the worker's wall time, and grouped by what
bounds it: the broker, Redis, JSON, the model, or Python work in driftline itself.

Baseline, same run: the same drain on a fresh consumer group without the clock, so the clock's own cost (two
``perf_counter`` calls per wrapped call, ~3 wrapped calls per event) shows as the ratio of the two rates.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from unittest import mock

from bench.common import (
    MODEL,
    Table,
    ratio,
    run_on_fresh_stack,
    to_records,
    train_models,
    vitals_stream,
)
from bench.pipeline_bench import fresh_measurement, rate_from_timestamps, read_predictions
from bench.store_bench import prefill
from features.store import SaveTicket
from models.loaded import LoadedModel
from models.prediction import Prediction
from models.prediction_columns import PredictionColumns
from streams import codec
from streams.local.stack import StackInfo
from streams.runtime import pipeline
from streams.runtime.heap import PYTHON_DEFAULT, settle_heap
from streams.runtime.workers import Worker, build_pipeline
from streams.settings import PipelineSettings

__all__ = ["BreakdownConfig", "StageClock", "run", "main"]


@dataclass(frozen=True)
class BreakdownConfig:
    # enough events for a drain of several default checkpoint intervals: a drain shorter than one interval ran
    # no checkpoint within its span, and its table showed no state encode or save at all
    events: int = 400_000
    entities: int = 500
    partitions: int = 3
    timeout_s: float = 180.0

    @classmethod
    def tiny(cls) -> BreakdownConfig:
        return cls(events=1_500, entities=50, timeout_s=60.0)


class StageClock:
    """Seconds and calls per named stage, accumulated by wrappers around functions.

    >>> clock = StageClock()
    >>> double = clock.wrap("double", lambda x: 2 * x)
    >>> double(2), clock.calls["double"], clock.seconds["double"] >= 0
    (4, 1, True)
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        self.seconds.setdefault(name, 0.0)
        self.calls.setdefault(name, 0)
        seconds, calls, clock = self.seconds, self.calls, time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] += clock() - t0
                calls[name] += 1

        return timed


@contextlib.contextmanager
def instrumented(worker: Worker, handler: pipeline.FusedHandler, clock: StageClock) -> Iterator[None]:
    """Wrap every stage's function (of ``worker``'s loop, ``handler`` and its parts, and the module and class
    functions they call) in ``clock``; everything is restored on exit."""
    loop = worker.loop
    targets: list[tuple[Any, str, str]] = [
        *((obj, attr, f"{type(obj).__name__}.{attr}") for obj, attr in (
            (loop, "run_once"), (loop, "next_batch"), (loop, "_handle"), (loop.outputs, "produce_all"),
            (loop, "checkpoint"), (loop, "_commit"), (handler, "process"), (handler.pending, "_load"),
            (handler, "checkpoint"), (handler, "start_checkpoint"), (handler.engine, "process"),
            (handler.scorer, "score"), (handler.store, "_save_wire"))),
        (SaveTicket, "wait", "SaveTicket.wait"),
        (codec, "encode", "codec.encode"),
        (PredictionColumns, "encode", "PredictionColumns.encode"),
        (Prediction, "to_dict", "Prediction.to_dict"), (LoadedModel, "predict_scores", "LoadedModel.predict_scores"),
    ]
    parser_of, batch_parser_of = pipeline.record_parser, pipeline.batch_parser
    with contextlib.ExitStack() as stack:
        for obj, attr, name in targets:
            stack.enter_context(mock.patch.object(obj, attr, clock.wrap(name, getattr(obj, attr))))
        stack.enter_context(mock.patch.object(pipeline, "record_parser",
                                              lambda view: clock.wrap("parse_record", parser_of(view))))
        stack.enter_context(mock.patch.object(pipeline, "batch_parser",  # the batch's C call, same stage
                                              lambda view: clock.wrap("parse_record", batch_parser_of(view))))
        yield


#: (stage, what bounds it, how it is derived from the wrapped functions' seconds)
STAGES: list[tuple[str, str, Callable[[dict[str, float]], float]]] = [
    ("consume: wait + fetch (librdkafka)", "broker", lambda s: s["BatchLoop.next_batch"]),
    ("parse + validate (one C call per batch: orjson + checks; odd records: Python)", "JSON", lambda s: s["parse_record"]),
    ("state load (Redis round trip, binary state decode)", "Redis", lambda s: s["PendingState._load"]),
    ("window fold (apply + feature vector per event)", "Python", lambda s: s["FeatureEngine.process"]),
    ("model call (numpy plan of the linear pipeline)", "model", lambda s: s["LoadedModel.predict_scores"]),
    ("scoring around it (route, schema, dict→matrix, score and label columns)", "Python",
     lambda s: s["Scorer.score"] - s["LoadedModel.predict_scores"]),
    ("prediction records (one orjson pass per batch, from the columns)", "JSON",
     lambda s: s["Prediction.to_dict"] + s["codec.encode"] + s["PredictionColumns.encode"]),
    ("rest of process (bookkeeping, silence tracker, metrics)", "Python",
     lambda s: s["FusedHandler.process"] - s["parse_record"] - s["PendingState._load"]
     - s["FeatureEngine.process"] - s["Scorer.score"] - s["Prediction.to_dict"] - s["codec.encode"]
     - s["PredictionColumns.encode"]),
    ("produce + flush (delivery acks awaited once per checkpoint)", "broker",
     lambda s: s["OutputProducer.produce_all"] + s["BatchLoop.checkpoint"] - _saving(s) - s["BatchLoop._commit"]),
    ("state encode (the save call's wire bytes, one C pass; once per checkpoint)", "Python",
     lambda s: s["RedisFeatureStore._save_wire"]),
    ("state save (index, write, then the Lua compare-and-set's answers at the next checkpoint)", "Redis",
     lambda s: _saving(s) - s["RedisFeatureStore._save_wire"]),
    ("commit (sent asynchronously) + lag metric", "broker",
     lambda s: s["BatchLoop._commit"] + s["BatchLoop._handle"] - s["FusedHandler.process"]
     - s["OutputProducer.produce_all"] - s["BatchLoop.checkpoint"]),
    ("loop rest (tick: control poll, health)", "Python",
     lambda s: s["BatchLoop.run_once"] - s["BatchLoop.next_batch"] - s["BatchLoop._handle"]),
]


CHECKPOINT = "FusedHandler.start_checkpoint"  # one call per interval checkpoint (the loop's overlapped save)


def _saving(s: dict[str, float]) -> float:
    """The worker's time in checkpoint saves: synchronous ones, started ones, and the waits for their answers."""
    return s["FusedHandler.checkpoint"] + s[CHECKPOINT] + s["SaveTicket.wait"]


def drain(info: StackInfo, registry: str, records: list[tuple[bytes, bytes]], cfg: BreakdownConfig,
          clock: StageClock | None) -> tuple[float, float, int, dict[str, float], int]:
    """(events/s from the predictions' timestamps, wall seconds from the first batch to the last, events, each
    stage's seconds in that span, the interval checkpoints in it) of one in-process worker draining ``records``;
    stages are timed only when a ``clock`` is given. The span leaves out the group join before the first batch and
    the idle polls after the last one (and the checkpoint of the last interval, which runs in the first idle
    poll)."""
    settings, view = fresh_measurement(info, registry, partitions=cfg.partitions)
    prefill(settings, view.source_topic, records)
    worker, handler = build_pipeline(settings, view, MODEL)
    seconds = clock.seconds if clock is not None else {}
    calls = clock.calls if clock is not None else {}
    span: dict[str, Any] = {"first": 0.0, "last": 0.0, "base": {}, "end": {}, "base_calls": {}, "end_calls": {}}
    with contextlib.ExitStack() as stack:
        if clock is not None:
            stack.enter_context(instrumented(worker, handler, clock))
        run_once = worker.loop.run_once

        def spanned() -> int:
            before = (dict(seconds), dict(calls)) if not span["first"] else None
            t0 = time.perf_counter()
            n = run_once()
            if n:
                if before is not None:
                    span["first"], (span["base"], span["base_calls"]) = t0, before
                span["last"], span["end"], span["end_calls"] = time.perf_counter(), dict(seconds), dict(calls)
            return n

        worker.loop.run_once = spanned  # type: ignore[method-assign]
        settle_heap()  # as `driftline run` does (the start-up heap frozen, young collections every 50,000)
        stack.callback(lambda: (gc.unfreeze(), gc.set_threshold(*PYTHON_DEFAULT)))  # the bench process's own again
        worker.start()
        try:
            deadline = time.monotonic() + cfg.timeout_s
            while handler.stats.scored < len(records) and worker.alive and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            worker.stop()
    got = read_predictions(settings, len(records), 30.0)
    in_span = {k: v - span["base"].get(k, 0.0) for k, v in span["end"].items()}
    checkpoints = span["end_calls"].get(CHECKPOINT, 0) - span["base_calls"].get(CHECKPOINT, 0)
    return rate_from_timestamps([t for t, _ in got]), span["last"] - span["first"], len(got), in_span, checkpoints


def breakdown_table(info: StackInfo, registry: str, records: list[tuple[bytes, bytes]],
                    cfg: BreakdownConfig) -> Table:
    plain_rate, _, plain_n, _, _ = drain(info, registry, records, cfg, None)
    timed_rate, wall, timed_n, s, checkpoints = drain(info, registry, records, cfg, StageClock())
    n = len(records)
    rows: list[list[Any]] = []
    by_bound: dict[str, float] = {}
    for stage, bound, seconds_of in STAGES:
        sec = max(0.0, seconds_of(s))
        by_bound[bound] = by_bound.get(bound, 0.0) + sec
        rows.append([stage, bound, sec * 1e6 / n, 100.0 * sec / wall if wall else float("nan")])
    for bound, sec in sorted(by_bound.items(), key=lambda kv: -kv[1]):
        rows.append([f"all {bound}", bound, sec * 1e6 / n, 100.0 * sec / wall if wall else float("nan")])
    rows.append(["worker wall time (first batch → last commit)", "-", wall * 1e6 / n, 100.0])
    floor_s = sum(by_bound.get(b, 0.0) for b in ("broker", "Redis", "model"))
    if min(plain_n, timed_n) < n:
        raise RuntimeError(f"only {plain_n} / {timed_n} of {n} events were predicted")
    return Table("breakdown", "Where a fused-pipeline event's time goes (µs per event, share of the worker's wall "
                              "time)",
                 ["stage", "bound by", "us/event", "% of wall"], rows,
                 notes=[f"{n:,} vitals of {cfg.entities} patients pre-produced on {cfg.partitions} partitions; one "
                        "worker thread in the bench process, its heap settled as `driftline run` does (batches of "
                        "up to 500, sklearn logistic v2), embedded "
                        "tansu and the bench's own redis-server on this machine. Baseline in the same run: the "
                        f"same drain without the stage clock: {plain_rate:,.0f} events/s; with it: "
                        f"{timed_rate:,.0f} events/s (ratio {ratio(timed_rate, plain_rate):.2f}). "
                        f"{checkpoints} interval checkpoint(s) in the span (every "
                        f"{PipelineSettings().checkpoint_interval_ms:,} ms; the state encode and save rows are "
                        "theirs, the last interval's checkpoint runs after the span)."],
                 limit=f"limit: Python CPU. Of {wall * 1e6 / n:.0f} µs per event, driftline's own Python takes "
                       f"{by_bound.get('Python', 0.0) * 1e6 / n:.0f} µs and JSON {by_bound.get('JSON', 0.0) * 1e6 / n:.0f}"
                       f" µs, all in one interpreter; the broker, Redis and the model call take "
                       f"{floor_s * 1e6 / n:.0f} µs, which alone would cap one worker at ~"
                       f"{(n / floor_s if floor_s else float('nan')):,.0f} events/s.")


def run(info: StackInfo, cfg: BreakdownConfig = BreakdownConfig()) -> list[Table]:
    records = to_records(vitals_stream(cfg.entities, cfg.events * 10 / cfg.entities / 60))[: cfg.events]
    with tempfile.TemporaryDirectory(prefix="driftline-bench-registry-") as registry:
        train_models(registry, entities=100, minutes=5.0)
        return [breakdown_table(info, registry, records, cfg)]


def main(argv: list[str] | None = None) -> list[Table]:
    """Run on a fresh embedded stack and print the table."""
    p = argparse.ArgumentParser(prog="python -m bench.breakdown_bench", description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes")
    args = p.parse_args(argv)
    return run_on_fresh_stack(run, BreakdownConfig.tiny() if args.tiny else BreakdownConfig())


if __name__ == "__main__":
    main()
