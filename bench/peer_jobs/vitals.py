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
import pickle
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

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


M = BUCKET_MS


class Buckets:
    """The tuned view: per-minute partial aggregates (Welford within a minute, Chan's merge across minutes), the
    fold of the minutes before the current one cached per window until the minute changes, as an expert writes
    it. ``state()`` / ``Buckets(state)`` round-trip through JSON (Quix's state store).

    >>> b = Buckets()
    >>> for ts, hr in [(0, 70.0), (30_000, 80.0), (60_000, 90.0)]:
    ...     b.add(ts, {"hr": hr, "rr": 12.0, "spo2": 98.0, "temp": 37.0, "sbp": 120.0 + ts / 6000, "dbp": 80.0})
    >>> f = b.features(60_000); f["hr_mean_5m"], round(f["hr_std_5m"], 6), f["sbp_slope_30m"]
    (80.0, 8.164966, 0.16666666666666666)
    """

    def __init__(self, state: dict | None = None) -> None:
        self.b: dict[int, list] = {int(k): v for k, v in (state or {}).items()}
        self._key: int | None = None
        self._prefix: tuple = ()

    def state(self) -> dict:
        return {str(k): v for k, v in self.b.items()}

    def add(self, ts: int, v: dict[str, float]) -> None:
        b = ts - ts % M
        p = self.b.get(b)
        dt = (ts - b) / 1000.0
        hr, sbp = v["hr"], v["sbp"]
        if p is None:
            # hr n/mean/m2/max, rr sum, spo2 sum/min, temp last ts/value, sbp sum/st/stt/sty/first ts/last ts, dbp sum
            self.b[b] = [1, hr, 0.0, hr, v["rr"], v["spo2"], v["spo2"], ts, v["temp"], sbp, dt, dt * dt, dt * sbp,
                         ts, ts, v["dbp"]]
            for old in [k for k in self.b if k < b - 30 * M]:
                del self.b[old]
        else:
            n = p[0] + 1
            d = hr - p[1]
            p[1] += d / n
            p[2] += d * (hr - p[1])
            p[0] = n
            p[3] = max(p[3], hr)
            p[4] += v["rr"]
            p[5] += v["spo2"]
            p[6] = min(p[6], v["spo2"])
            if ts >= p[7]:
                p[7], p[8] = ts, v["temp"]
            p[9] += sbp
            p[10] += dt
            p[11] += dt * dt
            p[12] += dt * sbp
            p[13], p[14] = min(p[13], ts), max(p[14], ts)
            p[15] += v["dbp"]
        if self._key is not None and b < self._key:
            self._key = None  # an older minute changed: the cached prefix is stale

    @staticmethod
    def _fold(parts: list[tuple[int, list]], origin: int) -> list:
        """[n, mean, m2, max, rr, spo2, spo2 min, temp ts, temp, sbp, st, stt, sty, first ts, last ts, dbp]."""
        acc = [0, 0.0, 0.0, -math.inf, 0.0, 0.0, math.inf, -1, math.nan, 0.0, 0.0, 0.0, 0.0, math.inf, -math.inf, 0.0]
        for b, p in parts:
            Buckets._merge(acc, p, (b - origin) / 1000.0)
        return acc

    @staticmethod
    def _merge(acc: list, p: list, d: float) -> None:
        na, nb = acc[0], p[0]
        n = na + nb
        delta = p[1] - acc[1]
        acc[1] += delta * nb / n
        acc[2] += p[2] + delta * delta * na * nb / n
        acc[0] = n
        acc[3] = max(acc[3], p[3])
        acc[4] += p[4]
        acc[5] += p[5]
        acc[6] = min(acc[6], p[6])
        if p[7] >= acc[7]:
            acc[7], acc[8] = p[7], p[8]
        acc[9] += p[9]
        acc[10] += p[10] + nb * d
        acc[11] += p[11] + 2.0 * d * p[10] + nb * d * d
        acc[12] += p[12] + d * p[9]
        acc[13], acc[14] = min(acc[13], p[13]), max(acc[14], p[14])
        acc[15] += p[15]

    def features(self, ts: int) -> dict[str, float]:
        last = ts - ts % M
        if self._key != last:
            older = sorted((b, p) for b, p in self.b.items() if b < last)
            self._prefix = tuple(self._fold([(b, p) for b, p in older if b >= last - (w - 1) * M], last - 29 * M)
                                 for w in (5, 15, 30))
            self._key = last
        cur = self.b.get(last)
        w5, w15, w30 = (list(acc) for acc in self._prefix)
        if cur is not None:
            for acc in (w5, w15, w30):
                self._merge(acc, cur, 29 * M / 1000.0)
        n5, n30 = w5[0], w30[0]
        sxx = w30[11] - w30[10] * w30[10] / n30 if n30 else 0.0
        slope_ = (math.nan if n30 < 2 or w30[13] == w30[14] or sxx <= 0.0
                  else (w30[12] - w30[10] * w30[9] / n30) / sxx)
        return {"hr_mean_5m": w5[1], "hr_std_5m": math.sqrt(max(w5[2], 0.0) / n5), "hr_max_5m": w5[3],
                "rr_mean_5m": w5[4] / n5, "spo2_min_15m": w15[6], "spo2_mean_5m": w5[5] / n5, "temp_last": w15[8],
                "sbp_mean_5m": w5[9] / n5, "sbp_slope_30m": slope_, "dbp_mean_5m": w5[15] / n5}


def load_score(model_dir: str, variant: str) -> Callable[[dict[str, float]], float]:
    """The job's model as ``score(features) -> probability``: ``hand`` (the tuned job) evaluates the coefficients in
    ``hand.json`` by hand; anything else (the idiomatic job) calls the pickled pipeline's ``predict_proba`` on one
    row."""
    if variant == "hand":
        return HandModel(orjson.loads((Path(model_dir) / "hand.json").read_bytes())).score
    est = pickle.loads((Path(model_dir) / "model.pkl").read_bytes())  # noqa: S301 - the bench's own model

    def score(features: dict[str, float]) -> float:
        return float(est.predict_proba([[features[n] for n in NAMES]])[0, 1])
    return score
