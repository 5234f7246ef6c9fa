"""The save's counts, passed to redis-py as bytes, put the same command on the wire as the ints they stand for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.connection import Connection

from features.save_wire import _STRING_KEY, _count, save_call


@given(st.integers(0, 10_000), st.binary(max_size=20))
def test_a_count_packs_as_its_int(n: int, blob: bytes) -> None:
    pack = Connection().pack_command
    assert pack("EVALSHA", b"sha", 1, b"key", _count(n), blob) == pack("EVALSHA", b"sha", 1, b"key", n, blob)


def test_the_string_key_marker_packs_as_minus_one_and_zero() -> None:
    pack = Connection().pack_command
    assert pack("EVALSHA", *_STRING_KEY) == pack("EVALSHA", -1, 0)


@given(st.text(min_size=1, max_size=12), st.text(max_size=8),
       st.text(min_size=1, max_size=8), st.integers(0, 50))
def test_the_save_names_each_entity_by_its_store_keys(entity: str, group: str, topic: str, partition: int) -> None:
    """The save builds its keys from one prefix per call: the same bytes as state_key_for / latest_key_for."""

    from features.records import Event
    from features.state import EntityState
    from features.store import SaveRequest, SourcePosition, latest_key_for, state_key_for
    from features.views import VITALS_VIEW

    try:
        entity.encode()
    except UnicodeEncodeError:
        return  # a lone surrogate: no key at all, either way
    view, pos, state = VITALS_VIEW, SourcePosition(group, topic, partition), EntityState()
    state.apply(view, Event(entity, 1_700_000_000_000, {"hr": 80.0}))
    keys, _args = save_call(view, SaveRequest(pos, {entity: state}, -1, 0, 60_000, None,
                                                     {entity: (1, {"hr_mean_5m": 1.0})}))
    assert keys[1:] == [state_key_for(view, pos, entity), latest_key_for(view, pos, entity)]
