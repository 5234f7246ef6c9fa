"""Fixtures for integration tests: one real embedded stack (tansu broker + Redis) per test session.

Redis: the session's ``redis_url`` (``tests/conftest.py``: ``REDIS_URL`` / 127.0.0.1:6379 when it answers, else a
redis-server of the session's own), so the stack and the Redis-only tests share one Redis.
Set ``DRIFTLINE_TEST_BOOTSTRAP`` to run against an already running Kafka instead of starting tansu.
Every test gets its own topics or group ids via the ``unique`` factory, so tests never see each other's data.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local.stack import EmbeddedStack, StackInfo
from streams.settings import KafkaSettings, Settings, TopicSettings


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[StackInfo]:
    run_dir = tmp_path_factory.mktemp("stack")
    with EmbeddedStack(Path(run_dir), redis_url=redis_url,
                       external_bootstrap=os.environ.get("DRIFTLINE_TEST_BOOTSTRAP")) as info:
        yield info


@pytest.fixture()
def settings(stack: StackInfo, tmp_path: Path) -> Settings:
    """Settings pointing at the session's stack, with fast group timing (tansu: first message after ~1.2 s)."""
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=stack.bootstrap_servers, session_timeout_ms=2000,
                            heartbeat_interval_ms=200),
        topics=TopicSettings(),
        redis_url=stack.redis_url,
        registry_dir=str(tmp_path / "registry"),
        run_dir=stack.run_dir,
        control_key=secrets.token_hex(32),
    )


@pytest.fixture()
def unique() -> str:
    return uuid.uuid4().hex[:8]
