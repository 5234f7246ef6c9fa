"""Alert policy: inconclusive, hysteresis, escalation, dedup, cooldown, per-key configs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.exceptions import MonitorConfigError
from monitor.policy import AlertPolicy, PolicyConfig, Thresholds, Verdict
from tests.budget import examples

CFG = PolicyConfig(thresholds=Thresholds(0.1, 0.25), min_samples=100, trigger_after=3, resolve_after=3,
                   cooldown_ms=60_000)


def run(policy: AlertPolicy, values: list[float], key: str = "k", n: int = 500, t0: int = 0,
        step: int = 1000) -> list[Verdict | None]:
    return [policy.observe(key, v, n, t0 + i * step) for i, v in enumerate(values)]


def actions(verdicts: list[Verdict | None]) -> list[tuple[str, str] | None]:
    return [(v.action, v.severity) if v else None for v in verdicts]


def test_triggers_after_consecutive_evaluations_only() -> None:
    pol = AlertPolicy(CFG)
    assert actions(run(pol, [0.15, 0.15, 0.05, 0.15, 0.15])) == [None] * 5  # streak broken by an ok value
    assert pol.observe("k", 0.15, 500, 10_000) == Verdict("trigger", "warning", 0.15, 0.1)
    assert pol.open_incidents() == {"k": "warning"} and pol.status("k") == "warning"


def test_dedup_same_severity_never_resent_and_escalation_retriggers() -> None:
    pol = AlertPolicy(CFG)
    out = actions(run(pol, [0.15] * 3 + [0.15] * 5 + [0.3] * 3 + [0.3] * 5 + [0.15] * 5))
    assert out == [None, None, ("trigger", "warning")] + [None] * 7 + [("trigger", "critical")] + [None] * 10
    assert pol.open_incidents() == {"k": "critical"}  # de-escalation sends nothing


def test_direct_critical_trigger_reports_critical_threshold() -> None:
    pol = AlertPolicy(CFG)
    assert run(pol, [0.4, 0.4, 0.5])[-1] == Verdict("trigger", "critical", 0.5, 0.25)


def test_mixed_levels_trigger_warning_then_escalate() -> None:
    pol = AlertPolicy(CFG)
    assert actions(run(pol, [0.3, 0.15, 0.3, 0.3, 0.3])) == [None, None, ("trigger", "warning"), None,
                                                             ("trigger", "critical")]


def test_resolve_needs_consecutive_ok_then_cooldown_blocks_retrigger() -> None:
    pol = AlertPolicy(CFG)
    run(pol, [0.3] * 3)
    out = run(pol, [0.01, 0.01, 0.2, 0.01, 0.01, 0.01], t0=10_000)
    assert actions(out) == [None] * 5 + [("resolve", "critical")]
    assert out[-1] == Verdict("resolve", "critical", 0.01, 0.1)
    assert pol.open_incidents() == {} and pol.status("k") == "ok"
    resolved_at = 15_000
    # bad again during the cooldown: nothing, however long the streak
    assert actions(run(pol, [0.3] * 10, t0=resolved_at + 1000, step=1000)) == [None] * 10
    # the first evaluation after the cooldown triggers at once (the streak kept counting)
    assert pol.observe("k", 0.3, 500, resolved_at + 60_000) == Verdict("trigger", "critical", 0.3, 0.25)


def test_inconclusive_never_triggers_nor_resolves_nor_breaks_streaks() -> None:
    pol = AlertPolicy(CFG)
    assert pol.status("never-seen") == "inconclusive"
    out = run(pol, [0.9] * 10, n=99)  # n < min_samples
    assert out == [None] * 10 and pol.status("k") == "inconclusive"
    out = run(pol, [math.nan] * 10)
    assert out == [None] * 10 and pol.status("k") == "inconclusive"
    assert actions(run(pol, [0.3, math.nan, 0.3, math.nan, 0.3])) == [None] * 4 + [("trigger", "critical")]
    # an open incident is not resolved by NaN (NaN is not 0)
    assert run(pol, [math.nan] * 20) == [None] * 20
    assert pol.open_incidents() == {"k": "critical"} and pol.status("k") == "inconclusive"


def test_lower_is_worse_thresholds() -> None:
    cfg = PolicyConfig(thresholds=Thresholds(warning=0.8, critical=0.7, higher_is_worse=False), min_samples=0,
                       trigger_after=1, resolve_after=1, cooldown_ms=0)
    pol = AlertPolicy(cfg)
    assert pol.observe("auc", 0.9, 0, 0) is None
    assert pol.observe("auc", 0.75, 0, 1) == Verdict("trigger", "warning", 0.75, 0.8)
    assert pol.observe("auc", 0.6, 0, 2) == Verdict("trigger", "critical", 0.6, 0.7)
    assert pol.observe("auc", 0.85, 0, 3) == Verdict("resolve", "critical", 0.85, 0.8)


def test_per_key_longest_prefix_wins_and_keys_are_independent() -> None:
    loose = PolicyConfig(thresholds=Thresholds(0.5, 0.9), min_samples=0, trigger_after=1)
    strict = PolicyConfig(thresholds=Thresholds(0.01, 0.02), min_samples=0, trigger_after=1)
    pol = AlertPolicy(CFG, per_key={"m/1/": loose, "m/1/data_drift/hr": strict})
    assert pol.config_for("m/1/data_drift/hr_mean/all") is strict
    assert pol.config_for("m/1/data_drift/spo2/all") is loose
    assert pol.config_for("m/2/data_drift/hr/all") is CFG
    assert pol.observe("m/1/data_drift/hr/all", 0.03, 0, 0) == Verdict("trigger", "critical", 0.03, 0.02)
    assert pol.observe("m/1/data_drift/spo2/all", 0.3, 0, 0) is None
    assert pol.observe("m/2/data_drift/hr/all", 0.3, 500, 0) is None  # default needs 3 in a row
    assert pol.open_incidents() == {"m/1/data_drift/hr/all": "critical"}
    pol.forget("m/1/data_drift/hr/all")
    assert pol.open_incidents() == {}


@pytest.mark.parametrize("make", [
    lambda: Thresholds(0.3, 0.2), lambda: Thresholds(0.2, 0.3, higher_is_worse=False),
    lambda: Thresholds(math.nan, 0.3), lambda: PolicyConfig(trigger_after=0),
    lambda: PolicyConfig(resolve_after=0), lambda: PolicyConfig(cooldown_ms=-1),
])
def test_config_validation(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(MonitorConfigError):
        make()


@given(st.lists(st.one_of(st.floats(min_value=0, max_value=1), st.just(math.nan)), max_size=200),
       st.integers(1, 4), st.integers(1, 4), st.integers(0, 5))
@settings(max_examples=examples(300), deadline=None)
def test_verdict_sequence_is_well_formed(values: list[float], trig: int, res: int, cooldown: int) -> None:
    """Whatever the input: triggers and resolves alternate properly, severities only escalate while open,
    and a trigger is never sent inside the cooldown."""
    pol = AlertPolicy(PolicyConfig(min_samples=0, trigger_after=trig, resolve_after=res, cooldown_ms=cooldown))
    open_sev: str | None = None
    resolved_at: int | None = None
    for t, v in enumerate(values):
        verdict = pol.observe("k", v, 1, t)
        if verdict is None:
            continue
        assert not math.isnan(verdict.value)
        if verdict.action == "trigger":
            assert open_sev in (None, "warning")
            assert verdict.severity != open_sev
            if open_sev is None and resolved_at is not None:
                assert t >= resolved_at + cooldown
            open_sev = verdict.severity
        else:
            assert open_sev is not None and verdict.severity == open_sev
            open_sev, resolved_at = None, t
        assert pol.open_incidents() == ({"k": open_sev} if open_sev else {})
