"""What the container tests share: which engine and images to use, and the broker and Redis containers.

Two ways to run them:

- **the local engine** (``deploy/local-engine.sh start``, then ``eval "$(deploy/local-engine.sh env)"``): a private
  dockerd with no bridge network and images built from Debian packages. ``DRIFTLINE_DOCKER_NETWORK=host``: every
  container shares the host's network and listens on a free 127.0.0.1 port the test picks; the broker is the tansu
  image (``DRIFTLINE_BROKER_IMAGE``), Redis the Debian one (``DRIFTLINE_REDIS_IMAGE``).
- **a usual engine with a registry**: the public images, published ports (``KafkaContainer``, ``RedisContainer``).

The tests run when selected (``-m docker`` or ``DRIFTLINE_DOCKER_TESTS=1``) and skip with the reason otherwise or
when no engine answers, except under ``DRIFTLINE_DOCKER_REQUIRED=1`` (set by ``.ci/run`` once its engine is up):
there a missing engine fails the test, so a CI run cannot pass with the container tests silently skipped. Where
``.ci/run`` could not start the engine it says why in ``DRIFTLINE_DOCKER_UNAVAILABLE``, and the skip reason carries it.

Example:
    >>> cfg = ContainerEnv.from_env({"DRIFTLINE_DOCKER_NETWORK": "host", "DRIFTLINE_BROKER_IMAGE": "b:1"})
    >>> cfg.host_network, cfg.broker_image, cfg.redis_image
    (True, 'b:1', 'redis:7-alpine')
    >>> ContainerEnv.from_env({}).host_network
    False
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.local.procs import free_port, port_open
from streams.local.stack import broker_reachable

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ContainerEnv:
    """The engine and images the container tests use, read once from the environment."""

    selected: bool
    required: bool
    host_network: bool
    redis_image: str
    broker_image: str | None  # a tansu image (host network); None: the public Kafka image via KafkaContainer
    kafka_image: str
    python_base_image: str | None  # the Dockerfile's BASE; None: its default (python:3.11-slim)
    prometheus_image: str | None
    alertmanager_image: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ContainerEnv:
        return cls(
            selected=env.get("DRIFTLINE_DOCKER_TESTS") == "1",
            required=env.get("DRIFTLINE_DOCKER_REQUIRED") == "1",
            host_network=env.get("DRIFTLINE_DOCKER_NETWORK") == "host",
            redis_image=env.get("DRIFTLINE_REDIS_IMAGE", "redis:7-alpine"),
            broker_image=env.get("DRIFTLINE_BROKER_IMAGE") or None,
            kafka_image=env.get("DRIFTLINE_KAFKA_IMAGE", "confluentinc/cp-kafka:7.6.0"),  # Kafka 3.6, KRaft
            python_base_image=env.get("DRIFTLINE_PYTHON_BASE_IMAGE") or None,
            prometheus_image=env.get("DRIFTLINE_PROMETHEUS_IMAGE") or None,
            alertmanager_image=env.get("DRIFTLINE_ALERTMANAGER_IMAGE") or None,
        )


ENV = ContainerEnv.from_env(os.environ)


def engine_problem() -> str | None:
    """Why no Docker engine answers (``DOCKER_HOST`` or the default socket), or None."""
    try:
        import docker  # type: ignore[import-untyped]
    except ImportError:
        return "the `docker` package is not installed (the project's `test` extra)"
    try:
        docker.from_env().ping()
    except Exception as exc:  # noqa: BLE001 - any failure means no engine
        where = os.environ.get("DOCKER_HOST", "the default socket")
        return (f"no Docker engine answers at {where} ({type(exc).__name__}: {exc}); "
                "start one with deploy/local-engine.sh")
    return None


def require_engine(config: pytest.Config, env: ContainerEnv = ENV) -> None:
    """Skip (or, under ``DRIFTLINE_DOCKER_REQUIRED=1``, fail) unless selected and an engine answers."""
    if not (env.selected or "docker" in (config.getoption("markexpr") or "")):
        pytest.skip("container tests run with `-m docker` or DRIFTLINE_DOCKER_TESTS=1")
    reason = engine_problem()
    if reason is None:
        return
    why_not = os.environ.get("DRIFTLINE_DOCKER_UNAVAILABLE")  # .ci/run: why deploy/local-engine.sh could not start
    if why_not:
        reason = f"{reason}; deploy/local-engine.sh: {why_not}"
    if env.required:
        pytest.fail(f"DRIFTLINE_DOCKER_REQUIRED=1 but {reason}")
    pytest.skip(f"testcontainers needs a Docker engine: {reason}")


def docker_client() -> Any:
    import docker

    return docker.from_env()


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.25) -> None:
    """Poll ``check`` until it is true; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def _host_redis_container(image: str) -> Any:
    """testcontainers' RedisContainer on the host network, on a free port."""
    from testcontainers.community.redis import RedisContainer

    class HostRedis(RedisContainer):  # type: ignore[misc]
        def get_container_host_ip(self) -> str:
            return "127.0.0.1"

        def get_exposed_port(self, port: int) -> int:
            return port  # host network: the container's port is the host's

    port = free_port()
    redis_c = HostRedis(image=image, port=port)
    redis_c.ports.clear()  # nothing to publish on the host network
    return (redis_c.with_kwargs(network_mode="host")
            .with_command(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]))


