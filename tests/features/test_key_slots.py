"""Every Lua step of the store touches keys of one Redis Cluster hash slot, whatever the entity ids (property)."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from features.keys import INDEX_BUCKETS, index_bucket, index_key
from features.save_wire import save_call
from features.state import EntityState
from features.store import SaveRequest, SourcePosition
from features.views import VITALS_VIEW

# entity ids with the characters that could forge a hash tag or a separator
ids = st.text(alphabet=st.sampled_from("ab{}:%é0 "), min_size=0, max_size=12)
topics = st.text(alphabet=st.sampled_from("abc._-09"), min_size=1, max_size=10)


@given(topic=topics, partition=st.integers(0, 500), entities=st.lists(ids, min_size=1, max_size=8, unique=True))
def test_a_save_step_touches_one_slot(topic: str, partition: int, entities: list[str]) -> None:
    view = dataclasses.replace(VITALS_VIEW, source_topic=topic)
    states = {}
    for e in entities:
        s = EntityState()
        s.apply(view, _event(e))
        states[e] = s
    r = SaveRequest(SourcePosition("g{1}", topic, partition), states, -1, 0, 60_000,
                    latest={e: (1, {}) for e in entities})
    keys, _ = save_call(view, r)  # the script's KEYS
    assert len(keys) == 1 + 2 * len(entities)
    assert {key_slot(k) for k in keys} == {key_slot(f"{{{topic}:{partition}}}".encode())}


@given(topic=topics, entity=ids)
def test_index_keys_live_in_their_buckets_slot_never_a_partitions(topic: str, entity: str) -> None:
    key = index_key(topic, "v{x}", 1, "fp", "g}", entity)
    bucket = index_bucket(entity)
    assert 0 <= bucket < INDEX_BUCKETS
    assert key_slot(key) == key_slot(f"{{ix:{topic}:{bucket}}}".encode())
    assert key.startswith(f"dl:{{ix:{topic}:{bucket}}}".encode())


def _event(entity: str):  # noqa: ANN202
    from features.records import Event

    return Event(entity, 1_700_000_000_000, {"hr": 80.0, "rr": 12.0, "spo2": 98.0, "temp": 37.0, "sbp": 120.0,
                                               "dbp": 80.0}, offset=0, partition=0)
