"""``settle_heap``: a worker process's start-up heap leaves the collector's walks (counts, not timings)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from streams.runtime.heap import YOUNG_EVERY

ROOT = Path(__file__).resolve().parents[2]


def test_after_settling_a_collection_walks_a_small_part_of_the_start_up_heap() -> None:
    """In a fresh interpreter (freezing is process-wide): what the worker's imports and a built pipeline leave is
    frozen, and a full collection afterwards walks only what came later."""
    code = textwrap.dedent("""
        import gc
        import sklearn.linear_model, river.drift, numpy  # noqa: F401 - what a worker loads
        import streams.runtime.workers  # noqa: F401
        from streams.runtime.heap import settle_heap
        before = len(gc.get_objects())
        frozen = settle_heap()
        after = len(gc.get_objects())
        garbage = [[i] for i in range(1000)]  # made after settling: walked as usual
        print(before, frozen, after, len(gc.get_objects()) - after, gc.get_threshold()[0])
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True).stdout.split()
    before, frozen, after, later, young = map(int, out)
    assert before > 50_000 and frozen >= before * 0.9
    assert after < before / 20 and later >= 1000
    assert young == YOUNG_EVERY > 700  # a batch's short-lived objects are freed before a young collection


def test_driftline_run_settles_the_heap_before_the_worker_consumes() -> None:
    source = (ROOT / "streams/local/cli.py").read_text()
    body = source[source.index("def _run_worker("):]
    assert body.index("settle_heap()") < body.index("worker.start()")


def test_every_collection_is_observed_into_the_workers_histogram_until_unwatched() -> None:
    import gc

    from streams.metrics import Metrics
    from streams.runtime.heap import watch_gc_pauses

    metrics = Metrics()
    gc.disable()  # only the collections made here: none triggered by allocations meanwhile
    try:
        stop = watch_gc_pauses(lambda gen, s: metrics.gc_pauses.labels(str(gen)).observe(s))
        try:
            gc.collect(2)
            gc.collect(0)
        finally:
            stop()
        gc.collect(2)
    finally:
        gc.enable()
    count = {g: metrics.registry.get_sample_value("driftline_gc_pause_seconds_count", {"generation": g})
             for g in ("0", "2")}
    assert count == {"0": 1.0, "2": 1.0}
    stop()  # twice is harmless