@contextmanager
def redis_container(env: ContainerEnv = ENV) -> Iterator[str]:
    """A Redis container; yields its URL (reachable from the host)."""
    if env.host_network:
        redis_c = _host_redis_container(env.redis_image)
    else:
        from testcontainers.community.redis import RedisContainer

        redis_c = RedisContainer(image=env.redis_image)
    with redis_c:
        yield f"redis://{redis_c.get_container_host_ip()}:{redis_c.get_exposed_port(redis_c.port)}/0"


@contextmanager
def broker_container(env: ContainerEnv = ENV) -> Iterator[str]:
    """A Kafka-protocol broker container; yields its bootstrap servers (reachable from the host)."""
    if env.broker_image:
        from testcontainers.core.container import DockerContainer

        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        broker = (DockerContainer(env.broker_image).with_kwargs(network_mode="host")
                  .with_command(["broker", "--listener-url", url, "--advertised-listener-url", url,
                                 "--storage-engine", "memory://tansu/"]))
        with broker:
            bootstrap = f"127.0.0.1:{port}"
            wait_until(lambda: broker_reachable(bootstrap, 2.0), 30, f"tansu container on {bootstrap}")
            yield bootstrap
        return
    from testcontainers.community.kafka import KafkaContainer

    # the demo uses 2 s session timeouts (fast group joins): let this broker accept them
    kafka = (KafkaContainer(env.kafka_image).with_kraft()
             .with_env("KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS", "1000")
             .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false"))
    with kafka:
        yield kafka.get_bootstrap_server()


def build_project_image(tag: str = "driftline:local", env: ContainerEnv = ENV) -> str:
    """``docker build`` of this checkout (the repository's Dockerfile); returns the tag.

    On the local engine the base is ``DRIFTLINE_PYTHON_BASE_IMAGE`` and the build uses the host network (pip needs
    PyPI); the dependency layer is cached by the engine until pyproject.toml changes.
    """
    buildargs = {"BASE": env.python_base_image} if env.python_base_image else {}
    client = docker_client()
    try:
        client.images.build(path=str(REPO), tag=tag, buildargs=buildargs, rm=True, forcerm=True,
                            network_mode="host" if env.host_network else None)
    except Exception as exc:  # BuildError carries the log: show its tail
        log = "".join(str(chunk.get("stream", chunk.get("error", ""))) for chunk in getattr(exc, "build_log", []))
        raise AssertionError(f"docker build of {REPO} failed: {exc}\n{log[-3000:]}") from exc
    return tag


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when GET ``url`` answers 200."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


__all__ = ["REPO", "ContainerEnv", "ENV", "engine_problem", "require_engine", "docker_client", "wait_until",
           "redis_container", "broker_container", "build_project_image", "http_ok", "port_open", "free_port"]
