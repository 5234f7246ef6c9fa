"""The progress watchdog: a worker with records waiting that commits nothing for too long is stalled.

A loop can keep polling (so it looks alive) and yet consume nothing: a consumer whose fetcher or group
membership broke, a partition left paused. The watchdog runs from the loop's tick (on the loop's thread: the
consumer is not shared), every ``check_every_s``:

* ``records_waiting``: for each assigned partition, the high watermark the last fetch reported (cached, no
  broker round trip) minus the consumer's position (the next offset the loop would handle; the committed offset
  when it has not handled any record of it yet);
* ``no_commit_for_s``: time since the last acknowledged commit (or since the loop started or the consumer was
  re-created).

Records waiting and no commit for more than ``stall_after_s`` is a **stall**: ``/health`` goes red (HTTP 503,
``stalled: true``). While no batch failure explains it (a Redis or broker outage is reported and retried by the
loop itself) and the stage is not paused by a control command, the watchdog **recovers**: it closes the
consumer (leaving the group) and subscribes a new one, counted in ``driftline_consumer_restarts_total{stage}``;
the group rebalances and the new consumer resumes from the committed offsets (what was handled after the last
commit is skipped by the state store's offset check, as after any restart). At most one restart per
``stall_after_s``.

Example (the decision alone):
    >>> is_stalled(waiting=556_000, no_commit_for_s=397.0, stall_after_s=60.0)
    True
    >>> is_stalled(waiting=0, no_commit_for_s=397.0, stall_after_s=60.0), is_stalled(10, 5.0, 60.0)
    (False, False)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException

log = logging.getLogger(__name__)


def is_stalled(waiting: int | None, no_commit_for_s: float, stall_after_s: float) -> bool:
    """Records wait and nothing was committed for longer than the bound."""
    return bool(waiting) and no_commit_for_s > stall_after_s


def records_waiting(consumer: Consumer, timeout_s: float = 2.0) -> int | None:
    """Records between each assigned partition's position and its cached high watermark (None: unknown)."""
    try:
        tps = consumer.assignment()
        if not tps:
            return 0
        positions = consumer.position(tps)
        unknown = [tp for tp in positions if tp.offset < 0]
        committed = {(tp.topic, tp.partition): tp.offset
                     for tp in consumer.committed(unknown, timeout=timeout_s)} if unknown else {}
        waiting = 0
        for tp in positions:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            pos = tp.offset if tp.offset >= 0 else committed.get((tp.topic, tp.partition), OFFSET_INVALID)
            if high >= 0 and pos >= 0:
                waiting += max(0, high - pos)
        return waiting
    except (KafkaException, RuntimeError) as exc:  # a closed or broken consumer: unknown, not "nothing waits"
        log.debug("records waiting unknown: %s", exc)
        return None


@dataclass
class Watchdog:
    """Stall detection and recovery for one :class:`~streams.runtime.loop.BatchLoop` (see the module docstring).

    ``new_consumer`` builds a consumer like the loop's (None: detect and report, never recover)."""

    stage: str
    stall_after_s: float = 60.0
    new_consumer: Callable[[], Consumer] | None = None
    check_every_s: float = 5.0
    clock: Callable[[], float] = time.time
    waiting: int | None = None
    no_commit_for_s: float = 0.0
    stalled: bool = False
    restarts: int = 0
    _checked_at: float = 0.0
    _restarted_at: float | None = None

    def check(self, loop: Any) -> None:
        """From the loop's tick: measure, decide, maybe recover (never raises)."""
        now = self.clock()
        if now - self._checked_at < self.check_every_s:
            return
        self._checked_at = now
        h = loop.health
        since = max(t for t in (h.last_commit_at, h.started_at, self._restarted_at) if t is not None)
        self.no_commit_for_s = max(0.0, now - since)
        hold = getattr(loop, "hold", None)
        held = bool(hold is not None and hold())  # paused by a control command: records wait on purpose
        self.waiting = None if held else records_waiting(loop.consumer)
        self.stalled = not held and is_stalled(self.waiting, self.no_commit_for_s, self.stall_after_s)
        metrics = loop.metrics
        metrics.records_waiting.labels(self.stage).set(self.waiting if self.waiting is not None else -1)
        if not self.stalled:
            return
        log.error("%s: stalled: %s records waiting, no commit for %.0f s (bound %.0f s)", self.stage, self.waiting,
                  self.no_commit_for_s, self.stall_after_s)
        if self.new_consumer is None or h.consecutive_failures:  # a failing dependency: the loop retries it
            return
        if self._restarted_at is not None and now - self._restarted_at < self.stall_after_s:
            return
        self.restart(loop, now)

    def restart(self, loop: Any, now: float | None = None) -> None:
        """Re-create the loop's consumer (counted in ``driftline_consumer_restarts_total``)."""
        assert self.new_consumer is not None
        log.warning("%s: re-creating the consumer (watchdog restart %d)", self.stage, self.restarts + 1)
        replace_consumer(loop, self.new_consumer())
        self.restarts += 1
        self._restarted_at = self.clock() if now is None else now
        loop.metrics.consumer_restarts.labels(self.stage).inc()

    def status(self) -> dict[str, Any]:
        """What ``/health`` shows (``stalled`` makes it red)."""
        return {"stalled": self.stalled, "records_waiting": self.waiting,
                "no_commit_for_s": round(self.no_commit_for_s, 1), "stall_after_s": self.stall_after_s,
                "consumer_restarts": self.restarts}


def replace_consumer(loop: Any, consumer: Consumer) -> None:
    """Leave the group with ``loop``'s consumer (committing what it sent) and go on with ``consumer``, subscribed
    with the loop's own rebalance callbacks (so the handler forgets revoked partitions and learns new ones)."""
    old = loop.consumer
    try:
        loop._commit_sent(None)  # noqa: SLF001 - the loop's own final commit, as on shutdown
        old.close()  # the revoke callbacks run here, with the old consumer
    except Exception:  # noqa: BLE001 - the old consumer may be the broken part
        log.warning("closing the stalled consumer failed", exc_info=True)
    loop.consumer = consumer
    loop.health.assigned = []
    consumer.subscribe(loop.topics, on_assign=loop._assigned, on_revoke=loop._revoked,  # noqa: SLF001
                       on_lost=loop._revoked)  # noqa: SLF001


def chain(*ticks: Callable[[], None] | None) -> Callable[[], None]:
    """One tick calling each given tick in order."""
    calls = [t for t in ticks if t is not None]

    def tick() -> None:
        for t in calls:
            t()
    return tick


__all__ = ["Watchdog", "chain", "is_stalled", "records_waiting"]
