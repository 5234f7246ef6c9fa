"""Assembling runnable workers from settings: the fused pipeline (features → score) and the monitor.

Each worker owns its consumer, producer and batch loop, and runs until ``stop()``. Several can run in one
process (threads; the demo does this) or one per process (``driftline run pipeline|monitor``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

import redis
from confluent_kafka import Consumer, KafkaException, Producer

from features.definitions import FeatureView
from features.redis_store import RedisFeatureStore
from features.silence import SilenceTracker
from models.registry import Registry
from models.scorer import Scorer
from monitor.alerts import Alert
from monitor.drift_monitor import DriftMonitor
from monitor.history import alert_event
from monitor.label_join import RedisLabelJoin
from monitor.reference import ReferenceProfile
from monitor.rollback import RollbackPolicy
from monitor.sensor_checks import SensorChecks
from monitor.sinks import AlertSink
from streams import codec
from streams.control.channel import ControlReader
from streams.control.keyring import keyring_from_settings
from streams.control.protocol import CommandVerifier
from streams.control.redis_store import RedisControlStore
from streams.metrics import Metrics
from streams.redis_client import AnyRedis, check_redis, make_redis, redis_problem
from streams.runtime.batch import CommitLog, Output
from streams.runtime.clients import close_producer, make_consumer, producer_config
from streams.runtime.control_agent import ControlAgent
from streams.runtime.history_store import RedisHistory
from streams.runtime.loop import BatchLoop
from streams.runtime.monitor_handler import MonitorHandler
from streams.runtime.pipeline import FusedHandler
from streams.runtime.producing import LoopProducer
from streams.runtime.watchdog import Watchdog, chain, records_after
from streams.settings import Settings
from streams.timeline import Timeline

log = logging.getLogger(__name__)
CONTROL_MAX_FUTURE_S = 30.0  # how far in the future a command's issued_at may be (clock skew between hosts)


def redis_client(settings: Settings) -> AnyRedis:
    """A bytes client of ``REDIS_URL`` (a Redis Cluster client for ``redis+cluster://`` or ``REDIS_CLUSTER=1``;
    ``streams.redis_client``) with short timeouts, so an outage surfaces quickly."""
    return make_redis(settings.redis_url, cluster=settings.redis_cluster)


def control_store(settings: Settings, client: AnyRedis, registry: Registry, model: str) -> RedisControlStore:
    """The control store of ``model`` (scoped by the registry's id for it) over ``client``; its ledger outlives
    a command's freshness (max age + future skew) by a minute of clock slack."""
    ttl_ms = int((settings.control_max_age_s + CONTROL_MAX_FUTURE_S + 60) * 1000)
    return RedisControlStore(client, model, registry.uid(model), ttl_ms=ttl_ms)


def history_store(settings: Settings, client: AnyRedis) -> RedisHistory | None:
    """The report's history on ``client`` with the configured caps, or None when ``DRIFTLINE_HISTORY=0``."""
    h = settings.history
    if not h.enabled:
        return None
    return RedisHistory(client, prefix=h.prefix, max_snapshots=h.max_snapshots, max_events=h.max_events,
                        ttl_s=h.ttl_s)


def instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"


@dataclass
class Worker:
    """A batch loop plus what it needs, running in a thread."""

    name: str
    loop: BatchLoop
    closers: list = field(default_factory=list)
    metrics: Metrics = field(default_factory=Metrics)
    probes: dict = field(default_factory=dict)  # name -> callable returning a dict (e.g. the active version)
    thread: threading.Thread | None = None
    error: BaseException | None = None
    watchdog: Watchdog | None = None  # stall detection and recovery (streams/runtime/watchdog.py)

    def start(self) -> Worker:
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        try:
            self.loop.run()
        except BaseException as exc:  # noqa: BLE001 - recorded, reported by health and re-raised by join
            self.error = exc
            log.exception("worker %s died", self.name)
        finally:
            for close in self.closers:
                try:
                    close()
                except Exception:  # noqa: BLE001
                    log.debug("closer failed", exc_info=True)

    def stop(self, timeout_s: float = 15.0) -> None:
        self.loop.stop()
        if self.thread is not None:
            self.thread.join(timeout_s)

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def health(self) -> dict:
        """What ``/health`` reports: healthy only when the loop runs, its last batch succeeded, it polled the
        broker recently, Redis answers, and it is not stalled (records waiting, no commit: the watchdog).

        A dependency whose failure stops batches is named in ``failing`` and in its own field, even when its
        probe answers (a Redis that answers PING but refuses writes is ``redis: failing: ResponseError: ...``);
        ``last_error`` / ``last_error_class`` / ``last_error_age_s`` keep the last failure after a recovery."""
        h = self.loop.health
        now = time.time()
        failures = h.consecutive_failures  # read once: the loop's thread changes it while this answers
        state: dict = {"stage": self.name, "alive": self.alive, "assigned": h.assigned,
                       "consecutive_failures": failures, "last_error": h.last_error,
                       "last_error_class": h.last_error_class,
                       "last_error_age_s": None if h.last_error_at is None else round(now - h.last_error_at, 3),
                       "last_commit_age_s": None if h.last_commit_at is None else round(now - h.last_commit_at, 3),
                       "last_poll_age_s": None if h.last_poll_at is None else round(now - h.last_poll_at, 3)}
        for name, probe in self.probes.items():
            try:
                state[name] = probe()
            except Exception as exc:  # noqa: BLE001 - a failing probe is an unhealthy answer, not a crash
                state[name] = f"error: {exc}"
        failing = h.failing if failures else None
        state["failing"] = failing
        if failing in ("redis", "broker") and state.get(failing, "ok") == "ok":
            state[failing] = f"failing: {h.last_error}"  # it answers a probe, yet every batch fails on it
        stalled = False
        if self.watchdog is not None:
            state["progress"] = self.watchdog.status()
            stalled = self.watchdog.stalled
        polled = h.last_poll_at is not None and now - h.last_poll_at < 10
        state["healthy"] = bool(self.alive and polled and failures == 0 and state.get("redis") == "ok"
                                and state.get("broker", "ok") == "ok" and self.error is None and not stalled)
        return state


def build_pipeline(settings: Settings, view: FeatureView, model: str, *, timeline: Timeline | None = None,
                   instance: str | None = None, online_learning: bool = False, online_checkpoint_every: int = 0,
                   online_ttl_s: int = 6 * 3600) -> tuple[Worker, FusedHandler]:
    """The fused features → score worker for one view and model, obeying control commands between batches.

    ``online_learning`` (off by default): the worker also consumes the labels topic and a river champion learns
    from each label joined to its prediction's feature snapshot (kept ``online_ttl_s`` in Redis); every
    ``online_checkpoint_every`` labels (0 = never) the learned model is registered as a staging version. The
    wrapping handler is ``worker.loop.handler`` (see :mod:`streams.runtime.online_learning`)."""
    instance = instance or instance_id()
    timeline = timeline or Timeline()
    registry = Registry(settings.registry_dir)
    scorer = Scorer(registry, model)
    rclient = redis_client(settings)
    agent = ControlAgent(scorer, control_store(settings, rclient, registry, model), registry, instance=instance,
                         group=settings.pipeline.features_group)
    try:
        check_redis(rclient, settings.redis_url)  # fail fast: a single-node URL on a cluster node, a cluster down
        agent.start()  # the desired state from Redis (before any command: the registry's production version)
    except BaseException:
        rclient.close()
        raise
    metrics = Metrics()
    store = RedisFeatureStore(rclient, on_conflict=lambda c: metrics.partition_conflicts.labels(c.topic).inc())
    handler = FusedHandler(view, store, scorer, group=settings.pipeline.features_group, metrics=metrics,
                           predictions_topic=settings.topics.predictions,
                           dlq_topic=settings.topics.dlq(view.source_topic), alerts_topic=settings.topics.alerts,
                           silence=SilenceTracker(settings.pipeline.silence_idle_ms),
                           features_topic=settings.topics.stale_features(view.source_topic),
                           cache_max_entities=settings.pipeline.cache_max_entities,
                           sensors=sensor_checks(settings, view),
                           max_future_skew_ms=settings.pipeline.max_future_skew_ms)
    producer = LoopProducer(producer_config(settings.kafka))  # delivery reports of failed records only
    verifier = CommandVerifier(keyring_from_settings(settings), max_age_s=settings.control_max_age_s,
                               max_future_s=CONTROL_MAX_FUTURE_S)
    control = ControlReader(settings, verifier=verifier, catch_up_ms=int(
        (settings.control_max_age_s + CONTROL_MAX_FUTURE_S) * 1000))

    idle_checked = [0.0]

    history = history_store(settings, rclient)

    def _alert(alert: Alert) -> None:
        producer.produce(settings.topics.alerts, codec.encode(alert.to_dict()), alert.dedup_key)
        metrics.alerts.labels(alert.kind, alert.severity, alert.action).inc()
        log.error("%s", alert.summary)
        if history is not None:
            try:
                history.write(alert.model, events=[alert_event(alert.to_dict())])
                metrics.history.labels("event", "ok").inc()
            except redis.RedisError as exc:
                metrics.history.labels("event", "failed").inc()
                log.warning("report history not written: %s", exc)

    def tick() -> None:
        now = int(time.time() * 1000)
        if time.time() - idle_checked[0] > 5.0:  # O(tracked entities): not on every tick
            idle_checked[0] = time.time()
            for out in handler.idle_outputs(time.time(), settings.pipeline.silence_idle_wall_s):
                producer.produce(out.topic, out.value, out.key)
        outcomes = agent.handle(control.poll(0) if agent.accepting else (), now)
        for o in outcomes:
            if o.alert is not None:
                _alert(o.alert)
            if o.ack is None:
                continue
            metrics.control.labels(o.command, o.ack.status).inc()
            if o.ack.status == "rejected":
                metrics.control_rejected.labels(o.ack.reason or "invalid").inc()
            producer.produce(settings.topics.control, codec.encode(o.ack.to_dict()), model)
            timeline.record("swap" if o.ack.status == "applied" else "command_rejected", instance=instance,
                            command=o.command, from_version=o.before, to_version=o.ack.active_version,
                            status=o.ack.status, reason=o.ack.reason)
        if outcomes:
            metrics.model_info.labels(model).set(scorer.active_version or 0)
            producer.flush(5)

    commits = CommitLog()

    def new_consumer(fetch_wait_max_ms: int = settings.kafka.fetch_wait_max_ms) -> Consumer:
        return make_consumer(settings.kafka, settings.pipeline.features_group, on_commit=commits,
                             fetch_wait_max_ms=fetch_wait_max_ms)

    consumer = new_consumer()
    loop_handler, topics = handler, [view.source_topic]
    probes = {"redis": _redis_probe(rclient), "broker": _broker_probe(producer, view.source_topic),
              "active_version": lambda: scorer.active_version, "model": lambda: model, "control": agent.status,
              "traffic": lambda: {k: v for k, v in scorer.active.split.to_dict().items() if k != "salt"}}
    if online_learning:
        from streams.runtime.online_learning import OnlineLearningHandler, RedisSnapshotStore

        online = OnlineLearningHandler(handler, RedisSnapshotStore(rclient, ttl_s=online_ttl_s),
                                       labels_topic=settings.topics.labels, registry=registry,
                                       checkpoint_every=online_checkpoint_every, metrics=metrics)
        loop_handler, topics = online, [view.source_topic, settings.topics.labels]
        probes["online_learning"] = online.status
    loop = BatchLoop(consumer, producer, loop_handler, topics, max_rows=settings.pipeline.batch_max_rows,
                     max_ms=settings.pipeline.batch_max_ms, linger_ms=settings.pipeline.batch_linger_ms, tick=tick,
                     stage="pipeline", metrics=metrics, commits=commits,
                     max_message_bytes=settings.kafka.message_max_bytes,
                     checkpoint_interval_ms=settings.pipeline.checkpoint_interval_ms,
                     hold=lambda: scorer.paused)  # `pause`: fetching stops (records stay in Kafka), ticks go on
    watchdog = Watchdog("pipeline", settings.pipeline.stall_after_s, new_consumer,
                        fetch_wait_max_ms=settings.kafka.fetch_wait_max_ms, probe=lambda at: records_after(settings.kafka.client_config(), at))
    loop.tick = chain(tick, lambda: watchdog.check(loop))
    worker = Worker(f"pipeline-{view.name}", loop, closers=[control.close, rclient.close,
                                                            lambda: close_producer(producer)], metrics=metrics,
                    probes=probes, watchdog=watchdog)
    return worker, handler


def sensor_checks(settings: Settings, view: FeatureView) -> SensorChecks | None:
    """The per-entity sensor checks of ``view`` (None when switched off or the view has no rules)."""
    from monitor.sensor_checks import RULES, SensorConfig

    rules = RULES.get(view.name)
    return SensorChecks(SensorConfig(rules)) if settings.monitor.sensor_checks and rules else None


def sinks_from_settings(settings: Settings, *, log_sink: bool = True) -> list[AlertSink]:
    """The receivers ``settings`` configure (see :func:`streams.runtime.alert_worker.alert_sinks`)."""
    from streams.runtime.alert_worker import alert_sinks

    return alert_sinks(settings, log_sink=log_sink)


def build_monitor(settings: Settings, *, timeline: Timeline | None = None,
                  rollback_mode: str = "rollback", evaluate_every: int = 100,
                  min_samples: int = 500, psi_window: int = 1000, slice_field: str | None = None,
                  slice_edges: tuple[float, ...] | None = None, max_slices: int = 50,
                  retrain_mode: str = "after_rollback", ab_outcome: str | None = "correct", ab_alpha: float = 0.05,
                  ab_min_n: int = 30, adwin_features: tuple[str, ...] = ()) -> tuple[Worker, MonitorHandler]:
    """The monitor worker: drift detection (optionally per slice of ``slice_field``, binned by ``slice_edges``),
    alerts, rollbacks, retrain requests (``retrain_mode``: off | after_rollback | instead_of_rollback) and acks.

    With a challenger in traffic, the champion/challenger z-test on joined labels (``ab_outcome``: correct |
    precision | recall; None = off) is logged, exported (``driftline_ab_z``, ``driftline_ab_p_value``) and
    reported by ``/health`` (``ab_tests``)."""
    from models.abtest_report import ABTracker
    from monitor.data_quality import DataQualityMonitor, QualityConfig
    from monitor.drift_monitor import default_policy
    from monitor.incidents import IncidentConfig
    from monitor.retrain import RetrainPolicy
    from monitor.slices import slice_by
    from monitor.version_monitor import MonitorConfig

    registry = Registry(settings.registry_dir)

    def profile(model: str, version: int) -> ReferenceProfile:
        return ReferenceProfile.from_dict(registry.get(model, version).reference)

    ms = settings.monitor
    drift = DriftMonitor(profile, policy=default_policy(min_samples),
                         config=MonitorConfig(psi_window=psi_window, psi_min_samples=min_samples,
                                              mean_shift_window=psi_window, adwin_features=adwin_features,
                                              detector_warmup=ms.detector_warmup),
                         evaluate_every=evaluate_every,
                         slice_of=slice_by(slice_field, slice_edges) if slice_field else None, max_slices=max_slices,
                         incidents=IncidentConfig(resolve_after=ms.incident_resolve_after),
                         confirm_within=ms.confirm_within)
    quality = DataQualityMonitor(QualityConfig(min_entities=ms.quality_min_entities, quarantine=ms.quarantine,
                                               evaluate_every=evaluate_every))
    rclient = redis_client(settings)
    check_redis(rclient, settings.redis_url)  # fail fast, as the pipeline does
    metrics = Metrics()
    handler = MonitorHandler(settings, drift, RedisLabelJoin(rclient),
                             RollbackPolicy(registry, mode=rollback_mode),  # type: ignore[arg-type]
                             registry=registry, control_key=keyring_from_settings(settings),
                             timeline=timeline, metrics=metrics,
                             retrain=RetrainPolicy(registry, mode=retrain_mode),  # type: ignore[arg-type]
                             ab=None if ab_outcome is None else ABTracker(ab_outcome, alpha=ab_alpha, min_n=ab_min_n),
                             history=history_store(settings, rclient),
                             history_interval_ms=int(settings.history.interval_s * 1000), quality=quality)
    producer = LoopProducer(producer_config(settings.kafka))  # delivery reports of failed records only
    acks = ControlReader(settings, verifier=None)

    def tick() -> None:
        for item in acks.poll(0):
            handler.on_control(item)
        for alert in handler.retire_stopped():  # a version that stopped serving: its incidents resolve
            producer.produce(settings.topics.alerts, codec.encode(alert.to_dict()), alert.dedup_key)
            handler.write_history({alert.model: ([], [alert_event(alert.to_dict())])})
        for alert in handler.overdue_alerts():
            producer.produce(settings.topics.alerts, codec.encode(alert.to_dict()), alert.dedup_key)
            handler.timeline.record("alert", action=alert.action, severity=alert.severity, kind=alert.kind,
                                    version=alert.model_version, summary=alert.summary)
            handler.write_history({alert.model: ([], [alert_event(alert.to_dict())])})

    def new_consumer(fetch_wait_max_ms: int = settings.kafka.fetch_wait_max_ms) -> Consumer:
        return make_consumer(settings.kafka, settings.pipeline.monitor_group, fetch_wait_max_ms=fetch_wait_max_ms)

    consumer = new_consumer()
    loop = BatchLoop(consumer, producer, handler, [settings.topics.predictions, settings.topics.labels],
                     max_rows=settings.pipeline.batch_max_rows, max_ms=100,
                     linger_ms=settings.pipeline.batch_linger_ms, tick=tick, stage="monitor",
                     metrics=metrics, max_message_bytes=settings.kafka.message_max_bytes)
    closers = [acks.close, rclient.close, lambda: close_producer(producer)]
    probes = {"redis": _redis_probe(rclient), "broker": _broker_probe(producer, settings.topics.predictions),
              "ab_tests": lambda: [r.to_dict() for r in handler.ab_reports]}
    watchdog = Watchdog("monitor", settings.pipeline.stall_after_s, new_consumer,
                        fetch_wait_max_ms=settings.kafka.fetch_wait_max_ms, probe=lambda at: records_after(settings.kafka.client_config(), at))
    loop.tick = chain(tick, lambda: watchdog.check(loop))
    return Worker("monitor", loop, closers=closers, metrics=metrics, probes=probes, watchdog=watchdog), handler


def _broker_probe(producer: Producer, topic: str):  # noqa: ANN202
    """A metadata request for ``topic`` (the producer is thread-safe; the consumer belongs to the loop)."""
    def probe() -> str:
        try:
            meta = producer.list_topics(topic, timeout=2)
        except RuntimeError:  # the worker closed its producer: it is stopping
            return "unreachable: stopping"
        except KafkaException as exc:
            return f"unreachable: {exc.args[0].str() if exc.args else exc}"
        info = meta.topics.get(topic)
        return "ok" if info is not None and info.error is None else f"topic {topic} unavailable"
    return probe


def _redis_probe(client: AnyRedis):  # noqa: ANN202
    """``ok``, or why not: unreachable, or misconfigured (a single-node client on a Redis Cluster node, whose
    every batch would fail with MOVED; a cluster whose slots are not all served)."""
    def probe() -> str:
        return redis_problem(client) or "ok"
    return probe


__all__ = ["Worker", "build_pipeline", "build_monitor", "history_store", "redis_client", "control_store", "instance_id",
           "Output"]
