"""Routing and the A/B test at their edges: written to kill the mutants ``make mutation`` found alive.

Each test pins one thing a one-character change could break and the other tests missed: the exact bucket
(computed here from its definition with ``hashlib``), the canary threshold on both sides of an entity's
bucket, the defaults of a traffic split read from a command, and the error messages an operator reads.
"""

from __future__ import annotations

import hashlib
import math

import pytest

from models.abtest import two_proportion_ztest
from models.exceptions import ABTestError, RoutingError
from models.routing import Assignment, TrafficSplit, route, traffic_bucket


def bucket_by_definition(entity_id: str, salt: str = "") -> float:
    """blake2b-64 of (4-byte big-endian salt length, salt, id), top 53 bits as a fraction of 2**53."""
    s = salt.encode()
    digest = hashlib.blake2b(len(s).to_bytes(4, "big") + s + entity_id.encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / 2**53


@pytest.mark.parametrize(("entity", "salt"), [("patient-42", ""), ("patient-42", "exp-7"), ("", ""), ("é", "s")])
def test_bucket_is_the_documented_hash(entity: str, salt: str) -> None:
    assert traffic_bucket(entity, salt) == bucket_by_definition(entity, salt)
    if salt == "":
        assert traffic_bucket(entity) == bucket_by_definition(entity)  # the default salt is empty


def entity_with_bucket_below(limit: float) -> str:
    return next(e for e in (f"e{i}" for i in range(100_000)) if traffic_bucket(e) < limit)


def test_a_canary_share_under_one_percent_still_serves_its_entities() -> None:
    e = entity_with_bucket_below(0.004)
    assert route(e, TrafficSplit(1, 2, canary_pct=0.5)) == [Assignment(2, "challenger")]


def test_the_canary_threshold_is_strict() -> None:
    """An entity whose bucket equals canary_pct / 100 exactly stays with the champion (buckets below it move)."""
    for i in range(1000):
        e = f"edge-{i}"
        pct = traffic_bucket(e) * 100
        if pct / 100 == traffic_bucket(e):
            break
    else:
        pytest.fail("no entity with an exactly representable share")
    assert route(e, TrafficSplit(1, 2, canary_pct=pct)) == [Assignment(1, "champion")]
    assert route(e, TrafficSplit(1, 2, canary_pct=math.nextafter(pct, 101.0))) == [Assignment(2, "challenger")]


def test_the_salt_decides_who_is_in_the_canary() -> None:
    """Routing buckets with the split's salt: an entity in the canary under one salt is out of it under none."""
    e = next(f"s{i}" for i in range(100_000) if traffic_bucket(f"s{i}", "exp-1") < 0.1 <= traffic_bucket(f"s{i}"))
    assert route(e, TrafficSplit(1, 2, canary_pct=10.0, salt="exp-1")) == [Assignment(2, "challenger")]
    assert route(e, TrafficSplit(1, 2, canary_pct=10.0)) == [Assignment(1, "champion")]


def test_exact_assignments() -> None:
    assert route("a", TrafficSplit(3, 4, canary_pct=100.0)) == [Assignment(4, "challenger")]
    assert route("a", TrafficSplit(3, 4)) == [Assignment(3, "champion")]
    assert route("a", TrafficSplit(3, 4, shadow=True)) == [Assignment(3, "champion"), Assignment(4, "shadow")]
    assert route("a", TrafficSplit(3, None, canary_pct=100.0, shadow=True)) == [Assignment(3, "champion")]


def test_a_split_read_from_a_command_takes_the_documented_defaults() -> None:
    assert TrafficSplit.from_dict({"champion": 2}) == TrafficSplit(2, None, 0.0, False, "")
    assert TrafficSplit.from_dict({"champion": "2", "challenger": "3"}) == TrafficSplit(2, 3)


@pytest.mark.parametrize(("data", "message"), [
    ({"champion": 1, "challenger": 1}, "challenger and champion are both v1"),
    ({"champion": 1, "canary_pct": 101}, "canary_pct must be within 0..100, got 101.0"),
    ({"champion": 1, "canary_pct": float("nan")}, "canary_pct must be within 0..100"),
    ({"challenger": 2}, "malformed traffic split"),
    ({"champion": "x"}, "malformed traffic split {'champion': 'x'}"),
])
def test_routing_errors_say_what_is_wrong(data: dict, message: str) -> None:
    with pytest.raises(RoutingError, match=message.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):
        TrafficSplit.from_dict(data)


# --- the A/B test ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "message"), [
    ((-1, 10, 0, 10), "arm a: need 0 <= successes <= n, got successes=-1, n=10"),
    ((0, 10, 11, 10), "arm b: need 0 <= successes <= n, got successes=11, n=10"),
])
def test_impossible_counts_name_the_arm(args: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(ABTestError, match="^" + message + "$"):
        two_proportion_ztest(*args)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_alpha_must_be_strictly_between_zero_and_one(alpha: float) -> None:
    with pytest.raises(ABTestError, match=rf"alpha must be within \(0, 1\), got {alpha!r}"):
        two_proportion_ztest(10, 100, 20, 100, alpha=alpha)


def test_an_empty_arm_is_undecided_with_the_other_arms_rate_as_lift() -> None:
    assert two_proportion_ztest(0, 0, 5, 10).lift == 0.5
    assert two_proportion_ztest(3, 10, 0, 0).lift == -0.3
    r = two_proportion_ztest(3, 10, 0, 0)
    assert (r.z, r.p_value, r.verdict) == (0.0, 1.0, "undecided")


def test_an_arm_of_one_trial_is_tested_not_skipped() -> None:
    r = two_proportion_ztest(5, 10, 1, 1)
    assert r.z > 0 and r.p_value < 1.0 and r.lift == 0.5 and r.verdict == "undecided"  # min_n keeps it undecided


def test_a_p_value_equal_to_alpha_is_not_significant() -> None:
    p = two_proportion_ztest(120, 1000, 150, 1000).p_value
    assert two_proportion_ztest(120, 1000, 150, 1000, alpha=p).verdict == "undecided"
    assert two_proportion_ztest(120, 1000, 150, 1000, alpha=math.nextafter(p, 1.0)).verdict == "better"
