"""The project's image, built from this checkout and run: ``driftline run pipeline`` in a container, as non-root,
against broker and Redis containers; ``/health`` and the predictions are checked from the host.

On the local engine (``deploy/local-engine.sh``) the Dockerfile's BASE is the Debian-built Python 3.11 image and every
container shares the host network; elsewhere BASE is the default ``python:3.11-slim``. Selection and skips as in
test_containers.py. Every container it starts, it stops.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from .containers import (
    ENV,
    broker_container,
    build_project_image,
    docker_client,
    free_port,
    http_ok,
    redis_container,
    require_engine,
    wait_until,
)

pytestmark = [pytest.mark.docker, pytest.mark.integration]
UID = 10001  # the Dockerfile's `driftline` user


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    """(image tag, bootstrap servers, redis url): the built image, and fresh broker and Redis containers."""
    require_engine(request.config)
    if not ENV.host_network:
        pytest.skip("the image test reaches the broker from inside a container: it runs on the local engine "
                    "(DRIFTLINE_DOCKER_NETWORK=host, deploy/local-engine.sh)")
    tag = build_project_image()
    with broker_container() as bootstrap, redis_container() as redis_url:
        yield tag, bootstrap, redis_url


def _run(client: Any, tag: str, args: list[str], env: dict[str, str], data: Path, **kw: Any) -> Any:
    return client.containers.run(tag, args, environment=env, network_mode="host",
                                 volumes={str(data): {"bind": "/data", "mode": "rw"}}, **kw)


def test_pipeline_image_serves_health_and_predictions_as_non_root(stack: tuple[str, str, str],
                                                                  tmp_path: Path) -> None:
    tag, bootstrap, redis_url = stack
    client = docker_client()
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)  # the container's uid 10001 writes the registry and run dir here
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "REDIS_URL": redis_url,
           "DRIFTLINE_CONTROL_KEY": secrets.token_hex(32), "DRIFTLINE_REGISTRY": "/data/registry",
           "DRIFTLINE_RUN_DIR": "/data/run"}
    _run(client, tag, ["topics"], env, data, remove=True)
    trained = _run(client, tag, ["train", "--promote"], env, data, remove=True)
    assert b'"stage": "production"' in trained, trained

    port = free_port()
    pipeline = _run(client, tag, ["run", "pipeline", "--metrics-port", str(port), "--metrics-host", "127.0.0.1"],
                    env, data, detach=True)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), 90, "the pipeline container's /health")
        pipeline.reload()
        assert pipeline.attrs["Config"]["User"] == f"{UID}:{UID}"
        assert pipeline.exec_run(["id", "-u"]).output.strip() == str(UID).encode()

        _run(client, tag, ["produce", "--entities", "20", "--rate", "200", "--duration", "4"], env, data,
             remove=True)
        predictions = _consume(bootstrap, "predictions", want=50, timeout_s=60)
        assert {p["model"] for p in predictions} == {"vitals-risk"}
        assert all(p["model_version"] == 1 and 0.0 <= p["score"] <= 1.0 for p in predictions), predictions[:3]
        assert http_ok(f"http://127.0.0.1:{port}/metrics")
    finally:
        logs = pipeline.logs(tail=40).decode(errors="replace")
        pipeline.remove(force=True)
    assert "Traceback" not in logs, logs


def _consume(bootstrap: str, topic: str, want: int, timeout_s: float) -> list[dict[str, Any]]:
    """At least ``want`` JSON records of ``topic`` from its start, read by the host."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"image-test-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got: list[dict[str, Any]] = []
    try:
        def enough() -> bool:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is None:
                    got.append(json.loads(msg.value()))
            return len(got) >= want

        wait_until(enough, timeout_s, f"{want} records on {topic} (got {len(got)})", interval_s=0)
    finally:
        consumer.close()
    return got


def test_the_image_runs_the_compiled_parts(stack: tuple[str, str, str]) -> None:
    """The C parts were compiled in the build stage (the build fails otherwise) and are what the image's plans,
    parser and sensor checks use: not their Python twins."""
    tag, _, _ = stack
    probe = ("from features.kernel import available; from features.views import VITALS_VIEW; "
             "from features.plan import plan_for; from features.record_parser import record_parser; "
             "from monitor.sensor_checks import RULES, SensorChecks, SensorConfig; import functools; "
             "print(available(), plan_for(VITALS_VIEW).compiled, "
             "not isinstance(record_parser(VITALS_VIEW), functools.partial), "
             "SensorChecks(SensorConfig(RULES['vitals'])).compiled)")
    out = docker_client().containers.run(tag, ["-c", probe], entrypoint=["python3"], network_mode="host",
                                         remove=True)
    assert out.split() == [b"True"] * 4, out
