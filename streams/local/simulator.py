"""A seeded event simulator: ICU vital signs with a latent deterioration process, or vehicle GPS, plus drift.

Pure and deterministic for a seed (``numpy.random.Generator(PCG64(seed))``); no Kafka here, the producer
paces and sends what :func:`generate` yields.

Time: event ``i`` happens ``i / rate`` wall-clock seconds into the stream and carries
``ts = start_ms + round(i / rate * 1000 * time_scale)``. Entities take turns in a seeded order (one
*round* = one reading per entity), so each entity reports every ``entities / rate * time_scale`` seconds of
event time. The latent world advances one step per round, vectorised over entities.

Vitals model (event-time constants below): each patient has an age band, baseline vitals and a frailty.
Latent risk ``z = r + e``: ``r`` is an Ornstein-Uhlenbeck walk around the frailty (30 min time constant)
and ``e`` an occasional deterioration episode (rise over minutes, decay over a quarter hour). ``z`` moves
hr up, rr up, spo2 down, temp up, sbp/dbp down, on top of autocorrelated measurement artefacts and white
noise. ``label = 1`` when ``z`` is above a threshold (about 15 % positives).

Scenarios (``drifted`` is True for every event at or after ``drift_at_s``, all entities):

- ``covariate-shift``: inputs move (hr +15 bpm, spo2 -3, rr +4 for everyone); P(label | z) unchanged.
  GPS: speeds rise 40 %.
- ``concept-drift``: inputs are bit-for-bit those of ``stable``; the label follows a different rule
  (mostly an unobserved factor), so only the error stream shows it. Vitals only.

GPS model: vehicles cruise at their own speed with smooth turns; traffic jams come and go per vehicle (from a
generator of their own, so the other draws do not depend on them). In a jam speeds drop (to 20-40 % at the
deepest), get jumpy (stop and go) and headings wobble (lane changes, detours). ``label = 1`` ("delay risk")
while the vehicle's jam level is above 0.4 (about a quarter of readings).
- ``sensor-fault``: ~30 % of patients get a stuck spo2 (a constant) or a dropping-out spo2 (0.0, out of
  range, some of the time) and hr spikes. GPS: ~30 % of vehicles report jumps and the odd (0, 0) fix.

The main generator's draws do not depend on the scenario (faults draw from a second, seeded generator), so
for one seed every scenario equals ``stable`` before ``drift_at_s``.

Example:
    >>> cfg = SimConfig(entities=3, rate=10, duration_s=1, seed=7)
    >>> events = list(generate(cfg))
    >>> len(events), events[0].value["ts"], events[1].value["ts"]
    (10, 1700000000000, 1700000000100)
    >>> sorted(events[0].value)
    ['age_band', 'dbp', 'hr', 'patient_id', 'rr', 'sbp', 'spo2', 'temp', 'ts']
    >>> [e.value for e in generate(cfg)] == [e.value for e in events]
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from streams.exceptions import ConfigError

__all__ = ["SimConfig", "SimEvent", "VITAL_FIELDS", "GPS_FIELDS", "generate", "sim_summary"]

Source = Literal["vitals", "gps"]
Scenario = Literal["stable", "covariate-shift", "concept-drift", "sensor-fault"]
SCENARIOS: tuple[str, ...] = ("stable", "covariate-shift", "concept-drift", "sensor-fault")
VITAL_FIELDS: tuple[str, ...] = ("hr", "rr", "spo2", "temp", "sbp", "dbp")
GPS_FIELDS: tuple[str, ...] = ("lat", "lon", "speed", "heading")
AGE_BANDS: tuple[str, ...] = ("18-40", "41-65", "66+")

# Vitals, event-time seconds.
_TAU_RISK = 1800.0  # OU time constant of the slow risk walk
_SIGMA_RISK = 0.5  # stationary sd of the slow walk
_EPISODE_GAP = 4 * 3600.0  # mean time between deterioration episodes
_EPISODE_LEN = 20 * 60.0  # mean episode length
_EPISODE_RISE = 5 * 60.0
_EPISODE_DECAY = 15 * 60.0
_TAU_ARTEFACT = 120.0  # autocorrelation of measurement artefacts
_LABEL_THRESHOLD = 1.15
_CONCEPT_THRESHOLD = 1.05  # threshold on 0.3 * z + hidden after a concept drift
# GPS traffic, event-time seconds: jams (the delay-risk label) start every ~20 min per vehicle, last ~8 min.
_JAM_GAP = 1200.0
_JAM_LEN = 480.0
_JAM_EASE = 60.0  # how fast speeds follow a jam's start or end
_JAM_LABEL = 0.4  # label = 1 ("delay risk") while the jam level is above this
# effect of z, artefact sd, white-noise sd, decimals; order of VITAL_FIELDS
_EFFECT = np.array([12.0, 3.0, -1.8, 0.45, -10.0, -5.0])
_ARTEFACT_SD = np.array([3.0, 1.0, 0.6, 0.12, 5.0, 3.0])
_NOISE_SD = np.array([2.0, 1.0, 0.5, 0.08, 4.0, 3.0])
_DECIMALS = (0, 0, 1, 2, 0, 0)
_COVARIATE_SHIFT = np.array([15.0, 4.0, -3.0, 0.0, 0.0, 0.0])


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One simulated record: Kafka ``key``, JSON-ready ``value``, ground-truth ``label`` and drift flag."""

    key: str
    value: dict[str, Any]
    label: int | None
    drifted: bool


