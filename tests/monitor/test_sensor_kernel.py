"""The sensor checks' C kernel (``monitor._sensors``) against its Python twin (``observe_reading``).

Random rules (every check on or off, repeating values allowed, windows up to 64 readings) and random readings
(floats, ints past 2**53, bools, strings, missing fields, times that go back, gaps past the compared range) go
through both, each on its own arrays: after every reading both arrays hold the same bytes and both say the same
about the marks; whole ``SensorChecks`` with and without the kernel keep the same faults.
"""

from __future__ import annotations

from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.sensor_checks import FieldRule, SensorChecks, SensorConfig, observe_reading, sensor_kernel
from tests.budget import examples

NAMES = ("a", "b", "c")
values = st.one_of(
    st.none(), st.booleans(), st.just("7"),
    st.sampled_from([0.0, 1.0, 100.0, -0.0, 2**53, 2**53 + 1, -(2**63), 2**70]),
    st.floats(-200.0, 200.0, allow_nan=False), st.integers(-50, 50),
    st.floats(allow_nan=True, allow_infinity=True),
)
rules = st.builds(
    FieldRule,
    stuck_after=st.integers(0, 5),
    stuck_ignore=st.lists(st.sampled_from([0.0, 1.0, 100.0, 3]), max_size=2).map(tuple),
    max_step=st.sampled_from([0.0, 1.0, 10.0, 50.0]),
    max_rate_per_s=st.sampled_from([0.0, 0.5, 8.0]),
    max_gap_s=st.sampled_from([1.0, 60.0, 900.0]),
    dropouts=st.integers(0, 3),
)
gaps = st.one_of(st.integers(-2_000, 90_000), st.sampled_from([0, 1_000, 60_000, 900_000]))  # the bounds, exactly
readings = st.lists(st.tuples(gaps, st.fixed_dictionaries({}, optional=dict.fromkeys(NAMES, values))),
                    min_size=1, max_size=80)


@settings(max_examples=examples(400), deadline=None)
@given(st.lists(rules, min_size=1, max_size=3), st.integers(1, 64), readings)
def test_the_kernel_does_what_observe_reading_does(field_rules: list[FieldRule], window: int,
                                                   steps: list[tuple[int, dict]]) -> None:
    compiled = [(NAMES[i], r.stuck_after, frozenset(r.stuck_ignore), r.max_step, r.max_rate_per_s / 1000,
                 r.max_gap_s * 1000) for i, r in enumerate(field_rules)]
    mask = (1 << window) - 1
    kernel = sensor_kernel(compiled, mask)
    assert kernel is not None, "monitor._sensors was not built: pip install -e . needs a C compiler (setup.py)"
    n = len(compiled)
    fast = (array("d", bytes(8 * n)), array("q", bytes(24 * n)), array("Q", bytes(24 * n)))
    slow = (array("d", bytes(8 * n)), array("q", bytes(24 * n)), array("Q", bytes(24 * n)))
    ts = 0
    for gap, reading in steps:
        ts += gap  # may go back: the kernel itself does not filter late readings (SensorChecks does)
        flagged = kernel.observe(*fast, ts, reading)
        if flagged is None:  # a value only Python reads exactly: nothing was touched
            assert all(a.tobytes() == b.tobytes() for a, b in zip(fast, slow, strict=True))
            flagged = observe_reading(compiled, mask, *fast, ts, reading)
        assert flagged == observe_reading(compiled, mask, *slow, ts, reading)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(fast, slow, strict=True))


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(rules, min_size=1, max_size=3),
       st.lists(st.tuples(st.booleans(), st.integers(0, 120_000),
                          st.fixed_dictionaries({}, optional=dict.fromkeys(NAMES, values)),
                          st.sampled_from([None, *NAMES])), min_size=1, max_size=80))
def test_checks_with_and_without_the_kernel_keep_the_same_faults(field_rules: list[FieldRule], steps: list) -> None:
    config = SensorConfig(dict(zip(NAMES[: len(field_rules)], field_rules, strict=True)), window=12)
    fast, slow = SensorChecks(config, compiled=True), SensorChecks(config, compiled=False)
    assert fast.compiled and not slow.compiled
    ts = 0
    for accepted, gap, reading, field in steps:
        ts += gap
        for c in (fast, slow):
            if accepted:
                c.observe("e", ts, reading)
            else:
                c.observe_rejected("e", field)
        assert fast.faults("e") == slow.faults("e")


def test_rules_the_kernel_cannot_mirror_stay_in_python() -> None:
    for value in (2**53 + 1, 10**400):  # repeating values no double stands for (the second, past every float)
        assert sensor_kernel([("a", 3, frozenset({value}), 0.0, 0.0, 1e6)], (1 << 30) - 1) is None
        assert not SensorChecks(SensorConfig({"a": FieldRule(stuck_after=2, stuck_ignore=(value,))})).compiled
    checks = SensorChecks(SensorConfig({"a": FieldRule(stuck_after=2, stuck_ignore=(2**53 + 1,))}))
    for ts in (1, 2, 3):
        checks.observe("e", ts, {"a": 2**53 + 1})
    assert checks.faults("e") is None  # an allowed repeat, compared exactly by the Python twin
    assert sensor_kernel([("a", 3, frozenset(), 0.0, 0.0, 1e6)], (1 << 30) - 1) is not None
