"""deploy/prometheus: the config and the alerting rules pass promtool, their unit tests pass, every rule names
only exported series, and the scrape targets are the compose services' metrics ports."""

from __future__ import annotations

import subprocess

from .conftest import DEPLOY, load_yaml, unknown_labels, unknown_names

PROM = DEPLOY / "prometheus"
REQUIRED_ALERTS = {"DriftlineWorkerDown", "DriftlineWorkerUnhealthy", "DriftlineStuckConsumer", "DriftlineNoProgress",
                   "DriftlineBatchFailures", "DriftlineHighDeadLetterRate", "DriftlineScorerBreakerOpen",
                   "DriftlineFeatureDrift", "DriftlineFeatureDriftWarning", "DriftlineAlertsNotDelivered",
                   "DriftlineAlertRejected"}


def _promtool(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=PROM, capture_output=True, text=True, timeout=60)


def _rules() -> list[dict]:
    return [r for g in load_yaml(PROM / "rules.yml")["groups"] for r in g["rules"]]


def test_promtool_check_rules(promtool: str) -> None:
    out = _promtool(promtool, "check", "rules", "rules.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_check_config(promtool: str) -> None:
    out = _promtool(promtool, "check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_rule_unit_tests(promtool: str) -> None:
    out = _promtool(promtool, "test", "rules", "rules_test.yml")
    assert out.returncode == 0 and "SUCCESS" in out.stdout, out.stdout + out.stderr


def test_rule_unit_tests_fail_on_a_wrong_expectation(promtool: str, tmp_path) -> None:  # noqa: ANN001
    """The unit-test file is not vacuous: flipping an expectation makes promtool fail."""
    text = (PROM / "rules_test.yml").read_text().replace("eval_time: 4m\n        alertname: DriftlineFeatureDrift",
                                                         "eval_time: 12m\n        alertname: DriftlineFeatureDrift")
    assert "eval_time: 12m" in text
    (tmp_path / "rules.yml").write_text((PROM / "rules.yml").read_text())
    (tmp_path / "rules_test.yml").write_text(text)
    out = subprocess.run([promtool, "test", "rules", "rules_test.yml"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0 and "DriftlineFeatureDrift" in out.stdout + out.stderr


def test_rules_cover_the_failure_modes_and_name_exported_series(known: dict) -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
        assert not unknown_names(rule["expr"], known), (rule["alert"], unknown_names(rule["expr"], known))
        assert not unknown_labels(rule["expr"], known), (rule["alert"], unknown_labels(rule["expr"], known))


def test_drift_thresholds_and_full_windows_only() -> None:
    by_name = {r["alert"]: r for r in _rules()}
    guard = "and driftline_psi_samples >= driftline_psi_window_size"
    critical = " ".join(by_name["DriftlineFeatureDrift"]["expr"].split())
    assert critical == f"driftline_psi > 0.25 {guard}"
    assert by_name["DriftlineFeatureDrift"]["for"] == "5m"
    warning = " ".join(by_name["DriftlineFeatureDriftWarning"]["expr"].split())
    assert warning.startswith("driftline_psi > 0.1 and driftline_psi <= 0.25") and warning.endswith(guard)
    assert all(guard in " ".join(r["expr"].split()) for r in _rules() if "driftline_psi " in r["expr"] + " ")


def test_scrape_targets_are_the_compose_workers() -> None:
    config = load_yaml(PROM / "prometheus.yml")
    compose = load_yaml(DEPLOY.parent / "docker-compose.yml")
    targets = {t for job in config["scrape_configs"] if job["job_name"].startswith("driftline-")
               for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {"pipeline:9100", "monitor:9100", "alerts:9100"}
    for service in ("pipeline", "monitor", "alerts"):
        command = compose["services"][service]["command"]
        assert command[command.index("--metrics-port") + 1] == "9100"
        assert command[command.index("--metrics-host") + 1] == "0.0.0.0"
    assert all((PROM / f).exists() for f in config["rule_files"])


def test_prometheus_sends_its_alerts_to_the_compose_alertmanager() -> None:
    config = load_yaml(PROM / "prometheus.yml")
    compose = load_yaml(DEPLOY.parent / "docker-compose.yml")
    targets = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert targets == ["alertmanager:9093"]
    assert "9093:9093" in compose["services"]["alertmanager"]["ports"]
