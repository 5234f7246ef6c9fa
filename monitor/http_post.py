"""One JSON POST to a receiver and what its answer means for delivery (pure classification, one I/O call).

A receiver's answer falls in one of three outcomes:

- ``accepted``: any 2xx;
- ``retry``: no answer (network error, timeout), 408, 429 or any 5xx; ``Retry-After`` (seconds or an HTTP
  date) is parsed and handed on, and a 429 is flagged ``throttled`` (the receiver asks the whole sink to
  slow down, not only this alert);
- ``rejected``: any other status (400, 401, 403, 404, 413, ...): the request itself is wrong for this
  receiver and sending it again cannot help; the caller dead-letters the alert with the reason.

Example:
    >>> classify(202, None, "HTTP 202").outcome, classify(503, 2.0, "HTTP 503").retry_after_s
    ('accepted', 2.0)
    >>> a = classify(429, 30.0, "HTTP 429"); (a.outcome, a.throttled)
    ('retry', True)
    >>> classify(400, None, "HTTP 400").outcome, classify(None, None, "timeout").outcome
    ('rejected', 'retry')
    >>> parse_retry_after("120", now=0.0), parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", now=30.0)
    (120.0, 30.0)
    >>> parse_retry_after("soon", now=0.0) is None, parse_retry_after("-5", now=0.0)
    (True, 0.0)
"""

from __future__ import annotations

import email.utils
import http.client
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from monitor.exceptions import MonitorConfigError

Outcome = Literal["accepted", "retry", "rejected"]
MAX_REASON = 300


@dataclass(frozen=True)
class Attempt:
    """The result of one delivery attempt to one receiver."""

    outcome: Outcome
    reason: str = ""
    retry_after_s: float | None = None
    throttled: bool = False
    status: int | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"


ACCEPTED = Attempt("accepted", "accepted")


def classify(status: int | None, retry_after_s: float | None, reason: str) -> Attempt:
    """The delivery outcome of an HTTP answer (``status`` None: no answer at all)."""
    if status is not None and 200 <= status < 300:
        return Attempt("accepted", reason, status=status)
    if status is None or status in (408, 429) or status >= 500:
        return Attempt("retry", reason, retry_after_s, throttled=status == 429, status=status)
    return Attempt("rejected", reason, status=status)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or unreadable.

    Negative or past values mean "now" (0.0)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def redact(url: str) -> str:
    """``scheme://host:port`` of ``url``: what logs may show (paths and queries can carry tokens).

    >>> redact("https://user:pw@hooks.example.com/T0/B1?token=x")
    'https://hooks.example.com'
    """
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def check_url(url: str, what: str) -> str:
    """``url`` if it is http(s), else a :class:`MonitorConfigError` naming ``what``."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise MonitorConfigError(f"{what} URL must be http(s), got scheme of {redact(url)!r}")
    return url


def post_json(url: str, body: bytes, *, headers: Mapping[str, str] | None = None, timeout_s: float = 10.0,
              method: str = "POST") -> Attempt:
    """Send ``body`` (JSON bytes) once and classify the answer; never raises for HTTP or network errors."""
    req = urllib.request.Request(url, data=body, method=method, headers={
        "Content-Type": "application/json", "User-Agent": "driftline", **dict(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            resp.read(65536)
            return classify(resp.status, None, f"HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        retry_after = parse_retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        try:
            detail = exc.read(2048).decode("utf-8", "replace").strip().replace("\n", " ")
        except (OSError, http.client.HTTPException):
            detail = ""
        finally:
            exc.close()
        reason = f"HTTP {exc.code}" + (f": {detail}" if detail else "")
        return classify(exc.code, retry_after, reason[:MAX_REASON])
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        why = getattr(exc, "reason", None) or exc
        return classify(None, None, f"network error {type(exc).__name__}: {why}"[:MAX_REASON])
