"""The desired-state machine and the ledger's sightings (pure): ordering, transitions, classification."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.control.desired import DesiredState, decide, history_entry, order_conflict, parse_traffic
from streams.control.ledger import LedgerEntry, Sighting, classify, record_ref
from streams.control.protocol import Command

BASE = DesiredState().with_baseline(2)


def cmd(kind: str, at: int = 100, cid: str = "c1", *, to_version: int | None = None,
        traffic: dict[str, Any] | None = None, from_version: int | None = None,
        evidence: dict[str, Any] | None = None) -> Command:
    return Command(cid, kind, "m", to_version, traffic, "why", "ana", at, evidence, from_version, key_id="k1")


# ------------------------------------------------------------------------------------------ transitions
def test_baseline_only_before_the_first_command() -> None:
    assert DesiredState().with_baseline(3).version == 3
    assert DesiredState(revision=1, version=1).with_baseline(3).version == 1


def test_version_commands_set_the_champion_and_clear_the_split() -> None:
    s = decide(BASE, cmd("set_traffic", 10, "t", traffic={"challenger": 3, "canary_pct": 20}), to_version=None,
               now_ms=11).state
    assert (s.challenger, s.canary_pct) == (3, 20.0)
    for kind in ("rollback", "promote", "reload"):
        v = decide(s, cmd(kind, 20, kind), to_version=1, now_ms=21)
        assert v.applied and (v.state.version, v.state.challenger, v.state.canary_pct, v.state.shadow) == (
            1, None, 0.0, False)
        assert v.state.revision == s.revision + 1 and v.state.command == kind


def test_the_new_state_names_its_command() -> None:
    v = decide(BASE, cmd("rollback", 100, "c9", evidence={"alert_id": "a-7"}), to_version=1, now_ms=150,
               decided_by="w1")
    s = v.state
    assert (s.command_id, s.issued_at, s.issued_by, s.reason, s.alert_id, s.key_id, s.applied_at, s.decided_by) == (
        "c9", 100, "ana", "why", "a-7", "k1", 150, "w1")


def test_pause_and_resume_keep_the_champion() -> None:
    p = decide(BASE, cmd("pause", 1, "p"), to_version=None, now_ms=1).state
    assert p.paused and p.version == 2
    r = decide(p, cmd("resume", 2, "r"), to_version=None, now_ms=2).state
    assert not r.paused and r.version == 2 and r.revision == 2


@pytest.mark.parametrize("kind,to_version,match", [
    ("promote", None, "no version to serve"),
    ("rollback", None, "no version to serve"),
    ("rollback", 2, "already the desired version"),
    ("retrain_requested", None, "does not change a scorer"),
])
def test_invalid_commands_change_nothing(kind: str, to_version: int | None, match: str) -> None:
    v = decide(BASE, cmd(kind), to_version=to_version, now_ms=1)
    assert (v.status, v.reason, v.state) == ("rejected", "invalid", BASE)
    assert match in v.detail


def test_promote_to_the_desired_version_is_applied_again() -> None:
    """An explicit promote of what is desired is a no-op in effect but recorded (an operator's decision)."""
    v = decide(BASE, cmd("promote"), to_version=2, now_ms=1)
    assert v.applied and v.state.version == 2 and v.state.revision == 1


@pytest.mark.parametrize("traffic,match", [
    ({"challenger": 2, "canary_pct": 10}, "is the champion"),
    ({"challenger": 3, "canary_pct": 150}, "0 to 100"),
    ({"challenger": 3, "canary_pct": -1}, "0 to 100"),
    ({"challenger": 3, "canary_pct": math.nan}, "0 to 100"),
    ({"challenger": 3, "canary_pct": "lots"}, "0 to 100"),
    ({"challenger": 3, "canary_pct": True}, "0 to 100"),
    ({"challenger": "3", "canary_pct": 1}, "version number"),
    ({"challenger": 0, "canary_pct": 1}, "version number"),
    ({"challenger": True, "canary_pct": 1}, "version number"),
    ({"challenger": 3, "canary_pct": 1, "shadow": "yes"}, "true or false"),
    (None, "must be an object"),
    ([3, 10], "must be an object"),
])
def test_bad_traffic_is_invalid(traffic: Any, match: str) -> None:
    v = decide(BASE, cmd("set_traffic", traffic=traffic), to_version=None, now_ms=1)
    assert (v.status, v.reason) == ("rejected", "invalid") and match in v.detail


def test_no_challenger_means_no_canary_and_no_shadow() -> None:
    assert parse_traffic({"challenger": None, "canary_pct": 30, "shadow": True}, champion=1) == {
        "challenger": None, "canary_pct": 0.0, "shadow": False}


# ------------------------------------------------------------------------------------------ ordering
def test_older_command_is_superseded() -> None:
    s = decide(BASE, cmd("promote", 200, "new"), to_version=3, now_ms=201).state
    v = decide(s, cmd("rollback", 199, "old"), to_version=1, now_ms=202)
    assert (v.status, v.reason, v.state) == ("rejected", "superseded", s)
    assert "new" in v.detail


def test_same_time_different_command_applies_in_arrival_order() -> None:
    s = decide(BASE, cmd("pause", 200, "a"), to_version=None, now_ms=201).state
    assert decide(s, cmd("resume", 200, "b"), to_version=None, now_ms=202).applied


def test_the_last_command_again_is_replayed() -> None:
    s = decide(BASE, cmd("pause", 200, "a"), to_version=None, now_ms=201).state
    assert order_conflict(s, cmd("pause", 200, "a")) == ("replayed", "command a already made revision 1")


def test_from_version_that_no_longer_holds_is_superseded() -> None:
    s = decide(BASE, cmd("promote", 100, "p"), to_version=3, now_ms=101).state
    v = decide(s, cmd("rollback", 150, "r", from_version=2), to_version=1, now_ms=151)
    assert (v.status, v.reason) == ("rejected", "superseded") and "v3 is desired" in v.detail
    assert decide(s, cmd("rollback", 150, "r", from_version=3), to_version=1, now_ms=151).applied


def test_from_version_checks_against_the_baseline_before_any_command() -> None:
    assert decide(BASE, cmd("rollback", 1, from_version=5), to_version=1, now_ms=1).reason == "superseded"
    assert decide(BASE, cmd("rollback", 1, from_version=2), to_version=1, now_ms=1).applied


_kinds = st.sampled_from(["rollback", "promote", "reload", "set_traffic", "pause", "resume"])


@settings(max_examples=300, deadline=None)
@given(commands=st.lists(st.tuples(_kinds, st.integers(0, 50), st.integers(1, 4), st.integers(1, 4),
                                   st.floats(0, 100)), max_size=25))
def test_applied_commands_never_go_back_in_time(commands: list[tuple[str, int, int, int, float]]) -> None:
    """Whatever order commands arrive in: the applied ones have non-decreasing issued_at, each applied command
    makes exactly one revision, the state names the last applied command, and nothing older can apply after."""
    state = BASE
    applied: list[Command] = []
    for i, (kind, at, version, challenger, pct) in enumerate(commands):
        c = cmd(kind, at, f"c{i}", traffic={"challenger": challenger, "canary_pct": pct})
        v = decide(state, c, to_version=version, now_ms=1000 + i)
        if v.applied:
            applied.append(c)
            assert v.state.revision == state.revision + 1
            state = v.state
        else:
            assert v.state == state
            assert v.reason in ("superseded", "invalid")
            if v.reason == "superseded":
                assert at < state.issued_at
    assert [c.issued_at for c in applied] == sorted(c.issued_at for c in applied)
    assert state.revision == len(applied)
    if applied:
        assert (state.command_id, state.issued_at) == (applied[-1].command_id, applied[-1].issued_at)
        for old in applied:  # any applied command arriving again is refused by ordering alone
            assert order_conflict(state, old) is not None or old.issued_at == state.issued_at


def test_history_entry_names_before_and_after() -> None:
    c = cmd("rollback", 100, "c1", evidence={"alert_id": "a1"})
    after = decide(BASE, c, to_version=1, now_ms=101, decided_by="w").state
    e = history_entry(BASE, after, c)
    assert {k: e[k] for k in ("command_id", "command", "issued_by", "reason", "alert_id", "issued_at", "applied_at",
                              "decided_by", "from_version", "version", "paused", "revision", "key_id")} == {
        "command_id": "c1", "command": "rollback", "issued_by": "ana", "reason": "why", "alert_id": "a1",
        "issued_at": 100, "applied_at": 101, "decided_by": "w", "from_version": 2, "version": 1, "paused": False,
        "revision": 1, "key_id": "k1"}


def test_state_round_trips_and_ignores_unknown_fields() -> None:
    s = decide(BASE, cmd("pause"), to_version=None, now_ms=3).state
    assert DesiredState.from_dict({**s.to_dict(), "added_later": 1}) == s


# ------------------------------------------------------------------------------------------ ledger
E = LedgerEntry("c1", "rollback", record_ref("control", 0, 7), "applied", "", "", seq=4, revision=3,
                decided_by="a", group="g", at=0)


def test_entry_round_trips() -> None:
    assert LedgerEntry.from_json(E.to_json()) == E


@settings(max_examples=300, deadline=None)
@given(has_entry=st.booleans(), same_ref=st.booleans(), acked=st.booleans(), joined=st.integers(0, 8))
def test_classification_is_total_and_in_priority_order(has_entry: bool, same_ref: bool, acked: bool,
                                                       joined: int) -> None:
    ref = E.ref if same_ref else record_ref("control", 0, 8)
    got = classify(E if has_entry else None, ref, acked=acked, joined_seq=joined)
    if not has_entry:
        assert got is Sighting.NEW
    elif not same_ref:
        assert got is Sighting.REPLAYED  # another copy is a replay, whoever acked what
    elif acked:
        assert got is Sighting.DUPLICATE
    elif E.seq <= joined:
        assert got is Sighting.REFLECTED
    else:
        assert got is Sighting.FOLLOW
