"""Change detectors: thin wrappers over river's ADWIN and DDM with one shared shape.

Like river, ``update(x)`` returns the detector and the verdict is a property (``drift_detected``), true only
on the update that detected the change. The wrappers add what a service needs: a name, NaN handling, a
detection count that survives river's internal reset, a warm-up and a post-detection grace period, and a
``state()`` dict for logs and metrics.

Example:
    >>> import random
    >>> rng = random.Random(7)
    >>> det = AdwinDetector(delta=0.002)
    >>> stream = [rng.gauss(0, 1) for _ in range(1000)] + [rng.gauss(2, 1) for _ in range(1000)]
    >>> fired = [i for i, x in enumerate(stream) if det.update(x).drift_detected]
    >>> fired[0] >= 1000, det.n_detections == len(fired)
    (True, True)
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

from river.drift import ADWIN
from river.drift.binary import DDM

from monitor.exceptions import MonitorConfigError, ObservationError


@runtime_checkable
class Detector(Protocol):
    """What the monitor service needs from any change detector."""

    name: str

    def update(self, x: float) -> Detector:
        """Feed one observation; returns the detector."""
        ...

    @property
    def drift_detected(self) -> bool:
        """True only on the update that detected a change."""
        ...

    @property
    def n_detections(self) -> int:
        """Changes reported so far."""
        ...

    def state(self) -> dict[str, float | int | str]:
        """Readable state for logs and metrics."""
        ...


class AdwinDetector:
    """ADWIN (river ``drift.ADWIN``) on a real-valued stream such as scores or one feature.

    - ``min_samples``: ADWIN does not test for change until its window holds this many values (river's
      ``grace_period``); this applies again after each detection, because river restarts the window then.
    - ``grace``: after a reported detection, further detections in the next ``grace`` valid updates are
      suppressed (counted in ``n_suppressed``) so one shift does not page twice.
    - ``clock``: how often (in updates) ADWIN checks for change; 1 is most reactive, 32 (river's default) is
      cheapest. Detection indices are multiples of ``clock`` within each window.
    - NaN / inf / non-numbers are skipped and counted in ``n_invalid``.
    """

    def __init__(self, name: str = "adwin", delta: float = 0.002, min_samples: int = 100, grace: int = 0,
                 clock: int = 32) -> None:
        if not 0 < delta < 1:
            raise MonitorConfigError(f"adwin delta must be in (0, 1), got {delta}")
        if min_samples < 1 or grace < 0 or clock < 1:
            raise MonitorConfigError(f"adwin needs min_samples >= 1, grace >= 0, clock >= 1; got "
                                     f"{min_samples}, {grace}, {clock}")
        self.name = name
        self.delta = delta
        self.min_samples = min_samples
        self.grace = grace
        self._adwin = ADWIN(delta=delta, clock=clock, grace_period=min_samples)
        self._drift = False
        self._n = 0
        self._n_invalid = 0
        self._n_detections = 0
        self._n_suppressed = 0
        self._last_detection = -1
        self._grace_left = 0
        self._before = math.nan
        self._after = math.nan

    def update(self, x: float) -> AdwinDetector:
        """Feed one value; non-finite values are skipped (and clear ``drift_detected``)."""
        self._drift = False
        try:
            xf = float(x)
        except (TypeError, ValueError):
            xf = math.nan
        if not math.isfinite(xf):
            self._n_invalid += 1
            return self
        adwin = self._adwin
        width, total = adwin.width, adwin.estimation * adwin.width
        adwin.update(xf)
        self._n += 1
        raw = adwin.drift_detected
        if raw:  # the dropped (older) part of the window against what is kept
            dropped = width + 1 - adwin.width
            self._after = float(adwin.estimation)
            self._before = (total + xf - self._after * adwin.width) / dropped if dropped > 0 else math.nan
        if self._grace_left > 0:
            self._grace_left -= 1
            if raw:
                self._n_suppressed += 1
            return self
        if raw:
            self._drift = True
            self._n_detections += 1
            self._last_detection = self._n - 1
            self._grace_left = self.grace
        return self

    @property
    def drift_detected(self) -> bool:
        """True only on the update that detected a change."""
        return self._drift

    @property
    def n_detections(self) -> int:
        """Detections reported since creation (river's own counter resets with its window)."""
        return self._n_detections

    @property
    def n(self) -> int:
        """Valid values seen."""
        return self._n

    @property
    def n_invalid(self) -> int:
        """Non-finite values skipped."""
        return self._n_invalid

    @property
    def n_suppressed(self) -> int:
        """Detections swallowed by the grace period."""
        return self._n_suppressed

    @property
    def estimation(self) -> float:
        """Mean of ADWIN's current window (0.0 when empty, as in river)."""
        return float(self._adwin.estimation)

    @property
    def change(self) -> tuple[float, float]:
        """``(before, after)`` of the latest detection: the mean of the part of the window ADWIN dropped and of the
        part it kept (NaN before any detection). ``after > before`` is an increase.

        >>> det = AdwinDetector(clock=1)
        >>> fired = [i for i, x in enumerate([0.0] * 300 + [1.0] * 100) if det.update(x).drift_detected]
        >>> fired, det.change[0], det.change[0] < det.change[1]   # ADWIN keeps some old values after its cut
        ([311], 0.0, True)
        """
        return self._before, self._after

    @property
    def width(self) -> int:
        """Length of ADWIN's current window."""
        return int(self._adwin.width)

    def state(self) -> dict[str, float | int | str]:
        """Readable state for logs and metrics."""
        return {"name": self.name, "detector": "adwin", "n": self._n, "n_invalid": self._n_invalid,
                "n_detections": self._n_detections, "n_suppressed": self._n_suppressed,
                "last_detection_at": self._last_detection, "width": self.width,
                "estimation": self.estimation, "variance": float(self._adwin.variance), "delta": self.delta}


class DdmDetector:
    """DDM (river ``drift.binary.DDM``) on a 0/1 error stream: 1 = wrong prediction, 0 = right.

    Accepts bools, ints and floats equal to 0 or 1; NaN is skipped (``n_invalid``); any other value raises
    :class:`ObservationError` since it means the caller fed scores instead of errors.

    >>> det = DdmDetector()
    >>> stream = [0] * 9 + [1]
    >>> fired = [i for i, e in enumerate(stream * 50 + [1] * 50) if det.update(e).drift_detected]
    >>> fired
    [513]
    """

    def __init__(self, name: str = "ddm", warm_start: int = 30, warning_threshold: float = 2.0,
                 drift_threshold: float = 3.0) -> None:
        if warm_start < 1:
            raise MonitorConfigError(f"ddm warm_start must be >= 1, got {warm_start}")
        if not 0 < warning_threshold <= drift_threshold:
            raise MonitorConfigError(f"ddm needs 0 < warning_threshold <= drift_threshold, got "
                                     f"{warning_threshold}, {drift_threshold}")
        self.name = name
        self._ddm = DDM(warm_start=warm_start, warning_threshold=warning_threshold,
                        drift_threshold=drift_threshold)
        self._drift = False
        self._warning = False
        self._n = 0
        self._n_errors = 0
        self._n_invalid = 0
        self._n_detections = 0
        self._last_detection = -1
        self._window_n = 0  # outcomes since DDM's last reset (river restarts after a detection)
        self._window_errors = 0
        self._reset_pending = False

    def update(self, x: float) -> DdmDetector:
        """Feed one outcome (1 = error, 0 = correct); NaN or None (label unknown) is skipped."""
        xf = math.nan if x is None else float(x)
        if math.isnan(xf):
            self._drift = False
            self._warning = False
            self._n_invalid += 1
            return self
        if xf not in (0.0, 1.0):
            raise ObservationError(f"ddm {self.name!r} takes 0/1 errors, got {x!r}: feed (label != prediction)")
        if self._reset_pending:
            self._window_n = self._window_errors = 0
            self._reset_pending = False
        self._drift = False
        self._ddm.update(bool(xf))
        self._n += 1
        self._n_errors += int(xf)
        self._window_n += 1
        self._window_errors += int(xf)
        self._warning = bool(self._ddm.warning_detected)
        if self._ddm.drift_detected:
            self._drift = True
            self._reset_pending = True
            self._n_detections += 1
            self._last_detection = self._n - 1
        return self

    @property
    def drift_detected(self) -> bool:
        """True only on the update that detected a change."""
        return self._drift

    @property
    def warning_detected(self) -> bool:
        """True while the error rate is in DDM's warning zone (set per update)."""
        return self._warning

    @property
    def n_detections(self) -> int:
        """Detections since creation."""
        return self._n_detections

    @property
    def n(self) -> int:
        """Valid outcomes seen."""
        return self._n

    @property
    def error_rate(self) -> float:
        """Error rate since DDM's last reset (``nan`` before any outcome)."""
        return self._window_errors / self._window_n if self._window_n else math.nan

    def state(self) -> dict[str, float | int | str]:
        """Readable state for logs and metrics."""
        return {"name": self.name, "detector": "ddm", "n": self._n, "n_errors": self._n_errors,
                "n_invalid": self._n_invalid, "n_detections": self._n_detections,
                "last_detection_at": self._last_detection, "warning": int(self._warning),
                "error_rate": self.error_rate}
