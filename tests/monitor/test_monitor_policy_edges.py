"""Alert policy thresholds at their edges: written to kill the mutants ``make mutation`` found alive (inclusive
levels on both sides, the finiteness and order checks, the messages, forgetting an unknown key)."""

from __future__ import annotations

import pytest

from monitor.exceptions import MonitorConfigError
from monitor.policy import AlertPolicy, PolicyConfig, Thresholds


def test_levels_are_inclusive_at_both_thresholds() -> None:
    up = Thresholds(warning=0.1, critical=0.25)
    assert [up.level(v) for v in (0.0999, 0.1, 0.2499, 0.25)] == ["ok", "warning", "warning", "critical"]
    down = Thresholds(warning=0.8, critical=0.7, higher_is_worse=False)
    assert [down.level(v) for v in (0.8001, 0.8, 0.7001, 0.7)] == ["ok", "warning", "warning", "critical"]


def test_equal_thresholds_are_allowed_either_way() -> None:
    assert Thresholds(0.2, 0.2).level(0.2) == "critical"
    assert Thresholds(0.2, 0.2, higher_is_worse=False).level(0.2) == "critical"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"warning": float("nan"), "critical": 0.3}, "thresholds must be finite, got nan, 0.3"),
    ({"warning": 0.1, "critical": float("inf")}, "thresholds must be finite, got 0.1, inf"),
    ({"warning": 0.3, "critical": 0.2},
     "need warning <= critical (higher_is_worse=True), got warning=0.3, critical=0.2"),
    ({"warning": 0.7, "critical": 0.8, "higher_is_worse": False},
     "need warning >= critical (higher_is_worse=False), got warning=0.7, critical=0.8"),
])
def test_threshold_errors_say_what_is_wrong(kwargs: dict, message: str) -> None:
    with pytest.raises(MonitorConfigError) as info:
        Thresholds(**kwargs)
    assert str(info.value) == message


def test_policy_config_error_lists_the_bounds() -> None:
    with pytest.raises(MonitorConfigError) as info:
        PolicyConfig(trigger_after=0)
    assert str(info.value) == ("policy needs min_samples >= 0, trigger_after >= 1, resolve_after >= 1, "
                               "cooldown_ms >= 0; got 200, 0, 3, 60000")


def test_forgetting_an_unknown_key_is_fine() -> None:
    pol = AlertPolicy()
    pol.forget("never-seen")
    assert pol.status("never-seen") == "inconclusive" and pol.open_incidents() == {}
