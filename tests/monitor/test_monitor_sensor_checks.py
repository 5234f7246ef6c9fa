"""Sensor checks: stuck values, dropouts, spikes; against the simulator's healthy and broken patients."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.exceptions import RecordError
from features.records import Event, parse_record
from features.views import GPS_VIEW, VITALS_VIEW
from models.prediction import Prediction
from monitor.exceptions import MonitorConfigError
from monitor.sensor_checks import GPS_RULES, VITALS_RULES, FieldRule, SensorChecks, SensorConfig
from streams import codec
from streams.local.simulator import SimConfig, generate

MIN = 60_000


def checks(**rules: FieldRule) -> SensorChecks:
    return SensorChecks(SensorConfig(rules or {"x": FieldRule(stuck_after=5, max_step=10.0)}, window=10))


def feed(c: SensorChecks, entity: str, values: list[float], step_ms: int = MIN, t0: int = 0) -> None:
    for i, v in enumerate(values):
        c.observe(entity, t0 + i * step_ms, {"x": v})


def test_stuck_after_n_identical_readings_and_healthy_again_after_the_window() -> None:
    c = checks()
    feed(c, "a", [1.0, 2.0, 3.0, 3.0, 3.0, 3.0])
    assert c.faults("a") is None  # 4 in a row
    c.observe("a", 6 * MIN, {"x": 3.0})
    assert c.faults("a") == {"x": "stuck"}
    feed(c, "a", [float(i) for i in range(10)], t0=7 * MIN)  # moving again: the stuck readings age out
    assert c.faults("a") is None


def test_a_value_listed_as_legitimately_repeating_is_not_stuck() -> None:
    c = checks(x=FieldRule(stuck_after=3, stuck_ignore=(100.0,)))
    feed(c, "a", [100.0] * 20)
    assert c.faults("a") is None


def test_a_spike_out_and_back_is_a_fault_a_sustained_step_is_not() -> None:
    c = checks()
    feed(c, "spike", [70, 71, 140, 72, 71])
    feed(c, "step", [70, 71, 140, 141, 139, 140])  # an arrhythmia's onset: it stays up
    assert c.faults("spike") == {"x": "spike"} and c.faults("step") is None


def test_readings_far_apart_are_not_compared_and_late_ones_are_ignored() -> None:
    c = checks(x=FieldRule(max_step=10.0, max_gap_s=600))
    feed(c, "gap", [70, 140, 70], step_ms=20 * MIN)
    assert c.faults("gap") is None
    c.observe("late", 10 * MIN, {"x": 70})
    c.observe("late", 5 * MIN, {"x": 70})  # older than the latest: not its neighbour
    c.observe("late", 11 * MIN, {"x": 140})
    c.observe("late", 12 * MIN, {"x": 70})
    assert c.faults("late") == {"x": "spike"}


def test_a_faster_allowance_for_readings_further_apart() -> None:
    c = checks(x=FieldRule(max_step=1.0, max_rate_per_s=1.0))
    feed(c, "car", [0.0, 50.0, 0.0], step_ms=60_000)  # 50 in 60 s: within 1 + 1/s * 60 s
    feed(c, "jump", [0.0, 50.0, 0.0], step_ms=10_000)
    assert c.faults("car") is None and c.faults("jump") == {"x": "spike"}


def test_dropouts_are_read_from_the_pipelines_real_dead_letter_reason() -> None:
    """The rejected field comes from parse_record's own error detail (a change of that text fails here)."""
    c = SensorChecks(SensorConfig(VITALS_RULES))
    good = {"patient_id": "P1", "ts": 0, "hr": 80, "rr": 15, "spo2": 97.0, "temp": 36.8, "sbp": 120, "dbp": 80}
    errors = []
    for i in range(4):
        try:
            parse_record(VITALS_VIEW, b"P1", codec.encode({**good, "ts": i * MIN, "spo2": 0.0}))
        except RecordError as err:
            errors.append((b"P1", err))
    c.observe_batch([], errors[:1])
    assert c.faults("P1") is None  # one dropout is not a pattern
    c.observe_batch([Event("P1", 5 * MIN, {**good})], errors[1:2])
    assert c.faults("P1") == {"spo2": "dropout"}
    c.observe_batch([], [(None, errors[2][1]), (b"P2", RecordError("malformed_json", "x"))])  # no key / no field
    assert c.faults("P2") is None


def test_entities_are_bounded_least_recently_seen_out() -> None:
    c = SensorChecks(SensorConfig({"x": FieldRule(stuck_after=2)}, max_entities=3))
    for e in "abcd":
        c.observe(e, 0, {"x": 1.0})
    c.observe("b", 1, {"x": 1.0})
    c.observe("e", 0, {"x": 1.0})
    assert len(c) == 3 and c.evicted == 2 and c.faults("a") is None and c.faults("b") == {"x": "stuck"}


