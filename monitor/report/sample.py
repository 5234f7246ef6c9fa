"""A demo-like run through the real monitor, in memory and seeded: the report's test data and README picture.

v2 (all eight vitals features) serves; 20 s in, heart rate, respiration and SpO2 shift; the monitor's own
:class:`~monitor.drift_monitor.DriftMonitor` (default policy) raises its alerts, the first critical one rolls
back to v1 (without the SpO2 features), a scorer acks, v1 serves. Snapshots are taken every second by
:class:`~monitor.history.SnapshotRecorder` and the report is built by :func:`~monitor.report.assemble.assemble`:
the same path as ``driftline report``, without the broker and Redis.

Example:
    >>> data = sample_report(duration_s=30, rate=200)
    >>> data.model, data.active_version(), data.top_drifted(1)[0].name in SHIFT
    ('vitals-risk', 1, True)
"""

from __future__ import annotations

import math

import numpy as np

from models.prediction import Prediction
from monitor.drift_monitor import DriftMonitor, default_policy
from monitor.history import SnapshotRecorder, ack_event, alert_event, command_event
from monitor.reference import ReferenceProfile
from monitor.report.assemble import assemble
from monitor.report.focus import with_report_hint
from monitor.report.model import ReportData
from monitor.version_monitor import MonitorConfig

FEATURES = {  # name: (mean, sd) in the training history
    "hr_mean_5m": (82.0, 11.0), "hr_std_5m": (5.0, 1.6), "rr_mean_5m": (16.0, 2.8), "spo2_mean_5m": (96.0, 1.4),
    "spo2_min_5m": (93.0, 2.0), "temp_last": (37.0, 0.4), "sbp_mean_5m": (121.0, 12.0), "dbp_mean_5m": (78.0, 8.0),
}
V1 = ("hr_mean_5m", "hr_std_5m", "rr_mean_5m", "temp_last", "sbp_mean_5m", "dbp_mean_5m")
SHIFT = {"hr_mean_5m": 16.0, "rr_mean_5m": 5.0, "spo2_mean_5m": -3.5, "spo2_min_5m": -4.5}
MODEL = "vitals-risk"


def _score(rows: np.ndarray, names: list[str], weights: dict[str, float]) -> np.ndarray:
    z = sum(w * (rows[:, names.index(n)] - FEATURES[n][0]) / FEATURES[n][1] for n, w in weights.items())
    return 1.0 / (1.0 + np.exp(-(np.asarray(z) - 1.5)))


WEIGHTS = {2: {"hr_mean_5m": 0.9, "rr_mean_5m": 0.6, "spo2_mean_5m": -0.8, "spo2_min_5m": -0.5, "sbp_mean_5m": -0.3},
           1: {"hr_mean_5m": 0.9, "rr_mean_5m": 0.7, "sbp_mean_5m": -0.4, "temp_last": 0.3}}


def sample_report(*, seed: int = 7, duration_s: float = 60.0, rate: float = 400.0, drift_at_s: float = 20.0,
                  start_ms: int = 1_790_000_000_000) -> ReportData:
    """Simulate the run and return its report data (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    names = list(FEATURES)
    train = np.column_stack([rng.normal(m, s, 4000) for m, s in FEATURES.values()])
    profiles = {2: ReferenceProfile.from_training(train, names, _score(train, names, WEIGHTS[2]), seed=seed),
                1: ReferenceProfile.from_training(train[:, [names.index(n) for n in V1]], list(V1),
                                                  _score(train, names, WEIGHTS[1]), seed=seed)}
    drift = DriftMonitor(lambda _m, v: profiles[v], policy=default_policy(500),
                         config=MonitorConfig(psi_window=1000, psi_min_samples=500, mean_shift_window=1000),
                         evaluate_every=100)
    recorder = SnapshotRecorder(interval_ms=1000)
    snapshots: list[dict] = []
    events: list[dict] = []
    serving, changes = 2, [(start_ms - 60_000, 1), (start_ms - 1000, 2)]
    batch = max(1, int(rate / 4))
    total = int(duration_s * rate)
    for i0 in range(0, total, batch):
        now = start_ms + int(i0 / rate * 1000)
        t = i0 / rate
        ramp = min(1.0, max(0.0, (t - drift_at_s) / 3.0))
        rows = np.column_stack([rng.normal(m + ramp * SHIFT.get(n, 0.0), s, batch) for n, (m, s) in FEATURES.items()])
        scores = _score(rows, names, WEIGHTS[serving])
        cols = names if serving == 2 else list(V1)
        preds = [Prediction(f"p{i0 + j}", f"pat-{j % 97}", now, MODEL, serving, "champion", float(scores[j]), None,
                            now, {n: float(rows[j, names.index(n)]) for n in cols}) for j in range(batch)]
        for alert in map(with_report_hint, drift.on_predictions(preds, now)):  # as the monitor's edge does
            events.append(alert_event(alert.to_dict()))
            if alert.severity == "critical" and alert.action == "trigger" and serving == 2:
                cmd = {"command": "rollback", "to_version": 1, "issued_at": now + 15, "command_id": f"c{i0}",
                       "reason": alert.summary}
                events.append(command_event(cmd, from_version=2))
                events.append(ack_event(f"c{i0}", "scorer-0", "applied", 1, now + 60))
                serving = 1
        snapshots += recorder.due(drift.all_monitors(), now)
    refs = {v: (p.features, p.score) for v, p in profiles.items()}
    end = start_ms + math.ceil(duration_s * 1000)
    return assemble(MODEL, snapshots, events, refs, since_ms=start_ms, until_ms=end, now_ms=end,
                    version_changes=changes)
