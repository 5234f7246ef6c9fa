"""The Redis key schema: exact bytes are part of the on-disk contract."""

from __future__ import annotations

from features.keys import decode_position, encode_position, offset_key, state_key
from features.store import SourcePosition, offset_key_for, state_key_for
from features.views import VITALS_VIEW


def test_pinned_key_bytes() -> None:
    assert (
        state_key("vitals", 3, "vitals", 1, "0123456789ab", "driftline-features", "patient:42")
        == b"dl:{vitals:3}:fv:vitals:v1:0123456789ab:g:driftline-features:e:patient:42"
    )
    assert (
        offset_key("vitals", 3, "vitals", 1, "0123456789ab", "driftline-features")
        == b"dl:{vitals:3}:fv:vitals:v1:0123456789ab:g:driftline-features:off"
    )


def test_components_are_escaped() -> None:
    # a group containing the separators cannot collide with another (group, entity) pair
    a = state_key("t", 0, "v", 1, "f", "a:e:b", "c")
    b = state_key("t", 0, "v", 1, "f", "a", "b:e:c")
    assert a != b
    assert a == b"dl:{t:0}:fv:v:v1:f:g:a%3Ae%3Ab:e:c"
    assert state_key("t", 0, "v{x}", 1, "f", "g", "e") == b"dl:{t:0}:fv:v%7Bx%7D:v1:f:g:g:e:e"


def test_hash_tag_shared_by_offset_and_state() -> None:
    pos = SourcePosition("g", "vitals", 5)
    for key in (state_key_for(VITALS_VIEW, pos, "p{1}"), offset_key_for(VITALS_VIEW, pos)):
        start = key.index(b"{")
        assert key[start : key.index(b"}", start) + 1] == b"{vitals:5}"
    assert VITALS_VIEW.fingerprint().encode() in offset_key_for(VITALS_VIEW, pos)


def test_position_roundtrip() -> None:
    for off, wm in [(-1, None), (0, None), (123456789012, 1_700_000_000_000)]:
        assert decode_position(encode_position(off, wm)) == (off, wm)
