"""The control-topic protocol: signed commands, their verification, and acks (pure; no Kafka here).

A command is a JSON object; ``key_id`` names the key that signed it and ``signature`` is HMAC-SHA256 (hex)
under that key over the *canonical body*: the command without ``signature`` (``key_id`` included), serialised
with sorted keys and no whitespace. Verification refuses a missing or bad signature, a missing or unknown
``key_id`` (see :mod:`streams.control.keyring`), an ``issued_at`` older than ``max_age_s`` (or too far in the
future), malformed fields and unknown command kinds.

Whether a verified command was already applied (a replay) or comes after a newer one (``superseded``) is not
decided here but by the control ledger shared by every scorer (:mod:`streams.control.ledger`), because a
process's memory does not survive a restart.

Example:
    >>> key = b"k" * 32
    >>> cmd = sign_command(new_command("rollback", model="m", to_version=1, reason="psi", issued_by="monitor",
    ...                                now_ms=1_000), key)
    >>> cmd["key_id"]
    'k8097e91e4084'
    >>> verifier = CommandVerifier(key, max_age_s=60)
    >>> verifier.verify(cmd, now_ms=2_000).command
    'rollback'
    >>> verifier.verify(cmd, now_ms=90_000)
    Traceback (most recent call last):
    ...
    streams.exceptions.ControlError: stale command: issued 89s ago
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from streams.control.keyring import ControlKey, Keyring
from streams.exceptions import ControlError

COMMANDS = frozenset({"rollback", "promote", "set_traffic", "reload", "pause", "resume", "retrain_requested"})
MESSAGE_TYPES = frozenset({"command", "ack"})
# why an ack says ``rejected`` (its ``reason``; ``error`` carries the detail)
REJECT_REASONS = frozenset({"unverified", "replayed", "superseded", "invalid", "failed"})


@dataclass(frozen=True, slots=True)
class Command:
    """A verified command. ``from_version`` (optional) is the champion the issuer expected to replace: a
    command whose expectation no longer holds is ``superseded``. ``scope`` (optional) is the registry's id for
    the model (:meth:`models.registry.Registry.uid`): scorers of another registry that share the topic and the
    model name ignore the command. ``key_id`` is the key that signed it."""

    command_id: str
    command: str
    model: str
    to_version: int | None
    traffic: dict[str, Any] | None
    reason: str
    issued_by: str
    issued_at: int
    evidence: dict[str, Any] | None = None
    from_version: int | None = None
    scope: str | None = None
    key_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": "command", **asdict(self)}

    @property
    def alert_id(self) -> str:
        """The alert that caused the command (monitor rollbacks carry it in ``evidence``), or ''."""
        return str((self.evidence or {}).get("alert_id") or "")


@dataclass(frozen=True, slots=True)
class Ack:
    ack_for: str
    instance: str
    status: str  # applied | rejected
    active_version: int | None
    error: str | None
    at: int
    model: str = ""
    reason: str = ""  # for ``rejected``: one of REJECT_REASONS
    group: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"type": "ack", **asdict(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Ack:
        return cls(ack_for=str(d["ack_for"]), instance=str(d["instance"]), status=str(d["status"]),
                   active_version=d.get("active_version"), error=d.get("error"), at=int(d["at"]),
                   model=str(d.get("model", "")), reason=str(d.get("reason") or ""), group=str(d.get("group") or ""))


def new_command(command: str, *, model: str, now_ms: int, to_version: int | None = None,
                traffic: Mapping[str, Any] | None = None, reason: str = "", issued_by: str = "cli",
                evidence: Mapping[str, Any] | None = None, from_version: int | None = None,
                scope: str | None = None) -> dict[str, Any]:
    """An unsigned command body with a fresh ``command_id`` (``sign_command`` adds ``key_id`` and ``signature``)."""
    if command not in COMMANDS:
        raise ControlError(f"unknown command {command!r}; expected one of {sorted(COMMANDS)}")
    body = Command(uuid.uuid4().hex, command, model, to_version, dict(traffic) if traffic else None, reason,
                   issued_by, now_ms, dict(evidence) if evidence else None, from_version, scope).to_dict()
    del body["key_id"]
    return body


def canonical_body(message: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: every field but ``signature``, keys sorted, compact."""
    body = {k: v for k, v in message.items() if k != "signature"}
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def signature_for(message: Mapping[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical_body(message), hashlib.sha256).hexdigest()


def _signing_key(key: bytes | ControlKey | Keyring) -> ControlKey:
    if isinstance(key, Keyring):
        return key.signing
    if isinstance(key, ControlKey):
        return key
    if not key:
        raise ControlError("no control key: set DRIFTLINE_CONTROL_KEY (or run `driftline up`, which creates one)")
    return ControlKey.of(key)


def sign_command(message: Mapping[str, Any], key: bytes | ControlKey | Keyring) -> dict[str, Any]:
    """A copy of ``message`` with the signing key's ``key_id`` and the ``signature`` over both.

    ``key`` is a keyring (its current key signs), one :class:`ControlKey`, or raw key bytes (derived id)."""
    signer = _signing_key(key)
    body = {k: v for k, v in message.items() if k != "signature"}
    body["key_id"] = signer.key_id
    return {**body, "signature": signature_for(body, signer.secret)}


class CommandVerifier:
    """Verifies authenticity and freshness of commands for one scorer instance (no memory between calls)."""

    def __init__(self, keys: bytes | Keyring, max_age_s: float = 300.0, max_future_s: float = 30.0) -> None:
        if not keys:
            raise ControlError("no control key configured: refusing every command")
        self.keyring = keys if isinstance(keys, Keyring) else Keyring(ControlKey.of(keys))
        self.max_age_ms = int(max_age_s * 1000)
        self.max_future_ms = int(max_future_s * 1000)

    def verify(self, message: Mapping[str, Any], now_ms: int) -> Command:
        """Return the verified :class:`Command` or raise :class:`ControlError` saying why it was refused."""
        sig = message.get("signature")
        if not isinstance(sig, str) or not sig:
            raise ControlError("missing signature")
        key = self.keyring.for_id(message.get("key_id"))
        # compare bytes: compare_digest raises TypeError on non-ASCII str, which a forged message could send
        expected = signature_for(message, key.secret).encode()
        if not hmac.compare_digest(sig.encode("utf-8", "surrogatepass"), expected):
            raise ControlError("bad signature")
        try:
            cmd = Command(
                command_id=str(message["command_id"]), command=str(message["command"]), model=str(message["model"]),
                to_version=_opt_int(message.get("to_version")), traffic=message.get("traffic"),
                reason=str(message.get("reason", "")), issued_by=str(message.get("issued_by", "")),
                issued_at=int(message["issued_at"]), evidence=message.get("evidence"),
                from_version=_opt_int(message.get("from_version")), scope=_opt_str(message.get("scope")),
                key_id=key.key_id,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ControlError(f"malformed command: {exc!r}") from exc
        if not cmd.command_id:
            raise ControlError("malformed command: empty command_id")
        if cmd.command not in COMMANDS:
            raise ControlError(f"unknown command {cmd.command!r}")
        if now_ms - cmd.issued_at > self.max_age_ms:
            raise ControlError(f"stale command: issued {(now_ms - cmd.issued_at) / 1000:.0f}s ago")
        if cmd.issued_at - now_ms > self.max_future_ms:
            raise ControlError("command issued in the future (clock skew?)")
        return cmd


def _opt_str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"not a string: {value!r}")


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"not a version number: {value!r}")
    return int(value)
