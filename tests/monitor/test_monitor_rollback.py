"""RollbackPolicy against a real registry: one rollback per incident, never back to a bad version, acks."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.registry import Registry
from monitor.alerts import Alert
from monitor.rollback import Decision, RollbackPolicy

MODEL = "risk"


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path)
    for v in (1, 2, 3):
        reg.register(MODEL, {"w": v}, feature_names=["hr"])
        reg.promote(MODEL, v)
    return reg  # v3 in production, promoted after v2 after v1


def alert(version: int, *, severity: str = "critical", action: str = "trigger", model: str = MODEL,
          feature: str | None = "hr") -> Alert:
    return Alert.build(action=action, severity=severity, kind="data_drift", model=model, model_version=version,
                       feature=feature, detector="psi", statistic="psi", value=0.4, threshold=0.25,
                       window="last 1000", ts=0, summary=f"psi 0.4 on {feature}")


def apply(registry: Registry, d: Decision) -> None:
    """What follows a rollback decision: the scorers record it and the registry's stages follow it
    (streams.runtime.control_agent, Registry.follow_desired); a plain rollback here has the same effect."""
    registry.rollback(d.model, to_version=d.to_version, by="test", reason=d.reason)


def test_critical_trigger_on_production_rolls_back_to_the_previous_version(registry: Registry) -> None:
    policy = RollbackPolicy(registry)
    a = alert(3)
    d = policy.on_alert(a, now_ms=5)
    assert d is not None
    assert (d.command, d.model, d.from_version, d.to_version, d.reason) == ("rollback", MODEL, 3, 2, a.summary)
    assert d.evidence == {"alert_id": a.alert_id, "dedup_key": a.dedup_key, "kind": "data_drift",
                          "feature": "hr", "value": 0.4}
    assert d.traffic is None


def test_one_rollback_per_incident(registry: Registry) -> None:
    policy = RollbackPolicy(registry)
    assert policy.on_alert(alert(3), now_ms=0) is not None
    assert policy.on_alert(alert(3, feature="spo2"), now_ms=1) is None  # same (model, version): same incident
    assert policy.on_alert(alert(3), now_ms=2) is None


def test_never_back_to_a_version_that_was_rolled_back(registry: Registry) -> None:
    policy = RollbackPolicy(registry)
    d1 = policy.on_alert(alert(3), now_ms=0)
    assert d1 is not None and d1.to_version == 2
    apply(registry, d1)
    d2 = policy.on_alert(alert(2), now_ms=1)  # v2 goes bad too: v1, never v3
    assert d2 is not None and (d2.from_version, d2.to_version) == (2, 1)
    apply(registry, d2)
    assert policy.on_alert(alert(1), now_ms=2) is None  # nothing left that is not known bad
    assert policy.rolled_back == {MODEL: {3, 2}}


def test_operator_repromotion_is_still_excluded_by_this_monitor(registry: Registry) -> None:
    policy = RollbackPolicy(registry)
    d = policy.on_alert(alert(3), now_ms=0)
    assert d is not None
    apply(registry, d)
    registry.promote(MODEL, 1)  # an operator moves on to v1 by hand
    d2 = policy.on_alert(alert(1), now_ms=1)
    assert d2 is not None and d2.to_version == 2  # v3 was rolled back: never a target again


def test_alert_about_a_version_not_in_production_is_ignored(registry: Registry) -> None:
    policy = RollbackPolicy(registry)
    assert policy.on_alert(alert(2), now_ms=0) is None  # a challenger/shadow or an old version
    assert policy.on_alert(alert(3), now_ms=1) is not None  # the incident on v3 was not used up


@pytest.mark.parametrize("severity,action", [("warning", "trigger"), ("info", "trigger"), ("critical", "resolve")])
def test_only_critical_triggers_act(registry: Registry, severity: str, action: str) -> None:
    assert RollbackPolicy(registry).on_alert(alert(3, severity=severity, action=action), now_ms=0) is None


def test_no_target_means_no_decision(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.register(MODEL, {"w": 1}, feature_names=["hr"])
    reg.promote(MODEL, 1)
    policy = RollbackPolicy(reg)
    assert policy.on_alert(alert(1), now_ms=0) is None
    assert policy.rolled_back == {}  # nothing recorded when nothing was decided


def test_no_production_version_means_no_decision(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.register(MODEL, {"w": 1}, feature_names=["hr"])
    assert RollbackPolicy(reg).on_alert(alert(1), now_ms=0) is None


def test_alert_only_mode_never_decides(registry: Registry) -> None:
    policy = RollbackPolicy(registry, mode="alert_only")
    assert policy.on_alert(alert(3), now_ms=0) is None
    assert policy.rolled_back == {} and registry.production(MODEL).version == 3  # type: ignore[union-attr]


def test_pause_challenger_mode_sends_set_traffic_once(registry: Registry) -> None:
    policy = RollbackPolicy(registry, mode="pause_challenger")
    d = policy.on_alert(alert(3), now_ms=0)
    assert d is not None
    assert (d.command, d.from_version, d.to_version) == ("set_traffic", 3, None)
    assert d.traffic == {"challenger": None, "canary_pct": 0.0, "shadow": False}
    assert policy.on_alert(alert(3), now_ms=1) is None
    assert policy.rolled_back == {}


def test_models_are_independent(registry: Registry) -> None:
    for v in (1, 2):
        registry.register("other", {"w": v}, feature_names=["hr"])
        registry.promote("other", v)
    policy = RollbackPolicy(registry)
    assert policy.on_alert(alert(3), now_ms=0) is not None
    d = policy.on_alert(alert(2, model="other"), now_ms=0)
    assert d is not None and (d.model, d.to_version) == ("other", 1)


# ------------------------------------------------------------------------------------------ acks
def issued(policy: RollbackPolicy, registry: Registry, command_id: str = "c1", at: int = 0) -> Decision:
    d = policy.on_alert(alert(3), now_ms=at)
    assert d is not None
    policy.issued(command_id, d, at)
    return d


def test_overdue_re_alerts_once_when_no_ack_arrives(registry: Registry) -> None:
    policy = RollbackPolicy(registry, ack_timeout_s=30)
    issued(policy, registry, at=1_000)
    assert policy.overdue(now_ms=31_000) == []  # exactly at the timeout: not yet
    late = policy.overdue(now_ms=31_001)
    assert [p.command_id for p in late] == ["c1"] and late[0].realerted
    assert policy.overdue(now_ms=100_000) == []  # reported once


def test_acked_command_is_never_overdue(registry: Registry) -> None:
    policy = RollbackPolicy(registry, ack_timeout_s=1)
    issued(policy, registry)
    pending = policy.on_ack("c1", "scorer-a", "applied")
    assert pending is not None and pending.acks == {"scorer-a": "applied"}
    policy.on_ack("c1", "scorer-b", "rejected")
    assert policy.pending["c1"].acks == {"scorer-a": "applied", "scorer-b": "rejected"}
    assert policy.overdue(now_ms=10_000) == []


def test_ack_for_an_unknown_command_is_ignored(registry: Registry) -> None:
    policy = RollbackPolicy(registry)
    assert policy.on_ack("nope", "scorer-a", "applied") is None
    assert policy.pending == {}
