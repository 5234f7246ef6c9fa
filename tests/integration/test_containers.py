"""The end-to-end loop of test_end_to_end.py against a broker and a Redis in containers, started by testcontainers.

drift → alert → rollback → ack, with the workers on the host and the broker and Redis in containers: on the local
engine of ``deploy/local-engine.sh`` the tansu broker image and the Debian Redis image (host network); on an engine
with a registry, Apache Kafka (KRaft) and ``redis:7-alpine``. Selected with ``-m docker`` or
``DRIFTLINE_DOCKER_TESTS=1``; skipped with the reason when not selected or when no engine answers (a failure instead
under ``DRIFTLINE_DOCKER_REQUIRED=1``, as in CI). Every container it starts, it stops.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local.demo import DemoConfig, run_demo
from streams.settings import KafkaSettings, Settings, TopicSettings

from .containers import broker_container, redis_container, require_engine
from .rollback_chain import assert_rollback_chain

pytestmark = [pytest.mark.docker, pytest.mark.integration]


@pytest.fixture(scope="module")
def containers(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(bootstrap servers, redis url) of freshly started broker and Redis containers."""
    require_engine(request.config)
    with broker_container() as bootstrap, redis_container() as redis_url:
        yield bootstrap, redis_url


def test_drift_alert_rollback_ack_on_broker_and_redis_containers(containers: tuple[str, str],
                                                                 tmp_path: Path) -> None:
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
