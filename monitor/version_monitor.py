"""All detectors of one (model, version[, slice]): rolling PSI, KS and Jensen-Shannon per feature and on
scores, ADWIN and mean shift on scores, DDM and ADWIN on the 0/1 error stream once labels are joined, and a
bounded window of joined outcomes for rolling accuracy and AUC. Pure: no Kafka, Redis or Prometheus.

Per event, the work is O(1) per feature (a PSI bin count and one append to a bounded raw-value deque).
KS and JS are computed only in ``evaluate()``, over the same window as PSI: JS from PSI's bin counts, KS
from the raw values against the profile's reference sample. NaN statistics are *inconclusive*, never 0.

Example:
    >>> from monitor.reference import ReferenceProfile
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 1))
    >>> prof = ReferenceProfile.from_training(X, ["x"], scores=rng.uniform(size=2000))
    >>> vm = VersionMonitor("m", 1, prof, MonitorConfig(psi_window=400, psi_min_samples=200))
    >>> for v in rng.normal(2.0, 1.0, size=400):
    ...     vm.observe(0.5, {"x": float(v)})
    >>> by = {(s.detector, s.feature): s for s in vm.evaluate()}
    >>> by["psi", "x"].value > 0.25, by["ks", "x"].value > 0.5, by["ks", "x"].details["p_value"] < 1e-9
    (True, True, True)
    >>> 0.2 < by["js", "x"].value <= 1.0
    True
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import kolmogorov

from monitor.detectors import AdwinDetector, DdmDetector
from monitor.exceptions import MonitorConfigError
from monitor.psi import RollingPSI
from monitor.reference import SCORE_KEY, ReferenceProfile
from monitor.stats import MeanShift, jensen_shannon

SCORE = "__score__"


@dataclass(frozen=True, slots=True)
class Signal:
    """One statistic worth a policy decision. ``event=True`` marks a detector firing (no hysteresis needed)."""

    kind: str
    feature: str | None
    detector: str
    statistic: str
    value: float
    n: int
    window: str
    event: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MonitorConfig:
    """Window sizes and detector parameters of one version monitor.

    ``outcome_window`` bounds the joined outcomes kept for rolling accuracy and AUC; ``ks_every`` runs KS
    on every k-th evaluation only (KS is the one O(window log window) statistic); ``ks``/``js`` switch them off.

    ``detector_warmup``: a detection in the first events of each of a version's streams (predictions for the
    detectors on scores and features, joined outcomes for those on errors) is never reported (counted in
    ``warmup_suppressed``): a learner's early errors, or a detector's own first, noisy estimates, are not drift. The
    detectors keep learning meanwhile, so a change just after the warm-up is judged against the warm-up's data.
    The default of 1,000 is measured (``bench.detection_bench``, warm-up table): warm-ups from 0 to 2,000 change
    no page there, because the policy pages on error *increases* only and the learners' early errors fall; bare
    DDM's false alarms sit in a stream's first ~450 outcomes, and 1,000 covers them and ADWIN's grace with a
    margin while a version's early outcomes stay watched (the demo's concept-drift runs drift after ~1,200). The
    one early false page in the benchmark, an ADWIN increase at outcome 3,872 of a Hoeffding tree still learning,
    needs 5,000: set that much for an online learner that is still converging.
    """

    psi_window: int = 1000
    psi_min_samples: int = 500
    adwin_delta: float = 0.002
    mean_shift_window: int = 1000
    ddm_warm_start: int = 300
    outcome_window: int = 1000
    outcome_min_samples: int = 50
    ks: bool = True
    js: bool = True
    ks_every: int = 1
    adwin_features: tuple[str, ...] = ()  # feature streams that also get an ADWIN (a change in their mean)
    detector_warmup: int = 1_000

    def __post_init__(self) -> None:
        if self.detector_warmup < 0:
            raise MonitorConfigError(f"detector_warmup must be >= 0 events, got {self.detector_warmup}")


class ReferenceKS:
    """Two-sample KS of a window of raw values against a fixed, pre-sorted reference sample.

    Exact D (same as ``scipy.stats.ks_2samp``), asymptotic p-value; ~10x cheaper than ``ks_2samp``'s exact mode.

    >>> rng = np.random.default_rng(4)
    >>> ks = ReferenceKS(rng.normal(size=500))
    >>> d, p = ks.test(rng.normal(size=1000))
    >>> round(d, 3) < 0.1 and p > 0.01
    True
    >>> ks.test(np.array([]))
    (nan, nan)
    """

    def __init__(self, reference: Iterable[float]) -> None:
        ref = np.asarray(list(reference), dtype=float)
        self.reference = np.sort(ref[np.isfinite(ref)])
        self._cdf_at_ref = np.searchsorted(self.reference, self.reference, side="right") / max(1, self.reference.size)

    def test(self, window: np.ndarray) -> tuple[float, float]:
        """``(D, p)`` of ``window`` (non-finite values dropped) vs the reference; ``(nan, nan)`` if either is empty."""
        w = window[np.isfinite(window)]
        n1, n2 = self.reference.size, w.size
        if n1 == 0 or n2 == 0:
            return math.nan, math.nan
        ws = np.sort(w)
        d1 = np.abs(self._cdf_at_ref - np.searchsorted(ws, self.reference, side="right") / n2).max()
        d2 = np.abs(np.searchsorted(ws, ws, side="right") / n2
                    - np.searchsorted(self.reference, ws, side="right") / n1).max()
        d = float(max(d1, d2))
        return d, float(kolmogorov(math.sqrt(n1 * n2 / (n1 + n2)) * d))


class OutcomeWindow:
    """The last ``size`` joined outcomes ``(score, label, error)``: rolling accuracy and AUC (NaN = unknown).

    >>> w = OutcomeWindow(4)
    >>> for s, y in [(0.9, 1), (0.8, 1), (0.3, 0), (0.6, 0), (0.1, 0)]:
    ...     w.update(s, y, int((s >= 0.5) != y))
    >>> w.n, w.accuracy, w.auc
    (4, 0.75, 1.0)
    >>> OutcomeWindow(3).auc
    nan
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: deque[tuple[float, int, int]] = deque(maxlen=size)
        self._errors = 0

    def update(self, score: float, label: int | None, error: int) -> None:
        """Add one outcome (``label``/``score`` may be unknown: NaN score or None label are kept out of AUC)."""
        if len(self._items) == self.size:
            self._errors -= self._items[0][2]
        self._items.append((score, -1 if label is None else int(label), int(error)))
        self._errors += int(error)

    @property
    def n(self) -> int:
        """Outcomes in the window."""
        return len(self._items)

    @property
    def accuracy(self) -> float:
        """Share of correct outcomes in the window, NaN when empty."""
        return 1.0 - self._errors / len(self._items) if self._items else math.nan

    @property
    def auc(self) -> float:
        """ROC AUC (Mann-Whitney, ties count half) of the window; NaN without both classes."""
        pairs = [(s, y) for s, y, _ in self._items if y in (0, 1) and s == s]
        if not pairs:
            return math.nan
        arr = np.asarray(pairs, dtype=float)
        pos = arr[:, 1] == 1
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            return math.nan
        order = np.argsort(arr[:, 0], kind="mergesort")
        ranks = np.empty(len(arr))
        sorted_scores = arr[order, 0]
        # average ranks over ties
        _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
        avg = first + (counts + 1) / 2.0
        ranks[order] = np.repeat(avg, counts)
        return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


