"""A real Prometheus Alertmanager (Debian's ``prometheus-alertmanager``, run with deploy/alertmanager/alertmanager.yml
on a free 127.0.0.1 port) fed by the delivery stage from the real broker: alerts arrive with their labels and
annotations, group by model version, stay active past their ``endsAt`` because they are re-sent (also after a
restart of the delivery stage), escalate, and resolve. Checked through Alertmanager's own API."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from monitor.alertmanager import AlertmanagerSink
from monitor.alerts import Alert
from streams import codec
from streams.local.procs import free_port, spawn, stop_pid, wait_for_port
from streams.runtime.alert_worker import build_alerts
from streams.runtime.topics import TopicSpec, ensure_topics
from streams.settings import AlertSettings, Settings, TopicSettings

pytestmark = pytest.mark.integration
CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"
RESEND_S, TTL_S = 1.0, 4.0


@pytest.fixture()
def alertmanager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("prometheus-alertmanager is missing in CI: .ci/run installs it")
        pytest.skip("Alertmanager not installed (Debian package prometheus-alertmanager)")
    port = free_port()
    proc = spawn([binary, f"--config.file={CONFIG}", f"--storage.path={tmp_path / 'data'}",
                  f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="], tmp_path / "am.log")
    try:
        wait_for_port("127.0.0.1", port, 20)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_pid(proc.pid)
        proc.wait(5)


def api(base: str, path: str) -> Any:
    with urllib.request.urlopen(f"{base}/api/v2/{path}", timeout=5) as resp:
        return json.loads(resp.read())


def until(check: Callable[[], Any], timeout_s: float) -> Any:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    return check()


def alert(feature: str, version: int, action: str, severity: str, ts: int) -> Alert:
    return Alert.build(action=action, severity=severity, kind="data_drift", model="vitals-risk",
                       model_version=version, feature=feature, detector="psi", statistic="psi", value=0.4,
                       threshold=0.25, window="last 1000 predictions", ts=ts,
                       summary=f"PSI 0.4 on {feature} of v{version}")


def test_alerts_arrive_group_stay_alive_escalate_and_resolve(alertmanager: str, settings: Settings,
                                                              unique: str) -> None:
    topics = TopicSettings(alerts=f"alerts-{unique}")
    s = settings.replace(topics=topics, alerts=AlertSettings(group=f"am-{unique}", log_sink=False))
    ensure_topics(s, [TopicSpec(topics.alerts, 1), TopicSpec(topics.dlq(topics.alerts), 1)])
    producer = Producer({"bootstrap.servers": s.kafka.bootstrap_servers})

    def produce(*alerts: Alert) -> None:
        for a in alerts:
            producer.produce(topics.alerts, codec.encode(a.to_dict()), a.dedup_key)
        assert producer.flush(10) == 0

    def start() -> Any:
        sink = AlertmanagerSink(alertmanager, resend_interval_s=RESEND_S, ttl_s=TTL_S,
                                generator_url="http://grafana.example/d/driftline")
        return build_alerts(s, sinks=[sink])[0].start()

    def active() -> list[dict]:
        return [a for a in api(alertmanager, "alerts?active=true") if a["labels"].get("model") == "vitals-risk"]

    now = int(time.time() * 1000)
    worker = start()
    try:
        produce(alert("hr_mean_5m", 2, "trigger", "critical", now), alert("spo2_mean_5m", 2, "trigger", "critical", now),
                alert("hr_mean_5m", 3, "trigger", "warning", now))
        assert len(until(lambda: len(active()) == 3 and active(), 30)) == 3, worker.health()
        first = {(a["labels"]["feature"], a["labels"]["version"]): a for a in active()}
        hr2 = first[("hr_mean_5m", "2")]
        assert hr2["labels"] == {"alertname": "DriftlineDataDrift", "severity": "critical", "model": "vitals-risk",
                                 "version": "2", "kind": "data_drift", "feature": "hr_mean_5m",
                                 "service": "driftline"}
        assert hr2["annotations"]["summary"] == "PSI 0.4 on hr_mean_5m of v2"
        assert hr2["annotations"]["dedup_key"] == "vitals-risk/2/data_drift/hr_mean_5m/all"
        assert hr2["generatorURL"] == "http://grafana.example/d/driftline"
        assert abs(_epoch(hr2["startsAt"]) - now / 1000) < 0.01
        groups = {(g["labels"]["alertname"], g["labels"]["model"], g["labels"]["version"]): len(g["alerts"])
                  for g in api(alertmanager, "alerts/groups") if g["labels"].get("model") == "vitals-risk"}
        assert groups == {("DriftlineDataDrift", "vitals-risk", "2"): 2, ("DriftlineDataDrift", "vitals-risk", "3"): 1}

        time.sleep(TTL_S + 1.5)  # past the first endsAt: alive only because the stage re-sent them
        later = {(a["labels"]["feature"], a["labels"]["version"]): a for a in active()}
        assert set(later) == set(first)
        assert _epoch(later[("hr_mean_5m", "2")]["endsAt"]) > _epoch(hr2["endsAt"])
    finally:
        worker.stop()

    worker = start()  # a new process: it rebuilds the open alerts from the topic and keeps re-sending them
    try:
        time.sleep(TTL_S + 1.5)
        assert {(a["labels"]["feature"], a["labels"]["version"]) for a in active()} == set(first), worker.health()

        produce(alert("hr_mean_5m", 3, "trigger", "critical", now + 1000))  # escalation: warning -> critical
        assert until(lambda: {a["labels"]["severity"] for a in active() if a["labels"]["version"] == "3"}
                     == {"critical"}, 30)
        produce(alert("hr_mean_5m", 2, "resolve", "critical", now + 2000),
                alert("spo2_mean_5m", 2, "resolve", "critical", now + 2000),
                alert("hr_mean_5m", 3, "resolve", "critical", now + 2000))
        assert until(lambda: not active(), 30), active()
        assert worker.health()["sinks"]["alertmanager"]["rejected"] == 0
    finally:
        worker.stop()


def _epoch(rfc3339: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()
