"""The progress watchdog: a worker with records waiting that commits nothing for too long is stalled.

A loop can keep polling (so it looks alive) and yet consume nothing: a consumer whose fetcher or group
membership broke, a partition left paused. The watchdog runs from the loop's tick (on the loop's thread: the
consumer is not shared), every ``check_every_s``:

* ``records_waiting``: for each assigned partition, the high watermark the last fetch reported (cached, no
  broker round trip) minus the consumer's position (the next offset the loop would handle; the committed offset
  when it has not handled any record of it yet). A partition no longer fetched reports no new high watermark,
  so when that says nothing waits but nothing was committed for the bound either, a throw-away consumer of
  the watchdog's own reads at the positions (:func:`records_after`, at most once per bound);
* ``no_commit_for_s``: time since the last acknowledged commit (or since the loop started or the consumer was
  re-created).

Records waiting and no commit for more than ``stall_after_s`` is a **stall**, and so is a crawl: records waited
throughout the last ``stall_after_s`` and the loop handled less than one full batch (``max_rows``) in it: ``/health`` goes red (HTTP 503,
``stalled: true``). While no batch failure explains it (a Redis or broker outage is reported and retried by the
loop itself) and the stage is not paused by a control command, the watchdog **recovers**: it closes the
consumer (leaving the group) and subscribes a new one, counted in ``driftline_consumer_restarts_total{stage}``;
the new consumer waits twice as long per fetch (see :class:`Watchdog`); the group rebalances and it resumes from
the committed offsets (what was handled after the last
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
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, TopicPartition

log = logging.getLogger(__name__)
MAX_FETCH_WAIT_MS = 500  # librdkafka's default


def is_stalled(waiting: int | None, no_commit_for_s: float, stall_after_s: float) -> bool:
    """Records wait and nothing was committed for longer than the bound."""
    return bool(waiting) and no_commit_for_s > stall_after_s


def positions(consumer: Consumer, timeout_s: float = 2.0) -> list[TopicPartition]:
    """The next offset to handle of each assigned partition: the consumer's position, or its committed offset
    before it handled any record of the partition (partitions with neither are left out)."""
    tps = consumer.assignment()
    if not tps:
        return []
    pos = consumer.position(tps)
    unknown = [tp for tp in pos if tp.offset < 0]
    committed = {(tp.topic, tp.partition): tp.offset
                 for tp in consumer.committed(unknown, timeout=timeout_s)} if unknown else {}
    out = [TopicPartition(tp.topic, tp.partition,
                          tp.offset if tp.offset >= 0 else committed.get((tp.topic, tp.partition), OFFSET_INVALID))
           for tp in pos]
    return [tp for tp in out if tp.offset >= 0]


def records_waiting(consumer: Consumer, at: list[TopicPartition] | None = None) -> int | None:
    """Records between each assigned partition's position (``at``, else :func:`positions`) and the high
    watermark the last fetch reported (None: unknown). A partition that is not fetched at all reports no new
    high watermark: :func:`records_after` sees those."""
    try:
        waiting = 0
        for tp in positions(consumer) if at is None else at:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                waiting += max(0, high - tp.offset)
        return waiting
    except (KafkaException, RuntimeError) as exc:  # a closed or broken consumer: unknown, not "nothing waits"
        log.debug("records waiting unknown: %s", exc)
        return None


def records_after(kafka_config: dict[str, Any], at: list[TopicPartition], timeout_s: float = 0.5) -> int | None:
    """Whether records exist at ``at`` (a count, at most 100), read by a throw-away consumer of its own (assigned,
    no group: the stage's group is not disturbed). The broker-independent check: ListOffsets would do on a real
    Kafka, but the embedded broker answers it wrongly (README, "The embedded broker")."""
    if not at:
        return 0
    probe = Consumer({**kafka_config, "group.id": f"driftline-watchdog-{uuid.uuid4().hex[:8]}",
                      "enable.auto.commit": False, "enable.partition.eof": False})
    try:
        probe.assign([TopicPartition(tp.topic, tp.partition, tp.offset) for tp in at])
        return sum(1 for m in probe.consume(100, timeout_s) if m.error() is None)
    except KafkaException as exc:
        log.debug("watchdog probe failed: %s", exc)
        return None
    finally:
        probe.close()


@dataclass
class Watchdog:
    """Stall detection and recovery for one :class:`~streams.runtime.loop.BatchLoop` (see the module docstring).

    ``new_consumer(fetch_wait_max_ms)`` builds a consumer like the loop's with that ``fetch.wait.max.ms`` (None:
    detect and report, never recover). Each restart doubles the fetch wait, from ``fetch_wait_max_ms`` up to
    ``MAX_FETCH_WAIT_MS``: the embedded broker answers a fetch it cannot assemble within that wait with nothing, so
    a consumer of a log of many small batches (a producer at thousands of events/s) starves at a short wait, and a
    new consumer with the same wait would starve again (README, "The embedded broker"). ``probe``
    (:func:`records_after` with the stage's client config) looks for records past the positions when the
    fetch-reported high watermarks say none wait yet nothing committed for ``stall_after_s``: at most once per
    ``stall_after_s``, for at most its ``timeout_s`` (0.5 s) of the loop's time."""

    stage: str
    stall_after_s: float = 60.0
    new_consumer: Callable[[int], Consumer] | None = None
    fetch_wait_max_ms: int = 20
    probe: Callable[[list[TopicPartition]], int | None] | None = None
    check_every_s: float = 5.0
    clock: Callable[[], float] = time.time
    waiting: int | None = None
    no_commit_for_s: float = 0.0
    stalled: bool = False
    restarts: int = 0
    handled_in_bound: int | None = None  # records the loop handled during the last stall_after_s (None: < bound)
    _checked_at: float = 0.0
    _restarted_at: float | None = None
    _probed_at: float = -1e18
    _waiting_since: float | None = None
    _handled: deque = field(default_factory=deque)  # (time, records handled so far) over the last bound

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
        self.waiting = None if held else self._measure(loop.consumer, now)
        was_stalled = self.stalled
        crawling = self._crawling(now, h.records, getattr(loop, "max_rows", 1))
        self.stalled = not held and (is_stalled(self.waiting, self.no_commit_for_s, self.stall_after_s) or crawling)
        metrics = loop.metrics
        metrics.records_waiting.labels(self.stage).set(self.waiting if self.waiting is not None else -1)
        if self.stalled:
            metrics.healthy.labels(self.stage).set(0)  # driftline_healthy follows /health
        elif was_stalled and not h.consecutive_failures:
            metrics.healthy.labels(self.stage).set(1)
        if not self.stalled:
            return
        log.error("%s: stalled: %s records waiting, no commit for %.0f s (bound %.0f s)", self.stage, self.waiting,
                  self.no_commit_for_s, self.stall_after_s)
        if self.new_consumer is None or h.consecutive_failures:  # a failing dependency: the loop retries it
            return
        if self._restarted_at is not None and now - self._restarted_at < self.stall_after_s:
            return
        self.restart(loop, now)

    def _crawling(self, now: float, handled: int, min_progress: int) -> bool:
        """Records waited throughout the last bound and the loop handled fewer than ``min_progress`` (one full
        batch) in it: a consumer the broker feeds a trickle (commits go on, a few records at a time) is stalled
        too."""
        self._waiting_since = (self._waiting_since or now) if self.waiting else None
        self._handled.append((now, handled))
        while len(self._handled) > 1 and self._handled[1][0] <= now - self.stall_after_s:
            self._handled.popleft()
        start_at, start = self._handled[0]
        self.handled_in_bound = handled - start if start_at <= now - self.stall_after_s else None
        return (self._waiting_since is not None and now - self._waiting_since >= self.stall_after_s
                and self.handled_in_bound is not None and self.handled_in_bound < min_progress)

    def _measure(self, consumer: Consumer, now: float) -> int | None:
        try:
            at = positions(consumer)
        except (KafkaException, RuntimeError) as exc:
            log.debug("positions unknown: %s", exc)
            return None
        waiting = records_waiting(consumer, at)
        if (not waiting and self.probe is not None and self.no_commit_for_s > self.stall_after_s
                and now - self._probed_at >= self.stall_after_s):
            self._probed_at = now
            found = self.probe(at)
            waiting = found if found else waiting
        return waiting

    def restart(self, loop: Any, now: float | None = None) -> None:
        """Re-create the loop's consumer (counted in ``driftline_consumer_restarts_total``)."""
        assert self.new_consumer is not None
        self.fetch_wait_max_ms = min(MAX_FETCH_WAIT_MS, max(1, self.fetch_wait_max_ms) * 2)
        log.warning("%s: re-creating the consumer (watchdog restart %d), fetch.wait.max.ms %d", self.stage,
                    self.restarts + 1, self.fetch_wait_max_ms)
        replace_consumer(loop, self.new_consumer(self.fetch_wait_max_ms))
        self.restarts += 1
        self._restarted_at = self.clock() if now is None else now
        loop.metrics.consumer_restarts.labels(self.stage).inc()

    def status(self) -> dict[str, Any]:
        """What ``/health`` shows (``stalled`` makes it red)."""
        return {"stalled": self.stalled, "records_waiting": self.waiting,
                "no_commit_for_s": round(self.no_commit_for_s, 1), "stall_after_s": self.stall_after_s,
                "handled_in_bound": self.handled_in_bound, "consumer_restarts": self.restarts,
                "fetch_wait_max_ms": self.fetch_wait_max_ms}


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


__all__ = ["Watchdog", "chain", "is_stalled", "positions", "records_after", "records_waiting", "replace_consumer"]