def test_mark_sets_quality_on_faulty_entities_only() -> None:
    c = checks()
    feed(c, "bad", [5.0] * 6)
    feed(c, "good", [1.0, 2.0, 3.0])
    preds = [Prediction(f"p{e}", e, 0, "m", 1, "champion", 0.5, 0, 0) for e in ("bad", "good", "unknown")]
    assert [p.quality for p in c.mark(preds)] == [{"x": "stuck"}, None, None]


def test_bad_config_is_refused() -> None:
    with pytest.raises(MonitorConfigError):
        SensorConfig({}, window=65)
    with pytest.raises(MonitorConfigError):
        FieldRule(max_step=-1)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(-9.0, 9.0, allow_nan=False), min_size=1, max_size=80), st.integers(1, 5))
def test_plausible_readings_are_never_faulty(steps: list[float], gap_s: int) -> None:
    """Steps within the allowance and no run of equal values as long as ``stuck_after``: never a fault."""
    c = checks(x=FieldRule(stuck_after=5, max_step=10.0))
    x = 50.0
    for i, d in enumerate(steps):
        x += d if d != 0 else 0.5 * (-1) ** i
        c.observe("a", i * gap_s * 1000, {"x": round(x, 3) + i * 1e-6})
    assert c.faults("a") is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-5.0, 5.0, allow_nan=False), min_size=3, max_size=40), st.floats(21.0, 500.0),
       st.booleans())
def test_any_spike_beyond_the_allowance_is_caught(steps: list[float], size: float, up: bool) -> None:
    """Out and back by more than 10 (the allowance) whatever the neighbours do (their steps are at most 5)."""
    c = checks(x=FieldRule(max_step=10.0))
    values = [100.0 + sum(steps[:i]) for i in range(len(steps))]
    k = len(values) // 2
    values[k] += size if up else -size
    feed(c, "a", values[:k + 2])  # up to the way back (later readings age it out of the 10-reading window)
    assert c.faults("a") == {"x": "spike"}


def _readings(scenario: str, source: str = "vitals") -> dict[str, list[dict]]:
    cfg = SimConfig(source=source, entities=200, rate=400.0, duration_s=50.0, drift_at_s=10.0,  # type: ignore[arg-type]
                    scenario=scenario, seed=11, time_scale=40.0 if source == "vitals" else 10.0)  # type: ignore[arg-type]
    out: dict[str, list[dict]] = defaultdict(list)
    for ev in generate(cfg):
        out[ev.key].append(ev.value)
    return out


@pytest.mark.parametrize(("source", "view", "rules", "recall"), [("vitals", VITALS_VIEW, VITALS_RULES, 0.9),
                                                                 ("gps", GPS_VIEW, GPS_RULES, 0.8)])
def test_on_the_simulator_only_the_entities_with_broken_sensors_are_marked(source: str, view: object, rules: dict,
                                                                           recall: float) -> None:
    """Healthy entities (stable run, and the sensor-fault run's unaffected ones) are never marked; nearly all of the
    ones whose readings the fault changed are (the simulator draws the same world for both runs of a seed)."""
    stable, broken = _readings("stable", source), _readings("sensor-fault", source)
    faulty = {e for e in broken if broken[e] != stable[e]}
    assert 40 <= len(faulty) <= 80  # ~30 % of 200
    for readings in (stable, broken):
        c = SensorChecks(SensorConfig(rules))
        ever: set[str] = set()
        for e, values in readings.items():
            for v in values:
                try:
                    ev = parse_record(view, e.encode(), codec.encode(v))  # type: ignore[arg-type]
                except RecordError as err:
                    c.observe_batch([], [(e.encode(), err)])
                else:
                    c.observe_batch([ev])
                if c.faults(e):
                    ever.add(e)
        if readings is stable:
            assert ever == set()
        else:
            assert ever <= faulty
            assert len(ever) >= recall * len(faulty), (len(ever), len(faulty))


_reading = st.one_of(st.none(), st.sampled_from([0.0, 1.0, 50.0]), st.floats(-100.0, 100.0, allow_nan=False))


@given(st.lists(st.tuples(st.booleans(), _reading, _reading, st.integers(1, 120_000), st.sampled_from([None, "x", "y"])),
                min_size=1, max_size=120))
def test_the_faults_kept_after_every_reading_are_those_the_windows_hold(steps: list) -> None:
    """``observe`` decides from what it marked in this reading whether to re-read the windows; whatever the mix of
    readings, gaps, missing fields and rejections, the faults it keeps equal a full re-read of every window."""
    c = SensorChecks(SensorConfig({"x": FieldRule(stuck_after=3, max_step=10.0, dropouts=2),
                                   "y": FieldRule(stuck_after=4, stuck_ignore=(0.0,), max_step=5.0)}, window=8))
    ts = 0
    for accepted, x, y, gap, field in steps:
        ts += gap
        if accepted:
            c.observe("e", ts, {k: v for k, v in (("x", x), ("y", y)) if v is not None})
        else:
            c.observe_rejected("e", field)
        assert c.faults("e") == c._faults(c._entities["e"])
