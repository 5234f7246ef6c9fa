"""A signature tampered anywhere is refused (through the public verify API only).

The older tests' bad signatures were all wrong from the first character, so a comparison cut to a prefix
passed them. Here every position of a valid signature is changed to every other hex digit, the signature is cut
to every shorter length, lengthened, re-cased, padded and prefixed, and the key differs in its last byte only.
Each attempt must raise ``ControlError``; none may be remembered, so the genuine command still verifies after.
"""

from __future__ import annotations

import string
from typing import Any

import pytest

from streams.control.protocol import CommandVerifier, new_command, sign_command
from streams.exceptions import ControlError

KEY = bytes(range(32))
NOW = 1_700_000_000_000


def signed(key: bytes = KEY) -> dict[str, Any]:
    return sign_command(new_command("rollback", model="risk", to_version=1, reason="psi", issued_by="monitor",
                                    now_ms=NOW), key)


def tampered(sig: str) -> list[str]:
    """Every one-character change, every shorter prefix, longer, re-cased, padded and prefixed variants."""
    out = []
    for i, ch in enumerate(sig):
        out += [sig[:i] + c + sig[i + 1 :] for c in string.hexdigits.lower()[:16] if c != ch]
        out.append(sig[:i] + sig[i + 1 :])  # one character dropped (length - 1, every position)
    out += [sig[:n] for n in range(len(sig))]  # every shorter prefix, the empty string included
    out += [sig + c for c in "0af"] + ["0" + sig, sig + sig]
    out += [sig.upper(), sig[:-1] + sig[-1].upper() if sig[-1].isalpha() else sig[:-1] + "A"]
    out += [sig.swapcase()[:32] + sig[32:], " " + sig, sig + " ", sig + "\n", "sha256=" + sig]
    out += [sig[:-1] + "é", sig[:-1] + "\uff10", sig[:-1] + "\ud800", sig[:31] + "\x00" + sig[32:]]
    return [t for t in out if t != sig]


def test_every_tampered_signature_is_refused_and_forgotten() -> None:
    cmd = signed()
    sig = cmd["signature"]
    assert len(sig) == 64 and all(c in string.hexdigits for c in sig)
    verifier = CommandVerifier(KEY)
    attempts = tampered(sig)
    assert len(attempts) > 64 * 16
    accepted = []
    for bad in attempts:
        try:
            verifier.verify({**cmd, "signature": bad}, now_ms=NOW)
        except ControlError:
            continue
        accepted.append(bad)
    assert accepted == []
    assert verifier.verify(cmd, now_ms=NOW).command == "rollback"  # no refused attempt was remembered


@pytest.mark.parametrize("position", [0, 15, 16, 31, 32, 62, 63])
def test_one_wrong_character_anywhere(position: int) -> None:
    cmd = signed()
    sig = cmd["signature"]
    flipped = sig[:position] + ("0" if sig[position] != "0" else "1") + sig[position + 1 :]
    with pytest.raises(ControlError, match="signature"):
        CommandVerifier(KEY).verify({**cmd, "signature": flipped}, now_ms=NOW)


def test_a_key_differing_in_its_last_byte_is_refused() -> None:
    other = KEY[:-1] + bytes([KEY[-1] ^ 1])
    with pytest.raises(ControlError):  # refused (as a bad signature or an unknown key id)
        CommandVerifier(KEY).verify(signed(other), now_ms=NOW)
    with pytest.raises(ControlError):
        CommandVerifier(other).verify(signed(KEY), now_ms=NOW)


@pytest.mark.parametrize("sig", [None, 0, 1, [], {}, b"00", 1.5])
def test_a_signature_that_is_not_a_string_is_refused(sig: object) -> None:
    with pytest.raises(ControlError):
        CommandVerifier(KEY).verify({**signed(), "signature": sig}, now_ms=NOW)
