"""The end-to-end loop of test_end_to_end.py against real Apache Kafka (KRaft) and Redis containers.

Selected with ``-m docker`` or ``DRIFTLINE_DOCKER_TESTS=1``; skipped with the reason when not selected or when
no Docker engine answers. Uses testcontainers (the project's ``test`` extra). Every container it starts, it stops.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local.demo import DemoConfig, run_demo
from streams.settings import KafkaSettings, Settings, TopicSettings

from .rollback_chain import assert_rollback_chain

pytestmark = [pytest.mark.docker, pytest.mark.integration]
KAFKA_IMAGE = os.environ.get("DRIFTLINE_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0")  # Apache Kafka 3.6, KRaft
REDIS_IMAGE = os.environ.get("DRIFTLINE_REDIS_IMAGE", "redis:7-alpine")


def _selected(config: pytest.Config) -> bool:
    return os.environ.get("DRIFTLINE_DOCKER_TESTS") == "1" or "docker" in (config.getoption("markexpr") or "")


def _no_engine() -> str | None:
    """Why no Docker engine answers, or None."""
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError:
        return "the `docker` package is not installed"
    try:
        docker.from_env().ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no engine
        return f"no Docker engine answers ({type(exc).__name__}: {exc})"
    return None


@pytest.fixture(scope="module")
def containers(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(bootstrap servers, redis url) of freshly started Kafka and Redis containers."""
    if not _selected(request.config):
        pytest.skip("container tests run with `-m docker` or DRIFTLINE_DOCKER_TESTS=1")
    reason = _no_engine()
    if reason is not None:
        pytest.skip(f"testcontainers needs a Docker engine: {reason}")
    try:
        from testcontainers.community.kafka import KafkaContainer
        from testcontainers.community.redis import RedisContainer
    except ImportError:
        from testcontainers.kafka import KafkaContainer  # type: ignore[no-redef]
        from testcontainers.redis import RedisContainer  # type: ignore[no-redef]

    # the demo uses 2 s session timeouts (fast group joins): let this broker accept them
    kafka = (KafkaContainer(KAFKA_IMAGE).with_kraft()
             .with_env("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", "1000")
             .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false"))
    redis_c = RedisContainer(REDIS_IMAGE)
    with kafka, redis_c:
        redis_url = f"redis://{redis_c.get_container_host_ip()}:{redis_c.get_exposed_port(6379)}/0"
        yield kafka.get_bootstrap_server(), redis_url


def test_drift_alert_rollback_ack_on_real_kafka_and_redis(containers: tuple[str, str], tmp_path: Path) -> None:
    bootstrap, redis_url = containers
    settings = Settings(kafka=KafkaSettings(bootstrap_servers=bootstrap, session_timeout_ms=2000,
                                            heartbeat_interval_ms=200),
                        topics=TopicSettings(), redis_url=redis_url, registry_dir=str(tmp_path / "registry"),
                        run_dir=str(tmp_path / "run"), control_key=secrets.token_hex(32))
    started_ms = int(time.time() * 1000)
    summary = run_demo(settings, DemoConfig(entities=300, rate=400.0, duration_s=30.0, drift_at_s=10.0,
                                            train_duration_s=60.0, settle_timeout_s=40.0),
                       echo=lambda _l: None, external_bootstrap=bootstrap)
    assert summary["worker_errors"] == []
    assert summary["alerts_before_onset"] == 0, summary
    assert summary["ok"], summary
    assert_rollback_chain(settings, summary, started_ms, idle_s=3.0)
