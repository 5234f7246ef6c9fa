"""Control-topic protocol: canonical body, signing and every way verification refuses a command."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.control.keyring import ControlKey, Keyring, derive_key_id
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
from tests.budget import examples

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
    assert {k: v for k, v in out.items() if k not in ("signature", "key_id")} == body
    assert out["type"] == "command" and out["key_id"] == derive_key_id(KEY)


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
    with pytest.raises(ControlError, match="no control key"):
        Keyring.of(b"")


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


def test_wrong_key_is_refused() -> None:
    cmd = signed(key=b"other-key" * 4)  # its derived id is unknown here
    with pytest.raises(ControlError, match="unknown key id"):
        verifier().verify(cmd, now_ms=NOW)
    cmd = sign_command(new_command("pause", model="m", now_ms=NOW), ControlKey.of(b"other-key" * 4, "kid"))
    with pytest.raises(ControlError, match="bad signature"):  # the right id, the wrong key
        CommandVerifier(Keyring.of(KEY, "kid")).verify(cmd, now_ms=NOW)


@pytest.mark.parametrize("sig", ["0" * 64, "zz", "é" * 64, "\x00"])
def test_bad_signature_garbage_is_a_control_error(sig: str) -> None:
    cmd = signed()
    cmd["signature"] = sig
    with pytest.raises(ControlError, match="bad signature"):
        verifier().verify(cmd, now_ms=NOW)


def test_the_verifier_keeps_no_memory_replays_are_the_ledgers_job() -> None:
    v = verifier()
    cmd = signed()
    assert v.verify(cmd, now_ms=NOW).command_id == v.verify(dict(cmd), now_ms=NOW + 1).command_id


def test_refused_command_can_verify_later() -> None:
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
    ("scope", 7), ("scope", ["a"]), ("from_version", "two"), ("from_version", True), ("command_id", ""),
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


# ------------------------------------------------------------------------------------------ key rotation
OLD, NEW = b"o" * 32, b"n" * 32


def test_signature_carries_the_key_id_and_the_id_is_signed() -> None:
    cmd = sign_command(new_command("pause", model="m", now_ms=NOW), Keyring.of(NEW, "2024-06"))
    assert cmd["key_id"] == "2024-06"
    assert cmd["signature"] == signature_for({k: v for k, v in cmd.items() if k != "signature"}, NEW)
    assert CommandVerifier(Keyring.of(NEW, "2024-06")).verify(cmd, now_ms=NOW).key_id == "2024-06"


def test_during_a_rotation_both_keys_verify_and_only_the_current_one_signs() -> None:
    ring = Keyring.of(NEW, "new", previous=OLD, previous_id="old")
    v = CommandVerifier(ring)
    by_old = sign_command(new_command("pause", model="m", now_ms=NOW), ControlKey("old", OLD))
    by_new = sign_command(new_command("pause", model="m", now_ms=NOW), ring)
    assert by_new["key_id"] == "new"
    assert v.verify(by_old, now_ms=NOW).key_id == "old"
    assert v.verify(by_new, now_ms=NOW).key_id == "new"


def test_after_the_rotation_the_old_key_id_is_unknown() -> None:
    by_old = sign_command(new_command("pause", model="m", now_ms=NOW), ControlKey("old", OLD))
    with pytest.raises(ControlError, match="unknown key id 'old'"):
        CommandVerifier(Keyring.of(NEW, "new")).verify(by_old, now_ms=NOW)


def test_missing_key_id_is_refused_even_with_a_valid_hmac() -> None:
    cmd = signed()
    body = {k: v for k, v in cmd.items() if k not in ("signature", "key_id")}
    body["signature"] = signature_for(body, KEY)  # the pre-rotation format: no key_id
    with pytest.raises(ControlError, match="missing key_id"):
        verifier().verify(body, now_ms=NOW)


def test_a_known_key_id_with_the_other_keys_signature_is_a_bad_signature() -> None:
    ring = Keyring.of(NEW, "new", previous=OLD, previous_id="old")
    forged = sign_command(new_command("pause", model="m", now_ms=NOW), ControlKey("new", OLD))  # id swapped
    with pytest.raises(ControlError, match="bad signature"):
        CommandVerifier(ring).verify(forged, now_ms=NOW)


@pytest.mark.parametrize("key_id", ["", "has space", "x" * 65, "{tag}", "a/b"])
def test_invalid_key_ids_are_refused_at_configuration(key_id: str) -> None:
    with pytest.raises(ControlError):
        ControlKey(key_id, NEW)


def test_current_and_previous_key_must_have_different_ids() -> None:
    with pytest.raises(ControlError, match="share the id"):
        Keyring.of(NEW, "same", previous=OLD, previous_id="same")


def test_keys_never_show_in_repr() -> None:
    ring = Keyring.of(NEW, "new", previous=OLD, previous_id="old")
    text = repr(ring) + repr(ring.signing) + str(ring.previous) + repr(CommandVerifier(ring).keyring)
    assert "nnnn" not in text and "oooo" not in text and "new" in text


@settings(max_examples=200, deadline=None)
@given(ids=st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,10}", fullmatch=True), min_size=1, max_size=4,
                    unique=True), pick=st.integers(0, 3))
def test_key_selection_accepts_exactly_the_ring(ids: list[str], pick: int) -> None:
    """Signed by key i of a set: verified iff i is the ring's current or previous key, by that key."""
    keys = {kid: kid.encode() * 4 for kid in ids}
    ring = Keyring.of(keys[ids[0]], ids[0], *((keys[ids[1]], ids[1]) if len(ids) > 1 else ()))
    signer = ids[pick % len(ids)]
    cmd = sign_command(new_command("pause", model="m", now_ms=NOW), ControlKey(signer, keys[signer]))
    if signer in ring.accepted_ids:
        assert CommandVerifier(ring).verify(cmd, now_ms=NOW).key_id == signer
    else:
        with pytest.raises(ControlError, match="unknown key id"):
            CommandVerifier(ring).verify(cmd, now_ms=NOW)


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
           "issued_at", "evidence", "from_version", "scope", "key_id"]


@st.composite
def _mutations(draw: st.DrawFn) -> tuple[str, str, Any]:
    kind = draw(st.sampled_from(["change", "delete", "add"]))
    if kind == "add":
        name = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in _FIELDS and k != "signature"))
        return kind, name, draw(_json_scalar)
    return kind, draw(st.sampled_from(_FIELDS)), draw(_json_scalar)


@settings(max_examples=examples(300), deadline=None)
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
    # a changed key_id names no key this worker has (or, on a ring, the wrong key): refused either way
    with pytest.raises(ControlError, match="bad signature|key id|key_id"):
        CommandVerifier(KEY).verify(wire, now_ms=NOW)
    assert CommandVerifier(KEY).verify(cmd, now_ms=NOW).to_version == to_version
