"""The worker process's heap and Python's cyclic garbage collector.

A full collection walks every tracked object in the process. A worker's heap is mostly what its start-up loaded
(numpy, scikit-learn, river, the registry's models: about 150,000 objects): walking them takes 30-80 ms on
this machine, during which the batch loop stands still. That pause, once every few seconds, was the p99 of
event → prediction (see the README's latency section). :func:`settle_heap` collects once at start-up and then
freezes what survived (``gc.freeze``): later collections walk only what the stream itself creates.

It also makes young collections rarer (every :data:`YOUNG_EVERY` net allocations instead of Python's 700). A
batch allocates thousands of short-lived containers (parsed records, feature maps, predictions), nearly all
freed by reference counting when the batch ends; at 700 the collector walked each of them several times before
that (about 1.5 µs of a 15 µs event, measured in-process on the pipeline's handler). At 50,000 a young collection
walks only what is still alive then, about one batch, well under a millisecond. Cycles wait longer to be found;
nothing else changes.

Example:
    >>> import gc
    >>> settle_heap() > 0 and gc.get_freeze_count() > 0
    True
    >>> gc.get_threshold()[0] == YOUNG_EVERY
    True
    >>> gc.unfreeze(); gc.set_threshold(*PYTHON_DEFAULT)  # a test process gives its heap back to the collector
    >>> pauses = []
    >>> gc.disable()  # only the collections below (none triggered by allocations meanwhile)
    >>> stop = watch_gc_pauses(lambda generation, seconds: pauses.append(generation))
    >>> _ = gc.collect(1); stop(); _ = gc.collect(1)
    >>> gc.enable()
    >>> pauses
    [1]
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["PYTHON_DEFAULT", "YOUNG_EVERY", "settle_heap", "watch_gc_pauses"]

#: net allocations between two young collections in a worker (Python's default is 700)
YOUNG_EVERY = 50_000
#: Python's own thresholds (young, middle, old)
PYTHON_DEFAULT = (700, 10, 10)


def settle_heap() -> int:
    """Collect, then move every object that survived into the collector's permanent generation; returns how many.
    Young collections then run every :data:`YOUNG_EVERY` allocations.

    Call it once per process, after the stage is built (models loaded) and before it consumes. Frozen objects
    are freed by reference counting as usual but never by the cycle collector, so this is for a process's
    long-lived start-up heap, not for a library call.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_EVERY, *gc.get_threshold()[1:])
    frozen = gc.get_freeze_count()
    log.debug("heap settled: %d start-up objects frozen", frozen)
    return frozen


def watch_gc_pauses(observe: Callable[[int, float], None]) -> Callable[[], None]:
    """Call ``observe(generation, seconds)`` after every collection (``gc.callbacks``); returns the function that
    stops watching. The worker feeds ``driftline_gc_pause_seconds`` with it."""
    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            observe(info["generation"], time.perf_counter() - started[0])

    gc.callbacks.append(callback)
    return lambda: gc.callbacks.remove(callback) if callback in gc.callbacks else None
