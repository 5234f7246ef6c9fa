"""One typed settings object, built at the edge from environment variables and an optional TOML file.

Precedence: explicit overrides > environment > TOML file > defaults. Nothing deeper in the code reads
``os.environ``: the object is passed down.

Example:
    >>> s = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "k1:9092", "DRIFTLINE_SOURCE_PARTITIONS": "6"})
    >>> s.kafka.bootstrap_servers, s.topics.source_partitions
    ('k1:9092', 6)
    >>> s.kafka.client_config()["bootstrap.servers"]
    'k1:9092'
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from streams.control.keyring import KEY_ID_RE
from streams.exceptions import ConfigError
from streams.monitor_settings import MonitorSettings
from streams.runtime.state_cache import DEFAULT_MAX_ENTITIES

# Environment variables passed through to librdkafka unchanged (security settings of a real cluster).
_KAFKA_PASSTHROUGH = {
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
    "KAFKA_SSL_KEY_PASSWORD": "ssl.key.password",
}
SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password"})


@dataclass(frozen=True)
class KafkaSettings:
    """Broker connection and consumer-group timing.

    ``session_timeout_ms`` decides how fast a new group gets its first message: the embedded tansu broker
    delivers after about session.timeout/2 (23 s at librdkafka's 45 s default, 1.2 s at 2000 ms); a real
    Kafka refuses values below its ``group.min.session.timeout.ms`` (6000 by default), so it is a setting.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    security: Mapping[str, str] = field(default_factory=dict)
    session_timeout_ms: int = 6000
    heartbeat_interval_ms: int = 1000
    auto_offset_reset: Literal["earliest", "latest", "error"] = "earliest"
    processing_guarantee: Literal["at_least_once"] = "at_least_once"
    create_topics: bool = True
    prefetch_kbytes: int = 65536  # librdkafka's queued.max.messages.kbytes: the bound on prefetched records
    # how long the broker may hold a fetch waiting for data; real Kafka answers as soon as records arrive, tansu
    # late, in steps that grow with this wait (README, "The embedded broker"); 5 ms or less stalls fetches there
    fetch_wait_max_ms: int = 20
    # the producers' message.max.bytes (librdkafka's default): a dead letter of a larger record is cut to fit it
    message_max_bytes: int = 1_000_000

    def client_config(self) -> dict[str, Any]:
        """Settings common to every client (bootstrap + security)."""
        return {"bootstrap.servers": self.bootstrap_servers, **dict(self.security)}

    def redacted(self) -> dict[str, Any]:
        """``client_config()`` safe to log: secrets replaced by ``***``."""
        return {k: ("***" if k in SECRET_KEYS else v) for k, v in self.client_config().items()}


@dataclass(frozen=True)
class TopicSettings:
    """Topic names and partition counts."""

    source_partitions: int = 3
    predictions: str = "predictions"
    predictions_partitions: int = 3
    labels: str = "labels"
    alerts: str = "alerts"
    control: str = "control"
    replication_factor: int = 1

    def dlq(self, source_topic: str) -> str:
        return f"{source_topic}.dlq"

    def stale_features(self, source_topic: str) -> str:
        """Where stale-feature records of silent entities go."""
        return f"features.{source_topic}"


@dataclass(frozen=True)
class PipelineSettings:
    """Micro-batching and group ids of the stages."""

    batch_max_rows: int = 500
    batch_max_ms: int = 50  # the longest an idle loop waits for a first record (then it ticks: control, timers)
    batch_linger_ms: int = 0  # after a batch's first record, how long to wait for more (0: take what is queued)
    features_group: str = "driftline-features"
    monitor_group: str = "driftline-monitor"
    max_in_flight_batches: int = 4
    silence_idle_ms: int = 300_000  # event time without a reading before an entity is reported silent
    silence_idle_wall_s: float = 60.0  # wall time without any record before a whole partition counts as silent
    # entity states the worker keeps in memory across batches, all partitions together (least recently used
    # out): 100,000 x ~8.4 KB per 31-bucket state = ~0.8 GiB at most; 0 turns the cache off
    cache_max_entities: int = DEFAULT_MAX_ENTITIES
    # how far an event's time may be ahead of the worker's clock; later ones go to the DLQ as `future` and never
    # move the watermark (0: no check, for simulations whose event time runs faster than the clock)
    max_future_skew_ms: int = 30_000
    # records waiting and no commit for this long: /health goes red and the watchdog re-creates the consumer
    stall_after_s: float = 60.0
    # the fused pipeline saves state + latest vectors + offset (and commits) once per this interval instead of after
    # every batch (0); serving reads of the store lag by up to it, a crash replays up to it (streams.runtime.loop)
    checkpoint_interval_ms: int = 1000


@dataclass(frozen=True)
class AlertSettings:
    """The alert delivery stage (``driftline run alerts``): its consumer group, Alertmanager, retry policy.

    PagerDuty and the webhook keep their top-level settings (``pagerduty_routing_key``, ``pagerduty_url``,
    ``webhook_url``). Retries never give up: ``retry_max_s`` caps the delay between two attempts of one alert,
    ``retry_after_max_s`` caps how long a receiver's ``Retry-After`` is honoured.
    """

    group: str = "driftline-alerts"
    alertmanager_url: str = ""  # Alertmanager's base URL, e.g. http://alertmanager:9093; empty = no Alertmanager
    alertmanager_resend_s: float = 60.0  # open alerts are re-posted this often; they expire after 5x this
    generator_url: str = "http://localhost:3000/d/driftline/driftline"  # Alertmanager's generatorURL
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    retry_after_max_s: float = 900.0
    throttle_s: float = 60.0  # how long a 429 without Retry-After holds a receiver
    max_pending: int = 10_000  # records per partition in memory before the partition is paused
    http_timeout_s: float = 10.0
    stuck_after_s: float = 300.0  # /health turns red when a sink with waiting alerts had no success this long
    log_sink: bool = True  # also log every alert


@dataclass(frozen=True)
class HistorySettings:
    """The monitor's bounded history for ``driftline report`` (``streams/runtime/history_store.py``)."""

    interval_s: float = 10.0  # at most one snapshot per (model, version) this often, only while it gets traffic
    max_snapshots: int = 8640  # per model (a day at 10 s for one version); Redis trims beyond (approximately)
    max_events: int = 10_000  # alerts, commands, acks per model
    enabled: bool = True
    prefix: str = "driftline:history"  # Redis key prefix (a demo run uses its own)
    ttl_s: int = 0  # expire a model's history this long after its last write (0: keep, the caps bound it)


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    topics: TopicSettings = field(default_factory=TopicSettings)
    pipeline: PipelineSettings = field(default_factory=PipelineSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = False  # REDIS_CLUSTER=1: a plain redis:// URL names a Redis Cluster node (streams.redis_client)
    registry_dir: str = ".driftline/registry"
    run_dir: str = ".driftline/run"
    control_key: str = field(default="", repr=False)
    control_max_age_s: float = 300.0
    # key rotation (README, "Rotating the control key"): the current key's id (derived from the key when empty),
    # and a previous key (with its id) that workers still accept while a rotation is under way
    control_key_id: str = ""
    control_previous_key: str = field(default="", repr=False)
    control_previous_key_id: str = ""
    metrics_port: int = 0
    log_json: bool = False
    pagerduty_routing_key: str = field(default="", repr=False)
    pagerduty_url: str = "https://events.pagerduty.com/v2/enqueue"
    webhook_url: str = ""
    # feature views beyond the built-in ones: view files (.toml/.yaml/.json) or module:ATTRIBUTE references,
    # from the config file's `views = [...]` (relative paths: from the config file's folder) and/or
    # DRIFTLINE_VIEWS (comma-separated)
    views: tuple[str, ...] = ()
    alerts: AlertSettings = field(default_factory=AlertSettings)
    history: HistorySettings = field(default_factory=HistorySettings)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str], toml_path: str | Path | None = None) -> Settings:
        """Build settings from ``env`` (e.g. ``os.environ``) over an optional TOML file."""
        data: dict[str, Any] = {}
        path = toml_path or env.get("DRIFTLINE_CONFIG")
        if path:
            try:
                data = tomllib.loads(Path(path).read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        kafka_t = data.get("kafka", {})
        security = dict(kafka_t.get("security", {}))
        security.update({cfg: env[var] for var, cfg in _KAFKA_PASSTHROUGH.items() if env.get(var)})
        kafka = KafkaSettings(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS", kafka_t.get("bootstrap_servers", "127.0.0.1:9092")),
            security=security,
            session_timeout_ms=_int(env, "DRIFTLINE_SESSION_TIMEOUT_MS", kafka_t.get("session_timeout_ms", 6000)),
            heartbeat_interval_ms=_int(env, "DRIFTLINE_HEARTBEAT_INTERVAL_MS", kafka_t.get("heartbeat_interval_ms", 1000)),
            auto_offset_reset=env.get("DRIFTLINE_AUTO_OFFSET_RESET", kafka_t.get("auto_offset_reset", "earliest")),  # type: ignore[arg-type]
            create_topics=_bool(env.get("DRIFTLINE_CREATE_TOPICS", str(kafka_t.get("create_topics", True)))),
            prefetch_kbytes=_int(env, "DRIFTLINE_PREFETCH_KBYTES", kafka_t.get("prefetch_kbytes", 65536)),
            fetch_wait_max_ms=_int(env, "DRIFTLINE_FETCH_WAIT_MAX_MS", kafka_t.get("fetch_wait_max_ms", 20)),
            message_max_bytes=_int(env, "DRIFTLINE_MESSAGE_MAX_BYTES", kafka_t.get("message_max_bytes", 1_000_000)),
        )
        topics_t = data.get("topics", {})
        topics = TopicSettings(
            predictions=env.get("DRIFTLINE_TOPIC_PREDICTIONS", topics_t.get("predictions", "predictions")),
            labels=env.get("DRIFTLINE_TOPIC_LABELS", topics_t.get("labels", "labels")),
            alerts=env.get("DRIFTLINE_TOPIC_ALERTS", topics_t.get("alerts", "alerts")),
            control=env.get("DRIFTLINE_TOPIC_CONTROL", topics_t.get("control", "control")),
            source_partitions=_int(env, "DRIFTLINE_SOURCE_PARTITIONS", topics_t.get("source_partitions", 3)),
            predictions_partitions=_int(env, "DRIFTLINE_PREDICTIONS_PARTITIONS", topics_t.get("predictions_partitions", 3)),
            replication_factor=_int(env, "DRIFTLINE_REPLICATION_FACTOR", topics_t.get("replication_factor", 1)),
        )
        pipe_t = data.get("pipeline", {})
        pipeline = PipelineSettings(
            batch_max_rows=_int(env, "DRIFTLINE_BATCH_MAX_ROWS", pipe_t.get("batch_max_rows", 500)),
            batch_max_ms=_int(env, "DRIFTLINE_BATCH_MAX_MS", pipe_t.get("batch_max_ms", 50)),
            batch_linger_ms=_int(env, "DRIFTLINE_BATCH_LINGER_MS", pipe_t.get("batch_linger_ms", 0)),
            features_group=env.get("DRIFTLINE_FEATURES_GROUP", pipe_t.get("features_group", "driftline-features")),
            monitor_group=env.get("DRIFTLINE_MONITOR_GROUP", pipe_t.get("monitor_group", "driftline-monitor")),
            cache_max_entities=_int(env, "DRIFTLINE_CACHE_MAX_ENTITIES",
                                    pipe_t.get("cache_max_entities", DEFAULT_MAX_ENTITIES)),
            max_future_skew_ms=_int(env, "DRIFTLINE_MAX_FUTURE_SKEW_MS", pipe_t.get("max_future_skew_ms", 30_000)),
            stall_after_s=_float(env, "DRIFTLINE_STALL_AFTER_S", pipe_t.get("stall_after_s", 60.0)),
            checkpoint_interval_ms=_int(env, "DRIFTLINE_CHECKPOINT_INTERVAL_MS",
                                        pipe_t.get("checkpoint_interval_ms", PipelineSettings.checkpoint_interval_ms)),
        )
        if pipeline.batch_max_rows < 1 or pipeline.batch_max_ms < 0 or pipeline.batch_linger_ms < 0:
            raise ConfigError("DRIFTLINE_BATCH_MAX_ROWS must be >= 1, DRIFTLINE_BATCH_MAX_MS and "
                              "DRIFTLINE_BATCH_LINGER_MS >= 0")
        if not 0 <= pipeline.checkpoint_interval_ms <= 600_000:
            raise ConfigError("DRIFTLINE_CHECKPOINT_INTERVAL_MS must be between 0 (every batch) and 600000")
        if pipeline.cache_max_entities < 0:
            raise ConfigError("DRIFTLINE_CACHE_MAX_ENTITIES must be >= 0 (0 turns the state cache off)")
        if pipeline.stall_after_s <= 0:
            raise ConfigError("DRIFTLINE_STALL_AFTER_S must be > 0")
        if pipeline.max_future_skew_ms < 0:
            raise ConfigError("DRIFTLINE_MAX_FUTURE_SKEW_MS must be >= 0 (0 turns the check off)")
        if not 1000 <= kafka.message_max_bytes <= 1_000_000_000:  # librdkafka's range
            raise ConfigError("DRIFTLINE_MESSAGE_MAX_BYTES must be between 1000 and 1000000000")
        if not 0 <= kafka.fetch_wait_max_ms <= 300_000:  # librdkafka's range
            raise ConfigError("DRIFTLINE_FETCH_WAIT_MAX_MS must be between 0 and 300000")
        if kafka.auto_offset_reset not in ("earliest", "latest", "error"):
            raise ConfigError("DRIFTLINE_AUTO_OFFSET_RESET must be earliest, latest or error")
        key_ids = {"DRIFTLINE_CONTROL_KEY_ID": env.get("DRIFTLINE_CONTROL_KEY_ID", str(data.get("control_key_id", ""))),
                   "DRIFTLINE_CONTROL_PREVIOUS_KEY_ID": env.get("DRIFTLINE_CONTROL_PREVIOUS_KEY_ID",
                                                                str(data.get("control_previous_key_id", "")))}
        for name, value in key_ids.items():
            if value and not KEY_ID_RE.match(value):
                raise ConfigError(f"{name} must be 1-64 letters, digits, '.', '_', ':' or '-' (starting with a letter "
                                  f"or digit), got {value!r}")
        hist_t = data.get("history", {})
        history = HistorySettings(
            interval_s=_float(env, "DRIFTLINE_HISTORY_INTERVAL_S", hist_t.get("interval_s", 10.0)),
            max_snapshots=_int(env, "DRIFTLINE_HISTORY_MAX_SNAPSHOTS", hist_t.get("max_snapshots", 8640)),
            max_events=_int(env, "DRIFTLINE_HISTORY_MAX_EVENTS", hist_t.get("max_events", 10_000)),
            enabled=_bool(env.get("DRIFTLINE_HISTORY", str(hist_t.get("enabled", True)))),
            prefix=env.get("DRIFTLINE_HISTORY_PREFIX", hist_t.get("prefix", "driftline:history")),
            ttl_s=_int(env, "DRIFTLINE_HISTORY_TTL_S", hist_t.get("ttl_s", 0)),
        )
        if history.interval_s <= 0 or history.max_snapshots < 1 or history.max_events < 1 or history.ttl_s < 0:
            raise ConfigError("DRIFTLINE_HISTORY_INTERVAL_S must be > 0, DRIFTLINE_HISTORY_MAX_SNAPSHOTS and "
                              "DRIFTLINE_HISTORY_MAX_EVENTS >= 1")
        return cls(
            kafka=kafka, topics=topics, pipeline=pipeline, history=history,
            monitor=MonitorSettings.from_env(env, data.get("monitor", {})),
            redis_url=env.get("REDIS_URL", data.get("redis_url", "redis://127.0.0.1:6379/0")),
            redis_cluster=_bool(env.get("REDIS_CLUSTER", str(data.get("redis_cluster", False)))),
            registry_dir=env.get("DRIFTLINE_REGISTRY", data.get("registry_dir", ".driftline/registry")),
            run_dir=env.get("DRIFTLINE_RUN_DIR", data.get("run_dir", ".driftline/run")),
            control_key=env.get("DRIFTLINE_CONTROL_KEY", ""),
            control_max_age_s=_float(env, "DRIFTLINE_CONTROL_MAX_AGE_S", data.get("control_max_age_s", 300.0)),
            control_key_id=key_ids["DRIFTLINE_CONTROL_KEY_ID"],
            control_previous_key=env.get("DRIFTLINE_CONTROL_PREVIOUS_KEY", ""),
            control_previous_key_id=key_ids["DRIFTLINE_CONTROL_PREVIOUS_KEY_ID"],
            metrics_port=_int(env, "DRIFTLINE_METRICS_PORT", data.get("metrics_port", 0)),
            log_json=_bool(env.get("DRIFTLINE_LOG_JSON", str(data.get("log_json", False)))),
            pagerduty_routing_key=env.get("DRIFTLINE_PAGERDUTY_ROUTING_KEY", ""),
            pagerduty_url=env.get("DRIFTLINE_PAGERDUTY_URL", data.get("pagerduty_url",
                                                                        "https://events.pagerduty.com/v2/enqueue")),
            webhook_url=env.get("DRIFTLINE_WEBHOOK_URL", data.get("webhook_url", "")),
            views=_views(data.get("views", []), Path(path).parent if path else None, env.get("DRIFTLINE_VIEWS", "")),
            alerts=_alert_settings(env, data.get("alerts", {})),
        )


def _views(from_file: Any, base: Path | None, from_env: str) -> tuple[str, ...]:
    """View references from the config file (paths relative to its folder) and ``DRIFTLINE_VIEWS``.

    >>> _views(["views/pay.toml", "mypkg.views:PAY"], Path("/etc/dl"), "x.yaml, y.toml")
    ('/etc/dl/views/pay.toml', 'mypkg.views:PAY', 'x.yaml', 'y.toml')
    """
    if not isinstance(from_file, list) or not all(isinstance(v, str) for v in from_file):
        raise ConfigError(f"config 'views' must be a list of view files or module:ATTRIBUTE strings, got {from_file!r}")
    refs = []
    for ref in from_file:
        is_path = "/" in ref or Path(ref).suffix.lower() in (".toml", ".yaml", ".yml", ".json")
        refs.append(str(base / ref) if is_path and base is not None and not Path(ref).is_absolute() else ref)
    refs += [r.strip() for r in from_env.split(",") if r.strip()]
    return tuple(refs)


def _int(env: Mapping[str, str], name: str, default: Any) -> int:
    raw = env.get(name, default)
    try:
        return int(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(env: Mapping[str, str], name: str, default: Any) -> float:
    raw = env.get(name, default)
    try:
        return float(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _bool(raw: str) -> bool:
    return raw.strip().lower() in ("1", "true", "yes", "on")


def _alert_settings(env: Mapping[str, str], table: Mapping[str, Any]) -> AlertSettings:
    """``AlertSettings`` from ``DRIFTLINE_ALERTS_*`` / ``DRIFTLINE_ALERTMANAGER_*`` over the TOML ``[alerts]`` table.

    >>> a = _alert_settings({"DRIFTLINE_ALERTMANAGER_URL": "http://am:9093", "DRIFTLINE_ALERTS_RETRY_MAX_S": "60"}, {})
    >>> a.alertmanager_url, a.retry_max_s, a.group
    ('http://am:9093', 60.0, 'driftline-alerts')
    """
    d = AlertSettings()
    a = AlertSettings(
        group=env.get("DRIFTLINE_ALERTS_GROUP", table.get("group", d.group)),
        alertmanager_url=env.get("DRIFTLINE_ALERTMANAGER_URL", table.get("alertmanager_url", d.alertmanager_url)),
        alertmanager_resend_s=_float(env, "DRIFTLINE_ALERTMANAGER_RESEND_S",
                                     table.get("alertmanager_resend_s", d.alertmanager_resend_s)),
        generator_url=env.get("DRIFTLINE_ALERTS_GENERATOR_URL", table.get("generator_url", d.generator_url)),
        retry_base_s=_float(env, "DRIFTLINE_ALERTS_RETRY_BASE_S", table.get("retry_base_s", d.retry_base_s)),
        retry_max_s=_float(env, "DRIFTLINE_ALERTS_RETRY_MAX_S", table.get("retry_max_s", d.retry_max_s)),
        retry_after_max_s=_float(env, "DRIFTLINE_ALERTS_RETRY_AFTER_MAX_S",
                                 table.get("retry_after_max_s", d.retry_after_max_s)),
        throttle_s=_float(env, "DRIFTLINE_ALERTS_THROTTLE_S", table.get("throttle_s", d.throttle_s)),
        max_pending=_int(env, "DRIFTLINE_ALERTS_MAX_PENDING", table.get("max_pending", d.max_pending)),
        http_timeout_s=_float(env, "DRIFTLINE_ALERTS_HTTP_TIMEOUT_S", table.get("http_timeout_s", d.http_timeout_s)),
        stuck_after_s=_float(env, "DRIFTLINE_ALERTS_STUCK_AFTER_S", table.get("stuck_after_s", d.stuck_after_s)),
        log_sink=_bool(env.get("DRIFTLINE_ALERTS_LOG", str(table.get("log_sink", d.log_sink)))),
    )
    if not 0 < a.retry_base_s <= a.retry_max_s or a.retry_after_max_s < 0 or a.throttle_s < 0:
        raise ConfigError("need 0 < DRIFTLINE_ALERTS_RETRY_BASE_S <= DRIFTLINE_ALERTS_RETRY_MAX_S, and "
                          "DRIFTLINE_ALERTS_RETRY_AFTER_MAX_S, DRIFTLINE_ALERTS_THROTTLE_S >= 0")
    if a.max_pending < 1 or a.http_timeout_s <= 0 or a.alertmanager_resend_s <= 0 or a.stuck_after_s <= 0:
        raise ConfigError("DRIFTLINE_ALERTS_MAX_PENDING must be >= 1; DRIFTLINE_ALERTS_HTTP_TIMEOUT_S, "
                          "DRIFTLINE_ALERTMANAGER_RESEND_S and DRIFTLINE_ALERTS_STUCK_AFTER_S > 0")
    return a
