"""One checkpoint save's ``save_state.lua`` call: its KEYS and ARGV (:func:`save_call`, the reference), and its wire
bytes (:func:`packed_save_call`).

At 100,000 entities every event dirties another entity, so a checkpoint writes one state row and one latest
vector per event. Building the call in Python (``EntityState.to_redis``, ``LatestCodec.encode``, ~9 arguments per
entity) and packing it (``hiredis.pack_command``) cost ~13 us per entity. ``features._save`` (C) writes the
same bytes in one pass for the common case (no distinct-value sets, every vector whole and made of floats); any
other request, or a build without the extension (or ``DRIFTLINE_PURE_PYTHON=1``), is packed from
:func:`save_call` (``tests/features/test_save_wire.py`` checks the bytes are the same on random states).

Example:
    >>> from features.records import Event
    >>> from features.state import EntityState
    >>> from features.store import SaveRequest, SourcePosition
    >>> from features.views import VITALS_VIEW
    >>> state = EntityState()
    >>> state.apply(VITALS_VIEW, Event("p1", 1_700_000_000_000, {"hr": 80.0}))
    >>> request = SaveRequest(SourcePosition("g", "vitals", 0), {"p1": state}, -1, 0, 60_000)
    >>> keys, args = save_call(VITALS_VIEW, request)
    >>> len(keys), args[4:6]
    (2, [b'1', b'0'])
    >>> packed_save_call(VITALS_VIEW, request, "0" * 40) == pack_evalsha("0" * 40, keys, args)
    True
"""

from __future__ import annotations

from features.definitions import FeatureView
from features.kernel import compiled_parts_on
from features.keys import encode_position
from features.latest import codec_for
from features.redis_packed import pack_evalsha
from features.store import SaveRequest, latest_key_for, offset_key_for, state_key_for

try:
    from features._save import pack_save
except ImportError:  # built without a C compiler: save_call + pack_evalsha serve
    pack_save = None

__all__ = ["save_call", "packed_save_call"]

# Small counts as the bytes redis-py would send for the int (its encoder writes ``repr(n)``): the same command on
# the wire, without the int path of redis-py's per-argument encoder.
_COUNTS = tuple(str(n).encode() for n in range(64))
_STRING_KEY = (b"-1", b"0")  # save_state.lua: nset -1, ndel 0 = a plain string value follows


def save_call(view: FeatureView, r: SaveRequest) -> tuple[list[bytes], list[bytes | int]]:
    """KEYS and ARGV of ``save_state.lua`` for one request (see the script's header)."""
    keys: list[bytes] = [offset_key_for(view, r.pos)]
    # every key of the call shares one prefix (as features.redis_reads reads it): the entity's UTF-8 completes it
    state_prefix, latest_prefix = state_key_for(view, r.pos, ""), latest_key_for(view, r.pos, "")
    args: list[bytes | int] = list(_head(r))
    for entity_id, st in r.states.items():
        sets, dels = st.to_redis()
        if not sets and not dels:
            continue
        keys.append(state_prefix + entity_id.encode())
        args.append(_count(len(sets)))
        args.append(_count(len(dels)))
        for f, v in sets.items():
            args.append(f)
            args.append(v)
        args.extend(dels)
    encode = codec_for(view.feature_names).encode
    for entity_id, (as_of, vector) in (r.latest or {}).items():  # same slot (hash tag): same atomic step
        keys.append(latest_prefix + entity_id.encode())
        args += [*_STRING_KEY, encode(as_of, vector)]
    return keys, args


def packed_save_call(view: FeatureView, r: SaveRequest, sha: str, *, mark_saved: bool = False) -> bytes:
    """The wire bytes of ``EVALSHA sha`` with :func:`save_call`'s KEYS and ARGV: from ``features._save`` when it
    takes the request, else packed from :func:`save_call`. ``mark_saved``: the request's states are marked saved
    once their changes are in the bytes (a started save; ``EntityState.mark_saved``), by the C part while it has
    them at hand."""
    if pack_save is not None and compiled_parts_on():
        codec = codec_for(view.feature_names)
        packed = pack_save(sha, offset_key_for(view, r.pos), _head(r), state_key_for(view, r.pos, ""),
                           r.states if type(r.states) is dict else dict(r.states),
                           latest_key_for(view, r.pos, ""),
                           r.latest if r.latest is None or type(r.latest) is dict else dict(r.latest),
                           codec.feature_names, codec.head, mark_saved)
        if packed is not None:
            return packed
    packed = pack_evalsha(sha, *save_call(view, r))
    if mark_saved:
        r.mark_saved()
    return packed


def _head(r: SaveRequest) -> tuple[int, int, bytes, int]:
    """The first four ARGV: expected offset, new offset, the offset key's new value, the TTL in ms."""
    return r.expected_offset, r.new_offset, encode_position(r.new_offset, r.watermark_ms), int(r.ttl_ms)


def _count(n: int) -> bytes | int:
    """``n`` as redis-py would send it: from a table for small counts, else the int itself.

    >>> _count(3), _count(1000)
    (b'3', 1000)
    """
    return _COUNTS[n] if n < 64 else n
