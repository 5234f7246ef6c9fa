"""deploy/local-engine.sh and the container tests' rules, without an engine: the names the script exports are the
ones the override and the tests use, and a missing engine skips with its reason, or fails where CI requires one."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from types import SimpleNamespace
from typing import Any

import pytest

from tests.integration.containers import ContainerEnv, engine_problem, require_engine

from .conftest import ROOT

SCRIPT = ROOT / "deploy" / "local-engine.sh"


def _script_env() -> dict[str, str]:
    out = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "DRIFTLINE_ENGINE_DIR": "/nonexistent/engine"})
    assert out.returncode == 0, out.stderr
    pairs = [shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in out.stdout.splitlines()]
    return dict(pairs)


def test_env_points_at_the_private_socket_and_the_local_images() -> None:
    env = _script_env()
    assert env["DOCKER_HOST"] == "unix:///nonexistent/engine/run/docker.sock"  # never /var/run/docker.sock
    assert env["TESTCONTAINERS_RYUK_DISABLED"] == "true"  # its image cannot be pulled here
    cfg = ContainerEnv.from_env(env)
    assert cfg.host_network and cfg.broker_image == "driftline-local/tansu:0.6"
    assert cfg.redis_image == "driftline-local/redis:7" and cfg.python_base_image == "driftline-local/python:3.11"
    # the override's defaults are the same names (a user may run it without `eval "$(... env)"`)
    override = (ROOT / "docker-compose.local.yml").read_text()
    for var in ("DRIFTLINE_BROKER_IMAGE", "DRIFTLINE_REDIS_IMAGE", "DRIFTLINE_PYTHON_BASE_IMAGE",
                "DRIFTLINE_PROMETHEUS_IMAGE", "DRIFTLINE_ALERTMANAGER_IMAGE"):
        assert re.search(r"\$\{" + var + ":-" + re.escape(env[var]) + r"\}", override), var


def test_the_engine_leaves_the_host_network_alone() -> None:
    text = SCRIPT.read_text()
    for flag in ("--iptables=false", "--bridge=none", "--data-root", "--exec-root"):
        assert flag in text, flag
    assert "/var/run/docker.sock" not in text.replace("never touches /var/run/docker.sock", "")


def test_unknown_subcommand_is_refused() -> None:
    out = subprocess.run(["bash", str(SCRIPT), "explode"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "usage" in out.stderr


def _config(markexpr: str = "") -> Any:
    return SimpleNamespace(getoption=lambda name: markexpr)


def _no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/driftline-test/docker.sock")


def test_engine_problem_names_the_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_engine(monkeypatch)
    reason = engine_problem()
    assert reason is not None and "/nonexistent/driftline-test/docker.sock" in reason


def test_not_selected_skips() -> None:
    env = ContainerEnv.from_env({})
    with pytest.raises(pytest.skip.Exception, match="-m docker"):
        require_engine(_config(), env)  # type: ignore[arg-type]


def test_no_engine_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_engine(monkeypatch)
    monkeypatch.setenv("DRIFTLINE_DOCKER_UNAVAILABLE", "start failed: debootstrap failed")
    env = ContainerEnv.from_env({"DRIFTLINE_DOCKER_TESTS": "1"})
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_engine(_config(), env)  # type: ignore[arg-type]
    assert "needs a Docker engine" in str(skipped.value) and "debootstrap failed" in str(skipped.value)


def test_no_engine_fails_where_one_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_engine(monkeypatch)
    env = ContainerEnv.from_env({"DRIFTLINE_DOCKER_REQUIRED": "1"})
    with pytest.raises(pytest.fail.Exception, match="DRIFTLINE_DOCKER_REQUIRED=1"):
        require_engine(_config("docker"), env)  # type: ignore[arg-type]
