"""Stand-ins for alert receivers, over real HTTP on 127.0.0.1 (never the internet).

:class:`PagerDutyStandIn` validates every request by the published Events API v2 rules (developer.pagerduty.com,
"Send an Alert Event" / "Send a Resolve Event") and answers like the service: 202 ``{"status": "success"}``,
400 ``{"status": "invalid event", "errors": [...]}``, 429 (optionally with ``Retry-After``) and 5xx. Outages are
scripted per request with :meth:`PagerDutyStandIn.fail` (for a time span, optionally for some dedup keys only).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SEVERITIES = {"critical", "error", "warning", "info"}
ACTIONS = {"trigger", "acknowledge", "resolve"}
MAX_BODY = 512 * 1024


def pagerduty_errors(body: Any) -> list[str]:
    """What is wrong with an Events API v2 request body, by the published rules (empty: valid)."""
    if not isinstance(body, dict):
        return ["event must be a JSON object"]
    errors = []
    rk = body.get("routing_key")
    if not isinstance(rk, str) or len(rk) != 32:
        errors.append("routing_key must be a 32 character string")
    action = body.get("event_action")
    if action not in ACTIONS:
        errors.append("event_action must be one of trigger, acknowledge, resolve")
    dk = body.get("dedup_key")
    if dk is not None and (not isinstance(dk, str) or not dk or len(dk) > 255):
        errors.append("dedup_key must be a non-empty string of at most 255 characters")
    if action in ("acknowledge", "resolve") and dk is None:
        errors.append(f"dedup_key is required for {action}")
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "payload is required for trigger"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary or len(summary) > 1024:
            errors.append("payload.summary must be a string of 1 to 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload.get("source"):
            errors.append("payload.source is required")
        if payload.get("severity") not in SEVERITIES:
            errors.append("payload.severity must be one of critical, error, warning, info")
        ts = payload.get("timestamp")
        if ts is not None:
            try:
                datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
            except ValueError:
                errors.append("payload.timestamp must be ISO 8601")
        for name in ("component", "group", "class"):
            if name in payload and not isinstance(payload[name], str):
                errors.append(f"payload.{name} must be a string")
        if "custom_details" in payload and not isinstance(payload["custom_details"], dict | str):
            errors.append("payload.custom_details must be an object")
    return errors


@dataclass
class Outage:
    """Answer ``status`` (with ``retry_after``) from ``start`` to ``end`` (monotonic seconds) for the dedup keys
    matching ``keys`` (a regex; None = every key)."""

    status: int
    start: float
    end: float
    retry_after: str | None = None
    keys: re.Pattern[str] | None = None

    def applies(self, now: float, dedup_key: str) -> bool:
        return self.start <= now < self.end and (self.keys is None or bool(self.keys.search(dedup_key)))


@dataclass
class Request:
    at: float
    status: int
    body: dict[str, Any]
    errors: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return str(self.body.get("dedup_key")), str(self.body.get("event_action"))


class PagerDutyStandIn:
    """A local Events API v2 endpoint (``url``); ``accepted()`` lists the events answered 202, in order."""

    def __init__(self, reject_keys: Iterable[str] = ()) -> None:
        self.requests: list[Request] = []
        self.outages: list[Outage] = []
        self.reject_keys = set(reject_keys)  # answered 400 as if invalid (a receiver-side rule we do not know)
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's API
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                status, headers, answer, body, errors = outer._answer(self.path, self.headers, raw)
                with outer.lock:
                    outer.requests.append(Request(time.monotonic(), status, body, errors))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v2/enqueue"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def fail(self, status: int, seconds: float, *, retry_after: str | None = None, keys: str | None = None) -> None:
        """Answer ``status`` for the next ``seconds`` (for dedup keys matching ``keys``, or all)."""
        now = time.monotonic()
        self.outages.append(Outage(status, now, now + seconds, retry_after, re.compile(keys) if keys else None))

    def _answer(self, path: str, headers: Any, raw: bytes) -> tuple[int, dict, dict, dict, list[str]]:
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {}, {"status": "invalid event", "message": "Event object is invalid",
                             "errors": ["invalid JSON"]}, {}, ["invalid JSON"]
        if not isinstance(body, dict):
            return 400, {}, {"status": "invalid event", "errors": ["not an object"]}, {}, ["not an object"]
        errors = pagerduty_errors(body)
        if path != "/v2/enqueue":
            errors.append(f"unknown path {path}")
        if not str(headers.get("Content-Type", "")).startswith("application/json"):
            errors.append("Content-Type must be application/json")
        if len(raw) > MAX_BODY:
            errors.append("request body larger than 512 KB")
        now = time.monotonic()
        for outage in self.outages:
            if outage.applies(now, str(body.get("dedup_key", ""))):
                extra = {"Retry-After": outage.retry_after} if outage.retry_after else {}
                return outage.status, extra, {"status": "error"}, body, []
        if errors or str(body.get("dedup_key")) in self.reject_keys:
            return 400, {}, {"status": "invalid event", "message": "Event object is invalid",
                             "errors": errors or ["rejected"]}, body, errors or ["rejected"]
        return 202, {}, {"status": "success", "message": "Event processed",
                         "dedup_key": body.get("dedup_key")}, body, []

    def accepted(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.status == 202]

    def invalid(self) -> list[Request]:
        """Requests that broke a published rule (must stay empty: driftline sends only valid events)."""
        with self.lock:
            return [r for r in self.requests if r.errors and r.errors != ["rejected"]]

    def wait_for(self, done: Callable[[list[Request]], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if done(self.accepted()):
                return True
            time.sleep(0.1)
        return done(self.accepted())

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
