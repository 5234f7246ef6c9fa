"""The champion/challenger report: roles from served predictions, counts per outcome rule, the z-test verdict."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.abtest import two_proportion_ztest
from models.abtest_report import ABTracker, ArmCounts, ab_report, success_of
from models.exceptions import ABTestError

MODEL = "risk"


def feed(t: ABTracker, version: int, right: int, wrong: int, label: int = 1) -> None:
    t.observe_outcomes([(MODEL, version, 0, label)] * right + [(MODEL, version, 1, label)] * wrong)


def tracker(**kw: object) -> ABTracker:
    t = ABTracker(**kw)  # type: ignore[arg-type]
    t.observe_roles([(MODEL, 1, "champion"), (MODEL, 2, "challenger")], now_ms=0)
    return t


def test_better_challenger_is_reported_better() -> None:
    t = tracker()
    feed(t, 1, 60, 40)
    feed(t, 2, 85, 15)
    [r] = t.reports(now_ms=10)
    assert (r.model, r.champion, r.challenger, r.verdict) == (MODEL, 1, 2, "better")
    assert (r.champion_successes, r.champion_n, r.challenger_successes, r.challenger_n) == (60, 100, 85, 100)
    assert r.z > 0 and r.p_value < 0.05


def test_worse_challenger_and_undecided_on_equal_rates() -> None:
    t = tracker()
    feed(t, 1, 85, 15)
    feed(t, 2, 60, 40)
    assert t.reports(now_ms=1)[0].verdict == "worse"
    t2 = tracker()
    feed(t2, 1, 70, 30)
    feed(t2, 2, 70, 30)
    assert t2.reports(now_ms=1)[0].verdict == "undecided"


def test_no_report_without_challenger_in_traffic() -> None:
    t = ABTracker()
    t.observe_roles([(MODEL, 1, "champion"), (MODEL, 2, "shadow"), (MODEL, 3, "fallback")], now_ms=0)
    assert t.reports(now_ms=0) == []


def test_challenger_leaves_traffic_after_active_ms() -> None:
    t = tracker(active_ms=1000)
    assert len(t.reports(now_ms=1000)) == 1
    assert t.reports(now_ms=1001) == []
    t.observe_roles([(MODEL, 2, "challenger")], now_ms=1500)
    assert len(t.reports(now_ms=2000)) == 1


def test_promoted_challenger_ends_the_pair() -> None:
    t = tracker()
    t.observe_roles([(MODEL, 2, "champion")], now_ms=5)
    assert t.reports(now_ms=5) == []


def test_precision_counts_only_predicted_positives() -> None:
    t = tracker(outcome="precision", min_n=1)
    # predicted = label if error == 0 else 1 - label
    t.observe_outcomes([(MODEL, 1, 0, 1), (MODEL, 1, 1, 0), (MODEL, 1, 0, 0), (MODEL, 1, 1, 1)])
    assert t.arm(MODEL, 1) == ArmCounts(1, 1, 2)  # predicted 1 twice: once right (label 1), once wrong (label 0)


def test_recall_counts_only_true_positives() -> None:
    t = tracker(outcome="recall", min_n=1)
    t.observe_outcomes([(MODEL, 1, 0, 1), (MODEL, 1, 1, 1), (MODEL, 1, 1, 0), (MODEL, 1, 0, 0)])
    assert t.arm(MODEL, 1) == ArmCounts(1, 1, 2)


def test_outcomes_without_label_count_for_correct_only() -> None:
    t = tracker()
    t.observe_outcomes([(MODEL, 1, 0), (MODEL, 1, 1)])
    assert t.arm(MODEL, 1) == ArmCounts(1, 1, 2)
    p = tracker(outcome="precision")
    p.observe_outcomes([(MODEL, 1, 0), (MODEL, 1, 1)])
    assert p.arm(MODEL, 1).trials == 0


def test_unknown_outcome_rule_is_refused() -> None:
    with pytest.raises(ABTestError):
        ABTracker("f1")
    with pytest.raises(ABTestError):
        success_of("f1", 1, 1)
    with pytest.raises(ABTestError):
        ab_report(MODEL, ArmCounts(1), ArmCounts(2), outcome="auc")


arms = st.integers(0, 500).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@given(arms, arms)
def test_report_is_the_ztest_of_the_counts(a: tuple[int, int], b: tuple[int, int]) -> None:
    r = ab_report(MODEL, ArmCounts(1, *a), ArmCounts(2, *b))
    t = two_proportion_ztest(a[0], a[1], b[0], b[1])
    assert (r.z, r.p_value, r.lift, r.verdict) == (t.z, t.p_value, t.lift, t.verdict)


@given(arms, arms)
def test_swapping_arms_mirrors_the_verdict(a: tuple[int, int], b: tuple[int, int]) -> None:
    ab = ab_report(MODEL, ArmCounts(1, *a), ArmCounts(2, *b))
    ba = ab_report(MODEL, ArmCounts(2, *b), ArmCounts(1, *a))
    mirror = {"better": "worse", "worse": "better", "undecided": "undecided"}
    assert ba.verdict == mirror[ab.verdict]
    assert ba.z == pytest.approx(-ab.z) and ba.p_value == pytest.approx(ab.p_value)


@given(st.lists(st.tuples(st.sampled_from([1, 2]), st.integers(0, 1), st.integers(0, 1)), max_size=200))
def test_tracker_counts_equal_a_direct_tally(rows: list[tuple[int, int, int]]) -> None:
    t = tracker()
    t.observe_outcomes([(MODEL, v, e, y) for v, e, y in rows])
    for version in (1, 2):
        mine = [e for v, e, _ in rows if v == version]
        assert t.arm(MODEL, version) == ArmCounts(version, mine.count(0), len(mine))
