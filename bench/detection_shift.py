"""Single-shift detection quality of the detectors on features and scores (PSI, KS, mean shift, ADWIN on scores),
DDM / ADWIN on an error stream, and the whole :class:`~monitor.drift_monitor.DriftMonitor` fed predictions *and*
outcomes (``policy``), next to ``every_k``: a detector that fires every k events, with k set so that it has about
the same false-alarm rate as the noisiest real detector (at least one alarm per stationary stream), so the delays
mean something. Also the detectors' update speed. Part of ``bench.detection_bench``.

Streams (one per seed): ``stationary`` (no change), ``sudden`` (feature mean +1 sd at the change point),
``gradual`` (mean rises linearly to +1 sd over ``ramp`` events), ``concept`` (error rate 10% -> 30%; the feature
does not move). Windowed statistics are evaluated every ``every`` events through the alert policy's hysteresis
(``default_policy``). Reported per (detector, stream): median detection delay in events over seeds, missed
detections, false alarms per 100k events (alarms before the change point, or anywhere on the stationary stream).
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from features.exceptions import RecordError
from features.records import Event, parse_record
from features.views import VITALS_VIEW
from models.prediction import Prediction
from monitor.detectors import AdwinDetector, DdmDetector
from monitor.drift_monitor import DriftMonitor, default_policy
from monitor.psi import RollingPSI
from monitor.reference import ReferenceProfile
from monitor.sensor_checks import VITALS_RULES, SensorChecks, SensorConfig
from monitor.stats import MeanShift
from monitor.version_monitor import MonitorConfig, ReferenceKS, VersionMonitor
from streams import codec
from streams.local.simulator import SimConfig, generate

STREAMS = ("stationary", "sudden", "gradual", "concept")


@dataclass(frozen=True)
class Sizes:
    n: int = 20_000
    change_at: int = 10_000
    ramp: int = 2_000
    seeds: int = 5
    window: int = 1000
    min_samples: int = 500
    every: int = 100
    speed_n: int = 50_000


SMALL = Sizes(n=3000, change_at=1500, ramp=500, seeds=2, window=400, min_samples=200, every=100, speed_n=2000)


def make_stream(kind: str, seed: int, s: Sizes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature values, scores, 0/1 errors) of one stream."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=s.n)
    if kind == "sudden":
        x[s.change_at:] += 1.0
    elif kind == "gradual":
        ramp = np.clip((np.arange(s.n) - s.change_at) / s.ramp, 0.0, 1.0)
        x += ramp
    p_err = np.full(s.n, 0.10)
    if kind == "concept":
        p_err[s.change_at:] = 0.30
    errors = (rng.random(s.n) < p_err).astype(int)
    scores = 1.0 / (1.0 + np.exp(-x))
    return x, scores, errors


def _profile(seed: int = 12345) -> ReferenceProfile:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(5000, 1))
    return ReferenceProfile.from_training(X, ["x"], scores=1.0 / (1.0 + np.exp(-X[:, 0])), bins=10)


def detections(name: str, x: np.ndarray, scores: np.ndarray, errors: np.ndarray, s: Sizes,
               prof: ReferenceProfile) -> list[int]:
    """Indices at which ``name`` alarmed (first alarm of each incident)."""
    if name == "adwin_score":
        d = AdwinDetector(delta=0.002)
        return [i for i, v in enumerate(scores) if d.update(float(v)).drift_detected]
    if name == "ddm_error":
        dd = DdmDetector(warm_start=300)
        return [i for i, e in enumerate(errors) if dd.update(int(e)).drift_detected]
    if name == "adwin_error":
        d = AdwinDetector(delta=0.002)
        return [i for i, e in enumerate(errors) if d.update(float(e)).drift_detected]
    if name == "psi":
        r = RollingPSI(prof.features["x"], window=s.window, min_samples=s.min_samples)
        return _policy_alarms(lambda: r.value, r.update, x, s, "psi|x")
    if name == "ks":
        ks = ReferenceKS(prof.samples["x"])
        buf: list[float] = []

        def ks_update(v: float) -> None:
            buf.append(v)
            if len(buf) > s.window:
                del buf[0]

        return _policy_alarms(lambda: ks.test(np.asarray(buf))[0] if len(buf) >= s.min_samples else math.nan,
                              ks_update, x, s, "ks|x")
    if name == "mean_shift":
        ms = MeanShift(prof.mean_score, window=s.window, min_samples=s.min_samples)
        return _policy_alarms(lambda: ms.value, ms.update, scores, s, "mean_shift|x")
    if name == "policy":
        mon = DriftMonitor(lambda m, v: prof, policy=default_policy(s.min_samples),
                           config=MonitorConfig(psi_window=s.window, psi_min_samples=s.min_samples,
                                                mean_shift_window=s.window, ddm_warm_start=300),
                           evaluate_every=s.every)
        out: list[int] = []
        open_keys: set[str] = set()
        for start in range(0, s.n, s.every):
            stop = min(s.n, start + s.every)
            preds = [Prediction(str(i), "e", i, "m", 1, "champion", float(scores[i]), 1, 0, {"x": float(x[i])})
                     for i in range(start, stop)]
            alerts = mon.on_predictions(preds, now_ms=stop)
            alerts += mon.on_outcomes([("m", 1, int(errors[i])) for i in range(start, stop)], now_ms=stop)
            paged = False
            for a in alerts:  # an alarm opens an incident; updates and escalations of an open one do not page
                if a.action == "resolve":
                    open_keys.discard(a.dedup_key)
                elif a.dedup_key not in open_keys:
                    open_keys.add(a.dedup_key)
                    paged = True
            if paged:
                out.append(stop - 1)
        return out
    raise ValueError(f"unknown detector {name!r}")


def _policy_alarms(stat: Callable[[], float], update: Callable[[float], Any], values: np.ndarray, s: Sizes,
                   key: str) -> list[int]:
    """Indices of policy triggers that *open* an incident (escalations are not new alarms)."""
    policy = default_policy(s.min_samples)
    out = []
    for i, v in enumerate(values):
        update(float(v))
        if (i + 1) % s.every == 0:
            was_open = key in policy.open_incidents()
            verdict = policy.observe(key, stat(), s.min_samples, now_ms=i * 1000)
            if verdict is not None and verdict.action == "trigger" and not was_open:
                out.append(i)
    return out


DETECTORS = ("adwin_score", "mean_shift", "psi", "ks", "ddm_error", "adwin_error", "policy")
RELEVANT = {"stationary": DETECTORS, "sudden": ("adwin_score", "mean_shift", "psi", "ks", "policy"),
            "gradual": ("adwin_score", "mean_shift", "psi", "ks", "policy"),
            "concept": ("ddm_error", "adwin_error", "policy")}


def _score(alarms: list[int], kind: str, s: Sizes) -> tuple[float | None, int, int, int]:
    """(delay or None if missed, false alarms, events watched for false alarms, missed 0/1)."""
    if kind == "stationary":
        return None, len(alarms), s.n, 0
    before = [i for i in alarms if i < s.change_at]
    after = [i for i in alarms if i >= s.change_at]
    if not after:
        return None, len(before), s.change_at, 1
    return float(after[0] - s.change_at), len(before), s.change_at, 0


def quality(s: Sizes) -> list[dict[str, Any]]:
    """One row per (detector, stream) plus the every-k baseline."""
    prof = _profile()
    streams = {(k, seed): make_stream(k, seed, s) for k in STREAMS for seed in range(s.seeds)}
    rows: list[dict[str, Any]] = []
    for det in DETECTORS:
        for kind in STREAMS:
            if det not in RELEVANT[kind]:
                continue
            delays, fa, watched, missed = [], 0, 0, 0
            for seed in range(s.seeds):
                x, sc, err = streams[kind, seed]
                d, f, w, m = _score(detections(det, x, sc, err, s, prof), kind, s)
                fa, watched, missed = fa + f, watched + w, missed + m
                if d is not None:
                    delays.append(d)
            rows.append(_row(det, kind, delays, missed, fa, watched, s))
    # baseline: k such that it false-alarms about as often as the noisiest detector (>= 1 per stationary stream)
    worst = max((r["false_alarms_per_100k"] for r in rows), default=0.0)
    k = int(min(s.n, 100_000 / worst)) if worst > 0 else s.n
    for kind in STREAMS:
        delays, fa, watched, missed = [], 0, 0, 0
        for seed in range(s.seeds):
            phase = (seed * 7919) % k  # a different offset per seed: the baseline knows nothing of the change
            alarms = list(range(phase, s.n, k))
            d, f, w, m = _score(alarms, kind, s)
            fa, watched, missed = fa + f, watched + w, missed + m
            if d is not None:
                delays.append(d)
        rows.append(_row(f"every_{k}", kind, delays, missed, fa, watched, s))
    return rows


def _row(det: str, kind: str, delays: list[float], missed: int, fa: int, watched: int, s: Sizes) -> dict[str, Any]:
    return {"detector": det, "stream": kind,
            "median_delay": None if kind == "stationary" or not delays else statistics.median(delays),
            "missed": None if kind == "stationary" else missed, "seeds": s.seeds,
            "false_alarms_per_100k": round(fa * 100_000 / watched, 1) if watched else 0.0}


def speed(s: Sizes) -> list[dict[str, Any]]:
    """Updates per second of each detector, and of a version monitor's per-event path and evaluation."""
    prof = _profile()
    rng = np.random.default_rng(0)
    xs = rng.normal(size=s.speed_n).tolist()
    errs = (rng.random(s.speed_n) < 0.1).astype(int).tolist()
    feats = [{"x": v} for v in xs]
    out = []

    def timed(name: str, fn: Callable[[], None], n: int) -> None:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        out.append({"what": name, "per_s": round(n / dt) if dt > 0 else None, "us_each": round(dt / n * 1e6, 3)})

    a = AdwinDetector()
    timed("adwin.update", lambda: [a.update(v) for v in xs], s.speed_n)
    d = DdmDetector()
    timed("ddm.update", lambda: [d.update(e) for e in errs], s.speed_n)
    r = RollingPSI(prof.features["x"], window=s.window, min_samples=s.min_samples)
    timed("rolling_psi.update", lambda: [r.update(v) for v in xs], s.speed_n)
    m = MeanShift(0.5, window=s.window, min_samples=s.min_samples)
    timed("mean_shift.update", lambda: [m.update(v) for v in xs], s.speed_n)
    cfg = MonitorConfig(psi_window=s.window, psi_min_samples=s.min_samples, mean_shift_window=s.window)
    for label, c in (("with ks+js", cfg), ("no ks/js", MonitorConfig(**{**cfg.__dict__, "ks": False, "js": False}))):
        vm = VersionMonitor("m", 1, prof, c)
        timed(f"version_monitor.observe ({label})", lambda vm=vm: [vm.observe(v, f) for v, f in zip(xs, feats, strict=True)],
              s.speed_n)
        reps = max(5, s.speed_n // 1000)
        timed(f"version_monitor.evaluate ({label})", lambda vm=vm, reps=reps: [vm.evaluate() for _ in range(reps)],
              reps)
    ks = ReferenceKS(prof.samples["x"])
    win = np.asarray(xs[: s.window])
    timed("ks test (window vs reference)", lambda: [ks.test(win) for _ in range(50)], 50)
    events = _vitals_events(s.speed_n)
    checks = SensorChecks(SensorConfig(VITALS_RULES))
    timed("sensor_checks.observe (vitals, 6 fields, 30 % broken)",
          lambda: [checks.observe_batch(events[i:i + 500]) for i in range(0, len(events), 500)], len(events))
    preds = [Prediction(str(i), e.entity_id, e.ts_ms, "m", 1, "champion", 0.5, 0, 0) for i, e in enumerate(events)]
    timed("sensor_checks.mark (per prediction)", lambda: checks.mark(preds), len(preds))
    return out


def _vitals_events(n: int) -> list[Event]:
    """``n`` simulated vitals records of the sensor-fault scenario (broken sensors from the middle on), parsed."""
    out = []
    for sim in generate(SimConfig(entities=500, rate=400.0, duration_s=n / 400.0, drift_at_s=n / 800.0,
                                  scenario="sensor-fault", time_scale=40.0)):
        with contextlib.suppress(RecordError):  # the dropouts: the pipeline dead-letters them
            out.append(parse_record(VITALS_VIEW, sim.key.encode(), codec.encode(sim.value)))
    return out


