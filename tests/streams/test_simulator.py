"""Tests of the seeded event simulator: determinism, timing, scenarios, labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.exceptions import ConfigError
from streams.local.simulator import GPS_FIELDS, VITAL_FIELDS, SimConfig, SimEvent, generate, sim_summary

# 100 patients read every 100 / 500 * 60 = 12 s of event time; 40 s wall = 40 min of event time.
BASE = SimConfig(entities=100, rate=500.0, duration_s=40.0, drift_at_s=20.0, time_scale=60.0, seed=3)


def events(**changes: object) -> list[SimEvent]:
    return list(generate(dataclasses.replace(BASE, **changes)))


def split(evs: list[SimEvent]) -> tuple[list[SimEvent], list[SimEvent]]:
    return [e for e in evs if not e.drifted], [e for e in evs if e.drifted]


def mean(evs: list[SimEvent], name: str) -> float:
    return float(np.mean([e.value[name] for e in evs]))


@pytest.fixture(scope="module")
def stable() -> list[SimEvent]:
    return events()


# ----------------------------------------------------------------------------- determinism and timing
def test_same_seed_gives_identical_sequence(stable: list[SimEvent]) -> None:
    assert events() == stable


def test_different_seed_gives_different_sequence(stable: list[SimEvent]) -> None:
    other = events(seed=4)
    assert [e.value for e in other] != [e.value for e in stable]
    assert [e.key for e in other] != [e.key for e in stable]  # the turn order is seeded too


@given(
    rate=st.floats(1.0, 2000.0),
    duration=st.floats(0.0, 3.0),
    entities=st.integers(1, 40),
    time_scale=st.floats(0.5, 50.0),
    source=st.sampled_from(["vitals", "gps"]),
)
@settings(max_examples=40, deadline=None)
def test_count_and_timestamps_follow_the_spec(
    rate: float, duration: float, entities: int, time_scale: float, source: str
) -> None:
    cfg = SimConfig(source=source, entities=entities, rate=rate, duration_s=duration, time_scale=time_scale)  # type: ignore[arg-type]
    evs = list(generate(cfg))
    assert len(evs) == round(rate * duration) == cfg.total_events
    assert [e.value["ts"] for e in evs] == [
        cfg.start_ms + round(i / rate * 1000 * time_scale) for i in range(len(evs))
    ]
    assert all(b.value["ts"] >= a.value["ts"] for a, b in zip(evs, evs[1:], strict=False))


def test_entities_take_turns_in_a_fixed_seeded_order(stable: list[SimEvent]) -> None:
    n = BASE.entities
    first_round = [e.key for e in stable[:n]]
    assert len(set(first_round)) == n
    assert first_round != sorted(first_round)  # shuffled, not id order
    for r in range(len(stable) // n):
        assert [e.key for e in stable[r * n : (r + 1) * n]] == first_round
    # hence every entity reads every entities / rate * time_scale seconds of event time
    p0 = [e.value["ts"] for e in stable if e.key == first_round[0]]
    assert set(np.diff(p0)) == {round(BASE.reading_interval_s * 1000)}


def test_key_is_the_entity_id_in_the_payload(stable: list[SimEvent]) -> None:
    assert all(e.key == e.value["patient_id"] for e in stable)
    gps = events(source="gps", duration_s=2)
    assert all(e.key == e.value["vehicle_id"] for e in gps)
    assert set(gps[0].value) == {"vehicle_id", "ts", *GPS_FIELDS}


# ----------------------------------------------------------------------------- labels and realism
def test_labels_binary_with_a_sane_positive_rate(stable: list[SimEvent]) -> None:
    labels = {e.label for e in stable}
    assert labels <= {0, 1}
    rate = sim_summary(stable)["positive_rate"]
    assert 0.05 <= rate <= 0.35


def test_positives_have_worse_vitals(stable: list[SimEvent]) -> None:
    pos = [e for e in stable if e.label == 1]
    neg = [e for e in stable if e.label == 0]
    assert mean(pos, "hr") > mean(neg, "hr") + 5
    assert mean(pos, "rr") > mean(neg, "rr")
    assert mean(pos, "spo2") < mean(neg, "spo2")
    assert mean(pos, "sbp") < mean(neg, "sbp")


def test_vitals_are_in_physiological_ranges_when_stable(stable: list[SimEvent]) -> None:
    for e in stable:
        v = e.value
        assert 25 < v["hr"] < 200 and 3 < v["rr"] < 50 and 70 < v["spo2"] <= 100
        assert 34 < v["temp"] < 42 and 45 < v["sbp"] < 220 and v["age_band"] in {"18-40", "41-65", "66+"}


def test_readings_are_autocorrelated(stable: list[SimEvent]) -> None:
    key = stable[0].key
    hr = np.array([e.value["hr"] for e in stable if e.key == key])
    assert np.corrcoef(hr[:-1], hr[1:])[0, 1] > 0.3


def test_stable_never_drifts(stable: list[SimEvent]) -> None:
    assert not any(e.drifted for e in stable)
    assert sim_summary(stable)["drifted"] == 0


# ----------------------------------------------------------------------------- scenarios
@pytest.mark.parametrize("scenario", ["covariate-shift", "concept-drift", "sensor-fault"])
def test_every_scenario_equals_stable_before_drift_at(scenario: str, stable: list[SimEvent]) -> None:
    evs = events(scenario=scenario)
    first = next(i for i, e in enumerate(evs) if e.drifted)
    assert first == round(BASE.drift_at_s * BASE.rate)
    assert all(e.drifted for e in evs[first:])
    assert evs[:first] == stable[:first]


def test_covariate_shift_moves_inputs_not_labels(stable: list[SimEvent]) -> None:
    evs = events(scenario="covariate-shift")
    before, after = split(evs)
    s_after = stable[len(before) :]
    assert mean(after, "hr") - mean(s_after, "hr") == pytest.approx(15, abs=0.5)
    assert mean(after, "spo2") - mean(s_after, "spo2") == pytest.approx(-3, abs=0.3)
    assert mean(after, "rr") - mean(s_after, "rr") == pytest.approx(4, abs=0.3)
    assert mean(after, "hr") > mean(before, "hr") + 10
    assert [e.label for e in evs] == [e.label for e in stable]  # P(label | latent) unchanged


def test_concept_drift_changes_only_labels_after_drift_at(stable: list[SimEvent]) -> None:
    evs = events(scenario="concept-drift")
    assert [e.value for e in evs] == [e.value for e in stable]  # inputs identical
    before, after = split(evs)
    s_after = stable[len(before) :]
    assert [e.label for e in before] == [e.label for e in stable[: len(before)]]
    changed = np.mean([a.label != b.label for a, b in zip(after, s_after, strict=True)])
    assert changed > 0.1
    # the old relation (hr up = risk) is much weaker afterwards
    gap_before = mean([e for e in before if e.label], "hr") - mean([e for e in before if not e.label], "hr")
    gap_after = mean([e for e in after if e.label], "hr") - mean([e for e in after if not e.label], "hr")
    assert gap_after < gap_before / 2
    assert 0.05 <= np.mean([e.label for e in after]) <= 0.4


def test_sensor_fault_gives_out_of_range_stuck_and_spiking_values(stable: list[SimEvent]) -> None:
    evs = events(scenario="sensor-fault")
    before, after = split(evs)
    assert not any(e.value["spo2"] <= 0 for e in before)
    zeros = [e for e in after if e.value["spo2"] == 0.0]
    assert 0 < len(zeros) < 0.3 * len(after)
    faulty = {e.key for e in zeros}
    assert 0.05 < len(faulty) / BASE.entities < 0.3  # the dropout half of ~30 % faulty patients
    # some patients' spo2 is stuck: constant across all their drifted readings
    by_key: dict[str, set[float]] = {}
    for e in after:
        by_key.setdefault(e.key, set()).add(e.value["spo2"])
    stuck = [k for k, vals in by_key.items() if len(vals) == 1]
    assert 5 <= len(stuck) <= 30
    assert max(e.value["hr"] for e in after) > max(e.value["hr"] for e in before) + 20
    assert mean(after, "spo2") < mean(before, "spo2") - 1


def test_gps_covariate_shift_speeds_up_by_40_percent() -> None:
    base = dict(source="gps", duration_s=40.0, drift_at_s=20.0)
    stable_ = events(**base)
    shifted = events(**base, scenario="covariate-shift")
    before, after = split(shifted)
    s_after = stable_[len(before) :]
    assert mean(after, "speed") / mean(s_after, "speed") == pytest.approx(1.4, rel=0.03)
    assert mean(before, "speed") == pytest.approx(mean(stable_[: len(before)], "speed"))
    assert {e.label for e in shifted} == {0, 1}  # delay risk (jams), the same before and after the shift
    assert [e.label for e in shifted] == [e.label for e in stable_]


def test_gps_delay_risk_labels_go_with_slow_jumpy_driving() -> None:
    evs = events(source="gps", entities=40, duration_s=120.0, rate=200.0, time_scale=5.0)
    pos = [e for e in evs if e.label == 1]
    neg = [e for e in evs if e.label == 0]
    assert 0.08 < len(pos) / len(evs) < 0.45
    assert mean(pos, "speed") < 0.75 * mean(neg, "speed")


def test_gps_moves_smoothly_and_sensor_fault_jumps() -> None:
    base = dict(source="gps", duration_s=40.0, drift_at_s=20.0)

    def max_step_m(evs: list[SimEvent]) -> float:
        last: dict[str, tuple[float, float]] = {}
        worst = 0.0
        for e in evs:
            p = (e.value["lat"], e.value["lon"])
            if e.key in last:
                dlat = (p[0] - last[e.key][0]) * 111_320
                dlon = (p[1] - last[e.key][1]) * 111_320 * np.cos(np.radians(p[0]))
                worst = max(worst, float(np.hypot(dlat, dlon)))
            last[e.key] = p
        return worst

    stable_ = events(**base)
    # readings every 12 s at <= ~40 m/s plus metres of noise: no step beyond 1 km
    assert max_step_m(stable_) < 1000
    faulty = events(**base, scenario="sensor-fault")
    before, after = split(faulty)
    assert max_step_m(before) < 1000
    assert max_step_m(after) > 1000
    assert any(e.value["lat"] == 0.0 for e in after)
    assert all(0 <= e.value["heading"] < 360 and e.value["speed"] >= 0 for e in faulty)


# ----------------------------------------------------------------------------- config and summary
@pytest.mark.parametrize(
    "changes",
    [
        {"source": "gps", "scenario": "concept-drift"},
        {"scenario": "nope"},
        {"source": "kafka"},
        {"entities": 0},
        {"rate": 0.0},
        {"time_scale": -1.0},
        {"duration_s": -1.0},
    ],
)
def test_bad_config_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        dataclasses.replace(BASE, **changes)


def test_summary_counts() -> None:
    evs = events(scenario="covariate-shift", duration_s=10, drift_at_s=4)
    s = sim_summary(evs)
    assert s["events"] == len(evs) == 5000
    assert s["drifted"] == 3000 and s["before"]["events"] == 2000
    assert s["entities"] == BASE.entities
    assert s["positives"] == sum(e.label or 0 for e in evs)
    assert s["first_ts"] == BASE.start_ms and s["last_ts"] == evs[-1].value["ts"]
    assert set(s["before"]["means"]) == {"hr", "rr", "spo2", "temp", "sbp", "dbp"} == set(VITAL_FIELDS)
    assert sim_summary([])["positive_rate"] is None
