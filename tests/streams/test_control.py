"""Control-topic protocol: canonical body, signing and every way verification refuses a command."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.control.protocol import (
    COMMANDS,
    Ack,
    CommandVerifier,
    canonical_body,
    new_command,
    sign_command,
    signature_for,
)
from streams.exceptions import ControlError

KEY = b"k" * 32
NOW = 1_700_000_000_000


def signed(command: str = "rollback", *, now_ms: int = NOW, key: bytes = KEY, **kw: Any) -> dict[str, Any]:
    kw.setdefault("model", "risk")
    return sign_command(new_command(command, now_ms=now_ms, **kw), key)


def verifier(**kw: Any) -> CommandVerifier:
    return CommandVerifier(KEY, **kw)


# ------------------------------------------------------------------------------------------ canonical body
def test_canonical_body_ignores_signature_and_key_order() -> None:
    a = {"b": 1, "a": "x", "signature": "deadbeef"}
    b = {"a": "x", "b": 1}
    assert canonical_body(a) == canonical_body(b) == b'{"a":"x","b":1}'


def test_canonical_body_sorts_nested_keys() -> None:
    assert canonical_body({"t": {"z": 1, "a": 2}}) == b'{"t":{"a":2,"z":1}}'


def test_signature_is_hmac_sha256_hex_over_canonical_body() -> None:
    import hashlib
    import hmac

    msg = {"command": "pause", "model": "m"}
    expected = hmac.new(KEY, b'{"command":"pause","model":"m"}', hashlib.sha256).hexdigest()
    assert signature_for(msg, KEY) == expected
    assert len(expected) == 64


def test_sign_command_returns_a_copy_and_keeps_fields() -> None:
    body = new_command("promote", model="m", now_ms=NOW, to_version=3, issued_by="ana")
    out = sign_command(body, KEY)
    assert "signature" not in body
    assert {k: v for k, v in out.items() if k != "signature"} == body
    assert out["type"] == "command"


def test_sign_command_without_key_refuses() -> None:
    with pytest.raises(ControlError, match="DRIFTLINE_CONTROL_KEY"):
        sign_command(new_command("pause", model="m", now_ms=NOW), b"")


def test_new_command_refuses_unknown_kind_and_makes_fresh_ids() -> None:
    with pytest.raises(ControlError, match="unknown command"):
        new_command("explode", model="m", now_ms=NOW)
    ids = {new_command("pause", model="m", now_ms=NOW)["command_id"] for _ in range(20)}
    assert len(ids) == 20


def test_verifier_refuses_to_exist_without_key() -> None:
    with pytest.raises(ControlError, match="no control key"):
        CommandVerifier(b"")


# ------------------------------------------------------------------------------------------ verification
def test_valid_command_round_trips_through_json() -> None:
    cmd = signed("set_traffic", traffic={"challenger": 2, "canary_pct": 10.0}, reason="canary",
                 evidence={"psi": 0.3})
    wire = orjson.loads(orjson.dumps(cmd))
    got = verifier().verify(wire, now_ms=NOW + 1_000)
    assert (got.command, got.model, got.traffic, got.evidence, got.issued_at) == (
        "set_traffic", "risk", {"challenger": 2, "canary_pct": 10.0}, {"psi": 0.3}, NOW)
    assert got.to_dict()["type"] == "command"


def test_every_known_command_verifies() -> None:
    v = verifier()
    for kind in sorted(COMMANDS):
        assert v.verify(signed(kind), now_ms=NOW).command == kind


@pytest.mark.parametrize("sig", [None, "", 123, ["ab"]])
def test_missing_or_non_string_signature(sig: Any) -> None:
    cmd = signed()
    if sig is None:
        del cmd["signature"]
    else:
        cmd["signature"] = sig
    with pytest.raises(ControlError, match="missing signature"):
        verifier().verify(cmd, now_ms=NOW)


def test_bad_signature_wrong_key() -> None:
    cmd = signed(key=b"other-key" * 4)
    with pytest.raises(ControlError, match="bad signature"):
        verifier().verify(cmd, now_ms=NOW)


@pytest.mark.parametrize("sig", ["0" * 64, "zz", "é" * 64, "\x00"])
def test_bad_signature_garbage_is_a_control_error(sig: str) -> None:
    cmd = signed()
    cmd["signature"] = sig
    with pytest.raises(ControlError, match="bad signature"):
        verifier().verify(cmd, now_ms=NOW)


def test_replayed_command_id_is_refused_even_with_valid_signature() -> None:
    v = verifier()
    cmd = signed()
    v.verify(cmd, now_ms=NOW)
    with pytest.raises(ControlError, match="replayed command_id"):
        v.verify(dict(cmd), now_ms=NOW + 1)


def test_replay_memory_is_bounded_and_forgets_the_oldest() -> None:
    v = CommandVerifier(KEY, remember=2)
    first, second, third = signed(), signed(), signed()
    for c in (first, second, third):
        v.verify(c, now_ms=NOW)
    v.verify(first, now_ms=NOW)  # forgotten: accepted again (freshness still bounds real replays)
    with pytest.raises(ControlError, match="replayed"):
        v.verify(third, now_ms=NOW)


def test_refused_command_is_not_remembered() -> None:
    v = verifier(max_age_s=10)
    cmd = signed(now_ms=NOW + 60_000)  # too far in the future for now
    with pytest.raises(ControlError, match="future"):
        v.verify(cmd, now_ms=NOW)
    assert v.verify(cmd, now_ms=NOW + 60_000).command == "rollback"


def test_stale_command_boundary() -> None:
    cmd = signed()
    assert verifier(max_age_s=60).verify(cmd, now_ms=NOW + 60_000).command_id == cmd["command_id"]
    with pytest.raises(ControlError, match="stale command"):
        verifier(max_age_s=60).verify(cmd, now_ms=NOW + 60_001)


def test_future_command_boundary() -> None:
    cmd = signed(now_ms=NOW + 30_000)
    assert verifier(max_future_s=30).verify(cmd, now_ms=NOW).issued_at == NOW + 30_000
    with pytest.raises(ControlError, match="future"):
        verifier(max_future_s=30).verify(cmd, now_ms=NOW - 1)


def test_unknown_command_signed_with_the_right_key_is_refused() -> None:
    body = new_command("pause", model="m", now_ms=NOW)
    body["command"] = "format_disk"
    with pytest.raises(ControlError, match="unknown command 'format_disk'"):
        verifier().verify(sign_command(body, KEY), now_ms=NOW)


@pytest.mark.parametrize("field,value", [
    ("command_id", None), ("issued_at", None), ("issued_at", "yesterday"), ("to_version", "v2"),
    ("to_version", [1]), ("model", None), ("command", None),
])
def test_malformed_fields_signed_with_the_right_key(field: str, value: Any) -> None:
    body = new_command("rollback", model="m", now_ms=NOW, to_version=1)
    if value is None:
        del body[field]
    else:
        body[field] = value
    with pytest.raises(ControlError, match="malformed command"):
        verifier().verify(sign_command(body, KEY), now_ms=NOW)


def test_ack_round_trip() -> None:
    ack = Ack("c1", "inst-1", "applied", 3, None, NOW, "risk")
    d = orjson.loads(orjson.dumps(ack.to_dict()))
    assert d["type"] == "ack"
    assert Ack.from_dict(d) == ack
    assert Ack.from_dict({"ack_for": "c", "instance": "i", "status": "rejected", "at": 5}).model == ""


# ------------------------------------------------------------------------------------------ property
_json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=8),
                         st.floats(allow_nan=False, allow_infinity=False))
_FIELDS = ["type", "command_id", "command", "model", "to_version", "traffic", "reason", "issued_by",
           "issued_at", "evidence"]


@st.composite
def _mutations(draw: st.DrawFn) -> tuple[str, str, Any]:
    kind = draw(st.sampled_from(["change", "delete", "add"]))
    if kind == "add":
        name = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in _FIELDS and k != "signature"))
        return kind, name, draw(_json_scalar)
    return kind, draw(st.sampled_from(_FIELDS)), draw(_json_scalar)


@settings(max_examples=300, deadline=None)
@given(mutation=_mutations(), to_version=st.integers(1, 50), reason=st.text(max_size=20))
def test_any_mutation_of_a_signed_body_fails_verification(mutation: tuple[str, str, Any], to_version: int,
                                                          reason: str) -> None:
    cmd = signed(to_version=to_version, reason=reason, traffic={"canary_pct": 5.0})
    kind, name, value = mutation
    tampered = dict(cmd)
    if kind == "delete":
        del tampered[name]
    elif kind == "add":
        tampered[name] = value
    else:
        if orjson.dumps(value) == orjson.dumps(cmd[name]):
            value = [value]  # make sure the value really changes
        tampered[name] = value
    # the tampered message goes through the wire as JSON, like a real one
    wire = orjson.loads(orjson.dumps(tampered))
    with pytest.raises(ControlError, match="bad signature"):
        CommandVerifier(KEY).verify(wire, now_ms=NOW)
    assert CommandVerifier(KEY).verify(cmd, now_ms=NOW).to_version == to_version
