"""From history records (:mod:`monitor.history`) and reference profiles to a :class:`ReportData`. Pure.

- **current distributions**: per feature, the latest snapshot in the range that has the feature (its version
  is named on the chart); reference = that version's training histogram.
- **PSI timeline**: every snapshot's PSI per feature (and on the score), oldest first.
- **active version**: the registry's production changes and the scorers' acks, in time order.
- **volume**: each snapshot's ``new`` predictions, by version.

Example:
    >>> from monitor.reference import Histogram
    >>> snaps = [{"ts": 1000, "version": 1, "new": 300, "psi": {"x": 0.02}, "hist": {"x": [150, 150]},
    ...           "ks": {}, "js": {}, "score_hist": [100, 200], "score_psi": 0.01}]
    >>> refs = {1: ({"x": Histogram((0.0,), (0.5, 0.5))}, Histogram((0.5,), (0.5, 0.5)))}
    >>> data = assemble("m", snaps, [], refs, since_ms=0, until_ms=2000, now_ms=2000)
    >>> data.features[0].current.proportions, data.volume[0].count, data.scores[1].n
    ((0.5, 0.5), 300, 300)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from monitor.history import counts_to_proportions
from monitor.reference import Histogram
from monitor.report.model import SCORE, Distribution, Event, FeatureDrift, Point, ReportData, VolumePoint

__all__ = ["assemble", "version_steps"]

References = Mapping[int, tuple[Mapping[str, Histogram], Histogram | None]]
"""version -> (feature histograms, score histogram) of that version's training reference profile."""


def _dist(h: Histogram, n: int = 0) -> Distribution:
    return Distribution(h.edges, h.proportions, n)


def version_steps(changes: Iterable[tuple[int, int | None]], since_ms: int) -> tuple[tuple[int, int], ...]:
    """The active version over time from ``(ts_ms, version)`` changes: sorted, the last one before ``since_ms``
    moved to ``since_ms``, repeats dropped.

    >>> version_steps([(50, 2), (10, 1), (60, 2), (70, 1), (80, None)], since_ms=20)
    ((20, 1), (50, 2), (70, 1))
    """
    steps: list[tuple[int, int]] = []
    for ts, version in sorted(((max(t, since_ms), v) for t, v in changes if v is not None), key=lambda c: c[0]):
        if steps and steps[-1][0] == ts:  # the later change at the same time wins
            steps.pop()
        if not steps or steps[-1][1] != version:
            steps.append((ts, version))
    return tuple(steps)


def _event(rec: Mapping[str, Any]) -> Event:
    version = rec.get("version")
    return Event(ts_ms=int(rec.get("ts") or 0), kind=str(rec.get("kind") or "alert"),
                 action=str(rec.get("action") or ""), severity=rec.get("severity"),
                 version=None if version is None else int(version), feature=rec.get("feature"),
                 label=str(rec.get("label") or "")[:300])


def assemble(model: str, snapshots: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]],
             references: References, *, since_ms: int, until_ms: int, now_ms: int,
             version_changes: Iterable[tuple[int, int | None]] = (), notes: Sequence[str] = ()) -> ReportData:
    """The report of ``model`` from its snapshots and events within ``[since_ms, until_ms]``."""
    snaps = sorted((s for s in snapshots if since_ms <= int(s.get("ts", 0)) <= until_ms), key=lambda s: s["ts"])
    evs = sorted((_event(e) for e in events if since_ms <= int(e.get("ts") or 0) <= until_ms), key=lambda e: e.ts_ms)
    series: dict[str, list[Point]] = {}
    volume: list[VolumePoint] = []
    latest_by_feature: dict[str, Mapping[str, Any]] = {}
    latest_by_version: dict[int, Mapping[str, Any]] = {}
    for s in snaps:
        ts, version = int(s["ts"]), int(s["version"])
        for name, value in (s.get("psi") or {}).items():
            if value is not None:
                series.setdefault(name, []).append(Point(ts, float(value)))
            latest_by_feature[name] = s
        if s.get("score_psi") is not None:
            series.setdefault(SCORE, []).append(Point(ts, float(s["score_psi"])))
        if s.get("new"):
            volume.append(VolumePoint(ts, version, int(s["new"])))
        latest_by_version[version] = s
    features = []
    for name, s in latest_by_feature.items():
        version = int(s["version"])
        ref = references.get(version, ({}, None))[0].get(name)
        if ref is None:
            continue
        props, n = counts_to_proportions((s.get("hist") or {}).get(name) or [0] * ref.bins)
        current = Distribution(ref.edges, props, n) if len(props) == ref.bins else Distribution(ref.edges, (), 0)
        features.append(FeatureDrift(name, _dist(ref), current, _f((s.get("psi") or {}).get(name)),
                                     _f((s.get("ks") or {}).get(name)), _f((s.get("js") or {}).get(name)), version))
    scores, score_ref = {}, {}
    for version, s in latest_by_version.items():
        ref_score = references.get(version, ({}, None))[1]
        if ref_score is None:
            continue
        score_ref[version] = _dist(ref_score)
        props, n = counts_to_proportions(s.get("score_hist") or [0] * ref_score.bins)
        if len(props) == ref_score.bins and n:
            scores[version] = Distribution(ref_score.edges, props, n)
    changes = list(version_changes) + [(e.ts_ms, e.version) for e in evs if e.kind == "ack" and e.action == "applied"]
    out_notes = list(notes)
    if not snaps:
        out_notes.append("no monitor snapshot in this range: is the monitor running (it records one every "
                         "DRIFTLINE_HISTORY_INTERVAL_S while predictions arrive)?")
    return ReportData(model=model, since_ms=since_ms, until_ms=until_ms, generated_ms=now_ms,
                      features=tuple(sorted(features, key=lambda f: f.name)),
                      psi_series={k: tuple(v) for k, v in series.items()}, events=tuple(evs),
                      versions=version_steps(changes, since_ms), volume=tuple(volume), scores=scores,
                      score_reference=score_ref, notes=tuple(out_notes))


def _f(x: Any) -> float | None:
    return None if x is None else float(x)
