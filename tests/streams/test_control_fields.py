"""The control protocol's fields, defaults and messages: written to kill the mutants ``make mutation`` found alive
(a verified command that loses its reason or issuer, a default bound moved by one, a message an operator cannot
act on)."""

from __future__ import annotations

import pytest

from streams.control.protocol import Ack, CommandVerifier, new_command, sign_command
from streams.exceptions import ControlError

KEY = b"k" * 32
NOW = 1_700_000_000_000


def test_new_command_defaults_and_fields() -> None:
    body = new_command("pause", model="m", now_ms=NOW)
    assert (body["reason"], body["issued_by"], body["traffic"], body["evidence"]) == ("", "cli", None, None)
    body = new_command("rollback", model="m", now_ms=NOW, to_version=2, reason="psi 0.4", issued_by="monitor",
                       evidence={"alert_id": "a1"})
    assert (body["reason"], body["issued_by"], body["to_version"], body["evidence"]) == (
        "psi 0.4", "monitor", 2, {"alert_id": "a1"})


def test_verify_keeps_every_field_and_defaults_the_optional_ones() -> None:
    cmd = sign_command(new_command("rollback", model="m", now_ms=NOW, to_version=1, reason="drift on hr",
                                   issued_by="monitor"), KEY)
    got = CommandVerifier(KEY).verify(cmd, now_ms=NOW)
    assert (got.reason, got.issued_by, got.issued_at, got.to_version) == ("drift on hr", "monitor", NOW, 1)
    bare = {k: v for k, v in new_command("resume", model="m", now_ms=NOW).items() if k not in ("reason", "issued_by")}
    got = CommandVerifier(KEY).verify(sign_command(bare, KEY), now_ms=NOW)
    assert (got.reason, got.issued_by) == ("", "")


def test_default_age_bounds_are_300_s_back_and_30_s_ahead() -> None:
    def verify_at(issued_at: int) -> str:
        cmd = sign_command(new_command("pause", model="m", now_ms=issued_at), KEY)
        try:
            CommandVerifier(KEY).verify(cmd, now_ms=NOW)
        except ControlError as exc:
            return str(exc)
        return "ok"

    assert verify_at(NOW - 300_000) == "ok"
    assert verify_at(NOW - 301_000) == "stale command: issued 301s ago"
    assert verify_at(NOW + 30_000) == "ok"
    assert verify_at(NOW + 30_001) == "command issued in the future (clock skew?)"


@pytest.mark.parametrize(("call", "message"), [
    (lambda: sign_command({"command": "pause"}, b""),
     "no control key: set DRIFTLINE_CONTROL_KEY (or run `driftline up`, which creates one)"),
    (lambda: CommandVerifier(b""), "no control key configured: refusing every command"),
    (lambda: CommandVerifier(KEY).verify({"command": "pause"}, now_ms=NOW), "missing signature"),
])
def test_messages_tell_the_operator_what_is_wrong(call, message: str) -> None:  # noqa: ANN001
    with pytest.raises(ControlError) as info:
        call()
    assert str(info.value) == message


def test_ack_round_trip_keeps_the_error() -> None:
    ack = Ack("c1", "w1", "rejected", 3, "unknown version 9", NOW, "m")
    assert Ack.from_dict(ack.to_dict()) == ack
    assert Ack.from_dict({"ack_for": "c1", "instance": "w1", "status": "applied", "at": NOW}).error is None
