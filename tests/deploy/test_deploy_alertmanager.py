"""deploy/alertmanager/alertmanager.yml: amtool accepts it, it groups per model version and kind, a critical alert
inhibits the warning of the same feature, and it holds no secret. (tests/integration/test_alertmanager.py runs it.)"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .conftest import DEPLOY, load_yaml

CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"


def _amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("amtool is missing in CI: .ci/run installs it (apt-get install prometheus-alertmanager)")
        pytest.skip("amtool not installed (Debian package prometheus-alertmanager)")
    return path


def test_amtool_check_config() -> None:
    out = subprocess.run([_amtool(), "check-config", str(CONFIG)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_amtool_check_config_rejects_a_broken_file(tmp_path) -> None:  # noqa: ANN001
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(CONFIG.read_text().replace("route:\n  receiver: default", "route:\n  receiver: nobody", 1))
    assert broken.read_text() != CONFIG.read_text()
    out = subprocess.run([_amtool(), "check-config", str(broken)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "nobody" in out.stdout + out.stderr


def test_routing_groups_per_model_version_and_critical_inhibits_warning() -> None:
    config = load_yaml(CONFIG)
    assert config["route"]["group_by"] == ["alertname", "model", "version"]
    (rule,) = config["inhibit_rules"]
    assert rule["source_matchers"] == ['severity="critical"'] and rule["target_matchers"] == ['severity="warning"']
    assert set(rule["equal"]) == {"alertname", "model", "version", "feature"}
    text = CONFIG.read_text()
    assert "routing_key:" not in text.replace("routing_key_file:", "")  # secrets stay out of the file
