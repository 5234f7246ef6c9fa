"""The save's counts, passed to redis-py as bytes, put the same command on the wire as the ints they stand for."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from redis.connection import Connection

from features.keys import LATEST_FIELD
from features.save_wire import _VECTOR_ONLY, _count, save_call


@given(st.integers(0, 10_000), st.binary(max_size=20))
def test_a_count_packs_as_its_int(n: int, blob: bytes) -> None:
    pack = Connection().pack_command
    assert pack("EVALSHA", b"sha", 1, b"key", _count(n), blob) == pack("EVALSHA", b"sha", 1, b"key", n, blob)


def test_the_vector_only_marker_packs_as_one_zero_and_the_field() -> None:
    pack = Connection().pack_command
    assert pack("EVALSHA", *_VECTOR_ONLY) == pack("EVALSHA", 1, 0, LATEST_FIELD)


@given(st.text(min_size=1, max_size=12), st.text(max_size=8),
       st.text(min_size=1, max_size=8), st.integers(0, 50))
def test_the_save_names_each_entity_by_its_store_keys(entity: str, group: str, topic: str, partition: int) -> None:
    """The save builds its keys from one prefix per call: the same bytes as state_key_for (the latest vector is a
    field of the state hash: no key of its own)."""

    from features.records import Event
    from features.state import EntityState
    from features.store import SaveRequest, SourcePosition, state_key_for
    from features.views import VITALS_VIEW

    try:
        entity.encode()
    except UnicodeEncodeError:
        return  # a lone surrogate: no key at all, either way
    view, pos, state = VITALS_VIEW, SourcePosition(group, topic, partition), EntityState()
    state.apply(view, Event(entity, 1_700_000_000_000, {"hr": 80.0}))
    keys, _args = save_call(view, SaveRequest(pos, {entity: state}, -1, 0, 60_000, None,
                                                     {entity: (1, {"hr_mean_5m": 1.0})}))
    assert keys[1:] == [state_key_for(view, pos, entity)]
