"""The worker process's heap and Python's cyclic garbage collector.

A full collection walks every tracked object in the process. A worker's heap is mostly what its start-up loaded
(numpy, scikit-learn, river, the registry's models: about 150,000 objects): walking them takes 30-80 ms on
this machine, during which the batch loop stands still. That pause, once every few seconds, was the p99 of
event → prediction (see the README's latency section). :func:`settle_heap` collects once at start-up and then
freezes what survived (``gc.freeze``): later collections walk only what the stream itself creates.

Example:
    >>> import gc
    >>> settle_heap() > 0 and gc.get_freeze_count() > 0
    True
    >>> gc.unfreeze()  # a test process gives its heap back to the collector
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

__all__ = ["settle_heap", "watch_gc_pauses"]


def settle_heap() -> int:
    """Collect, then move every object that survived into the collector's permanent generation; returns how many.

    Call it once per process, after the stage is built (models loaded) and before it consumes. Frozen objects
    are freed by reference counting as usual but never by the cycle collector, so this is for a process's
    long-lived start-up heap, not for a library call.
    """
    gc.collect()
    gc.freeze()
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