class VersionMonitor:
    """Detectors for one model version (and optionally one slice) against its training reference profile."""

    def __init__(self, model: str, version: int, profile: ReferenceProfile, config: MonitorConfig = MonitorConfig(),
                 slice_: str | None = None):
        self.model, self.version, self.config, self.slice_ = model, version, config, slice_
        self.feature_psi = {name: RollingPSI(h, window=config.psi_window, min_samples=config.psi_min_samples)
                            for name, h in profile.features.items()}
        self.score_psi = RollingPSI(profile.score, window=config.psi_window, min_samples=config.psi_min_samples)
        self.score_adwin = AdwinDetector("adwin_score", delta=config.adwin_delta)
        self.feature_adwin = {name: AdwinDetector(f"adwin_{name}", delta=config.adwin_delta)
                              for name in config.adwin_features if name in profile.features}
        self.mean_shift = MeanShift(profile.mean_score, window=config.mean_shift_window,
                                    min_samples=config.psi_min_samples)
        self.error_ddm = DdmDetector("ddm_error", warm_start=config.ddm_warm_start)
        self.error_adwin = AdwinDetector("adwin_error", delta=config.adwin_delta)
        self.warmup_suppressed = 0  # detections during a warm-up (never reported)
        self.outcome_window = OutcomeWindow(config.outcome_window)
        # raw values for KS, on the same window as PSI; only columns with a reference sample
        self._ks = {name: ReferenceKS(profile.samples[name]) for name in [*profile.features, SCORE_KEY]
                    if config.ks and profile.samples.get(name)}
        self._raw: dict[str, deque[float]] = {name: deque(maxlen=config.psi_window) for name in self._ks}
        self._raw_features = [(n, self._raw[n]) for n in profile.features if n in self._raw]
        self._raw_score = self._raw.get(SCORE_KEY)
        self._ks_cache: dict[str, tuple[float, float, int]] = {}
        self._evaluations = 0
        self.predictions = 0
        self.outcomes = 0
        self.correct = 0
        self._events: list[Signal] = []

    def _event(self, signal: Signal, position: int) -> None:
        if position <= self.config.detector_warmup:
            self.warmup_suppressed += 1
        else:
            self._events.append(signal)

    def observe(self, score: float, features: Mapping[str, float] | None) -> None:
        """One served prediction (and its feature snapshot, when the scorer included it)."""
        self.predictions += 1
        n = self.predictions
        self.score_psi.update(score)
        self.mean_shift.update(score)
        if self._raw_score is not None:
            self._raw_score.append(score)
        if self.score_adwin.update(score).drift_detected:
            self._event(Signal("prediction_drift", None, "adwin", "mean_score", self.score_adwin.estimation, n,
                               f"adwin width {self.score_adwin.width}", event=True,
                               details=_change(self.score_adwin)), n)
        if features:
            for name, psi in self.feature_psi.items():
                value = features.get(name)
                if value is not None:
                    psi.update(value)
            for name, adwin in self.feature_adwin.items():
                value = features.get(name)
                if value is not None and adwin.update(value).drift_detected:
                    self._event(Signal("data_drift", name, "adwin", "mean", adwin.estimation, n,
                                       f"adwin width {adwin.width}", event=True, details=_change(adwin)), n)
            for name, raw in self._raw_features:
                value = features.get(name)
                if value is not None:
                    raw.append(value)

    def observe_outcome(self, error: int, label: int | None = None, score: float = math.nan) -> None:
        """One joined label: ``error`` is 1 when the served prediction was wrong (``label``/``score`` feed AUC)."""
        self.outcomes += 1
        n = self.outcomes
        self.correct += 1 - error
        self.outcome_window.update(score, label, error)
        if self.error_ddm.update(error).drift_detected:
            self._event(Signal("concept_drift", None, "ddm", "error_rate", self.error_ddm.error_rate, n,
                               "since last DDM reset", event=True, details={"direction": "up"}), n)
        if self.error_adwin.update(error).drift_detected:
            self._event(Signal("concept_drift", None, "adwin", "error_rate", self.error_adwin.estimation, n,
                               f"adwin width {self.error_adwin.width}", event=True,
                               details=_change(self.error_adwin)), n)

    def take_events(self) -> list[Signal]:
        """Detector events since the last call (or the last :meth:`evaluate`), without computing the windowed
        statistics."""
        events, self._events = self._events, []
        return events

    @property
    def rolling_error(self) -> float:
        """ADWIN's estimate of the current error rate (NaN before any outcome)."""
        return self.error_adwin.estimation if self.outcomes else math.nan

    @property
    def accuracy(self) -> float:
        """Accuracy over every joined outcome since start (NaN before any)."""
        return self.correct / self.outcomes if self.outcomes else math.nan

    @property
    def rolling_accuracy(self) -> float:
        """Accuracy over the last ``outcome_window`` outcomes; NaN below ``outcome_min_samples``."""
        ow = self.outcome_window
        return ow.accuracy if ow.n >= self.config.outcome_min_samples else math.nan

    @property
    def rolling_auc(self) -> float:
        """AUC over the last ``outcome_window`` outcomes; NaN below ``outcome_min_samples`` or with one class."""
        ow = self.outcome_window
        return ow.auc if ow.n >= self.config.outcome_min_samples else math.nan

    def ranked_feature_psi(self) -> list[tuple[str, float]]:
        """Features by PSI, highest first (NaN last): where the on-call person should look."""
        items = [(name, psi.value) for name, psi in self.feature_psi.items()]
        return sorted(items, key=lambda kv: (-kv[1] if kv[1] == kv[1] else math.inf))

    def _ks_signal(self, name: str, feature: str | None, kind: str, w: str, run: bool) -> Signal:
        raw = self._raw[name]
        if run or name not in self._ks_cache:
            n = len(raw)
            if n >= self.config.psi_min_samples:
                d, p = self._ks[name].test(np.fromiter(raw, dtype=float, count=n))
            else:
                d, p = math.nan, math.nan
            self._ks_cache[name] = (d, p, n)
        d, p, n = self._ks_cache[name]
        return Signal(kind, feature, "ks", "ks_d", d, n, w, details={"p_value": _round(p)})

    def _js_signal(self, psi: RollingPSI, feature: str | None, kind: str, w: str) -> Signal:
        value = math.nan
        if psi.ready:
            value = jensen_shannon(psi.reference.proportions, psi.actual_proportions())
        return Signal(kind, feature, "js", "js_divergence", value, psi.n, w)

    def evaluate(self) -> list[Signal]:
        """Current statistics as signals (PSI, KS, JS, mean shift), plus detector events since the last call."""
        cfg = self.config
        w = f"last {cfg.psi_window} predictions"
        run_ks = self._evaluations % max(1, cfg.ks_every) == 0
        self._evaluations += 1
        signals = [Signal("data_drift", name, "psi", "psi", psi.value, psi.n, w)
                   for name, psi in self.feature_psi.items()]
        signals.append(Signal("prediction_drift", None, "psi", "psi", self.score_psi.value, self.score_psi.n, w))
        signals.append(Signal("prediction_drift", None, "mean_shift", "abs_mean_shift", self.mean_shift.value,
                              self.mean_shift.n, f"last {cfg.mean_shift_window} predictions"))
        if cfg.js:
            signals += [self._js_signal(psi, name, "data_drift", w) for name, psi in self.feature_psi.items()]
            signals.append(self._js_signal(self.score_psi, None, "prediction_drift", w))
        for name in self._ks:
            if name == SCORE_KEY:
                signals.append(self._ks_signal(name, None, "prediction_drift", w, run_ks))
            else:
                signals.append(self._ks_signal(name, name, "data_drift", w, run_ks))
        signals.extend(self._events)
        self._events = []
        return signals

    def ks_statistics(self) -> dict[str, float]:
        """The latest KS distance D per feature (and ``__score__``) as computed by :meth:`evaluate` (NaN:
        not computed yet or too few values); no new computation."""
        return {name: d for name, (d, _p, _n) in self._ks_cache.items()}

    def performance(self) -> dict[str, float | int | None]:
        """Rolling accuracy and AUC over the bounded outcome window (None = not enough outcomes)."""
        return {"rolling_accuracy": _round(self.rolling_accuracy), "rolling_auc": _round(self.rolling_auc),
                "outcome_window_n": self.outcome_window.n, "rolling_error": _round(self.rolling_error)}

    def snapshot(self) -> dict[str, object]:
        """Readable state for logs, ``/health`` and the timeline."""
        return {"model": self.model, "version": self.version, "slice": self.slice_,
                "predictions": self.predictions, "outcomes": self.outcomes, "accuracy": self.accuracy,
                **self.performance(), "score_psi": self.score_psi.value, "mean_shift": self.mean_shift.value,
                "top_features": self.ranked_feature_psi()[:3], "warmup_suppressed": self.warmup_suppressed}


def worst(signals: Iterable[Signal]) -> Signal | None:
    """The signal with the highest finite value (None if none is finite)."""
    finite = [s for s in signals if s.value == s.value]
    return max(finite, key=lambda s: s.value, default=None)


def _round(x: float) -> float | None:
    return None if x != x else round(float(x), 5)


def _change(adwin: AdwinDetector) -> dict[str, Any]:
    before, after = adwin.change
    direction = "up" if after > before else "down" if after < before else "flat"
    return {"direction": direction, "before": _round(before), "after": _round(after)}
