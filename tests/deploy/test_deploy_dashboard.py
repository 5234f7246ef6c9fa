"""The provisioned Grafana dashboard: valid JSON, a datasource variable, the panels operators need, and every
PromQL expression naming only series that streams.metrics exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import DEPLOY, load_yaml, unknown_labels, unknown_names

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "driftline.json"


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _panels(dashboard: dict) -> list[dict]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def _exprs(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    return exprs


def test_every_expression_names_exported_series_and_labels(dashboard: dict, known: dict) -> None:
    exprs = _exprs(dashboard)
    assert len(exprs) >= 25
    for expr in exprs:
        assert not unknown_names(expr, known), f"{unknown_names(expr, known)} not exported, in: {expr}"
        assert not unknown_labels(expr, known), f"labels {unknown_labels(expr, known)} not exported, in: {expr}"


def test_the_name_check_catches_a_typo(known: dict) -> None:
    assert unknown_names("rate(driftline_records_consumed[5m])", known) == ["driftline_records_consumed"]
    assert unknown_names("driftline_psi > 0.25 and driftline_batch_duration_seconds_bucket", known) == []
    assert unknown_labels("sum by (entity_id) (driftline_psi)", known) == {"entity_id"}


def test_datasource_variable_used_everywhere(dashboard: dict) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for p in _panels(dashboard):
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"] and all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"]), p["title"]


def test_panels_have_unique_ids_and_fit_the_grid(dashboard: dict) -> None:
    panels = _panels(dashboard)
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        for t in p.get("targets", []):
            assert re.fullmatch(r"[A-Z]", t["refId"])


@pytest.mark.parametrize("metric", ["driftline_event_to_prediction_seconds", "driftline_consume_to_produce_seconds",
                                    "driftline_batch_duration_seconds"])
def test_latency_percentiles(dashboard: dict, metric: str) -> None:
    exprs = [e for e in _exprs(dashboard) if f"{metric}_bucket" in e]
    quantiles = {re.search(r"histogram_quantile\(([\d.]+)", e).group(1) for e in exprs}  # type: ignore[union-attr]
    assert quantiles == {"0.5", "0.95", "0.99"}


@pytest.mark.parametrize("needle", [
    "rate(driftline_records_consumed_total", "rate(driftline_records_produced_total",
    "time() - max by (stage, instance) (driftline_last_commit_timestamp_seconds",
    "sum by (topic, reason) (rate(driftline_dead_letters_total",
    "histogram_quantile(0.99, sum by (le, op) (rate(driftline_redis_roundtrip_seconds_bucket",
    "driftline_psi", "driftline_detector_detections_total", "sum by (kind, severity, action) (increase(driftline_alerts_total",
    "driftline_active_model_version", "driftline_control_messages_total", "driftline_scorer_events_total",
    "driftline_silent_entities_total"])
def test_required_panels(dashboard: dict, needle: str) -> None:
    assert any(needle in e for e in _exprs(dashboard)), needle


def test_psi_panel_has_the_threshold_lines(dashboard: dict) -> None:
    (psi,) = [p for p in _panels(dashboard) if any(t["expr"].startswith("max by (model, version, feature) (driftline_psi")
                                                    for t in p.get("targets", []))]
    defaults = psi["fieldConfig"]["defaults"]
    assert [s["value"] for s in defaults["thresholds"]["steps"]] == [None, 0.1, 0.25]
    assert defaults["custom"]["thresholdsStyle"]["mode"].startswith("line")


def test_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    compose = load_yaml(DEPLOY.parent / "docker-compose.yml")
    datasources = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")
    (ds,) = datasources["datasources"]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090" and "prometheus" in compose["services"]
    providers = load_yaml(DEPLOY / "grafana/provisioning/dashboards/driftline.yml")["providers"]
    mounted = {Path(v.split(":")[1]): DEPLOY.parent / v.split(":")[0]
               for v in compose["services"]["grafana"]["volumes"]}
    (provider,) = providers
    host_dir = mounted[Path(provider["options"]["path"])]
    assert (host_dir / DASHBOARD.name).resolve() == DASHBOARD.resolve()
