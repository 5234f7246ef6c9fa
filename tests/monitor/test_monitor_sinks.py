"""Alert sinks against local HTTP servers on 127.0.0.1 (never the internet): one attempt per call, classified as
accepted / retry (with Retry-After, 429 throttles) / rejected; valid PagerDuty bodies; Alertmanager's list format,
escalation, resolve, re-send and rebuild."""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from monitor.alertmanager import AlertmanagerSink, alertname, labels, postable
from monitor.alerts import Alert
from monitor.exceptions import MonitorConfigError, MonitorError
from monitor.http_post import Attempt, classify, parse_retry_after, post_json
from monitor.sinks import AlertSink, LogSink, PagerDutySink, WebhookSink, pagerduty_event
from tests.receivers import PagerDutyStandIn, pagerduty_errors

ROUTING_KEY = "R0UT1NGKEYs3cr3t0123456789abcdef"


def make_alert(**over: Any) -> Alert:
    fields: dict[str, Any] = dict(action="trigger", severity="critical", kind="data_drift", model="vitals-risk",
                                  model_version=3, feature="hr_mean_5m", detector="psi", statistic="psi",
                                  value=0.31, threshold=0.25, window="last 500 events", ts=1_700_000_000_123,
                                  summary="PSI 0.31 on hr_mean_5m")
    fields.update(over)
    return Alert.build(**fields)


