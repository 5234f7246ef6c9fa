"""What a drift report shows, as plain data: :class:`ReportData` (pure; no Redis, Kafka or plotting).

The renderers (:mod:`monitor.report.charts`, :mod:`monitor.report.page`) draw it; adapters fill it (the
monitor's bounded history in Redis, the registry, :mod:`monitor.report.sample` for a simulated run). Any other
source (incidents, desired state, alert deliveries) plugs in by producing the same fields. It round-trips
through JSON (``to_dict`` / ``from_dict``), so ``driftline report --json`` hands it to other tools.

Example:
    >>> ref = Distribution((0.0,), (0.5, 0.5))
    >>> f = FeatureDrift("hr", ref, Distribution((0.0,), (0.1, 0.9), n=500), psi=0.88, ks=0.4, js=0.2, version=2)
    >>> g = FeatureDrift("rr", ref, Distribution((0.0,), (0.5, 0.5), n=500), psi=0.0, version=2)
    >>> data = ReportData("m", 0, 60_000, 60_000, features=(g, f))
    >>> [x.name for x in data.top_drifted()], data.first_focus()
    (['hr', 'rr'], 'hr: reference vs current (PSI 0.88, critical)')
    >>> ReportData.from_dict(data.to_dict()) == data
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

PSI_WARNING = 0.1
PSI_CRITICAL = 0.25
SCORE = "__score__"
"""Key of the model score in :attr:`ReportData.psi_series`."""


def psi_level(value: float | None) -> str:
    """``ok`` / ``warning`` / ``critical`` by the PSI rules of thumb, ``n/a`` when unknown.

    >>> psi_level(0.05), psi_level(0.1), psi_level(0.3), psi_level(None), psi_level(float("nan"))
    ('ok', 'warning', 'critical', 'n/a', 'n/a')
    """
    if value is None or not math.isfinite(value):
        return "n/a"
    return "critical" if value >= PSI_CRITICAL else "warning" if value >= PSI_WARNING else "ok"


@dataclass(frozen=True)
class Distribution:
    """Shares of a sample in the reference bins (``edges``: inner cut points, ``len(edges) + 1`` bins)."""

    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    n: int = 0

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Distribution:
        return cls(tuple(float(e) for e in d["edges"]), tuple(float(p) for p in d["proportions"]), int(d.get("n", 0)))


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's reference and current distribution with its statistics (None: not computed)."""

    name: str
    reference: Distribution
    current: Distribution
    psi: float | None
    ks: float | None = None
    js: float | None = None
    version: int | None = None

    @property
    def level(self) -> str:
        return psi_level(self.psi)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureDrift:
        return cls(str(d["name"]), Distribution.from_dict(d["reference"]), Distribution.from_dict(d["current"]),
                   _num(d.get("psi")), _num(d.get("ks")), _num(d.get("js")),
                   None if d.get("version") is None else int(d["version"]))


@dataclass(frozen=True)
class Point:
    """One value of a statistic at a time (epoch ms)."""

    ts_ms: int
    value: float


@dataclass(frozen=True)
class Event:
    """Something that happened on the time axis.

    ``kind``: ``alert`` (``action`` trigger / resolve), ``detector`` (ADWIN / DDM firings, which never
    resolve), ``rollback`` / ``command`` (a control command; ``version`` is its target), ``ack`` (a scorer
    applied or rejected one; ``version`` is the version it serves after), ``promote`` (a registry change).
    """

    ts_ms: int
    kind: str
    action: str = ""
    severity: str | None = None
    version: int | None = None
    feature: str | None = None
    label: str = ""


@dataclass(frozen=True)
class VolumePoint:
    """Predictions served by ``version`` in the interval that ends at ``ts_ms``."""

    ts_ms: int
    version: int
    count: int


@dataclass(frozen=True)
class ReportData:
    """Everything one report shows for ``model`` between ``since_ms`` and ``until_ms``."""

    model: str
    since_ms: int
    until_ms: int
    generated_ms: int
    features: tuple[FeatureDrift, ...] = ()
    psi_series: Mapping[str, tuple[Point, ...]] = field(default_factory=dict)
    events: tuple[Event, ...] = ()
    versions: tuple[tuple[int, int], ...] = ()  # (ts_ms, active version) whenever it changed, oldest first
    volume: tuple[VolumePoint, ...] = ()
    scores: Mapping[int, Distribution] = field(default_factory=dict)  # current score distribution by version
    score_reference: Mapping[int, Distribution] = field(default_factory=dict)  # training scores by version
    notes: tuple[str, ...] = ()  # what the report could not show, and why

    def top_drifted(self, n: int | None = None) -> list[FeatureDrift]:
        """Features by PSI, highest first; unknown PSI last (never ranked as 0)."""
        ranked = sorted(self.features, key=lambda f: (f.psi is None or not math.isfinite(f.psi),
                                                       -(f.psi or 0.0), f.name))
        return ranked if n is None else ranked[:n]

    def first_focus(self) -> str:
        """What the report shows first: the top drifted feature, or why there is none."""
        top = self.top_drifted(1)
        if not top or top[0].psi is None or not math.isfinite(top[0].psi):
            return "the timeline (no feature has a PSI yet)"
        return f"{top[0].name}: reference vs current (PSI {top[0].psi:.2f}, {top[0].level})"

    def active_version(self) -> int | None:
        """The version active at the end of the range (None when unknown)."""
        return self.versions[-1][1] if self.versions else None

    def alerts(self) -> list[Event]:
        return [e for e in self.events if e.kind in ("alert", "detector")]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["psi_series"] = {k: [[p.ts_ms, p.value] for p in v] for k, v in self.psi_series.items()}
        d["scores"] = {str(k): asdict(v) for k, v in self.scores.items()}
        d["score_reference"] = {str(k): asdict(v) for k, v in self.score_reference.items()}
        d["versions"] = [list(v) for v in self.versions]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReportData:
        return cls(
            model=str(d["model"]), since_ms=int(d["since_ms"]), until_ms=int(d["until_ms"]),
            generated_ms=int(d["generated_ms"]),
            features=tuple(FeatureDrift.from_dict(f) for f in d.get("features", ())),
            psi_series={str(k): tuple(Point(int(t), float(v)) for t, v in pts)
                        for k, pts in (d.get("psi_series") or {}).items()},
            events=tuple(Event(**e) for e in d.get("events", ())),
            versions=tuple((int(t), int(v)) for t, v in d.get("versions", ())),
            volume=tuple(VolumePoint(**v) for v in d.get("volume", ())),
            scores={int(k): Distribution.from_dict(v) for k, v in (d.get("scores") or {}).items()},
            score_reference={int(k): Distribution.from_dict(v) for k, v in (d.get("score_reference") or {}).items()},
            notes=tuple(d.get("notes", ())),
        )


def _num(x: Any) -> float | None:
    return None if x is None else float(x)
