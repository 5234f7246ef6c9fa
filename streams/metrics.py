"""Prometheus metrics of one worker, in a registry of its own (no hidden global), and the HTTP endpoint
that serves ``/metrics`` and ``/health``.

Labels are bounded: topic, partition, reason, model, version, variant, feature, detector, kind, severity,
stage. Never an entity id.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
GC_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5)
SIZE_BUCKETS = (1, 8, 32, 64, 128, 256, 512, 1024, 2048)


def observe_many(histogram: Histogram, values: Sequence[float] | np.ndarray) -> None:
    """``histogram.observe(v)`` for every ``v``, with one increment per touched bucket instead of one lock
    round per value (a batch's event latencies: the per-event call was ~5 % of the fused pipeline's CPU).

    It reaches into ``prometheus_client``'s unlabelled-child internals (``_upper_bounds``, ``_buckets``,
    ``_sum``) and falls back to ``observe`` where they are missing; a test pins the exposition to the
    per-value result.

    >>> h = Histogram("x_seconds", "x", buckets=(0.1, 1.0), registry=CollectorRegistry())
    >>> observe_many(h, [0.05, 0.5, 0.7, 3.0])
    >>> [b.get() for b in h._buckets], h._sum.get()
    ([1.0, 2.0, 1.0], 4.25)
    """
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for v in values:
            histogram.observe(v)
        return
    array = np.asarray(values, dtype=np.float64)
    finite = array[array == array]  # observe counts a NaN in no bucket (only in the sum)
    # the first bound >= v, as observe's "amount <= bound" (bisect_left); one count per touched bucket
    counts = np.bincount(np.searchsorted(np.asarray(bounds, dtype=np.float64), finite, side="left"),
                         minlength=len(bounds))
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(int(counts[i]))
    total.inc(float(np.sum(array)))


class Metrics:
    """Every series driftline exports. One instance per worker process (or per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.consumed = Counter("driftline_records_consumed", "Records consumed", ["stage", "topic"], registry=r)
        self.produced = Counter("driftline_records_produced", "Records produced", ["stage", "topic"], registry=r)
        self.dead_letters = Counter("driftline_dead_letters", "Records sent to a dead-letter topic",
                                    ["topic", "reason"], registry=r)
        self.late_events = Counter("driftline_late_events", "Events later than the allowed lateness", ["topic"],
                                   registry=r)
        self.silent_entities = Counter("driftline_silent_entities", "Entities reported silent (stale features)",
                                       ["topic"], registry=r)
        self.replayed = Counter("driftline_replayed_events", "Events skipped on replay (already applied)",
                                ["topic"], registry=r)
        self.batch_size = Histogram("driftline_batch_size_records", "Records per consumed batch", ["stage"],
                                    buckets=SIZE_BUCKETS, registry=r)
        self.batch_seconds = Histogram("driftline_batch_duration_seconds", "Consume-to-commit time of a batch",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.event_to_prediction = Histogram("driftline_event_to_prediction_seconds",
                                             "Event time to prediction time", buckets=LATENCY_BUCKETS, registry=r)
        self.consume_to_produce = Histogram("driftline_consume_to_produce_seconds",
                                            "Broker append time of the input to production of the prediction",
                                            buckets=LATENCY_BUCKETS, registry=r)
        self.redis_seconds = Histogram("driftline_redis_roundtrip_seconds", "Redis round trips", ["op"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.gc_pauses = Histogram("driftline_gc_pause_seconds",
                                   "Pauses of the worker process's cyclic garbage collector (every thread, the batch "
                                   "loop included, stands still), by generation", ["generation"],
                                   buckets=GC_PAUSE_BUCKETS, registry=r)
        self.cache_entities = Gauge("driftline_state_cache_entities",
                                    "Entity states held by the pipeline worker's write-through cache", registry=r)
        self.cache_evictions = Counter("driftline_state_cache_evictions",
                                       "Entity states evicted from the cache (least recently used; reloaded from "
                                       "Redis when needed)", registry=r)
        self.predictions = Counter("driftline_predictions", "Predictions produced",
                                   ["model", "version", "variant"], registry=r)
        self.scorer_errors = Counter("driftline_scorer_events", "Scorer events (schema drift, breaker)",
                                     ["model", "version", "kind"], registry=r)
        self.model_info = Gauge("driftline_active_model_version", "Version the scorer serves as champion",
                                ["model"], registry=r)
        self.psi = Gauge("driftline_psi", "Rolling PSI against the training reference",
                         ["model", "version", "feature"], registry=r)
        self.mean_shift = Gauge("driftline_mean_score_shift", "|mean score - reference mean score|",
                                ["model", "version"], registry=r)
        self.accuracy = Gauge("driftline_rolling_accuracy", "Accuracy of joined labels", ["model", "version"],
                              registry=r)
        self.detections = Counter("driftline_detector_detections", "Drift detector firings",
                                  ["model", "version", "detector"], registry=r)
        self.alerts = Counter("driftline_alerts", "Alerts emitted", ["kind", "severity", "action"], registry=r)
        self.control = Counter("driftline_control_messages", "Control commands and acks",
                               ["command", "status"], registry=r)
        self.control_rejected = Counter("driftline_control_rejected", "Control commands a scorer rejected, by reason "
                                        "(unverified, replayed, superseded, invalid, failed)", ["reason"], registry=r)
        self.partition_conflicts = Counter(
            "driftline_entity_partition_conflicts", "Entities whose events arrived on another partition of their topic "
            "than before (a producer changed its partitioner, or partitions were added): their windows split",
            ["topic"], registry=r)
        self.labels_joined = Counter("driftline_labels_joined", "Labels joined to predictions", registry=r)
        self.consumer_lag = Gauge("driftline_consumer_lag_records",
                                  "High watermark minus the next offset to commit (fetch-reported, cached)",
                                  ["stage", "topic", "partition"], registry=r)
        self.last_commit = Gauge("driftline_last_commit_timestamp_seconds", "Unix time of the last offset commit",
                                 ["stage"], registry=r)
        self.batch_failures = Counter("driftline_batch_failures", "Batches rewound after a failure",
                                      ["stage", "error"], registry=r)
        self.healthy = Gauge("driftline_healthy", "1 when the worker makes progress", ["stage"], registry=r)
        self.records_waiting = Gauge("driftline_records_waiting",
                                     "Records between the consumer's position and the high watermark, assigned "
                                     "partitions together (the watchdog's measure; -1: unknown)", ["stage"], registry=r)
        self.consumer_restarts = Counter("driftline_consumer_restarts",
                                         "Consumers the watchdog re-created: records waited and nothing was "
                                         "committed for longer than the stall bound", ["stage"], registry=r)
        self.ab_z = Gauge("driftline_ab_z", "Two-proportion z of the challenger against the champion (joined labels)",
                          ["model", "champion", "challenger"], registry=r)
        self.ab_p_value = Gauge("driftline_ab_p_value", "Two-sided p-value of the champion/challenger z-test",
                                ["model", "champion", "challenger"], registry=r)
        self.online_learned = Counter("driftline_online_labels_learned",
                                      "Labels a river champion learned online (learn_one)", ["model", "version"],
                                      registry=r)
        self.online_checkpoints = Counter("driftline_online_checkpoints",
                                          "Online-learned models registered as staging versions", ["model"],
                                          registry=r)
        # PSI is conclusive only over a full window: the rules compare the two (deploy/prometheus/rules.yml)
        self.psi_samples = Gauge("driftline_psi_samples", "Valid values in the rolling PSI window",
                                 ["model", "version", "feature"], registry=r)
        self.psi_window = Gauge("driftline_psi_window_size", "Size of the rolling PSI window (samples when full)",
                                ["model", "version", "feature"], registry=r)
        # the alert delivery stage (`driftline run alerts`)
        self.alert_deliveries = Counter("driftline_alert_deliveries",
                                        "Alert delivery attempts by sink and outcome (accepted, retry, rejected)",
                                        ["sink", "outcome"], registry=r)
        self.alert_waiting = Gauge("driftline_alert_waiting", "Alerts a sink has not accepted yet", ["sink"],
                                   registry=r)
        self.alert_oldest_waiting = Gauge("driftline_alert_oldest_waiting_seconds",
                                          "Age of the oldest alert a sink has not accepted yet (0: none)", ["sink"],
                                          registry=r)

        self.history = Counter("driftline_history_records", "Records written to the report history in Redis",
                               ["kind", "outcome"], registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _QuietServer(ThreadingHTTPServer):
    """A client that hangs up before its answer is the client's business: no traceback on stderr."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):  # BrokenPipeError, ConnectionResetError, ...
            log.debug("health client %s went away: %s", client_address, exc)
            return
        super().handle_error(request, client_address)


class HealthServer:
    """``/metrics`` (Prometheus text format) and ``/health`` (JSON, HTTP 503 when not healthy) on 127.0.0.1."""

    def __init__(self, metrics: Metrics, health: Callable[[], dict[str, Any]], port: int = 0,
                 host: str = "127.0.0.1") -> None:
        metrics_ref, health_ref = metrics, health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's API
                if self.path.startswith("/metrics"):
                    body, ctype, code = metrics_ref.exposition(), CONTENT_TYPE_LATEST, 200
                elif self.path.startswith("/health"):
                    try:
                        state = health_ref()
                    except Exception as exc:  # noqa: BLE001 - an answer that cannot be computed is a red one
                        state = {"healthy": False, "error": f"health check failed: {type(exc).__name__}: {exc}"}
                    body = json.dumps(state, default=str).encode()
                    ctype, code = "application/json", 200 if state.get("healthy") else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _QuietServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