class Recorder:
    """Answers POSTs with scripted (status, headers) pairs, then ``default``; records every request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.default = 200
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                status, headers = outer.script.pop(0) if outer.script else (outer.default, {})
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status":"ok"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server() -> Iterator[Recorder]:
    srv = Recorder()
    yield srv
    srv.stop()


@pytest.fixture
def pd() -> Iterator[PagerDutyStandIn]:
    srv = PagerDutyStandIn()
    yield srv
    srv.stop()


# ---------------------------------------------------------------------------------------------- HTTP outcomes
@pytest.mark.parametrize(("status", "outcome"), [(200, "accepted"), (202, "accepted"), (408, "retry"),
                                                  (429, "retry"), (500, "retry"), (503, "retry"), (400, "rejected"),
                                                  (401, "rejected"), (403, "rejected"), (404, "rejected"),
                                                  (413, "rejected"), (None, "retry")])
def test_classify(status: int | None, outcome: str) -> None:
    a = classify(status, None, "x")
    assert a.outcome == outcome and a.throttled == (status == 429)


def test_retry_after_seconds_and_http_date(server: Recorder) -> None:
    server.script = [(429, {"Retry-After": "17"}), (503, {"Retry-After": formatdate(usegmt=True)}),
                     (503, {"Retry-After": "tomorrow"})]
    a = post_json(server.base + "/x", b"{}")
    assert (a.outcome, a.retry_after_s, a.throttled, a.status) == ("retry", 17.0, True, 429)
    b = post_json(server.base + "/x", b"{}")
    assert b.outcome == "retry" and b.retry_after_s is not None and 0.0 <= b.retry_after_s <= 1.0
    c = post_json(server.base + "/x", b"{}")
    assert c.retry_after_s is None and not c.throttled
    assert parse_retry_after("  ") is None and parse_retry_after("nan") is None and parse_retry_after("1e999") is None


def test_network_errors_and_silent_receivers_are_retries() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    a = post_json(f"http://127.0.0.1:{port}/x", b"{}", timeout_s=1.0)
    assert a.outcome == "retry" and "network error" in a.reason
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the TCP handshake completes, no HTTP answer ever comes
    try:
        b = post_json(f"http://127.0.0.1:{silent.getsockname()[1]}/x", b"{}", timeout_s=0.3)
        assert b.outcome == "retry"
    finally:
        silent.close()


# ---------------------------------------------------------------------------------------------- PagerDuty
def test_pagerduty_bodies_are_valid_events(pd: PagerDutyStandIn) -> None:
    sink = PagerDutySink(ROUTING_KEY, url=pd.url, source="driftline-test")
    alerts = [make_alert(), make_alert(severity="warning", summary="s" * 5000, feature="f" * 400),
              make_alert(severity="info", value=math.nan, details={"psi": math.inf}), make_alert(action="resolve")]
    assert [sink.deliver(a).outcome for a in alerts] == ["accepted"] * 4
    assert pd.invalid() == [] and len(pd.accepted()) == 4
    body = pd.accepted()[0].body
    assert body == pagerduty_event(alerts[0], ROUTING_KEY, "driftline-test")
    assert body["dedup_key"] == "vitals-risk/3/data_drift/hr_mean_5m/all"
    payload = body["payload"]
    assert payload["severity"] == "critical" and payload["timestamp"] == "2023-11-14T22:13:20.123Z"
    assert payload["class"] == "data_drift" and payload["component"] == "vitals-risk"
    assert payload["custom_details"]["value"] == 0.31 and payload["custom_details"]["model_version"] == 3
    assert pd.accepted()[3].body == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                                     "dedup_key": "vitals-risk/3/data_drift/hr_mean_5m/all"}
    assert ROUTING_KEY not in repr(sink)


def test_the_stand_in_catches_invalid_events() -> None:
    """The validator the tests rely on does fail on bodies that break the published rules."""
    good = pagerduty_event(make_alert(), ROUTING_KEY, "src")
    assert pagerduty_errors(good) == []
    assert pagerduty_errors({**good, "routing_key": "short"})
    assert pagerduty_errors({**good, "event_action": "fire"})
    assert pagerduty_errors({**good, "payload": {**good["payload"], "severity": "fatal"}})
    assert pagerduty_errors({**good, "payload": {**good["payload"], "summary": "x" * 1025}})
    assert pagerduty_errors({"routing_key": ROUTING_KEY, "event_action": "resolve"})  # resolve needs a dedup key
    assert pagerduty_errors([good])


def test_pagerduty_event_limits_and_mapping() -> None:
    long = make_alert(summary="s" * 5000, feature="f" * 400)
    ev = pagerduty_event(long, ROUTING_KEY, "src")
    assert len(ev["payload"]["summary"]) == 1024 and len(ev["dedup_key"]) == 255
    assert ev["dedup_key"] == pagerduty_event(make_alert(summary="x", feature="f" * 400, action="resolve"),
                                              ROUTING_KEY, "src")["dedup_key"]  # trigger and resolve match
    assert pagerduty_event(make_alert(summary=""), ROUTING_KEY, "s")["payload"]["summary"].startswith("data_drift")
    json.dumps(pagerduty_event(make_alert(value=math.inf, details={"psi": math.nan}), ROUTING_KEY, "s"),
               allow_nan=False)
    with pytest.raises(MonitorError, match="severity"):
        pagerduty_event(make_alert(severity="fatal"), ROUTING_KEY, "s")
    with pytest.raises(MonitorError, match="action"):
        pagerduty_event(make_alert(action="acknowledge"), ROUTING_KEY, "s")


def test_an_alert_that_cannot_be_an_event_is_rejected_without_a_request(pd: PagerDutyStandIn) -> None:
    sink = PagerDutySink(ROUTING_KEY, url=pd.url)
    a = sink.deliver(make_alert(severity="fatal"))
    assert a.outcome == "rejected" and "severity" in a.reason and pd.requests == []
    assert sink.deliver(make_alert(ts="yesterday")).outcome == "rejected"


@pytest.mark.parametrize(("status", "outcome"), [(429, "retry"), (500, "retry"), (400, "rejected")])
def test_pagerduty_answers(pd: PagerDutyStandIn, status: int, outcome: str) -> None:
    pd.fail(status, 60, retry_after="30" if status == 429 else None)
    a = PagerDutySink(ROUTING_KEY, url=pd.url).deliver(make_alert())
    assert a.outcome == outcome and len(pd.requests) == 1  # one attempt per call: the delivery stage retries
    assert a.retry_after_s == (30.0 if status == 429 else None)


def test_config_errors() -> None:
    with pytest.raises(MonitorConfigError, match="routing key"):
        PagerDutySink("  ")
    with pytest.raises(MonitorConfigError, match="http"):
        WebhookSink("ftp://example.invalid/x")
    with pytest.raises(MonitorConfigError):
        WebhookSink("http://127.0.0.1:9/x", max_in_flight=0)
    with pytest.raises(MonitorConfigError, match="ttl"):
        AlertmanagerSink("http://127.0.0.1:9", resend_interval_s=60, ttl_s=30)


# ---------------------------------------------------------------------------------------------- webhook, log
def test_webhook_posts_alert_json_with_an_idempotency_key(server: Recorder) -> None:
    sink = WebhookSink(server.base + "/hooks/drift?token=abc", headers={"Authorization": "Bearer t"})
    alert = make_alert(value=math.nan, action="resolve", severity="warning")
    assert sink.deliver(alert).accepted and sink.deliver(alert).accepted  # a redelivery is the same request
    first, second = server.requests
    assert first["path"] == "/hooks/drift?token=abc" and first["headers"]["Authorization"] == "Bearer t"
    assert first["body"] == second["body"] == alert.to_dict() | {"value": None}  # NaN is not JSON: null
    assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"] == alert.alert_id
    assert "token" not in repr(sink)


def test_log_sink_writes_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="monitor.sinks")
    sink = LogSink()
    assert isinstance(sink, AlertSink)
    assert sink.deliver(make_alert()).accepted and sink.deliver(make_alert(action="resolve")).accepted
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.INFO]
    assert "vitals-risk/3/data_drift/hr_mean_5m/all" in caplog.records[0].getMessage()
    assert "\n" not in caplog.records[0].getMessage()


# ---------------------------------------------------------------------------------------------- Alertmanager
def test_alertmanager_posts_a_list_and_resolves_by_ends_at(server: Recorder) -> None:
    now = [1_700_000_100.0]
    sink = AlertmanagerSink(server.base, resend_interval_s=60, generator_url="http://g/d", clock=lambda: now[0])
    trigger = make_alert(ts=1_700_000_000_000)
    assert sink.deliver(trigger).accepted
    (req,) = server.requests
    assert req["path"] == "/api/v2/alerts" and isinstance(req["body"], list) and len(req["body"]) == 1
    item = req["body"][0]
    assert item["labels"] == labels(trigger) and item["generatorURL"] == "http://g/d"
    assert item["startsAt"] == "2023-11-14T22:13:20.000Z" and item["endsAt"] == "2023-11-14T22:20:00.000Z"  # +300 s
    assert item["annotations"]["summary"] == trigger.summary and item["annotations"]["value"] == "0.31"
    resolve = make_alert(action="resolve", ts=1_700_000_050_000)
    assert sink.deliver(resolve).accepted
    (res,) = server.requests[1]["body"]
    assert res["labels"] == item["labels"] and res["startsAt"] == item["startsAt"]
    assert res["endsAt"] == "2023-11-14T22:14:10.000Z" and sink.open_alerts == {}


def test_alertmanager_escalation_resolves_the_warning_label_set(server: Recorder) -> None:
    sink = AlertmanagerSink(server.base, clock=lambda: 1_700_000_100.0)
    sink.deliver(make_alert(severity="warning", ts=1_700_000_000_000))
    sink.deliver(make_alert(severity="critical", ts=1_700_000_060_000))
    old, new = server.requests[1]["body"]
    assert old["labels"]["severity"] == "warning" and old["endsAt"] == "2023-11-14T22:14:20.000Z"
    assert new["labels"]["severity"] == "critical" and new["startsAt"] == old["startsAt"]  # one incident, same start
    sink.deliver(make_alert(action="resolve", severity="warning", ts=1_700_000_090_000))  # the resolve's severity
    (res,) = server.requests[2]["body"]                                                   # does not matter
    assert res["labels"]["severity"] == "critical"


def test_alertmanager_resend_keeps_open_alerts_alive_and_prime_rebuilds_them(server: Recorder) -> None:
    now = [1_700_000_100.0]
    sink = AlertmanagerSink(server.base, resend_interval_s=10, clock=lambda: now[0])
    assert sink.resend() is None and server.requests == []
    a, b = make_alert(feature="a"), make_alert(feature="b")
    sink.deliver(a)
    sink.deliver(b)
    server.default = 503
    assert sink.deliver(make_alert(feature="a", action="resolve")).outcome == "retry"  # not accepted: still open
    server.default = 200
    now[0] += 10
    assert sink.resend().accepted
    body = server.requests[-1]["body"]
    assert sorted(x["labels"]["feature"] for x in body) == ["a", "b"]
    assert all(x["endsAt"] == "2023-11-14T22:16:00.000Z" for x in body)  # now + 50 s
    rebuilt = AlertmanagerSink(server.base, resend_interval_s=10, clock=lambda: now[0])
    for alert in (a, b, make_alert(feature="b", action="resolve"), make_alert(severity="warning", feature="c")):
        rebuilt.prime(alert)
    assert sorted(rebuilt.open_alerts) == ["vitals-risk/3/data_drift/a/all", "vitals-risk/3/data_drift/c/all"]


def test_alertmanager_resend_drops_alerts_it_refuses(server: Recorder) -> None:
    sink = AlertmanagerSink(server.base)
    sink.deliver(make_alert(feature="good"))
    sink.deliver(make_alert(feature="bad"))
    server.script = [(400, {}), (200, {}), (400, {})]  # the list, then each alone: good ok, bad refused
    assert sink.resend().outcome == "rejected"
    assert list(sink.open_alerts) == ["vitals-risk/3/data_drift/good/all"]


def test_alertmanager_pure_parts() -> None:
    assert alertname("concept_drift") == "DriftlineConceptDrift"
    a = make_alert(feature=None, slice_="age>=80")
    assert labels(a)["slice"] == "age>=80" and "feature" not in labels(a)
    p = postable(a, labels(a), starts_ms=2000, ends_ms=1000)
    assert p["endsAt"] == p["startsAt"]  # never before the start (Alertmanager refuses that)
    assert "generatorURL" not in p
    assert isinstance(AlertmanagerSink("http://am:9093").deliver(make_alert(action="ack")), Attempt)
