"""The vitals view as a Quix Streams or Bytewax user writes it: plain Python and numpy, no driftline import.

Shared by ``bench/peer_jobs/quix_job.py`` and ``bench/peer_jobs/bytewax_job.py`` (they run in the ``bench``
extra's venv, ``make peers-venv``). Same definitions as driftline's VITALS_VIEW: one-minute buckets; a window of
``size`` ends with the bucket of the event and starts ``size - 1 min`` before that bucket; features as of each
event; population std; least-squares slope per second; records outside the view's ranges dropped.

Per entity the job keeps the readings of the last 31 minutes (a deque) and folds the window's readings with numpy
on every event, as the peers' docs and examples do for windowed features over a small history. The model is the
registry's pickled sklearn pipeline (``predict_proba`` on one row: the idiomatic job), or its coefficients
applied by hand (impute, scale, dot, sigmoid: the tuned job).

Example:
    >>> view = Readings()
    >>> view.add(60_000, {"hr": 80.0, "rr": 12.0, "spo2": 98.0, "temp": 37.0, "sbp": 120.0, "dbp": 80.0})
    >>> f = view.features(60_000); f["hr_mean_5m"], f["temp_last"]
    (80.0, 37.0)
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

BUCKET_MS = 60_000
RANGES = {"hr": (20, 250), "rr": (2, 70), "spo2": (50, 100), "temp": (30, 45), "sbp": (40, 260), "dbp": (20, 160)}
NAMES = ("hr_mean_5m", "hr_std_5m", "hr_max_5m", "rr_mean_5m", "spo2_min_15m", "spo2_mean_5m", "temp_last",
         "sbp_mean_5m", "sbp_slope_30m", "dbp_mean_5m")
KEEP_MS = 31 * BUCKET_MS


def valid(record: Any) -> dict[str, float] | None:
    """The record's six readings, or None when driftline would dead-letter it (missing, non-finite, out of range)."""
    if not isinstance(record, dict):
        return None
    out = {}
    for name, (lo, hi) in RANGES.items():
        x = record.get(name)
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not lo <= x <= hi:
            return None
        out[name] = float(x)
    return out


class Readings:
    """One entity's readings of the last 31 minutes; ``features(ts)`` as of the reading at ``ts``."""

    def __init__(self, items: list | None = None) -> None:
        self.items: deque = deque(items or ())  # (ts, [hr, rr, spo2, temp, sbp, dbp]) in arrival order

    def add(self, ts: int, values: dict[str, float]) -> None:
        self.items.append((ts, [values[n] for n in RANGES]))
        while self.items and self.items[0][0] < ts - KEEP_MS:
            self.items.popleft()

    def features(self, ts: int) -> dict[str, float]:
        last = ts - ts % BUCKET_MS
        end = last + BUCKET_MS
        rows = [(t, v) for t, v in self.items if t < end]
        t = np.array([r[0] for r in rows], dtype=np.int64)
        x = np.array([r[1] for r in rows], dtype=np.float64)

        def window(minutes: int) -> np.ndarray:
            return t >= last - (minutes - 1) * BUCKET_MS

        w5, w15, w30 = window(5), window(15), window(30)
        hr, rr, spo2, temp, sbp, dbp = (x[:, i] for i in range(6))
        out = {"hr_mean_5m": float(np.mean(hr[w5])), "hr_std_5m": float(np.std(hr[w5])),
               "hr_max_5m": float(np.max(hr[w5])), "rr_mean_5m": float(np.mean(rr[w5])),
               "spo2_min_15m": float(np.min(spo2[w15])), "spo2_mean_5m": float(np.mean(spo2[w5]))}
        t15, temp15 = t[w15], temp[w15]
        out["temp_last"] = float(temp15[np.flatnonzero(t15 == t15.max())[-1]])  # the latest; ties: the last to arrive
        out["sbp_mean_5m"] = float(np.mean(sbp[w5]))
        out["sbp_slope_30m"] = slope((t[w30] - (last - 29 * BUCKET_MS)) / 1000.0, sbp[w30])
        out["dbp_mean_5m"] = float(np.mean(dbp[w5]))
        return out


def slope(t: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of ``y`` on ``t``; NaN with fewer than 2 points or one distinct time."""
    if len(t) < 2 or t.min() == t.max():
        return math.nan
    tc = t - t.mean()
    return float(np.dot(tc, y - y.mean()) / np.dot(tc, tc))


class HandModel:
    """The registry's logistic pipeline (median impute, standard scale, logistic) evaluated by hand."""

    def __init__(self, params: dict[str, list[float]]) -> None:
        self.median = np.array(params["median"])
        self.mean = np.array(params["mean"])
        self.scale = np.array(params["scale"])
        self.coef = np.array(params["coef"])
        self.intercept = float(params["intercept"])

    def score(self, features: dict[str, float]) -> float:
        x = np.array([features[n] for n in NAMES])
        x = np.where(np.isnan(x), self.median, x)
        z = float(np.dot((x - self.mean) / self.scale, self.coef)) + self.intercept
        return 1.0 / (1.0 + math.exp(-z))
