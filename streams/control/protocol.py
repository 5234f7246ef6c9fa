"""The control-topic protocol: signed commands, their verification, and acks (pure; no Kafka here).

A command is a JSON object; its ``signature`` is HMAC-SHA256 (hex) over the *canonical body*: the
command without ``signature``, serialised with sorted keys and no whitespace. Verification rejects a
missing or bad signature, a replayed ``command_id``, an ``issued_at`` older than ``max_age_s`` (or too far
in the future), and unknown command kinds.

Example:
    >>> key = b"k" * 32
    >>> cmd = sign_command(new_command("rollback", model="m", to_version=1, reason="psi", issued_by="monitor",
    ...                                now_ms=1_000), key)
    >>> verifier = CommandVerifier(key, max_age_s=60)
    >>> verifier.verify(cmd, now_ms=2_000).command
    'rollback'
    >>> verifier.verify(cmd, now_ms=2_000)
    Traceback (most recent call last):
    ...
    streams.exceptions.ControlError: replayed command_id ...
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from streams.exceptions import ControlError

COMMANDS = frozenset({"rollback", "promote", "set_traffic", "reload", "pause", "resume", "retrain_requested"})
MESSAGE_TYPES = frozenset({"command", "ack"})


@dataclass(frozen=True, slots=True)
class Command:
    command_id: str
    command: str
    model: str
    to_version: int | None
    traffic: dict[str, Any] | None
    reason: str
    issued_by: str
    issued_at: int
    evidence: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"type": "command", **asdict(self)}


@dataclass(frozen=True, slots=True)
class Ack:
    ack_for: str
    instance: str
    status: str  # applied | rejected
    active_version: int | None
    error: str | None
    at: int
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": "ack", **asdict(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Ack:
        return cls(ack_for=str(d["ack_for"]), instance=str(d["instance"]), status=str(d["status"]),
                   active_version=d.get("active_version"), error=d.get("error"), at=int(d["at"]),
                   model=str(d.get("model", "")))


def new_command(command: str, *, model: str, now_ms: int, to_version: int | None = None,
                traffic: Mapping[str, Any] | None = None, reason: str = "", issued_by: str = "cli",
                evidence: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An unsigned command body with a fresh ``command_id``."""
    if command not in COMMANDS:
        raise ControlError(f"unknown command {command!r}; expected one of {sorted(COMMANDS)}")
    return Command(uuid.uuid4().hex, command, model, to_version, dict(traffic) if traffic else None, reason,
                   issued_by, now_ms, dict(evidence) if evidence else None).to_dict()


def canonical_body(message: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: every field but ``signature``, keys sorted, compact."""
    body = {k: v for k, v in message.items() if k != "signature"}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def signature_for(message: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical_body(message), hashlib.sha256).hexdigest()


def sign_command(message: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """Return a copy of ``message`` with its ``signature``."""
    if not key:
        raise ControlError("no control key: set DRIFTLINE_CONTROL_KEY (or run `driftline up`, which creates one)")
    return {**message, "signature": signature_for(message, key)}


class CommandVerifier:
    """Verifies commands for one scorer instance; remembers recent command ids to refuse replays."""

    def __init__(self, key: bytes, max_age_s: float = 300.0, max_future_s: float = 30.0, remember: int = 10_000):
        if not key:
            raise ControlError("no control key configured: refusing every command")
        self._key = key
        self._max_age_ms = int(max_age_s * 1000)
        self._max_future_ms = int(max_future_s * 1000)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember

    def verify(self, message: Mapping[str, Any], now_ms: int) -> Command:
        """Return the verified :class:`Command` or raise :class:`ControlError` saying why it was refused."""
        sig = message.get("signature")
        if not isinstance(sig, str) or not sig:
            raise ControlError("missing signature")
        # compare bytes: compare_digest raises TypeError on non-ASCII str, which a forged message could send
        expected = signature_for(message, self._key).encode()
        if not hmac.compare_digest(sig.encode("utf-8", "surrogatepass"), expected):
            raise ControlError("bad signature")
        try:
            cmd = Command(
                command_id=str(message["command_id"]), command=str(message["command"]), model=str(message["model"]),
                to_version=None if message.get("to_version") is None else int(message["to_version"]),
                traffic=message.get("traffic"), reason=str(message.get("reason", "")),
                issued_by=str(message.get("issued_by", "")), issued_at=int(message["issued_at"]),
                evidence=message.get("evidence"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlError(f"malformed command: {exc!r}") from exc
        if cmd.command not in COMMANDS:
            raise ControlError(f"unknown command {cmd.command!r}")
        if cmd.command_id in self._seen:
            raise ControlError(f"replayed command_id {cmd.command_id}")
        if now_ms - cmd.issued_at > self._max_age_ms:
            raise ControlError(f"stale command: issued {(now_ms - cmd.issued_at) / 1000:.0f}s ago")
        if cmd.issued_at - now_ms > self._max_future_ms:
            raise ControlError("command issued in the future (clock skew?)")
        self._seen[cmd.command_id] = None
        if len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        return cmd