@dataclass(frozen=True)
class SimConfig:
    """What to simulate. ``rate`` and ``duration_s`` are wall-clock; event time runs ``time_scale`` x faster.

    Example:
        >>> SimConfig(rate=100, duration_s=2.5).total_events
        250
        >>> SimConfig(source="gps", scenario="concept-drift")
        Traceback (most recent call last):
        ...
        streams.exceptions.ConfigError: scenario 'concept-drift' needs labels; use it with source 'vitals'
    """

    source: Source = "vitals"
    entities: int = 50
    rate: float = 500.0
    duration_s: float = 60.0
    scenario: Scenario = "stable"
    drift_at_s: float = 30.0
    seed: int = 0
    start_ms: int = 1_700_000_000_000
    time_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.source not in ("vitals", "gps"):
            raise ConfigError(f"unknown source {self.source!r}; choose 'vitals' or 'gps'")
        if self.scenario not in SCENARIOS:
            raise ConfigError(f"unknown scenario {self.scenario!r}; choose one of {', '.join(SCENARIOS)}")
        if self.source == "gps" and self.scenario == "concept-drift":
            raise ConfigError("scenario 'concept-drift' needs labels; use it with source 'vitals'")
        if self.entities < 1:
            raise ConfigError(f"entities must be >= 1, got {self.entities}")
        if not self.rate > 0 or not self.time_scale > 0:
            raise ConfigError("rate and time_scale must be > 0")
        if self.duration_s < 0 or self.drift_at_s < 0:
            raise ConfigError("duration_s and drift_at_s must be >= 0")

    @property
    def total_events(self) -> int:
        """``round(rate * duration_s)``."""
        return round(self.rate * self.duration_s)

    @property
    def drift_index(self) -> int:
        """Index of the first drifted event (``total_events`` when the scenario is stable).

        >>> SimConfig(rate=10, drift_at_s=2.05, scenario="sensor-fault").drift_index
        21
        """
        if self.scenario == "stable":
            return self.total_events
        return math.ceil(round(self.drift_at_s * self.rate, 9))

    @property
    def reading_interval_s(self) -> float:
        """Event-time seconds between two readings of the same entity."""
        return self.entities / self.rate * self.time_scale


