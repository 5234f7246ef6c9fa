"""One contract, two control stores: MemoryControlStore (unit) and RedisControlStore (integration: the session's
Redis, and the session's 3-master Redis Cluster)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from streams.control.desired import DesiredState
from streams.control.ledger import AckMark, LedgerEntry
from streams.control.redis_store import keys_for, scope_tag
from streams.control.store import ControlStore, MemoryControlStore


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration),
                        pytest.param("cluster", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> Iterator[ControlStore]:
    uid = uuid.uuid4().hex[:12]  # a unique scope per test: no collision with other tests, runs or engineers
    if request.param == "memory":
        yield MemoryControlStore(f"risk:{uid}", ttl_ms=60_000, history_max=5)
        return
    from streams.control.redis_store import RedisControlStore

    client = request.getfixturevalue("client" if request.param == "redis" else "cluster_client")  # tests/conftest.py
    s = RedisControlStore(client, "risk", uid, ttl_ms=60_000, history_max=5)
    try:
        yield s
    finally:
        s.clear()


def entry(cid: str, seq: int, *, ref: str = "control[0]@1", status: str = "applied", by: str = "a") -> LedgerEntry:
    return LedgerEntry(cid, "pause", ref, status, "" if status == "applied" else "superseded", "", seq, seq, by,
                       "g", 100)


MARK = AckMark("applied", "", "g", 100)


def test_an_empty_scope_has_revision_0_and_no_entries(store: ControlStore) -> None:
    state, seq = store.current()
    assert (state, seq) == (DesiredState(), 0)
    look = store.look("c1", "a")
    assert (look.entry, look.acked, look.seq) == (None, False, 0)
    assert store.history() == [] and store.acks("c1") == {}


def test_record_stores_entry_state_history_and_the_deciders_ack(store: ControlStore) -> None:
    s1 = DesiredState(revision=1, version=2, paused=True, command_id="c1")
    res = store.record(entry("c1", 1), expected_seq=0, ack=MARK, new_state=s1, history={"revision": 1, "x": "é"})
    assert res.outcome == "recorded"
    assert store.current() == (s1, 1)
    look = store.look("c1", "a")
    assert look.entry == entry("c1", 1) and look.acked and look.state == s1 and look.seq == 1
    assert store.look("c1", "b").acked is False
    assert store.history() == [{"revision": 1, "x": "é"}]
    assert store.acks("c1") == {"a": MARK}


def test_a_decided_command_is_seen_and_nothing_changes(store: ControlStore) -> None:
    store.record(entry("c1", 1), expected_seq=0, ack=MARK, new_state=DesiredState(revision=1), history={"r": 1})
    res = store.record(entry("c1", 2, ref="control[0]@9", by="b"), expected_seq=1, ack=MARK,
                       new_state=DesiredState(revision=2), history={"r": 2})
    assert res.outcome == "seen" and res.entry == entry("c1", 1)
    assert store.current() == (DesiredState(revision=1), 1)
    assert store.history() == [{"r": 1}]


def test_a_moved_seq_is_a_conflict_and_nothing_changes(store: ControlStore) -> None:
    store.record(entry("c1", 1), expected_seq=0, ack=MARK, new_state=None, history=None)  # a rejection
    assert store.current() == (DesiredState(), 1)  # rejections count as decisions, state unchanged
    res = store.record(entry("c2", 1), expected_seq=0, ack=MARK, new_state=DesiredState(revision=1), history=None)
    assert res.outcome == "conflict"
    assert store.look("c2", "a").entry is None and store.current() == (DesiredState(), 1)


def test_claim_ack_is_once_per_instance(store: ControlStore) -> None:
    store.record(entry("c1", 1), expected_seq=0, ack=MARK, new_state=None, history=None)
    assert store.claim_ack("c1", "a", MARK) is False  # the decider's ack is recorded with the decision
    assert store.claim_ack("c1", "b", AckMark("rejected", "superseded", "g2", 7)) is True
    assert store.claim_ack("c1", "b", MARK) is False
    assert store.acks("c1")["b"] == AckMark("rejected", "superseded", "g2", 7)


def test_history_is_capped_newest_last(store: ControlStore) -> None:
    for i in range(8):
        store.record(entry(f"c{i}", i + 1), expected_seq=i, ack=MARK, new_state=DesiredState(revision=i + 1),
                     history={"revision": i + 1})
    assert [h["revision"] for h in store.history()] == [4, 5, 6, 7, 8]
    assert [h["revision"] for h in store.history(limit=2)] == [7, 8]


def test_clear_forgets_the_scope(store: ControlStore) -> None:
    store.record(entry("c1", 1), expected_seq=0, ack=MARK, new_state=DesiredState(revision=1), history={"r": 1})
    store.clear()
    assert store.current() == (DesiredState(), 0) and store.look("c1", "a").entry is None and store.history() == []


def test_concurrent_deciders_exactly_one_wins_per_seq(store: ControlStore) -> None:
    """16 threads race to decide 16 different commands from seq 0: one records, the others conflict."""
    results: list[str] = []
    barrier = threading.Barrier(16)

    def race(i: int) -> None:
        barrier.wait()
        results.append(store.record(entry(f"c{i}", 1, by=f"i{i}"), expected_seq=0, ack=MARK,
                                    new_state=DesiredState(revision=1, command_id=f"c{i}"), history=None).outcome)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 15 + ["recorded"]
    assert store.current()[1] == 1


def test_entries_and_acks_expire_the_state_does_not() -> None:
    now = [0.0]
    store = MemoryControlStore("m:x", ttl_ms=1_000, clock=lambda: now[0])
    store.record(entry("c1", 1), expected_seq=0, ack=MARK, new_state=DesiredState(revision=1), history=None)
    now[0] = 1.5
    assert store.look("c1", "a").entry is None and store.acks("c1") == {}
    assert store.current() == (DesiredState(revision=1), 1)


@pytest.mark.integration
def test_redis_keys_share_one_cluster_slot_and_carry_ttls(client) -> None:  # noqa: ANN001
    """Every key of a scope hashes to one slot (the hash tag); ledger keys expire, state and history do not."""
    from redis.crc import key_slot

    from streams.control.redis_store import RedisControlStore

    uid = uuid.uuid4().hex[:12]
    store = RedisControlStore(client, "risk", uid, ttl_ms=60_000)
    try:
        store.record(entry("c/1 {x}", 1), expected_seq=0, ack=MARK, new_state=DesiredState(revision=1),
                     history={"r": 1})
        keys = [k.decode() for k in client.scan_iter(match=f"{scope_tag('risk', uid)}*")]
        assert sorted(keys) == sorted(keys_for("risk", uid, "c/1 {x}"))
        assert len({key_slot(k.encode()) for k in keys}) == 1
        state_key, history_key, cmd_key, acks_key = keys_for("risk", uid, "c/1 {x}")
        assert client.pttl(state_key) == -1 and client.pttl(history_key) == -1
        assert 0 < client.pttl(cmd_key) <= 60_000 and 0 < client.pttl(acks_key) <= 60_000
    finally:
        store.clear()


def test_key_schema_is_pinned() -> None:
    assert keys_for("vitals-risk", "0a1b", "c%1:x") == [
        "dl:{ctl:vitals-risk:0a1b}:state", "dl:{ctl:vitals-risk:0a1b}:history",
        "dl:{ctl:vitals-risk:0a1b}:cmd:c%251%3Ax", "dl:{ctl:vitals-risk:0a1b}:acks:c%251%3Ax"]
