"""Assembling the alert delivery stage from settings (``driftline run alerts``; the demo runs it too).

Sinks come from settings: a log sink (``DRIFTLINE_ALERTS_LOG``, on by default), PagerDuty when a routing key is
set, Alertmanager when its URL is set, a webhook when its URL is set. The stage has its own consumer group
(``DRIFTLINE_ALERTS_GROUP``, default ``driftline-alerts``) on the ``alerts`` topic, so it reads every alert of
every stage (monitor, pipeline) and moves at its receivers' pace without touching the other stages' offsets.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from monitor.alertmanager import AlertmanagerSink
from monitor.sinks import AlertSink, LogSink, PagerDutySink, WebhookSink
from streams.metrics import Metrics
from streams.runtime.alert_delivery import AlertDeliveryLoop
from streams.runtime.alert_queue import Backoff, DeliveryScheduler
from streams.runtime.alert_records import decode_alert
from streams.runtime.clients import close_producer, make_consumer, make_producer
from streams.runtime.topics import TopicSpec, ensure_topics
from streams.runtime.workers import Worker, _broker_probe
from streams.settings import KafkaSettings, Settings

log = logging.getLogger(__name__)


def alert_sinks(settings: Settings, *, log_sink: bool | None = None) -> list[AlertSink]:
    """The receivers ``settings`` configure (``log_sink`` overrides ``settings.alerts.log_sink``)."""
    a = settings.alerts
    sinks: list[AlertSink] = []
    if a.log_sink if log_sink is None else log_sink:
        sinks.append(LogSink())
    if settings.pagerduty_routing_key:
        sinks.append(PagerDutySink(settings.pagerduty_routing_key, url=settings.pagerduty_url,
                                   timeout_s=a.http_timeout_s))
    if a.alertmanager_url:
        sinks.append(AlertmanagerSink(a.alertmanager_url, resend_interval_s=a.alertmanager_resend_s,
                                      generator_url=a.generator_url, timeout_s=a.http_timeout_s))
    if settings.webhook_url:
        sinks.append(WebhookSink(settings.webhook_url, timeout_s=a.http_timeout_s))
    return sinks


def read_partition(kafka: KafkaSettings, topic: str, partition: int, end: int, timeout_s: float) -> list[bytes]:
    """The values of ``topic[partition]`` from its beginning up to (excluding) offset ``end``, read without a
    group; fewer when ``timeout_s`` runs out (logged)."""
    consumer = make_consumer(kafka, f"driftline-alerts-prime-{uuid.uuid4().hex[:8]}")
    out: list[bytes] = []
    last = -1
    deadline = time.monotonic() + timeout_s
    try:
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        while last < end - 1 and time.monotonic() < deadline:
            for m in consumer.consume(500, 0.2):
                if m.error() is not None or (m.offset() or 0) >= end:
                    continue
                last = max(last, m.offset() or 0)
                out.append(m.value() or b"")
    finally:
        consumer.close()
    if last < end - 1:
        log.warning("alerts: read %s[%d] up to %d of %d within %.0fs; open alerts before that are not re-sent",
                    topic, partition, last, end - 1, timeout_s)
    return out


def primer(kafka: KafkaSettings, sinks: Sequence[AlertSink], timeout_s: float = 30.0
           ) -> Callable[[Consumer, list[TopicPartition]], None] | None:
    """The rebuild step for sinks that keep open alerts alive (Alertmanager): on assignment, replay the
    partition's already committed alerts into their ``prime``; None when no sink needs it."""
    targets = [s for s in sinks if hasattr(s, "prime")]
    if not targets:
        return None

    def prime(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in consumer.committed(partitions, timeout=10):
            if tp.offset is None or tp.offset <= 0:
                continue
            values = read_partition(kafka, tp.topic, tp.partition, tp.offset, timeout_s)
            for value in values:
                try:
                    alert = decode_alert(value)
                except ValueError:
                    continue
                for sink in targets:
                    sink.prime(alert)  # type: ignore[attr-defined]
            log.info("alerts: replayed %d delivered alerts of %s[%d] into %s", len(values), tp.topic,
                     tp.partition, [s.name for s in targets])

    return prime


class AlertWorker(Worker):
    """A :class:`Worker` whose health is about receivers, not Redis (the stage needs no Redis)."""

    stuck_after_s: float = 300.0

    def health(self) -> dict:
        """Healthy when the loop runs, polled the broker recently, and no sink with waiting alerts has failed
        for longer than ``stuck_after_s`` (an outage of a receiver shows here and in
        ``driftline_alert_oldest_waiting_seconds``)."""
        loop: AlertDeliveryLoop = self.loop  # type: ignore[assignment]
        h = loop.health
        now = time.time()
        sinks = loop.sink_status()
        stuck = sorted(n for n, s in sinks.items()
                       if s["waiting"] and (s["failing_for_s"] or 0.0) > self.stuck_after_s)
        state: dict = {"stage": self.name, "alive": self.alive, "assigned": h.assigned, "sinks": sinks,
                       "stuck_sinks": stuck, "last_error": h.last_error,
                       "last_commit_age_s": None if h.last_commit_at is None else round(now - h.last_commit_at, 3),
                       "last_poll_age_s": None if h.last_poll_at is None else round(now - h.last_poll_at, 3)}
        for name, probe in self.probes.items():
            try:
                state[name] = probe()
            except Exception as exc:  # noqa: BLE001
                state[name] = f"error: {exc}"
        polled = h.last_poll_at is not None and now - h.last_poll_at < 10
        state["healthy"] = bool(self.alive and polled and not stuck and state.get("broker", "ok") == "ok"
                                and self.error is None)
        return state


def build_alerts(settings: Settings, *, sinks: Sequence[AlertSink] | None = None, group: str | None = None,
                 metrics: Metrics | None = None) -> tuple[AlertWorker, AlertDeliveryLoop]:
    """The delivery stage: ``settings.topics.alerts`` → ``sinks`` (default: :func:`alert_sinks`)."""
    a = settings.alerts
    sinks = list(sinks) if sinks is not None else alert_sinks(settings)
    if not sinks:
        log.warning("alerts: no sink configured; alerts are read and committed without going anywhere")
    topic, dlq = settings.topics.alerts, settings.topics.dlq(settings.topics.alerts)
    if settings.kafka.create_topics:
        ensure_topics(settings, [TopicSpec(topic, 1), TopicSpec(dlq, 1)])
    metrics = metrics or Metrics()
    scheduler = DeliveryScheduler({s.name: getattr(s, "max_in_flight", 4) for s in sinks},
                                  backoff=Backoff(a.retry_base_s, a.retry_max_s, a.retry_after_max_s, a.throttle_s),
                                  rate_limits={s.name: getattr(s, "rate_limit_per_min", None) for s in sinks},
                                  max_pending=a.max_pending)
    producer = make_producer(settings.kafka)
    consumer = make_consumer(settings.kafka, group or a.group)
    loop = AlertDeliveryLoop(consumer, producer, sinks, topic=topic, dlq_topic=dlq, scheduler=scheduler,
                             metrics=metrics, max_rows=settings.pipeline.batch_max_rows,
                             poll_s=max(settings.pipeline.batch_max_ms, 20) / 1000,
                             prime=primer(settings.kafka, sinks))
    worker = AlertWorker("alerts", loop, closers=[*(s.close for s in sinks), lambda: close_producer(producer)],  # type: ignore[arg-type]
                         metrics=metrics,
                         probes={"broker": _broker_probe(producer, topic)})
    worker.stuck_after_s = a.stuck_after_s
    return worker, loop
