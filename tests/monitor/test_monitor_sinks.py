"""Alert sinks against a local HTTP server on 127.0.0.1 (never the internet)."""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from monitor.alerts import Alert
from monitor.exceptions import MonitorConfigError, MonitorError
from monitor.sinks import (
    AlertSink,
    LogSink,
    PagerDutySink,
    WebhookSink,
    _RateLimiter,
    pagerduty_event,
)

ROUTING_KEY = "R0UT1NGKEYs3cr3t0123456789abcdef"
FAST = {"base_delay_s": 0.001, "timeout_s": 2.0}


def make_alert(**over: Any) -> Alert:
    fields: dict[str, Any] = dict(action="trigger", severity="critical", kind="data_drift", model="vitals-risk",
                                  model_version=3, feature="hr_mean_5m", detector="psi", statistic="psi",
                                  value=0.31, threshold=0.25, window="last 500 events", ts=1_700_000_000_123,
                                  summary="PSI 0.31 on hr_mean_5m")
    fields.update(over)
    return Alert.build(**fields)


class FakeServer:
    """Answers POSTs with scripted status codes (then ``default``); records every request."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.default = 202
        self.requests: list[dict[str, Any]] = []
        self.block = threading.Event()
        self.block.set()  # cleared by a test to hold the handler
        self.got_request = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                outer.got_request.set()
                outer.block.wait(10)
                status = outer.script.pop(0) if outer.script else outer.default
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status":"ok"}')

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v2/enqueue"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.requests]

    def stop(self) -> None:
        self.block.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = FakeServer()
    yield srv
    srv.stop()


def test_pagerduty_retries_429_and_5xx_then_delivers(server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server.script = [429, 500, 202]
    sink = PagerDutySink(ROUTING_KEY, url=server.url, source="driftline-test", max_retries=5, **FAST)
    alert = make_alert()
    sink.send(alert)
    assert sink.flush(5)
    sink.close()
    assert sink.stats == {"sent": 1, "retried": 2, "failed": 0, "dropped": 0, "throttled": 0}
    assert len(server.requests) == 3
    bodies = server.bodies()
    assert bodies[0] == bodies[1] == bodies[2] == pagerduty_event(alert, ROUTING_KEY, "driftline-test")
    body = bodies[0]
    assert body["routing_key"] == ROUTING_KEY and body["event_action"] == "trigger"
    assert body["dedup_key"] == "vitals-risk/3/data_drift/hr_mean_5m/all"
    payload = body["payload"]
    assert payload["severity"] == "critical" and payload["source"] == "driftline-test"
    assert payload["timestamp"] == "2023-11-14T22:13:20.123Z"
    assert payload["summary"] == "PSI 0.31 on hr_mean_5m" and payload["class"] == "data_drift"
    assert payload["component"] == "vitals-risk"
    assert payload["custom_details"]["value"] == 0.31 and payload["custom_details"]["model_version"] == 3
    assert server.requests[0]["headers"]["Content-Type"] == "application/json"
    assert "429" in caplog.text and ROUTING_KEY not in caplog.text
    assert ROUTING_KEY not in repr(sink)


def test_pagerduty_never_retries_a_400(server: FakeServer, caplog: pytest.LogCaptureFixture) -> None:
    server.default = 400
    sink = PagerDutySink(ROUTING_KEY, url=server.url, **FAST)
    sink.send(make_alert())
    assert sink.flush(5)
    sink.close()
    assert len(server.requests) == 1
    assert sink.stats["failed"] == 1 and sink.stats["retried"] == 0 and sink.stats["sent"] == 0
    assert "not retryable" in caplog.text and ROUTING_KEY not in caplog.text


@pytest.mark.parametrize("status", [401, 403, 404, 413])
def test_other_4xx_are_not_retried_either(server: FakeServer, status: int) -> None:
    server.default = status
    sink = WebhookSink(server.url, **FAST)
    sink.send(make_alert())
    assert sink.flush(5)
    sink.close()
    assert len(server.requests) == 1 and sink.stats["failed"] == 1


def test_gives_up_after_max_retries(server: FakeServer) -> None:
    server.default = 503
    sink = PagerDutySink(ROUTING_KEY, url=server.url, max_retries=2, **FAST)
    sink.send(make_alert())
    assert sink.flush(5)
    sink.close()
    assert len(server.requests) == 3
    assert sink.stats == {"sent": 0, "retried": 2, "failed": 1, "dropped": 0, "throttled": 0}


def test_network_errors_are_retried() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = WebhookSink(f"http://127.0.0.1:{port}/hook", max_retries=2, base_delay_s=0.001, timeout_s=1.0)
    sink.send(make_alert())
    assert sink.flush(5)
    sink.close()
    assert sink.stats["retried"] == 2 and sink.stats["failed"] == 1


def test_webhook_posts_alert_json_with_headers(server: FakeServer) -> None:
    sink = WebhookSink(server.url.replace("/v2/enqueue", "/hooks/drift?token=abc"),
                       headers={"Authorization": "Bearer t"}, **FAST)
    alert = make_alert(value=math.nan, action="resolve", severity="warning")
    sink.send(alert)
    assert sink.flush(5)
    sink.close()
    req = server.requests[0]
    assert req["path"] == "/hooks/drift?token=abc" and req["headers"]["Authorization"] == "Bearer t"
    body = json.loads(req["body"])
    assert body == alert.to_dict() | {"value": None}  # NaN is not JSON: sent as null
    assert "token" not in repr(sink) and sink.stats["sent"] == 1


def test_full_queue_drops_oldest_and_counts(server: FakeServer) -> None:
    server.block.clear()
    sink = WebhookSink(server.url, queue_size=2, **FAST)
    alerts = [make_alert(summary=f"a{i}") for i in range(5)]
    sink.send(alerts[0])
    assert server.got_request.wait(5)  # a0 is in flight, held by the server
    for a in alerts[1:]:
        sink.send(a)
    assert sink.stats["dropped"] == 2
    server.block.set()
    assert sink.flush(5)
    sink.close()
    assert [b["summary"] for b in server.bodies()] == ["a0", "a3", "a4"]
    assert sink.stats["sent"] == 3


def test_close_is_bounded_and_later_sends_are_dropped(server: FakeServer) -> None:
    server.block.clear()
    sink = WebhookSink(server.url, **FAST)
    sink.send(make_alert(summary="held"))
    assert server.got_request.wait(5)
    sink.send(make_alert(summary="pending"))
    t0 = time.perf_counter()
    sink.close(timeout=0.2)
    assert time.perf_counter() - t0 < 2.0
    assert sink.stats["dropped"] == 1
    sink.send(make_alert(summary="late"))  # does not raise
    assert sink.stats["dropped"] == 2
    server.block.set()


def test_rate_limiter_sliding_window() -> None:
    lim = _RateLimiter(limit=2, period=60.0)
    assert lim.wait_time("k", 0.0) == 0.0
    lim.record("k", 0.0)
    lim.record("k", 10.0)
    assert lim.wait_time("k", 20.0) == pytest.approx(40.0)
    assert lim.wait_time("other", 20.0) == 0.0  # per key
    assert lim.wait_time("k", 60.0) == 0.0  # the first send left the window
    lim.record("k", 60.0)
    assert lim.wait_time("k", 61.0) == pytest.approx(9.0)


def test_pagerduty_event_limits_and_mapping() -> None:
    long = make_alert(summary="s" * 5000, feature="f" * 400)
    ev = pagerduty_event(long, ROUTING_KEY, "src")
    assert len(ev["payload"]["summary"]) == 1024
    assert len(ev["dedup_key"]) == 255
    assert ev["dedup_key"] == pagerduty_event(make_alert(summary="x", feature="f" * 400, action="resolve"),
                                              ROUTING_KEY, "src")["dedup_key"]  # trigger and resolve match
    for sev in ("critical", "warning", "info"):
        assert pagerduty_event(make_alert(severity=sev), ROUTING_KEY, "s")["payload"]["severity"] == sev
    assert pagerduty_event(make_alert(summary=""), ROUTING_KEY, "s")["payload"]["summary"].startswith("data_drift")
    ev = pagerduty_event(make_alert(value=math.inf, details={"psi": math.nan}), ROUTING_KEY, "s")
    json.dumps(ev, allow_nan=False)
    with pytest.raises(MonitorError, match="severity"):
        pagerduty_event(make_alert(severity="fatal"), ROUTING_KEY, "s")
    with pytest.raises(MonitorError, match="action"):
        pagerduty_event(make_alert(action="acknowledge"), ROUTING_KEY, "s")


def test_bad_alert_is_counted_not_raised(server: FakeServer) -> None:
    sink = PagerDutySink(ROUTING_KEY, url=server.url, **FAST)
    sink.send(make_alert(severity="fatal"))
    sink.close()
    assert sink.stats["failed"] == 1 and server.requests == []


def test_config_errors() -> None:
    with pytest.raises(MonitorConfigError, match="routing key"):
        PagerDutySink("  ")
    with pytest.raises(MonitorConfigError, match="http"):
        WebhookSink("ftp://example.invalid/x")
    with pytest.raises(MonitorConfigError):
        WebhookSink("http://127.0.0.1:9/x", queue_size=0)


def test_log_sink_writes_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="monitor.sinks")
    sink = LogSink()
    assert isinstance(sink, AlertSink)
    sink.send(make_alert())
    sink.send(make_alert(action="resolve"))
    sink.close()
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.INFO]
    assert "vitals-risk/3/data_drift/hr_mean_5m/all" in caplog.records[0].getMessage()
    assert "\n" not in caplog.records[0].getMessage()


def test_send_returns_while_the_receiver_never_answers() -> None:
    """send() only enqueues: it returns even when the endpoint accepts connections and never replies."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # never accept(): the TCP handshake completes, no HTTP answer ever comes
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v2/enqueue"
        sink = PagerDutySink(ROUTING_KEY, url=url, max_retries=0, timeout_s=0.5, base_delay_s=0.001)
        sink.send(make_alert())
        sink.send(make_alert())
        assert sink.stats["sent"] == 0  # nothing could have been delivered, yet both calls returned
        sink.close(2)
    finally:
        silent.close()
