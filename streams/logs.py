"""Logging setup for the ``driftline`` processes: plain text or one JSON object per line, never a secret.

``setup_logging(json_lines=True)`` writes lines such as::

    {"ts": "2024-05-01T12:00:00.123Z", "level": "ERROR", "logger": "streams.runtime.loop", "msg": "batch failed",
     "partition": 2, "offset": 1041}

``model_version``, ``partition``, ``offset`` (and the other :data:`EXTRA_FIELDS`) are added when a call passes
them with ``extra=``. A :class:`RedactingFilter` on the handler masks (a) the values of fields whose name
matches ``password|secret|key|token`` (``extra=`` fields, dict arguments, ``name=value`` text in the message)
and (b) every configured secret value (the control key, the PagerDuty routing key, SASL passwords) wherever it
appears, in text and JSON output alike.

Example:
    >>> f = RedactingFilter(secrets=["s3cr3t-value"])
    >>> f.redact_text("token=abc123 control key s3cr3t-value used")
    'token=*** control key *** used'
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

REDACTED = "***"
SECRET_NAME = re.compile(r"password|passwd|secret|key|token", re.IGNORECASE)
# name=value / name: value / "name": "value" in free text, for names that look secret.
_INLINE = re.compile(r"""(?P<name>[\w.-]*(?:password|passwd|secret|key|token)[\w.-]*)(?P<q1>["']?)(?P<sep>\s*[=:]\s*)"""
                     r"""(?P<q2>["']?)(?P<value>[^\s,;"'}&)\]]+)""", re.IGNORECASE)
EXTRA_FIELDS = ("model", "model_version", "topic", "partition", "offset", "stage", "command_id", "instance")
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words
_HANDLER_NAME = "driftline"


class RedactingFilter(logging.Filter):
    """Masks secret values in a record before any handler formats it (the record itself is rewritten).

    Example:
        >>> f = RedactingFilter()
        >>> f.redact_value("routing_key", "R0UT1NG")
        '***'
        >>> f.redact_value("partition", 3)
        3
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= _MIN_SECRET_LEN}, key=len, reverse=True)

    def redact_text(self, text: str) -> str:
        """Configured secret values and ``name=value`` pairs with a secret-looking name, masked."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return _INLINE.sub(lambda m: f"{m['name']}{m['q1']}{m['sep']}{m['q2']}{REDACTED}", text)

    def redact_value(self, name: str, value: Any) -> Any:
        """``value`` masked when ``name`` looks secret; strings and containers scanned otherwise."""
        if SECRET_NAME.search(name) and value not in (None, ""):
            return REDACTED
        return self._scan(value)

    def _scan(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, Mapping):
            return {k: self.redact_value(str(k), v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._scan(v) for v in value)
        return value

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the message with its arguments, mask it, and mask secret-looking ``extra=`` fields."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record
            message = f"{record.msg} {record.args!r}"
        record.msg, record.args = self.redact_text(message), None
        for name in list(vars(record)):
            if name not in _STANDARD_ATTRS:
                setattr(record, name, self.redact_value(name, getattr(record, name)))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact_text(record.exc_text)
        return True


_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ms), ``level``, ``logger``, ``msg``, then extra fields.

    Example:
        >>> rec = logging.LogRecord("streams.runtime.loop", logging.INFO, __file__, 1, "batch %d", (7,), None)
        >>> rec.partition = 2
        >>> rec.created = 0.0
        >>> JsonFormatter().format(rec)
        '{"ts": "1970-01-01T00:00:00.000Z", "level": "INFO", "logger": "streams.runtime.loop", "msg": "batch 7", "partition": 2}'
    """

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        out: dict[str, Any] = {"ts": ts, "level": record.levelname, "logger": record.name,
                               "msg": record.getMessage()}
        for name in EXTRA_FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        for name, value in vars(record).items():  # any other extra= field, after the well-known ones
            if name not in _STANDARD_ATTRS and name not in out:
                out[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(json_lines: bool, level: int | str = logging.WARNING, *, secrets: Iterable[str] = (),
                  stream: TextIO | None = None) -> logging.Handler:
    """Configure the root logger: one handler on ``stream`` (stderr), JSON lines or plain text, with a
    :class:`RedactingFilter` masking ``secrets``. Calling it again replaces the handler it installed."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RedactingFilter(secrets))
    handler.setFormatter(JsonFormatter() if json_lines else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def configured_secrets(env: Mapping[str, str]) -> list[str]:
    """Secret values a driftline process may hold: control key (env or the stack's key file), PagerDuty
    routing key, webhook URL, Kafka SASL/SSL passwords."""
    from streams.exceptions import ConfigError
    from streams.settings import SECRET_KEYS, Settings

    names = ("DRIFTLINE_CONTROL_KEY", "DRIFTLINE_CONTROL_PREVIOUS_KEY", "DRIFTLINE_PAGERDUTY_ROUTING_KEY",
             "DRIFTLINE_WEBHOOK_URL", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_KEY_PASSWORD")
    found = [env[n] for n in names if env.get(n)]
    try:
        settings = Settings.from_env(env)
    except ConfigError:
        return found
    found += [settings.control_key, settings.control_previous_key, settings.pagerduty_routing_key]
    found += [v for k, v in settings.kafka.security.items() if k in SECRET_KEYS]
    key_file = Path(settings.run_dir) / "control.key"
    with contextlib.suppress(OSError):
        found.append(key_file.read_text().strip())
    return [s for s in found if s]


__all__ = ["setup_logging", "configured_secrets", "RedactingFilter", "JsonFormatter",
           "EXTRA_FIELDS", "REDACTED"]
