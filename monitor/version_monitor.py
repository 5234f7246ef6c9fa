"""All detectors of one (model, version): rolling PSI per feature and on scores, ADWIN and mean shift on
scores, DDM and ADWIN on the 0/1 error stream once labels are joined. Pure: no Kafka, Redis or Prometheus.

``evaluate()`` turns their current state into :class:`Signal` s for the alert policy. PSI values are NaN
while a window has too few samples: NaN is *inconclusive*, never 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from monitor.detectors import AdwinDetector, DdmDetector
from monitor.psi import RollingPSI
from monitor.reference import ReferenceProfile
from monitor.stats import MeanShift

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


@dataclass(frozen=True)
class MonitorConfig:
    psi_window: int = 1000
    psi_min_samples: int = 500
    adwin_delta: float = 0.002
    mean_shift_window: int = 1000
    ddm_warm_start: int = 300


class VersionMonitor:
    """Detectors for one model version against its training reference profile."""

    def __init__(self, model: str, version: int, profile: ReferenceProfile, config: MonitorConfig = MonitorConfig()):
        self.model, self.version, self.config = model, version, config
        self.feature_psi = {name: RollingPSI(h, window=config.psi_window, min_samples=config.psi_min_samples)
                            for name, h in profile.features.items()}
        self.score_psi = RollingPSI(profile.score, window=config.psi_window, min_samples=config.psi_min_samples)
        self.score_adwin = AdwinDetector("adwin_score", delta=config.adwin_delta)
        self.mean_shift = MeanShift(profile.mean_score, window=config.mean_shift_window,
                                    min_samples=config.psi_min_samples)
        self.error_ddm = DdmDetector("ddm_error", warm_start=config.ddm_warm_start)
        self.error_adwin = AdwinDetector("adwin_error", delta=config.adwin_delta)
        self.predictions = 0
        self.outcomes = 0
        self.correct = 0
        self._events: list[Signal] = []

    def observe(self, score: float, features: Mapping[str, float] | None) -> None:
        """One served prediction (and its feature snapshot, when the scorer included it)."""
        self.predictions += 1
        self.score_psi.update(score)
        self.mean_shift.update(score)
        if self.score_adwin.update(score).drift_detected:
            self._events.append(Signal("prediction_drift", None, "adwin", "mean_score",
                                       self.score_adwin.estimation, self.predictions,
                                       f"adwin width {self.score_adwin.width}", event=True))
        if features:
            for name, psi in self.feature_psi.items():
                value = features.get(name)
                if value is not None:
                    psi.update(value)

    def observe_outcome(self, error: int) -> None:
        """One joined label: ``error`` is 1 when the served prediction was wrong."""
        self.outcomes += 1
        self.correct += 1 - error
        if self.error_ddm.update(error).drift_detected:
            self._events.append(Signal("concept_drift", None, "ddm", "error_rate", self.rolling_error,
                                       self.outcomes, "since last DDM reset", event=True))
        if self.error_adwin.update(error).drift_detected:
            self._events.append(Signal("concept_drift", None, "adwin", "error_rate", self.error_adwin.estimation,
                                       self.outcomes, f"adwin width {self.error_adwin.width}", event=True))

    @property
    def rolling_error(self) -> float:
        return self.error_adwin.estimation if self.outcomes else math.nan

    @property
    def accuracy(self) -> float:
        return self.correct / self.outcomes if self.outcomes else math.nan

    def ranked_feature_psi(self) -> list[tuple[str, float]]:
        """Features by PSI, highest first (NaN last): where the on-call person should look."""
        items = [(name, psi.value) for name, psi in self.feature_psi.items()]
        return sorted(items, key=lambda kv: (-kv[1] if kv[1] == kv[1] else math.inf))

    def evaluate(self) -> list[Signal]:
        """Current statistics as signals, plus detector events since the last call."""
        w = f"last {self.config.psi_window} predictions"
        signals = [Signal("data_drift", name, "psi", "psi", psi.value, psi.n, w)
                   for name, psi in self.feature_psi.items()]
        signals.append(Signal("prediction_drift", None, "psi", "psi", self.score_psi.value, self.score_psi.n, w))
        signals.append(Signal("prediction_drift", None, "mean_shift", "abs_mean_shift", self.mean_shift.value,
                              self.predictions, f"last {self.config.mean_shift_window} predictions"))
        signals.extend(self._events)
        self._events = []
        return signals

    def snapshot(self) -> dict[str, object]:
        return {"model": self.model, "version": self.version, "predictions": self.predictions,
                "outcomes": self.outcomes, "accuracy": self.accuracy, "score_psi": self.score_psi.value,
                "mean_shift": self.mean_shift.value, "top_features": self.ranked_feature_psi()[:3]}


def worst(signals: Iterable[Signal]) -> Signal | None:
    finite = [s for s in signals if s.value == s.value]
    return max(finite, key=lambda s: s.value, default=None)
