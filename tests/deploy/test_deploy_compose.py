"""docker-compose.yml and the Dockerfile: the services, what they mount, their ports and environment; and
``docker compose config`` (or Debian's ``docker-compose config``: no engine needed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, load_yaml

SERVICES = {"kafka", "redis", "init", "pipeline", "monitor", "alerts", "simulator", "prometheus", "alertmanager",
            "grafana"}
DRIFTLINE = ("init", "pipeline", "monitor", "alerts", "simulator")


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(ROOT / "docker-compose.yml")


def test_services_and_named_volumes(compose: dict) -> None:
    assert set(compose["services"]) >= SERVICES
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"


def test_ports_are_unique_and_well_formed(compose: dict) -> None:
    host_ports = []
    for service in compose["services"].values():
        for port in service.get("ports", []):
            host, container = port.split(":")
            assert host.isdigit() and container.isdigit()
            host_ports.append(host)
    assert len(host_ports) == len(set(host_ports))
    assert {"3000", "9090", "29092"} <= set(host_ports)


def test_driftline_services_share_settings_and_have_no_default_secret(compose: dict) -> None:
    for name in DRIFTLINE:
        service = compose["services"][name]
        env = service["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092" and env["REDIS_URL"].startswith("redis://redis:")
        assert env["DRIFTLINE_REGISTRY"].startswith("/data/")
        assert "driftline-data:/data" in service["volumes"], name
        key = env["DRIFTLINE_CONTROL_KEY"]
        assert key.startswith("${DRIFTLINE_CONTROL_KEY:?"), f"{name}: the control key must come from the env"
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    for name in ("pipeline", "monitor", "alerts"):
        assert compose["services"][name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert "9100" in " ".join(compose["services"][name]["healthcheck"]["test"])
    assert "--labels" in compose["services"]["simulator"]["command"]
    assert "train --promote" in " ".join(compose["services"]["init"]["command"])
    for name in ("kafka", "redis", "pipeline", "monitor", "alerts", "prometheus", "alertmanager", "grafana"):
        assert compose["services"][name]["healthcheck"]["test"], name


def test_the_delivery_stage_feeds_alertmanager(compose: dict) -> None:
    alerts = compose["services"]["alerts"]
    assert alerts["command"][:2] == ["run", "alerts"]
    assert alerts["environment"]["DRIFTLINE_ALERTMANAGER_URL"] == "http://alertmanager:9093"
    assert alerts["environment"]["DRIFTLINE_PAGERDUTY_ROUTING_KEY"].startswith("${")  # from the env, no default
    assert alerts["depends_on"]["alertmanager"]["condition"] == "service_healthy"
    am = compose["services"]["alertmanager"]
    assert "./deploy/alertmanager:/etc/alertmanager:ro" in am["volumes"]
    assert "--config.file=/etc/alertmanager/alertmanager.yml" in am["command"]
    assert "9093:9093" in am["ports"]


def test_grafana_is_anonymous_viewer(compose: dict) -> None:
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_dockerfile_runs_driftline_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG BASE=python:3.11-slim" in text  # the public base by default; deploy/local-engine.sh's in CI
    assert [line for line in text.splitlines() if line.startswith("FROM ")][-1] == "FROM ${BASE}"
    assert 'ENTRYPOINT ["driftline"]' in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert (ROOT / src).exists(), src


def _compose_cli() -> list[str] | None:
    """The Compose CLI on this machine: the v2 plugin (``docker compose``) or Debian's ``docker-compose``; both
    parse, interpolate and validate a file with ``config`` without any Docker engine."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True,
                                                 timeout=20).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def test_docker_compose_config() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Compose CLI (docker compose plugin or docker-compose; .ci/run installs docker-compose)")
    cmd = [*cli, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"]
    env = {**os.environ, "DRIFTLINE_CONTROL_KEY": "0" * 64}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    env.pop("DRIFTLINE_CONTROL_KEY")
    missing = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert missing.returncode != 0 and "DRIFTLINE_CONTROL_KEY" in missing.stderr


def test_docker_compose_config_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: an unknown service key is refused by the Compose schema."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Compose CLI (docker compose plugin or docker-compose)")
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((ROOT / "docker-compose.yml").read_text().replace("    image: redis", "    imagee: redis", 1))
    assert broken.read_text() != (ROOT / "docker-compose.yml").read_text()
    out = subprocess.run([*cli, "-f", str(broken), "config", "--quiet"], capture_output=True, text=True,
                         env={**os.environ, "DRIFTLINE_CONTROL_KEY": "0" * 64}, timeout=60)
    assert out.returncode != 0 and "imagee" in out.stderr


def test_local_override_swaps_in_the_local_images_and_leaves_grafana_out() -> None:
    """docker-compose.local.yml over docker-compose.yml (``config`` merges them): the images of
    deploy/local-engine.sh, the Debian Python base for the workers' build, Grafana in a profile never started."""
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Compose CLI (docker compose plugin or docker-compose)")
    cmd = [*cli, "-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "docker-compose.local.yml"), "config"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLINE_")}
    out = subprocess.run(cmd, capture_output=True, text=True, env={**env, "DRIFTLINE_CONTROL_KEY": "0" * 64},
                         timeout=60)
    assert out.returncode == 0, out.stderr
    import yaml

    merged = yaml.safe_load(out.stdout)["services"]
    assert merged["kafka"]["image"] == "driftline-local/tansu:0.6"
    assert "tcp://kafka:9092" in merged["kafka"]["command"]
    assert merged["redis"]["image"] == "driftline-local/redis:7"
    assert merged["prometheus"]["image"] == "driftline-local/prometheus:2"
    assert merged["alertmanager"]["image"] == "driftline-local/alertmanager:0"
    for name in DRIFTLINE:
        assert merged[name]["build"]["args"]["BASE"] == "driftline-local/python:3.11", name
        assert merged[name]["image"] == "driftline:local", name
    assert merged["grafana"]["profiles"] == ["grafana"]
    assert load_yaml(ROOT / "docker-compose.yml")["services"]["kafka"]["image"].startswith("apache/kafka:")
