"""The alert delivery loop: the ``alerts`` topic in, receivers out; an offset moves only past alerts that every
sink accepted (or dead-lettered as invalid for it).

Why not :class:`~streams.runtime.loop.BatchLoop`: the batch loop finishes a batch (process, deliver, commit)
before it takes the next, and rewinds the whole batch when anything fails. For receivers that is the failure
the delivery stage exists to avoid: one alert that PagerDuty answers with 500 for ten minutes would hold every
other alert back that long. Here records stay in flight across polls: a
:class:`~streams.runtime.alert_queue.DeliveryScheduler` keeps one FIFO queue per (sink, partition, dedup key),
retries each head on its own timer, and reports per partition the end of the contiguous prefix of settled
records, which is what this loop commits (synchronously). It is still the one owner of this group's offsets.

One iteration (one thread owns the consumer; a small thread pool makes the HTTP requests):
settle finished attempts (a rejected one is dead-lettered to ``alerts.dlq`` first) → commit what advanced →
start due attempts → re-send open Alertmanager alerts when due → poll (waiting at most until the next retry is
due) → pause a partition whose backlog reached ``max_pending`` (and seek it back to the first record not taken),
resume it below half.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from monitor.http_post import Attempt
from monitor.sinks import AlertSink
from streams.metrics import Metrics
from streams.runtime.alert_queue import DeliveryScheduler, Job
from streams.runtime.alert_records import Delivery, decode_alert, placeholder_alert
from streams.runtime.batch import LoopHealth, describe

log = logging.getLogger(__name__)


class AlertDeliveryLoop:
    """Runs until ``stop()``; see the module docstring. ``prime`` (optional) is called with newly assigned
    partitions before any of their records is taken (the Alertmanager sink rebuilds its open alerts)."""

    def __init__(self, consumer: Consumer, producer: Producer, sinks: Sequence[AlertSink], *, topic: str,
                 dlq_topic: str, scheduler: DeliveryScheduler, metrics: Metrics | None = None,
                 stage: str = "alerts", max_rows: int = 500, poll_s: float = 0.1, drain_s: float = 5.0,
                 commit_every_s: float = 0.2,
                 prime: Callable[[Consumer, list[TopicPartition]], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.consumer, self.producer = consumer, producer
        self.sinks = {s.name: s for s in sinks}
        self.topic, self.dlq_topic = topic, dlq_topic
        self.scheduler = scheduler
        self.metrics = metrics or Metrics()
        self.stage = stage
        self.max_rows, self.poll_s, self.drain_s = max_rows, poll_s, drain_s
        self.prime = prime
        self.clock = clock
        self.health = LoopHealth()
        self._stop = threading.Event()
        self._results: queue.SimpleQueue[tuple[Job, Attempt]] = queue.SimpleQueue()
        self._resent: queue.SimpleQueue[tuple[str, Attempt | None]] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max_workers=sum(getattr(s, "max_in_flight", 4) for s in sinks) + len(sinks),
                                        thread_name_prefix="driftline-alert-sink")
        self._next: dict[tuple[str, int], int] = {}  # next offset to take, per partition
        self._paused: set[tuple[str, int]] = set()
        self.pauses = 0  # times a partition was paused because its backlog was full
        self._dlq_retry: list[tuple[Delivery, tuple[str, int], int, str, str, str]] = []
        self._resend_due: dict[str, float] = {n: self.clock() + getattr(s, "resend_interval_s", 0.0)
                                              for n, s in self.sinks.items() if hasattr(s, "resend")}
        self._resending: set[str] = set()
        self._in_flight = 0
        self.commit_every_s = commit_every_s
        self._committed_at = float("-inf")
        self._committed: dict[tuple[str, int], int] = {}  # last committed offset per partition

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """Subscribe and loop until stopped; then let in-flight attempts finish (bounded), commit, close."""
        self.consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked,
                                on_lost=self._lost)
        try:
            while not self._stop.is_set():
                self.run_once()
        finally:
            deadline = self.clock() + self.drain_s
            while self._in_flight and self.clock() < deadline:
                self._settle(wait_s=0.05)
            self.producer.flush(5)
            self._settle()
            self._commit(force=True)
            self._pool.shutdown(wait=False, cancel_futures=True)
            self.consumer.close()

    def run_once(self) -> int:
        """One iteration; returns the number of records taken."""
        self._settle()
        self._commit()
        self._dispatch()
        self._resend()
        now = self.clock()
        due = self.scheduler.next_due()
        wait = self.poll_s if due is None else max(0.0, min(self.poll_s, due - now))
        # with attempts in flight, wake up for their answers rather than for the broker's fetch wait
        messages = self.consumer.consume(self.max_rows, 0 if self._in_flight else wait)
        self.health.last_poll_at = time.time()
        if not messages and self._in_flight:
            self._settle(wait_s=wait)
        taken = 0
        for m in messages:
            taken += self._take(m)
        self._flow_control()
        self.producer.poll(0)
        self._export()
        return taken

    # -- intake -----------------------------------------------------------------------------------------------
    def _take(self, m: Message) -> int:
        err = m.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer error: %s", err.str())
            return 0
        tp = (m.topic() or "", m.partition() or 0)
        offset = m.offset() or 0
        if tp in self._paused or offset < self._next.get(tp, -1):
            return 0  # paused: it is fetched again after resume; below: already taken
        if self.scheduler.full(tp):
            self._pause(tp, offset)
            return 0
        self._next[tp] = offset + 1
        self.metrics.consumed.labels(self.stage, tp[0]).inc()
        self.health.records += 1
        now = self.clock()
        try:
            alert = decode_alert(m.value() or b"")
        except ValueError as exc:
            log.warning("alerts: dead-lettering %s: %s", describe(m), exc)
            delivery = Delivery(placeholder_alert(), m.key(), m.value() or b"", tp[0])
            self.scheduler.add(tp, offset, "", delivery, now=now, sinks=(), holds=1)
            self._dead_letter(delivery, tp, offset, "malformed_alert", str(exc), sink="")
            return 1
        self.scheduler.add(tp, offset, alert.dedup_key, Delivery(alert, m.key(), m.value() or b"", tp[0]), now=now)
        return 1

    def _pause(self, tp: tuple[str, int], offset: int) -> None:
        part = TopicPartition(tp[0], tp[1], offset)
        try:
            self.consumer.pause([part])
            self.consumer.seek(part)
        except KafkaException as exc:  # cannot seek: keep taking (the bound becomes soft) rather than lose any
            log.warning("alerts: cannot pause %s[%d] at %d (%s); taking its records anyway", *tp, offset, exc)
            return
        self._paused.add(tp)
        self.pauses += 1
        log.warning("alerts: %s[%d] paused at %d: %d alerts wait for receivers", *tp, offset,
                    self.scheduler.pending(tp))

    def _flow_control(self) -> None:
        for tp in list(self._paused):
            if self.scheduler.pending(tp) <= self.scheduler.max_pending // 2:
                try:
                    self.consumer.resume([TopicPartition(*tp)])
                except KafkaException as exc:
                    log.warning("alerts: resume %s[%d] failed: %s", *tp, exc)
                    continue
                self._paused.discard(tp)
                log.info("alerts: %s[%d] resumed", *tp)

    # -- attempts -----------------------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        for job in self.scheduler.ready(self.clock()):
            self._in_flight += 1
            self._pool.submit(self._attempt, job)

    def _attempt(self, job: Job) -> None:
        try:
            result = self.sinks[job.sink].deliver(job.item.alert)
        except Exception as exc:  # noqa: BLE001 - a sink bug must not kill the worker nor drop the alert
            log.exception("alerts: sink %s raised on %s", job.sink, job.key)
            result = Attempt("retry", f"sink raised {type(exc).__name__}: {exc}")
        self._results.put((job, result))

    def _settle(self, wait_s: float = 0.0) -> None:
        """Apply the outcomes of finished attempts (``wait_s``: wait up to that long for a first one)."""
        first = True
        while True:
            try:
                job, result = self._results.get(timeout=wait_s) if first and wait_s > 0 else self._results.get_nowait()
            except queue.Empty:
                break
            first = False
            self._in_flight -= 1
            now = self.clock()
            self.metrics.alert_deliveries.labels(job.sink, result.outcome).inc()
            alert = job.item.alert
            if result.outcome == "accepted":
                if self.scheduler.accepted(job, now):
                    log.info("alerts: %s accepted %s %s (attempt %d)", job.sink, alert.action, job.key, job.attempts)
            elif result.outcome == "retry":
                delay = self.scheduler.retry(job, now, result.reason, retry_after_s=result.retry_after_s,
                                             throttled=result.throttled)
                log.warning("alerts: %s: %s for %s %s, attempt %d, next in %.1fs", job.sink, result.reason,
                            alert.action, job.key, job.attempts, delay)
            elif self.scheduler.rejected(job, now, result.reason):
                log.error("alerts: %s rejected %s %s as invalid (%s): dead-lettered", job.sink, alert.action,
                          job.key, result.reason)
                self._dead_letter(job.item, job.partition, job.offset, "rejected_by_receiver", result.reason,
                                  sink=job.sink)
        for sink, result in self._drain_resends():
            if result is not None and not result.accepted:
                log.warning("alerts: %s: re-sending open alerts failed: %s", sink, result.reason)

    def _resend(self) -> None:
        now = self.clock()
        for name, due in self._resend_due.items():
            if now >= due and name not in self._resending:
                self._resending.add(name)
                self._resend_due[name] = now + self.sinks[name].resend_interval_s  # type: ignore[attr-defined]
                self._pool.submit(self._resend_one, name)

    def _resend_one(self, name: str) -> None:
        try:
            result = self.sinks[name].resend()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001
            log.exception("alerts: %s re-send raised", name)
            result = Attempt("retry", f"{type(exc).__name__}: {exc}")
        self._resent.put((name, result))

    def _drain_resends(self) -> list[tuple[str, Attempt | None]]:
        out = []
        while True:
            try:
                name, result = self._resent.get_nowait()
            except queue.Empty:
                return out
            self._resending.discard(name)
            out.append((name, result))

    # -- dead letters -----------------------------------------------------------------------------------------
    def _dead_letter(self, delivery: Delivery, tp: Any, offset: int, reason: str, detail: str, sink: str) -> None:
        headers = [("error", reason.encode()), ("source_topic", delivery.topic.encode()),
                   ("source_partition", str(tp[1]).encode()), ("source_offset", str(offset).encode()),
                   ("error_detail", detail[:500].encode("utf-8", "replace"))]
        if sink:
            headers.append(("sink", sink.encode()))

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is None:
                self.scheduler.release(tp, offset)
                self.metrics.dead_letters.labels(self.topic, reason).inc()
            else:  # the broker refused: write it again on the next iteration, never lose it
                log.warning("alerts: dead letter for %s[%d]@%d not written (%s); retrying", tp[0], tp[1], offset,
                            err.str())
                self._dlq_retry.append((delivery, tp, offset, reason, detail, sink))

        try:
            self.producer.produce(self.dlq_topic, delivery.value, delivery.key, headers=headers,
                                  on_delivery=delivered)
        except (BufferError, KafkaException) as exc:
            log.warning("alerts: cannot queue dead letter for %s[%d]@%d (%s); retrying", tp[0], tp[1], offset, exc)
            self._dlq_retry.append((delivery, tp, offset, reason, detail, sink))

    def _retry_dead_letters(self) -> None:
        todo, self._dlq_retry = self._dlq_retry, []
        for args in todo:
            self._dead_letter(*args)

    # -- offsets ----------------------------------------------------------------------------------------------
    def _commit(self, only: set[tuple[str, int]] | None = None, *, force: bool = False) -> None:
        """Commit the delivered prefix of every partition that advanced, at most every ``commit_every_s``
        (``force``: now; on revoke and shutdown). A crash loses at most that much of commits: those alerts are
        delivered again (harmless for PagerDuty and Alertmanager, see the sinks)."""
        self.producer.poll(0)  # dead-letter callbacks release their records
        if self._dlq_retry:
            self._retry_dead_letters()
        now = self.clock()
        if not force and now - self._committed_at < self.commit_every_s:
            return
        self._committed_at = now
        parts = only if only is not None else self.scheduler.partitions()
        offsets = [TopicPartition(t, p, o) for (t, p) in parts
                   if (o := self.scheduler.committable((t, p))) is not None and o != self._committed.get((t, p))]
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # tried again on the next call; a replay only re-sends (see the sinks)
            log.warning("alerts: commit of %s failed: %s", [f"{o.topic}[{o.partition}]@{o.offset}" for o in offsets],
                        exc)
            self.health.last_error = f"commit failed: {exc}"
            return
        self._committed.update({(o.topic, o.partition): o.offset for o in offsets})
        self.health.last_commit_at = time.time()
        self.health.batches += 1
        self.metrics.last_commit.labels(self.stage).set(self.health.last_commit_at)
        for o in offsets:
            self._export_lag(o)

    def _export_lag(self, tp: TopicPartition) -> None:
        try:
            _, high = self.consumer.get_watermark_offsets(tp, cached=True)
        except Exception:  # noqa: BLE001 - a metric never fails the loop
            return
        if high >= 0:
            self.metrics.consumer_lag.labels(self.stage, tp.topic, str(tp.partition)).set(max(0, high - tp.offset))

    def _export(self) -> None:
        now = self.clock()
        for name in self.sinks:
            oldest = self.scheduler.oldest_waiting(name)
            self.metrics.alert_waiting.labels(name).set(self.scheduler.waiting(name))
            self.metrics.alert_oldest_waiting.labels(name).set(0.0 if oldest is None else max(0.0, now - oldest))

    # -- rebalance --------------------------------------------------------------------------------------------
    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.health.assigned = sorted({*self.health.assigned, *(f"{p.topic}[{p.partition}]" for p in partitions)})
        log.info("alerts: assigned %s", [f"{p.topic}[{p.partition}]" for p in partitions])
        if self.prime is not None and partitions:
            try:
                self.prime(consumer, partitions)
            except Exception:  # noqa: BLE001 - a failed rebuild degrades re-sends, it must not stop delivery
                log.exception("alerts: rebuilding open alerts from %s failed", [p.partition for p in partitions])

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        self._settle()
        self._commit(only=gone, force=True)
        self._forget(gone)

    def _lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget({(p.topic, p.partition) for p in partitions})

    def _forget(self, gone: set[tuple[str, int]]) -> None:
        for tp in gone:
            self.scheduler.revoke(tp)
            self._committed.pop(tp, None)
            self._next.pop(tp, None)
            self._paused.discard(tp)
        names = {f"{t}[{p}]" for t, p in gone}
        self.health.assigned = [a for a in self.health.assigned if a not in names]
        log.info("alerts: revoked %s", sorted(names))

    # -- status -----------------------------------------------------------------------------------------------
    def sink_status(self) -> dict[str, dict[str, Any]]:
        """Per sink: waiting alerts, the oldest one's age, counters, the last error and how long it fails."""
        now = self.clock()
        out = {}
        for name, st in self.scheduler.sinks.items():
            oldest = self.scheduler.oldest_waiting(name)
            out[name] = {"waiting": self.scheduler.waiting(name), "in_flight": st.in_flight,
                         "oldest_waiting_s": None if oldest is None else round(now - oldest, 3),
                         "accepted": st.accepted, "retried": st.retried, "rejected": st.rejected,
                         "failing_for_s": None if st.failing_since is None else round(now - st.failing_since, 3),
                         "last_error": st.last_error or None}
        return out
