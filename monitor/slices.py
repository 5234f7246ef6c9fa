"""Slices: monitor a sub-population (e.g. one age band) with its own detectors and thresholds.

A *slicer* is a callable ``slice_of(prediction) -> str | None`` given to :class:`~monitor.drift_monitor.DriftMonitor`.
:func:`slice_by` builds one from a field of the prediction's ``slices`` map (when the pipeline adds one) or of
its feature snapshot, optionally binned. :class:`SliceRegistry` bounds how many slices are monitored.

Policy keys of a slice carry the slice right after the detector, so ``AlertPolicy(per_key=...)`` can give a slice
its own thresholds: :func:`slice_overrides` writes those entries.

Example:
    >>> from models.prediction import Prediction
    >>> p = Prediction("p", "e", 0, "m", 1, "champion", 0.5, 1, 0, {"age": 83.0})
    >>> slice_by("age", edges=(40, 65, 80))(p)
    'age>=80'
    >>> slice_by("age_band")(p) is None
    True
    >>> policy_key("psi", "m/1/data_drift/hr/age>=80", "age>=80")
    'psi|age>=80|m/1/data_drift/hr/age>=80'
    >>> reg = SliceRegistry(max_slices=1)
    >>> reg.admit("m", 1, "a"), reg.admit("m", 1, "b"), reg.admit("m", 1, "a"), reg.dropped
    (True, False, True, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from monitor.exceptions import MonitorConfigError
from monitor.policy import PolicyConfig

WINDOWED_DETECTORS = ("psi", "ks", "js", "mean_shift")
EVENT_DETECTORS = ("adwin", "ddm")


def policy_key(detector: str, dedup_key: str, slice_: str | None = None) -> str:
    """The alert-policy key of one detector on one incident: ``detector|dedup_key`` or ``detector|slice|dedup_key``."""
    return f"{detector}|{dedup_key}" if slice_ is None else f"{detector}|{slice_}|{dedup_key}"


def slice_overrides(slice_: str, config: PolicyConfig,
                    detectors: Iterable[str] = WINDOWED_DETECTORS) -> dict[str, PolicyConfig]:
    """``per_key`` entries giving ``slice_`` its own config for ``detectors`` (merge them into the policy's).

    >>> sorted(slice_overrides("age>=80", PolicyConfig(min_samples=50), detectors=("psi", "ks")))
    ['ks|age>=80|', 'psi|age>=80|']
    """
    return {f"{d}|{slice_}|": config for d in detectors}


def slice_by(field: str, edges: Sequence[float] | None = None,
             labels: Sequence[str] | None = None) -> Callable[[Any], str | None]:
    """A slicer reading ``field`` from ``prediction.slices`` (if present) or ``prediction.features``.

    Without ``edges`` the value itself (as a string) is the slice; with ``edges`` a number is binned into
    ``len(edges) + 1`` bands named by ``labels`` (default ``field<e0``, ``e0<=field<e1``, ..., ``field>=eN``).
    A missing or non-numeric value (when binning) gives ``None``: the prediction counts only overall.
    """
    cuts = tuple(float(e) for e in (edges or ()))
    if any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)):
        raise MonitorConfigError(f"slice edges must be strictly increasing, got {cuts}")
    if labels is not None and len(labels) != len(cuts) + 1:
        raise MonitorConfigError(f"need {len(cuts) + 1} slice labels for {len(cuts)} edges, got {len(labels)}")
    names = list(labels) if labels is not None else _band_names(field, cuts)

    def slice_of(prediction: Any) -> str | None:
        value = None
        slices = getattr(prediction, "slices", None)
        if isinstance(slices, Mapping):
            value = slices.get(field)
        if value is None and prediction.features:
            value = prediction.features.get(field)
        if value is None:
            return None
        if not cuts:
            return str(value)
        try:
            x = float(value)
        except (TypeError, ValueError):
            return None
        if x != x:
            return None
        i = 0
        while i < len(cuts) and x >= cuts[i]:
            i += 1
        return names[i]

    return slice_of


def _band_names(field: str, cuts: tuple[float, ...]) -> list[str]:
    fmt = [f"{c:g}" for c in cuts]
    if not cuts:
        return []
    return ([f"{field}<{fmt[0]}"] + [f"{a}<={field}<{b}" for a, b in zip(fmt, fmt[1:], strict=False)]
            + [f"{field}>={fmt[-1]}"])


class SliceRegistry:
    """Admits at most ``max_slices`` distinct slices per (model, version); counts what it turns away."""

    def __init__(self, max_slices: int = 50) -> None:
        if max_slices < 0:
            raise MonitorConfigError(f"max_slices must be >= 0, got {max_slices}")
        self.max_slices = max_slices
        self.dropped = 0                         # predictions/outcomes of slices beyond the bound
        self._known: dict[tuple[str, int], set[str]] = {}
        self._rejected: dict[tuple[str, int], set[str]] = {}

    def admit(self, model: str, version: int, slice_: str) -> bool:
        """True if ``slice_`` is (or now becomes) monitored for (model, version)."""
        known = self._known.setdefault((model, version), set())
        if slice_ in known:
            return True
        if len(known) < self.max_slices:
            known.add(slice_)
            return True
        self.dropped += 1
        rejected = self._rejected.setdefault((model, version), set())
        if len(rejected) < 1000:
            rejected.add(slice_)
        return False

    def state(self) -> dict[str, Any]:
        """Monitored and rejected slice names (rejected ones: at most 1000 remembered per version)."""
        return {"max_slices": self.max_slices, "dropped": self.dropped,
                "monitored": {f"{m}/{v}": sorted(s) for (m, v), s in self._known.items()},
                "rejected": {f"{m}/{v}": sorted(s) for (m, v), s in self._rejected.items()}}
