"""DeliveryScheduler: per-incident order, no head-of-line blocking across incidents, the committed prefix, holds,
throttling, revocation. Property tests drive it with random outcomes and check the invariants on every step."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.exceptions import ConfigError
from streams.runtime.alert_queue import Backoff, DeliveryScheduler, RateLimit

FAST = Backoff(base_s=1.0, max_s=8.0, retry_after_max_s=30.0)


def sched(sinks: dict[str, int] | None = None, **kw: object) -> DeliveryScheduler:
    return DeliveryScheduler(sinks or {"pd": 4}, backoff=FAST, rng=random.Random(0), **kw)  # type: ignore[arg-type]


def test_a_resolve_waits_for_its_trigger_at_each_sink() -> None:
    s = sched({"pd": 4, "am": 1})
    s.add("p", 0, "k", "trigger")
    s.add("p", 1, "k", "resolve")
    started = s.ready(0.0)
    assert sorted((j.sink, j.item) for j in started) == [("am", "trigger"), ("pd", "trigger")]
    pd_trigger = next(j for j in started if j.sink == "pd")
    am_trigger = next(j for j in started if j.sink == "am")
    s.retry(am_trigger, 0.1, "HTTP 503")
    s.accepted(pd_trigger, 0.1)
    (pd_resolve,) = s.ready(0.2)  # PagerDuty moves on; Alertmanager's resolve still waits behind its trigger
    assert (pd_resolve.sink, pd_resolve.item) == ("pd", "resolve")
    s.accepted(pd_resolve, 0.3)
    assert s.advance() == {} and s.pending("p") == 2  # Alertmanager has accepted neither
    (am_again,) = s.ready(100.0)
    assert am_again is am_trigger and am_trigger.attempts == 2
    s.accepted(am_trigger, 100.0)
    assert s.advance() == {"p": 1}
    s.accepted(s.ready(100.0)[0], 100.1)
    assert s.advance() == {"p": 2} and s.pending() == 0


def test_rejected_holds_the_record_until_its_dead_letter_is_written() -> None:
    s = sched()
    s.add("p", 7, "k", "bad")
    s.add("p", 8, "k", "next")
    (job,) = s.ready(0.0)
    assert s.rejected(job, 0.0, "HTTP 400")
    (nxt,) = s.ready(0.0)  # the incident's next alert is not held back by the invalid one
    s.accepted(nxt, 0.1)
    assert s.advance() == {}  # 7 still waits for its dead letter
    s.release("p", 7)
    assert s.advance() == {"p": 9}


def test_a_record_without_sinks_settles_at_once_and_holds_count() -> None:
    s = sched()
    s.add("p", 0, "", "junk", sinks=())
    s.add("p", 1, "", "junk", sinks=(), holds=1)
    assert s.advance() == {"p": 1}
    s.release("p", 1)
    s.release("p", 1)  # a second release of the same hold changes nothing
    assert s.advance() == {"p": 2}
    assert not s.add("p", 1, "k", "again")  # an offset already taken is refused


def test_throttled_holds_the_whole_sink_and_retry_after_is_honoured() -> None:
    s = sched({"pd": 8})
    for i in range(3):
        s.add("p", i, f"k{i}", i)
    first = s.ready(0.0)
    assert len(first) == 3
    delay = s.retry(first[0], 1.0, "HTTP 429", retry_after_s=20.0, throttled=True)
    assert delay == 20.0
    s.retry(first[1], 1.0, "HTTP 500")
    s.add("p", 3, "k3", 3, now=1.0)
    assert s.ready(5.0) == [] and s.next_due() == 21.0  # nobody starts while the sink is throttled
    assert {j.item for j in s.ready(21.0)} == {0, 1, 3}


def test_a_429_without_retry_after_waits_the_throttle_time() -> None:
    s = DeliveryScheduler({"pd": 4}, backoff=Backoff(1.0, 300.0, 900.0, throttle_s=60.0), rng=random.Random(0))
    s.add("p", 0, "k", 0)
    (job,) = s.ready(0.0)
    assert s.retry(job, 0.0, "HTTP 429", throttled=True) == 60.0
    assert s.retry(s.ready(60.0)[0], 60.0, "HTTP 503") < 60.0  # a 5xx keeps the plain backoff


def test_rate_limit_spaces_starts() -> None:
    s = DeliveryScheduler({"pd": 8}, backoff=FAST, rate_limits={"pd": 2}, rng=random.Random(0))
    for i in range(4):
        s.add("p", i, f"k{i}", i)
    assert len(s.ready(0.0)) == 2
    assert s.ready(30.0) == [] and s.next_due() == 60.0
    assert len(s.ready(60.0)) == 2
    assert RateLimit(1).wait(0.0) == 0.0


def test_max_in_flight_and_next_due() -> None:
    s = sched({"pd": 2})
    for i in range(5):
        s.add("p", i, f"k{i}", i)
    assert len(s.ready(0.0)) == 2 and s.ready(0.0) == [] and s.next_due() is None  # waiting for answers
    s.accepted(s.in_flight()[0], 0.1)
    assert s.next_due() == 0.0 and len(s.ready(0.1)) == 1


def test_revoke_forgets_a_partition_and_ignores_late_answers() -> None:
    s = sched()
    s.add("p", 0, "k", "a")
    s.add("q", 0, "k", "b")
    jobs = s.ready(0.0)
    s.revoke("p")
    late = next(j for j in jobs if j.partition == "p")
    assert not s.accepted(late, 0.1) and s.sinks["pd"].in_flight == 1  # counted out, not applied
    assert s.pending("p") == 0 and s.partitions() == ["q"]
    assert s.add("p", 0, "k", "a again")  # the partition may come back and start over


def test_full_and_oldest_waiting() -> None:
    s = sched(max_pending=2)
    s.add("p", 0, "a", 0, now=5.0)
    assert not s.full("p")
    s.add("p", 1, "b", 1, now=6.0)
    assert s.full("p") and s.waiting("pd") == 2 and s.oldest_waiting("pd") == 5.0


@pytest.mark.parametrize("kw", [{"base_s": 0}, {"base_s": 10, "max_s": 1}, {"retry_after_max_s": -1},
                                {"throttle_s": -1}])
def test_backoff_config_errors(kw: dict) -> None:
    with pytest.raises(ConfigError):
        Backoff(**kw)


def test_backoff_grows_to_its_cap_and_respects_retry_after() -> None:
    b = Backoff(base_s=1, max_s=300, retry_after_max_s=900)
    rng = random.Random(3)
    delays = [b.delay(n, None, rng) for n in range(1, 30)]
    assert all(0.5 * min(300, 2 ** (n - 1)) <= d <= min(300, 2 ** (n - 1)) for n, d in zip(range(1, 30), delays,
                                                                                         strict=True))
    assert max(delays) <= 300 and b.delay(1, 120.0, rng) >= 120.0 and b.delay(1, 1e12, rng) == 900.0


# ------------------------------------------------------------------------------------------- properties
records = st.lists(st.tuples(st.sampled_from("abcde"), st.sampled_from(["p0", "p1"])), min_size=1, max_size=40)
outcomes = st.lists(st.sampled_from(["accepted", "retry", "rejected", "throttled"]), min_size=1, max_size=400)


@settings(max_examples=150, deadline=None)
@given(records=records, outcomes=outcomes, seed=st.integers(0, 2**16))
def test_invariants_under_random_outcomes(records: list[tuple[str, str]], outcomes: list[str], seed: int) -> None:
    """Whatever receivers answer: per (sink, key) deliveries follow offset order; a committed offset never passes a
    record some sink has not settled; and once receivers accept everything, everything is delivered exactly once."""
    rng = random.Random(seed)
    s = DeliveryScheduler({"pd": 3, "am": 1}, backoff=Backoff(1.0, 4.0, 8.0), rng=random.Random(seed))
    offsets: dict[str, int] = defaultdict(int)
    keys: dict[tuple[str, int], str] = {}
    for key, part in records:
        keys[(part, offsets[part])] = key
        s.add(part, offsets[part], key, (part, offsets[part]))
        offsets[part] += 1
    delivered: dict[str, list[tuple[str, int]]] = defaultdict(list)  # sink -> (partition, offset) settled
    holds: list[tuple[str, int]] = []
    now = 0.0

    def step(outcome: str) -> None:
        nonlocal now
        now += rng.choice([0.0, 0.5, 2.0, 9.0])
        for job in s.ready(now):
            if outcome == "accepted" or rng.random() < 0.3:
                assert s.accepted(job, now)
                delivered[job.sink].append(job.item)
            elif outcome == "rejected":
                assert s.rejected(job, now, "HTTP 400")
                delivered[job.sink].append(job.item)
                holds.append(job.item)
            else:
                s.retry(job, now, "HTTP 503", retry_after_s=3.0 if outcome == "throttled" else None,
                        throttled=outcome == "throttled")
        if holds and rng.random() < 0.5:
            s.release(*holds.pop(rng.randrange(len(holds))))
        check()

    def check() -> None:
        for sink, items in delivered.items():
            for part in offsets:
                per_key: dict[str, list[int]] = defaultdict(list)
                for p, o in items:
                    if p == part:
                        per_key[keys[(p, o)]].append(o)
                assert all(v == sorted(v) for v in per_key.values()), (sink, per_key)
        for part, committed in s.advance().items():
            for o in range(committed):
                assert all((part, o) in delivered[sink] for sink in ("pd", "am"))
                assert (part, o) not in holds

    for outcome in outcomes:
        step(outcome)
    for _ in range(4 * len(records) + 10):  # receivers recover
        now += 10.0
        while holds:
            s.release(*holds.pop())
        step("accepted")
    for sink in ("pd", "am"):
        assert sorted(delivered[sink]) == sorted(keys)  # each record exactly once per sink
    assert {p: s.committable(p) for p in offsets} == dict(offsets) and s.pending() == 0


@settings(max_examples=60, deadline=None)
@given(n_other=st.integers(1, 30), seed=st.integers(0, 2**16))
def test_a_failing_incident_never_holds_back_the_others(n_other: int, seed: int) -> None:
    s = DeliveryScheduler({"pd": 2}, backoff=Backoff(1.0, 60.0, 60.0), rng=random.Random(seed))
    s.add("p", 0, "stuck", "stuck-trigger")
    s.add("p", 1, "stuck", "stuck-resolve")
    for i in range(n_other):
        s.add("p", i + 2, f"k{i}", f"other-{i}")
    now, done = 0.0, []
    for _ in range(10 * n_other + 10):
        now += 0.1
        for job in s.ready(now):
            if job.key == "stuck":
                s.retry(job, now, "HTTP 500")
            else:
                s.accepted(job, now)
                done.append(job.item)
    assert sorted(done) == sorted(f"other-{i}" for i in range(n_other))
    assert s.committable("p") is None  # the stuck trigger at offset 0 holds the commit, and nothing is lost
    assert s.pending("p") == n_other + 2
