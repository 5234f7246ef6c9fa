"""docker-compose.yml brought up on an engine: the workers report healthy, Prometheus scrapes them and loads the rules.

On the local engine (``deploy/local-engine.sh``) with the override docker-compose.local.yml: the tansu broker image
for Kafka, Debian's Redis, Prometheus and Alertmanager, the project image built FROM the Debian Python base, and no
Grafana (its image cannot be had without a registry). Elsewhere, docker-compose.yml alone with the public images.
Uses ``docker compose`` when the CLI has the plugin, else Debian's ``docker-compose``. The stack publishes the fixed
host ports of docker-compose.yml (9090, 9093, 9101-9103, 29092): the test checks they are free first.
Selection and skips as in test_containers.py. It takes the stack down (``down -v``) whatever happens.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from .containers import ENV, REPO, port_open, require_engine, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.integration]
HOST_PORTS = (9090, 9093, 9101, 9102, 9103, 29092)
WORKERS = {"pipeline": 9101, "monitor": 9102, "alerts": 9103}
PROMETHEUS = "http://127.0.0.1:9090"


def compose_cli() -> list[str] | None:
    """``docker compose`` if the plugin answers, else ``docker-compose``, else None."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def compose_files() -> list[str]:
    files = ["docker-compose.yml"]
    if ENV.host_network:  # the local engine: the override with its images
        files.append("docker-compose.local.yml")
    return files


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The compose command of a freshly brought-up project (its name unique to this run)."""
    require_engine(request.config)
    cli = compose_cli()
    if cli is None:
        pytest.fail("no Compose CLI: neither `docker compose` nor `docker-compose` (apt-get install docker-compose)")
    busy = [p for p in HOST_PORTS if port_open("127.0.0.1", p)]
    if busy:
        pytest.fail(f"host ports {busy} are in use: docker-compose.yml publishes them; stop what holds them")
    project = f"driftline-test-{uuid.uuid4().hex[:8]}"
    cmd = [*cli, "-p", project, *[a for f in compose_files() for a in ("-f", f)]]
    env = {**os.environ, "DRIFTLINE_CONTROL_KEY": secrets.token_hex(32)}
    try:
        up = subprocess.run([*cmd, "up", "-d", "--build"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
        assert up.returncode == 0, f"compose up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        yield cmd
    except BaseException:
        logs = subprocess.run([*cmd, "logs", "--tail", "30"], cwd=REPO, env=env, capture_output=True, text=True)
        print(logs.stdout[-8000:])
        raise
    finally:
        subprocess.run([*cmd, "down", "-v", "--remove-orphans", "-t", "5"], cwd=REPO, env=env, capture_output=True,
                       timeout=300)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return json.loads(resp.read())


def _healthy(port: int) -> bool:
    try:
        return bool(_get_json(f"http://127.0.0.1:{port}/health").get("alive"))
    except (OSError, ValueError):
        return False


def _targets() -> dict[str, str]:
    """Prometheus's scrape jobs and their health (``up`` / ``down`` / ``unknown``)."""
    try:
        data = _get_json(f"{PROMETHEUS}/api/v1/targets")["data"]["activeTargets"]
    except (OSError, ValueError, KeyError):
        return {}
    return {t["labels"]["job"]: t["health"] for t in data}


def test_compose_stack_healthy_scraped_and_rules_loaded(stack: list[str]) -> None:
    for name, port in WORKERS.items():
        wait_until(lambda port=port: _healthy(port), 120, f"the {name} service's /health on :{port}")

    want = {f"driftline-{name}" for name in WORKERS}
    wait_until(lambda: all(_targets().get(job) == "up" for job in want), 60,
               f"Prometheus targets {sorted(want)} up (last seen {_targets()})")

    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "rules.yml").read_text())
    expected = {g["name"]: len(g["rules"]) for g in rules["groups"]}
    loaded = {g["name"]: len(g["rules"]) for g in _get_json(f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]}
    assert loaded == expected

    # the simulator streams events once the pipeline is healthy: predictions reach Prometheus through the scrape
    query = "sum(driftline_records_produced_total{job='driftline-pipeline',topic='predictions'})"

    def predicted() -> bool:
        url = f"{PROMETHEUS}/api/v1/query?query={urllib.request.quote(query)}"
        result = _get_json(url)["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) > 0

    wait_until(predicted, 60, "predictions counted by Prometheus")