def _ou_step(
    x: np.ndarray, mean: np.ndarray | float, tau: float, sd: float, dt: float, eps: np.ndarray
) -> np.ndarray:
    """Exact Ornstein-Uhlenbeck update with stationary sd ``sd``."""
    a = math.exp(-dt / tau)
    return mean + (x - mean) * a + sd * math.sqrt(1.0 - a * a) * eps


@dataclass
class _Vitals:
    """Latent state and observation model of all patients (arrays indexed by patient)."""

    cfg: SimConfig
    rng: np.random.Generator
    fault_rng: np.random.Generator
    n: int = field(init=False)

    def __post_init__(self) -> None:
        n, rng = self.cfg.entities, self.rng
        self.n = n
        self.ids = [f"P{j:05d}" for j in range(n)]
        self.band = rng.choice(3, size=n, p=[0.35, 0.40, 0.25])
        self.band_names = [AGE_BANDS[b] for b in self.band]
        self.frailty = np.array([0.0, 0.3, 0.7])[self.band] + rng.normal(0.0, 0.3, n)
        age_hr, age_sbp = np.array([-2.0, 0.0, 3.0])[self.band], np.array([-6.0, 0.0, 10.0])[self.band]
        base_mean = np.array([72.0, 15.0, 97.5, 36.8, 122.0, 77.0])
        base_sd = np.array([7.0, 1.5, 0.8, 0.25, 10.0, 7.0])
        self.base = base_mean + base_sd * rng.normal(size=(n, 6))
        self.base[:, 0] += age_hr
        self.base[:, 4] += age_sbp
        self.response = rng.uniform(0.1, 1.1, n)  # how strongly this patient's vitals show the risk
        self.r = self.frailty + _SIGMA_RISK * rng.normal(size=n)
        self.hidden = rng.normal(size=n)  # unobserved factor, drives the label after a concept drift
        share = _EPISODE_LEN / (_EPISODE_GAP + _EPISODE_LEN)
        self.active = rng.random(n) < share
        self.amp = rng.uniform(0.8, 2.0, n)
        self.e = np.where(self.active, self.amp * rng.random(n), 0.0)
        self.art = _ARTEFACT_SD * rng.normal(size=(n, 6))
        # Sensor faults: who, and how (stuck or dropout). Drawn for every scenario, from the fault stream.
        self.faulty = self.fault_rng.random(n) < 0.3
        self.stuck = self.fault_rng.random(n) < 0.5
        self.stuck_value = np.full(n, np.nan)

    def step(self, dt: float) -> None:
        """Advance every patient's latent state by ``dt`` event-time seconds."""
        n, rng = self.n, self.rng
        self.r = _ou_step(self.r, self.frailty, _TAU_RISK, _SIGMA_RISK, dt, rng.normal(size=n))
        self.hidden = _ou_step(self.hidden, 0.0, _TAU_RISK, 1.0, dt, rng.normal(size=n))
        starts = rng.random(n) < -math.expm1(-dt / _EPISODE_GAP)
        ends = rng.random(n) < -math.expm1(-dt / _EPISODE_LEN)
        new_amp = rng.uniform(0.8, 2.0, n)
        begin = ~self.active & starts
        self.amp = np.where(begin, new_amp, self.amp)
        self.active = (self.active & ~ends) | begin
        rise, decay = -math.expm1(-dt / _EPISODE_RISE), math.exp(-dt / _EPISODE_DECAY)
        self.e = np.where(self.active, self.e + (self.amp - self.e) * rise, self.e * decay)
        a = math.exp(-dt / _TAU_ARTEFACT)
        self.art = self.art * a + _ARTEFACT_SD * math.sqrt(1 - a * a) * rng.normal(size=(n, 6))

    def observe(self, drifted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Readings (n x 6) and labels (n) of this round; ``drifted`` marks patients read after drift_at."""
        z = self.r + self.e
        obs = (
            self.base
            + np.outer(z * self.response, _EFFECT)
            + self.art
            + _NOISE_SD * self.rng.normal(size=(self.n, 6))
        )
        obs[:, 2] = np.minimum(obs[:, 2], 100.0)
        label = (z > _LABEL_THRESHOLD).astype(np.int64)
        u_drop, u_spike, spike = (
            self.fault_rng.random(self.n),
            self.fault_rng.random(self.n),
            self.fault_rng.uniform(40.0, 90.0, self.n),
        )
        scenario = self.cfg.scenario
        if scenario == "covariate-shift":
            obs += np.where(drifted[:, None], _COVARIATE_SHIFT, 0.0)
        elif scenario == "concept-drift":
            new_label = (0.3 * z + self.hidden > _CONCEPT_THRESHOLD).astype(np.int64)
            label = np.where(drifted, new_label, label)
        elif scenario == "sensor-fault":
            hit = drifted & self.faulty
            first = hit & self.stuck & np.isnan(self.stuck_value)
            self.stuck_value = np.where(first, np.round(obs[:, 2], 1), self.stuck_value)
            obs[:, 2] = np.where(hit & self.stuck, self.stuck_value, obs[:, 2])
            obs[:, 2] = np.where(hit & ~self.stuck & (u_drop < 0.3), 0.0, obs[:, 2])
            obs[:, 0] = np.where(hit & (u_spike < 0.15), obs[:, 0] + spike, obs[:, 0])
        return obs, label

    def payload(self, j: int, ts: int, row: list[float]) -> dict[str, Any]:
        """The JSON payload of patient ``j``."""
        value: dict[str, Any] = {"patient_id": self.ids[j], "ts": ts, "age_band": self.band_names[j]}
        for name, x, d in zip(VITAL_FIELDS, row, _DECIMALS, strict=True):
            value[name] = round(x, d) if d else float(round(x))
        return value


@dataclass
class _Gps:
    """Vehicles: position random walk with smoothly changing heading and noisy speed (m/s)."""

    cfg: SimConfig
    rng: np.random.Generator
    fault_rng: np.random.Generator
    n: int = field(init=False)

    def __post_init__(self) -> None:
        n, rng = self.cfg.entities, self.rng
        self.n = n
        self.ids = [f"V{j:05d}" for j in range(n)]
        self.lat = 51.5074 + rng.normal(0.0, 0.05, n)
        self.lon = -0.1278 + rng.normal(0.0, 0.08, n)
        self.cruise = rng.uniform(5.0, 30.0, n)
        self.speed = self.cruise + rng.normal(0.0, 2.0, n)
        self.heading = rng.uniform(0.0, 360.0, n)
        self.turn = rng.normal(0.0, 1.0, n)  # deg/s, itself a slow OU: smooth heading changes
        self.faulty = self.fault_rng.random(n) < 0.3
        # Congestion (the delay-risk label), from a generator of its own: the main draws stay as they were.
        self.traffic_rng = np.random.Generator(np.random.PCG64([self.cfg.seed, 0x7EAF]))
        share = _JAM_LEN / (_JAM_GAP + _JAM_LEN)
        self.jammed = self.traffic_rng.random(n) < share
        self.jam = np.where(self.jammed, self.traffic_rng.uniform(0.6, 1.0, n), 0.0)  # 0 free flow .. 1 jammed
        self.jam_depth = self.traffic_rng.uniform(0.6, 1.0, n)

    def _factor(self, drifted: np.ndarray) -> np.ndarray:
        return np.where(drifted, 1.4, 1.0) if self.cfg.scenario == "covariate-shift" else np.ones(self.n)

    def _traffic(self, dt: float) -> None:
        """Jams start and clear at random; the jam level eases in and out over a minute or so."""
        n, trng = self.n, self.traffic_rng
        starts = trng.random(n) < -math.expm1(-dt / _JAM_GAP)
        ends = trng.random(n) < -math.expm1(-dt / _JAM_LEN)
        depth = trng.uniform(0.6, 1.0, n)
        begin = ~self.jammed & starts
        self.jam_depth = np.where(begin, depth, self.jam_depth)
        self.jammed = (self.jammed & ~ends) | begin
        ease = -math.expm1(-dt / _JAM_EASE)
        self.jam = self.jam + (np.where(self.jammed, self.jam_depth, 0.0) - self.jam) * ease

    def step(self, dt: float, drifted: np.ndarray | None = None) -> None:
        """Advance positions by ``dt`` event-time seconds (faster after a covariate shift, slower in a jam)."""
        n, rng = self.n, self.rng
        self._traffic(dt)
        self.turn = _ou_step(self.turn, 0.0, 60.0, 1.0, dt, rng.normal(size=n))
        self.heading = (self.heading + self.turn * dt) % 360.0
        self.speed = np.maximum(0.0, _ou_step(self.speed, self.cruise, 30.0, 2.0, dt, rng.normal(size=n)))
        speed = self.speed * self._flow() * self._factor(drifted if drifted is not None else np.zeros(n, bool))
        rad = np.radians(self.heading)
        dist = speed * dt
        self.lat = self.lat + dist * np.cos(rad) / 111_320.0
        self.lon = self.lon + dist * np.sin(rad) / (111_320.0 * np.cos(np.radians(self.lat)))

    def _flow(self) -> np.ndarray:
        """Speed multiplier of the traffic: 1 in free flow, down to 0.2 in the deepest jam."""
        return 1.0 - 0.8 * self.jam

    def observe(self, drifted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Readings (n x 4: lat, lon, speed, heading) of this round, and the delay-risk labels."""
        n, rng = self.n, self.rng
        noise_m = rng.normal(0.0, 4.0, (n, 2))
        lat = self.lat + noise_m[:, 0] / 111_320.0
        lon = self.lon + noise_m[:, 1] / (111_320.0 * np.cos(np.radians(self.lat)))
        stop_and_go = self.jam * self.traffic_rng.normal(0.0, 3.0, n)  # jams make speed jumpy
        speed = np.maximum(0.0, (self.speed * self._flow() + stop_and_go) * self._factor(drifted)
                           + rng.normal(0.0, 0.5, n))
        weave = self.jam * self.traffic_rng.normal(0.0, 20.0, n)  # lane changes and detours: heading wobbles
        heading = (self.heading + weave + rng.normal(0.0, 2.0, n)) % 360.0
        label = (self.jam > _JAM_LABEL).astype(np.int64)  # delay risk: in a jam now
        u_jump, u_null = self.fault_rng.random(n), self.fault_rng.random(n)
        jump_km, jump_dir = self.fault_rng.uniform(0.5, 5.0, n), self.fault_rng.uniform(0.0, 2 * np.pi, n)
        if self.cfg.scenario == "sensor-fault":
            hit = drifted & self.faulty
            jump = hit & (u_jump < 0.1)
            lat = np.where(jump, lat + jump_km * 1000 * np.cos(jump_dir) / 111_320.0, lat)
            lon = np.where(jump, lon + jump_km * 1000 * np.sin(jump_dir) / 111_320.0, lon)
            null = hit & (u_null < 0.03)
            lat, lon = np.where(null, 0.0, lat), np.where(null, 0.0, lon)
        return np.column_stack([lat, lon, speed, heading]), label

    def payload(self, j: int, ts: int, row: list[float]) -> dict[str, Any]:
        """The JSON payload of vehicle ``j``."""
        return {
            "vehicle_id": self.ids[j],
            "ts": ts,
            "lat": round(row[0], 6),
            "lon": round(row[1], 6),
            "speed": round(row[2], 2),
            "heading": round(row[3], 1) % 360.0,
        }


def generate(config: SimConfig) -> Iterator[SimEvent]:
    """Yield ``config.total_events`` events, deterministic for ``config.seed`` (see the module docstring).

    Example:
        >>> evs = list(generate(SimConfig(source="gps", entities=2, rate=4, duration_s=1, time_scale=10)))
        >>> [e.value["ts"] - 1_700_000_000_000 for e in evs]
        [0, 2500, 5000, 7500]
        >>> evs[0].key == evs[2].key != evs[1].key, evs[0].label
        (True, 0)
    """
    rng = np.random.Generator(np.random.PCG64(config.seed))
    fault_rng = np.random.Generator(np.random.PCG64([config.seed, 0xFA17]))
    n, total, first_drifted = config.entities, config.total_events, config.drift_index
    order = [int(j) for j in rng.permutation(n)]
    model: _Vitals | _Gps = (
        _Vitals(config, rng, fault_rng) if config.source == "vitals" else _Gps(config, rng, fault_rng)
    )
    dt = config.reading_interval_s
    slot = np.empty(n, dtype=np.int64)  # position of each entity within a round
    slot[order] = np.arange(n)
    for start in range(0, total, n):
        drifted = start + slot >= first_drifted
        if start > 0:
            if isinstance(model, _Gps):
                model.step(dt, drifted)
            else:
                model.step(dt)
        obs, labels = model.observe(drifted)
        rows = obs.tolist()
        for k in range(min(n, total - start)):
            i, j = start + k, order[k]
            ts = config.start_ms + round(i / config.rate * 1000 * config.time_scale)
            yield SimEvent(
                key=model.ids[j],
                value=model.payload(j, ts, rows[j]),
                label=None if labels is None else int(labels[j]),
                drifted=i >= first_drifted,
            )


def sim_summary(events: Iterable[SimEvent]) -> dict[str, Any]:
    """Counts, positive rates and per-field means before/after the drift point, for tests and the demo.

    Example:
        >>> s = sim_summary(generate(SimConfig(entities=5, rate=50, duration_s=2, drift_at_s=1,
        ...                                    scenario="covariate-shift")))
        >>> s["events"], s["entities"], s["drifted"], s["before"]["events"]
        (100, 5, 50, 50)
    """
    keys: set[str] = set()
    phases: dict[str, dict[str, Any]] = {
        p: {"events": 0, "labelled": 0, "positives": 0, "sums": {}} for p in ("before", "after")
    }
    first_ts: int | None = None
    last_ts: int | None = None
    for ev in events:
        keys.add(ev.key)
        ph = phases["after" if ev.drifted else "before"]
        ph["events"] += 1
        if ev.label is not None:
            ph["labelled"] += 1
            ph["positives"] += ev.label
        for name, x in ev.value.items():
            if name != "ts" and isinstance(x, int | float) and not isinstance(x, bool):
                s = ph["sums"].setdefault(name, [0.0, 0])
                s[0] += x
                s[1] += 1
        ts = ev.value.get("ts")
        if isinstance(ts, int):
            first_ts = ts if first_ts is None else first_ts
            last_ts = ts
    out: dict[str, Any] = {"entities": len(keys), "first_ts": first_ts, "last_ts": last_ts}
    for name, ph in phases.items():
        out[name] = {
            "events": ph["events"],
            "labelled": ph["labelled"],
            "positives": ph["positives"],
            "positive_rate": ph["positives"] / ph["labelled"] if ph["labelled"] else None,
            "means": {k: v[0] / v[1] for k, v in sorted(ph["sums"].items())},
        }
    labelled = out["before"]["labelled"] + out["after"]["labelled"]
    positives = out["before"]["positives"] + out["after"]["positives"]
    out["events"] = out["before"]["events"] + out["after"]["events"]
    out["drifted"] = out["after"]["events"]
    out["labelled"] = labelled
    out["positives"] = positives
    out["positive_rate"] = positives / labelled if labelled else None
    return out
