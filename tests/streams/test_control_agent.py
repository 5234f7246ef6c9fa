"""ControlAgent over the in-memory control store and a real registry in tmp_path: what each scorer instance does with
each command (decide once per model, serve, ack once per instance), restarts, replays, ordering, outages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.registry import Registry
from models.scorer import Scorer
from streams.control.channel import Delivery, Refused
from streams.control.desired import DesiredState
from streams.control.protocol import Ack, Command
from streams.control.store import MemoryControlStore
from streams.exceptions import ControlStoreError
from streams.runtime.control_agent import ControlAgent

MODEL = "risk"


def make_registry(root: Path, versions: int = 3, production: int = 2) -> Registry:
    reg = Registry(root)
    for v in range(1, versions + 1):
        reg.register(MODEL, {"w": v}, feature_names=["x"], flavor="pickle")
    for v in range(1, production + 1):
        reg.promote(MODEL, v, by="setup")
    return reg  # v1 promoted, then v2: v2 in production, rollback target v1


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return make_registry(tmp_path / "registry")


@pytest.fixture
def store() -> MemoryControlStore:
    return MemoryControlStore(f"{MODEL}:test", ttl_ms=600_000)


def agent(registry: Registry, store: Any, instance: str = "a", group: str = "g") -> ControlAgent:
    a = ControlAgent(Scorer(registry, MODEL), store, registry, instance=instance, group=group)
    a.start()
    return a


def command(kind: str, *, cid: str = "c1", at: int = 1_000, to_version: int | None = None, model: str = MODEL,
            traffic: dict[str, Any] | None = None, from_version: int | None = None,
            evidence: dict[str, Any] | None = None) -> Command:
    return Command(cid, kind, model, to_version, traffic, "test", "pytest", at, evidence, from_version, key_id="k1")


def deliver(cmd: Command, offset: int = 1, catch_up: bool = False) -> Delivery:
    return Delivery(cmd, f"control[0]@{offset}", catch_up)


def acks(agent_: ControlAgent, *items: Any, now: int = 2_000) -> list[Ack]:
    return [o.ack for o in agent_.handle(items, now) if o.ack is not None]


# ------------------------------------------------------------------------------------------ one instance
def test_start_without_commands_serves_the_registry_production(registry: Registry, store: MemoryControlStore) -> None:
    a = agent(registry, store)
    assert a.scorer.active_version == 2 and a.joined_seq == 0 and a.desired.revision == 0


def test_rollback_applies_acks_and_the_registry_follows(registry: Registry, store: MemoryControlStore) -> None:
    a = agent(registry, store)
    [ack] = acks(a, deliver(command("rollback", to_version=1, evidence={"alert_id": "al-1"})))
    assert (ack.ack_for, ack.instance, ack.status, ack.active_version, ack.error, ack.model, ack.group) == (
        "c1", "a", "applied", 1, None, MODEL, "g")
    assert a.scorer.active_version == 1
    state, seq = store.current()
    assert (state.version, state.revision, state.command_id, state.alert_id, seq) == (1, 1, "c1", "al-1", 1)
    assert registry.production(MODEL).version == 1
    last = registry.history(MODEL)[-1]
    assert (last["action"], last["version"], last["from_version"], last["command_id"], last["alert_id"],
            last["by"]) == ("rollback", 1, 2, "c1", "al-1", "pytest")
    assert registry.control_revision(MODEL) == 1
    [line] = store.history()
    assert (line["command"], line["from_version"], line["version"], line["issued_by"]) == ("rollback", 2, 1, "pytest")


def test_rollback_without_version_goes_to_the_rollback_target(registry: Registry, store: MemoryControlStore) -> None:
    [ack] = acks(agent(registry, store), deliver(command("rollback")))
    assert (ack.status, ack.active_version) == ("applied", 1)


def test_reload_without_version_adopts_the_registry_production(registry: Registry, store: MemoryControlStore) -> None:
    a = agent(registry, store)
    registry.promote(MODEL, 3, by="hand")
    [ack] = acks(a, deliver(command("reload")))
    assert (ack.status, ack.active_version, store.current()[0].version) == ("applied", 3, 3)


@pytest.mark.parametrize("cmd,reason,match", [
    (command("promote", to_version=99), "invalid", "99"),
    (command("promote"), "invalid", "no version"),
    (command("rollback", to_version=2), "invalid", "already the desired"),
    (command("set_traffic", traffic={"challenger": 42, "canary_pct": 10}), "invalid", "42"),
    (command("set_traffic", traffic={"challenger": 3, "canary_pct": "lots"}), "invalid", "canary_pct"),
])
def test_rejected_commands_keep_serving_and_raise_an_alert(registry: Registry, store: MemoryControlStore,
                                                           cmd: Command, reason: str, match: str) -> None:
    a = agent(registry, store)
    before = a.scorer.active
    [outcome] = a.handle([deliver(cmd)], 5)
    assert outcome.ack is not None and outcome.alert is not None
    assert (outcome.ack.status, outcome.ack.reason, outcome.ack.active_version) == ("rejected", reason, 2)
    assert match in (outcome.ack.error or "") and outcome.ack.error.startswith(reason)
    assert (outcome.alert.severity, outcome.alert.statistic) == ("critical", "command_rejected")
    assert a.scorer.active is before and store.current() == (DesiredState(), 1)  # a decision, no new state
    assert store.look(cmd.command_id, "b").entry.status == "rejected"  # type: ignore[union-attr]


def test_tampered_artifact_is_rejected_as_failed(registry: Registry, store: MemoryControlStore) -> None:
    path = registry.artifact_path(MODEL, 3)
    path.write_bytes(path.read_bytes() + b"x")
    a = agent(registry, store)
    [ack] = acks(a, deliver(command("promote", to_version=3)))
    assert (ack.status, ack.reason, ack.active_version) == ("rejected", "failed", 2)
    assert "sha256" in (ack.error or "").lower() and registry.production(MODEL).version == 2


def test_set_traffic_pause_and_resume(registry: Registry, store: MemoryControlStore) -> None:
    a = agent(registry, store)
    [ack] = acks(a, deliver(command("set_traffic", traffic={"challenger": 3, "canary_pct": 25, "shadow": True})))
    split = a.scorer.active.split
    assert ack.status == "applied" and (split.challenger, split.canary_pct, split.shadow) == (3, 25.0, True)
    acks(a, deliver(command("pause", cid="p", at=1_001), 2))
    assert a.scorer.paused and store.current()[0].paused
    acks(a, deliver(command("resume", cid="r", at=1_002), 3))
    assert not a.scorer.paused and store.current()[0].revision == 3
    assert registry.production(MODEL).version == 2  # traffic and pause do not move stages


def test_other_models_retrain_requests_and_acks_are_ignored(registry: Registry, store: MemoryControlStore) -> None:
    a = agent(registry, store)
    assert a.handle([deliver(command("rollback", model="other", to_version=1)), deliver(command("retrain_requested")),
                     Ack("x", "b", "applied", 1, None, 0)], 1) == []
    assert a.scorer.active_version == 2 and store.current() == (DesiredState(), 0)


def test_commands_scoped_to_another_registry_are_not_for_this_scorer(registry: Registry,
                                                                     store: MemoryControlStore) -> None:
    """Two deployments (registries) sharing the topic and the model name: each obeys its own commands only."""
    a = agent(registry, store)
    foreign = Command("c1", "pause", MODEL, None, None, "", "ana", 1_000, scope="someone-elses-registry")
    assert a.handle([deliver(foreign)], 1) == [] and not a.scorer.paused
    own = Command("c2", "pause", MODEL, None, None, "", "ana", 1_000, scope=registry.uid(MODEL))
    assert [x.status for x in acks(a, deliver(own, 2))] == ["applied"] and a.scorer.paused


def test_unverified_commands_are_rejected_live_and_ignored_in_catch_up(registry: Registry,
                                                                         store: MemoryControlStore) -> None:
    a = agent(registry, store)
    [o] = a.handle([Refused("c9", MODEL, "bad signature", "control[0]@4")], 1)
    assert o.ack is not None and (o.ack.status, o.ack.reason, o.ack.error) == ("rejected", "unverified",
                                                                             "bad signature")
    assert o.alert is not None
    assert a.handle([Refused("c9", MODEL, "bad signature", "control[0]@4", catch_up=True),
                     Refused("", "", "malformed control record"), Refused("c9", "other", "bad signature")], 1) == []


# ------------------------------------------------------------------------------------------ several instances
def test_two_instances_of_a_group_apply_once_each_and_ack_once_each(registry: Registry,
                                                                     store: MemoryControlStore) -> None:
    a, b = agent(registry, store, "a"), agent(registry, store, "b")
    rollback = deliver(command("rollback", to_version=1), 5)
    [ack_a] = acks(a, rollback, rollback)  # delivered twice to a: one ack
    [ack_b] = acks(b, rollback)
    assert acks(b, rollback) == [] and acks(a, rollback) == []
    assert (ack_a.status, ack_b.status, a.scorer.active_version, b.scorer.active_version) == ("applied", "applied",
                                                                                              1, 1)
    assert set(store.acks("c1")) == {"a", "b"} and store.look("c1", "x").entry.decided_by == "a"  # type: ignore[union-attr]
    assert store.current()[0].revision == 1 and len(store.history()) == 1  # decided once


def test_a_rejection_is_decided_once_and_every_instance_acks_it(registry: Registry, store: MemoryControlStore) -> None:
    a, b = agent(registry, store, "a"), agent(registry, store, "b")
    acks(a, deliver(command("promote", cid="new", at=2_000, to_version=3), 1))
    acks(b, deliver(command("promote", cid="new", at=2_000, to_version=3), 1))
    old = deliver(command("rollback", cid="old", at=1_000, to_version=1), 2)
    [ra], [rb] = acks(a, old), acks(b, old)
    assert (ra.reason, rb.reason, ra.active_version, rb.active_version) == ("superseded", "superseded", 3, 3)
    assert store.current()[0].version == 3


def test_a_follower_serves_the_current_state_not_the_commands(registry: Registry, store: MemoryControlStore) -> None:
    """b reads the rollback after a decided both it and a later promote: b serves the promote, acks both once."""
    a, b = agent(registry, store, "a"), agent(registry, store, "b")
    rollback = deliver(command("rollback", cid="r", at=1_000, to_version=1), 1)
    promote = deliver(command("promote", cid="p", at=1_500, to_version=3), 2)
    acks(a, rollback, promote)
    [r] = acks(b, rollback)
    assert (r.status, r.active_version, b.scorer.active_version) == ("applied", 3, 3)
    [p] = acks(b, promote)
    assert (p.status, p.active_version) == ("applied", 3)


def test_another_group_on_the_same_model_follows_the_same_decision(registry: Registry,
                                                                    store: MemoryControlStore) -> None:
    a, other = agent(registry, store, "a", "g1"), agent(registry, store, "x", "g2")
    d = deliver(command("rollback", to_version=1), 3)
    acks(a, d)
    [ack] = acks(other, d)
    assert (ack.status, ack.group, other.scorer.active_version) == ("applied", "g2", 1)
    assert store.acks("c1")["x"].group == "g2" and store.current()[0].revision == 1


def test_concurrent_decisions_are_serialised_by_seq(registry: Registry, store: MemoryControlStore) -> None:
    """b looks, then a decides another command, then b records: b's record conflicts, b looks again and decides
    on the new state (here: its older command is superseded)."""
    a, b = agent(registry, store, "a"), agent(registry, store, "b")
    newer = deliver(command("promote", cid="new", at=2_000, to_version=3), 2)
    older = deliver(command("rollback", cid="old", at=1_000, to_version=1), 1)

    class Interleaved:
        def __init__(self, inner: MemoryControlStore) -> None:
            self.inner, self.fired = inner, False

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def record(self, *args: Any, **kw: Any) -> Any:
            if not self.fired:
                self.fired = True
                acks(a, newer)  # a decides between b's look and b's record
            return self.inner.record(*args, **kw)

    b.store = Interleaved(store)  # type: ignore[assignment]
    [ack] = acks(b, older)
    assert (ack.ack_for, ack.reason, b.scorer.active_version) == ("old", "superseded", 2)
    assert store.current()[0].command_id == "new"


# ------------------------------------------------------------------------------------------ restarts, replays
def test_restarted_instance_serves_the_desired_state_and_acks_nothing_twice(registry: Registry,
                                                                             store: MemoryControlStore) -> None:
    a = agent(registry, store, "a")
    rollback = deliver(command("rollback", to_version=1), 7)
    acks(a, rollback)
    registry.promote(MODEL, 2, by="someone", reason="by hand, bypassing control")  # the registry drifts
    fresh = agent(registry, store, "a2")  # a process started after a crash: a new instance id
    assert fresh.scorer.active_version == 1 and fresh.joined_seq == 1
    assert acks(fresh, rollback) == [] and acks(fresh, deliver(rollback.command, 7, catch_up=True)) == []
    same_id = agent(registry, store, "a")  # a restart that keeps its instance id
    assert same_id.scorer.active_version == 1 and acks(same_id, rollback) == []


def test_a_captured_command_published_again_is_replayed_everywhere(registry: Registry,
                                                                    store: MemoryControlStore) -> None:
    a = agent(registry, store, "a")
    acks(a, deliver(command("rollback", cid="r", at=1_000, to_version=1), 1))
    acks(a, deliver(command("promote", cid="p", at=2_000, to_version=2), 2))
    restarted = agent(registry, store, "a2")
    copy = deliver(command("rollback", cid="r", at=1_000, to_version=1), 3)  # the captured rollback, again
    for inst in (a, restarted):
        [o] = inst.handle([copy], 3_000)
        assert o.ack is not None and o.alert is not None
        assert (o.ack.status, o.ack.reason, o.ack.active_version) == ("rejected", "replayed", 2)
        assert "control[0]@1" in (o.ack.error or "") and "control[0]@3" in (o.ack.error or "")
    assert store.current()[0].command_id == "p" and registry.production(MODEL).version == 2
    assert restarted.handle([deliver(copy.command, 3, catch_up=True)], 1) == []  # old news in catch-up: silent


def test_a_command_issued_while_no_scorer_ran_is_decided_at_start(registry: Registry,
                                                                   store: MemoryControlStore) -> None:
    a = agent(registry, store, "a")  # starts after the command was published (catch-up record)
    [ack] = acks(a, deliver(command("rollback", to_version=1), 4, catch_up=True))
    assert (ack.status, a.scorer.active_version) == ("applied", 1)


def test_a_desired_version_that_cannot_load_leaves_production_serving_until_fixed(
        registry: Registry, store: MemoryControlStore) -> None:
    a = agent(registry, store, "a")
    acks(a, deliver(command("promote", to_version=3), 1))
    path = registry.artifact_path(MODEL, 3)
    path.write_bytes(path.read_bytes() + b"x")  # v3's bytes change while no worker runs
    b = agent(registry, store, "b")
    assert b.diverged and "v3" in b.diverged and b.scorer.active_version == 2  # never the broken bytes
    assert b.status()["diverged"] and b.status()["desired_version"] == 3
    [alarm] = b.handle([], 3_000)  # raised at the first tick: the worker could not publish at start
    assert alarm.ack is None and alarm.alert is not None and alarm.alert.severity == "critical"
    assert "v3" in alarm.alert.summary and b.handle([], 3_001) == []
    [ack] = acks(b, deliver(command("promote", cid="fix", at=5_000, to_version=1), 2))
    assert (ack.status, b.scorer.active_version, b.diverged) == ("applied", 1, None)


def test_store_outage_keeps_commands_in_order_and_decides_them_later(registry: Registry,
                                                                     store: MemoryControlStore) -> None:
    class Flaky:
        def __init__(self, inner: MemoryControlStore) -> None:
            self.inner, self.down = inner, False

        def __getattr__(self, name: str) -> Any:
            attr = getattr(self.inner, name)
            if callable(attr) and self.down:
                def fail(*_: Any, **__: Any) -> Any:
                    raise ControlStoreError("connection refused")
                return fail
            return attr

    flaky = Flaky(store)
    a = agent(registry, flaky)
    flaky.down = True
    out = acks(a, deliver(command("rollback", cid="r", at=1_000, to_version=1), 1),
               deliver(command("pause", cid="p", at=1_001), 2))
    assert out == [] and len(a.pending) == 2 and a.status()["store_error"]
    assert a.scorer.active_version == 2
    flaky.down = False
    out = acks(a)
    assert [(x.ack_for, x.status) for x in out] == [("r", "applied"), ("p", "applied")]
    assert a.scorer.paused and a.scorer.active_version == 1 and not a.pending and a.store_error is None


def test_an_unexpected_error_rejects_the_command_and_never_stops_the_worker(registry: Registry,
                                                                            store: MemoryControlStore,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    a = agent(registry, store)

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("unexpected")

    monkeypatch.setattr(a.registry, "rollback_target", boom)
    [o] = a.handle([deliver(command("rollback"), 1)], 5)
    assert o.ack is not None and (o.ack.status, o.ack.reason) == ("rejected", "failed") and o.alert is not None
    assert "unexpected" in (o.ack.error or "") and not a.pending
    monkeypatch.undo()
    [ack] = acks(a, deliver(command("pause", cid="p", at=1_001), 2))
    assert ack.status == "applied"  # the next command is decided as usual


def test_start_refuses_to_guess_when_the_store_does_not_answer(registry: Registry) -> None:
    class Down:
        def current(self) -> Any:
            raise ControlStoreError("connection refused")

    with pytest.raises(ControlStoreError):
        ControlAgent(Scorer(registry, MODEL), Down(), registry, instance="a", group="g").start()  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ property
_step = st.one_of(
    st.tuples(st.just("publish"), st.sampled_from(["rollback", "promote", "pause", "resume", "set_traffic"]),
              st.integers(1, 3), st.integers(0, 40)),
    st.tuples(st.just("replay"), st.integers(0, 30)),
    st.tuples(st.just("deliver"), st.integers(0, 2), st.integers(0, 30)),  # instance i reads record j again
    st.tuples(st.just("restart"), st.integers(0, 2), st.booleans()),  # keep the instance id or not
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_step, min_size=1, max_size=25))
def test_any_interleaving_acks_once_per_instance_and_converges(tmp_path_factory: pytest.TempPathFactory,
                                                               steps: list[tuple]) -> None:
    """Three instances read one log of commands, copies and redeliveries, and restart at random (with the same
    instance id or a new one). Invariants:

    * every copy of a command (a record other than its first) is rejected ``replayed`` each time it is read,
      and changes nothing;
    * an incarnation acks a command's first record at most once, never a command decided before it started,
      and exactly once every command decided while it ran;
    * decisions go forward in issued_at; every instance serves the desired state; the registry follows it.
    """
    registry = make_registry(tmp_path_factory.mktemp("reg"))
    store = MemoryControlStore(f"{MODEL}:prop", ttl_ms=10**9)
    names = ["i0", "i1", "i2"]
    log: list[Delivery] = []  # the control topic: every record, in order
    first_ref: dict[str, str] = {}

    class Incarnation:
        def __init__(self, name: str) -> None:
            self.agent = agent(registry, store, name)
            self.read = len(log)  # a new reader starts at "now"
            self.decided_before = {cid for cid in first_ref if store.look(cid, name).entry is not None}
            self.outcomes: dict[str, list[str]] = {}  # ref -> statuses/reasons
            self.deliveries: dict[str, int] = {}

        def take(self, record: Delivery) -> None:
            self.deliveries[record.ref] = self.deliveries.get(record.ref, 0) + 1
            for o in self.agent.handle([record], 10_000):
                assert o.ack is not None and o.command_id == record.command.command_id
                self.outcomes.setdefault(record.ref, []).append(o.ack.reason or o.ack.status)
                if o.sighting == "new" and o.ack.status == "applied":
                    applied_order.append(record.command.issued_at)

    applied_order: list[int] = []
    live = [Incarnation(n) for n in names]
    everyone = list(live)
    for n, step in enumerate(steps):
        if step[0] == "publish":
            _, kind, version, at = step
            cmd = command(kind, cid=f"c{n}", at=at, to_version=version,
                          traffic={"challenger": version % 3 + 1, "canary_pct": 10})
            log.append(deliver(cmd, len(log)))
            first_ref[cmd.command_id] = log[-1].ref
        elif step[0] == "replay" and log:
            log.append(deliver(log[step[1] % len(log)].command, len(log)))
        elif step[0] == "deliver" and log:  # Kafka hands one instance an old record again
            live[step[1]].take(log[step[2] % len(log)])
        elif step[0] == "restart":
            i = step[1]
            live[i] = Incarnation(names[i] if step[2] else f"{names[i]}-r{n}")
            everyone.append(live[i])
        for inc in live:
            while inc.read < len(log):
                inc.read += 1
                inc.take(log[inc.read - 1])

    for inc in everyone:
        for ref, outcomes in inc.outcomes.items():
            cid = next(d.command.command_id for d in log if d.ref == ref)
            if ref != first_ref[cid]:
                assert outcomes == ["replayed"] * inc.deliveries[ref], (inc.agent.instance, ref, outcomes)
            else:
                assert len(outcomes) == 1 and outcomes[0] != "replayed", (inc.agent.instance, ref, outcomes)
                assert cid not in inc.decided_before, (inc.agent.instance, cid)
        for ref, count in inc.deliveries.items():  # every copy it read was reported, every time
            cid = next(d.command.command_id for d in log if d.ref == ref)
            if ref != first_ref[cid]:
                assert len(inc.outcomes.get(ref, [])) == count
        for cid, ref in first_ref.items():  # completeness: decided while it ran and read by it -> acked once
            if cid not in inc.decided_before and ref in inc.deliveries:
                assert len(inc.outcomes.get(ref, [])) == 1, (inc.agent.instance, cid)
    assert applied_order == sorted(applied_order)  # decisions never go back in time
    desired, _ = store.current()
    for inc in live:  # every instance serves the desired state
        assert inc.agent.scorer.active_version == desired.with_baseline(2).version
        assert inc.agent.scorer.paused == desired.paused
    if desired.revision:
        assert registry.production(MODEL).version == desired.version  # the registry's stages follow
