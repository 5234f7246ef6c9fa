"""The report's charts: matplotlib figures rendered to static SVG strings (no JavaScript, no network).

matplotlib is used through ``Figure`` objects only (no ``pyplot`` state), so renders are thread-safe and leave
nothing behind; ``svg.hashsalt`` and an empty date make the same data give the same bytes. Text stays text
(``svg.fonttype = none``): smaller files, selectable labels.

Example:
    >>> from monitor.report.model import Distribution, FeatureDrift
    >>> ref = Distribution((0.0, 1.0), (0.3, 0.4, 0.3))
    >>> svg = feature_chart(FeatureDrift("hr", ref, Distribution((0.0, 1.0), (0.1, 0.3, 0.6), 800), 0.4, 0.3, 0.1))
    >>> svg.startswith("<svg") and "hr" in svg and "<script" not in svg
    True
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import matplotlib
from matplotlib import dates as mdates
from matplotlib.figure import Figure

from monitor.report.model import PSI_CRITICAL, PSI_WARNING, SCORE, Distribution, FeatureDrift, ReportData

__all__ = ["feature_chart", "ranking_chart", "scores_chart", "timeline_chart", "volume_chart"]

_RC = {"svg.fonttype": "none", "svg.hashsalt": "driftline-report", "font.size": 9, "axes.titlesize": 10,
       "axes.spines.top": False, "axes.spines.right": False, "font.family": "DejaVu Sans"}
REF_COLOR, CUR_COLOR = "#9aa5b1", "#d9480f"
SEVERITY_COLOR = {"critical": "#c92a2a", "warning": "#f08c00", "info": "#1c7ed6", None: "#495057"}
VERSION_COLORS = ("#1c7ed6", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#e8590c")


def version_color(version: int) -> str:
    """A stable colour per version number."""
    return VERSION_COLORS[(version - 1) % len(VERSION_COLORS)]


@contextmanager
def _figure(width: float, height: float, **kw: object) -> Iterator[Figure]:
    with matplotlib.rc_context(_RC):
        yield Figure(figsize=(width, height), layout="constrained", **kw)  # type: ignore[arg-type]


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the SVG sits inline in HTML


def _mark(artists: object, name: str) -> None:
    """Tag data marks (bars, lines, markers, spans) with an SVG id ``mark-<name>``: the browser check counts
    what was drawn inside them, apart from axes and labels."""
    for i, artist in enumerate(artists if isinstance(artists, (list, tuple)) or hasattr(artists, "patches")
                               else [artists]):  # type: ignore[union-attr]
        artist.set_gid(f"mark-{name}-{i}")


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _bin_labels(edges: Sequence[float]) -> list[str]:
    """``< e0``, ``e0-e1``, ... ``>= eN`` with short numbers.

    >>> _bin_labels([1.0, 2.5])
    ['<1', '1-2.5', '≥2.5']
    """
    if not edges:
        return ["all"]
    f = [f"{e:.3g}" for e in edges]
    return [f"<{f[0]}"] + [f"{a}-{b}" for a, b in zip(f, f[1:], strict=False)] + [f"≥{f[-1]}"]


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def feature_chart(f: FeatureDrift, *, width: float = 4.6, height: float = 2.5) -> str:
    """Reference vs current shares per reference bin (what PSI compares), the statistics in the title."""
    with _figure(width, height) as fig:
        ax = fig.add_subplot()
        ref, cur = f.reference.proportions, f.current.proportions
        xs = range(len(ref))
        _mark(ax.bar([x - 0.2 for x in xs], ref, width=0.4, color=REF_COLOR, label="reference (training)"), "ref")
        if len(cur) == len(ref) and f.current.n:
            _mark(ax.bar([x + 0.2 for x in xs], cur, width=0.4, color=CUR_COLOR, label=f"current (n={f.current.n})"),
                  "current")
        labels = _bin_labels(f.reference.edges)
        ax.set_xticks(list(xs), labels, rotation=45 if len(labels) > 5 else 0, ha="right" if len(labels) > 5 else "center",
                      fontsize=7)
        ax.set_ylabel("share")
        stats = f"PSI {_fmt(f.psi)}" + (f" · KS {_fmt(f.ks)}" if f.ks is not None else "") + (
            f" · JS {_fmt(f.js)}" if f.js is not None else "")
        ax.set_title(f"{f.name}  —  {stats}", color=SEVERITY_COLOR.get(f.level, "#212529"), loc="left")
        ax.legend(fontsize=7, frameon=False, loc="upper right")
        return _svg(fig)


def ranking_chart(data: ReportData, *, limit: int = 12, width: float = 4.6) -> str:
    """Features ranked by PSI (highest on top) against the 0.1 / 0.25 lines."""
    top = [f for f in data.top_drifted(limit) if f.psi is not None and math.isfinite(f.psi)]
    with _figure(width, 0.6 + 0.24 * max(len(top), 2)) as fig:
        ax = fig.add_subplot()
        names = [f.name for f in reversed(top)]
        values = [float(f.psi or 0.0) for f in reversed(top)]
        bars = ax.barh(names, values, color=[SEVERITY_COLOR.get(f.level, "#37b24d") if f.level != "ok" else "#37b24d"
                                      for f in reversed(top)])
        _mark(bars, "psi")
        for level, style in ((PSI_WARNING, ":"), (PSI_CRITICAL, "--")):
            ax.axvline(level, color="#495057", linestyle=style, linewidth=1)
        ax.set_xlabel("PSI (current window vs training)")
        ax.set_title("Top drifted features", loc="left")
        if not top:
            ax.text(0.5, 0.5, "no PSI yet", transform=ax.transAxes, ha="center")
        ax.tick_params(axis="y", labelsize=7)
        return _svg(fig)


def timeline_chart(data: ReportData, *, series: int = 6, width: float = 9.6) -> str:
    """PSI over time (top features, the score dashed) with the 0.1 / 0.25 lines; detector events, alerts and
    control commands; the active version: three panels on one time axis."""
    with _figure(width, 5.2) as fig:
        psi_ax, ev_ax, ver_ax = fig.subplots(3, 1, sharex=True, height_ratios=[3.2, 1.2, 0.6])
        ranked = [f.name for f in data.top_drifted() if f.name in data.psi_series]
        names = ranked[:series] + [n for n in data.psi_series if n not in ranked[:series] and n != SCORE]
        for i, name in enumerate(names):
            pts = data.psi_series[name]
            main = i < series
            _mark(psi_ax.plot([_dt(p.ts_ms) for p in pts], [p.value for p in pts], linewidth=1.6 if main else 0.6,
                              color=None if main else "#ced4da", label=name if main else None,
                              zorder=3 if main else 1), f"psi{i}")
        if SCORE in data.psi_series:
            pts = data.psi_series[SCORE]
            _mark(psi_ax.plot([_dt(p.ts_ms) for p in pts], [p.value for p in pts], color="#212529", linestyle="--",
                              linewidth=1.2, label="score"), "score")
        psi_ax.axhline(PSI_WARNING, color=SEVERITY_COLOR["warning"], linestyle=":", linewidth=1)
        psi_ax.axhline(PSI_CRITICAL, color=SEVERITY_COLOR["critical"], linestyle="--", linewidth=1)
        psi_ax.set_ylabel("PSI")
        psi_ax.set_title("PSI over time (0.1 warning, 0.25 critical), events and the active version", loc="left")
        if data.psi_series:
            psi_ax.legend(fontsize=7, frameon=False, ncol=4, loc="upper left")
        _events_panel(ev_ax, data)
        _versions_panel(ver_ax, data)
        ver_ax.set_xlim(_dt(data.since_ms), _dt(data.until_ms))
        ver_ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ver_ax.xaxis.get_major_locator()))
        ver_ax.set_xlabel("time (UTC)")
        return _svg(fig)


_LANES = ("alert", "detector", "command")


def _events_panel(ax: object, data: ReportData) -> None:
    lane_of = {"alert": 2, "detector": 1, "rollback": 0, "command": 0, "ack": 0, "promote": 0}
    for e in data.events:
        lane = lane_of.get(e.kind)
        if lane is None:
            continue
        if e.kind == "alert":
            marker = "^" if e.action == "trigger" else "o"
            face = SEVERITY_COLOR.get(e.severity) if e.action == "trigger" else "white"
            _mark(ax.scatter([_dt(e.ts_ms)], [lane], marker=marker, s=46, color=face,  # type: ignore[attr-defined]
                             edgecolors=SEVERITY_COLOR.get(e.severity), zorder=3), "alert")
        elif e.kind == "detector":
            _mark(ax.scatter([_dt(e.ts_ms)], [lane], marker="D", s=30,  # type: ignore[attr-defined]
                             color=SEVERITY_COLOR.get(e.severity), zorder=3), "detector")
        else:
            marker = {"rollback": "v", "ack": "s", "promote": "P"}.get(e.kind, "x")
            _mark(ax.scatter([_dt(e.ts_ms)], [lane], marker=marker, s=42, color="#212529", zorder=3),  # type: ignore[attr-defined]
                  "control")
            if e.kind == "rollback":
                ax.annotate(e.label[:40] or "rollback", (_dt(e.ts_ms), lane), xytext=(4, 4),  # type: ignore[attr-defined]
                            textcoords="offset points", fontsize=7)
    ax.set_yticks([0, 1, 2], ["control", "detectors", "alerts"])  # type: ignore[attr-defined]
    ax.set_ylim(-0.6, 2.6)  # type: ignore[attr-defined]
    ax.grid(axis="x", color="#f1f3f5")  # type: ignore[attr-defined]


def _versions_panel(ax: object, data: ReportData) -> None:
    steps = list(data.versions)
    for i, (ts, version) in enumerate(steps):
        end = steps[i + 1][0] if i + 1 < len(steps) else data.until_ms
        start = max(ts, data.since_ms)
        if end <= start:
            continue
        _mark(ax.axvspan(_dt(start), _dt(end), color=version_color(version), alpha=0.35), "version")  # type: ignore[attr-defined]
        ax.text(_dt(start + (end - start) // 2), 0.5, f"v{version}", ha="center", va="center",  # type: ignore[attr-defined]
                fontsize=8, fontweight="bold")
    ax.set_yticks([])  # type: ignore[attr-defined]
    ax.set_ylabel("active", rotation=0, ha="right", va="center")  # type: ignore[attr-defined]
    ax.set_ylim(0, 1)  # type: ignore[attr-defined]
    if not steps:
        ax.text(0.5, 0.5, "active version unknown", transform=ax.transAxes, ha="center",  # type: ignore[attr-defined]
                va="center", fontsize=7)


def volume_chart(data: ReportData, *, width: float = 9.6) -> str:
    """Predictions per interval, stacked by version, on the report's time axis."""
    with _figure(width, 2.2) as fig:
        ax = fig.add_subplot()
        by_version: dict[int, dict[int, int]] = {}
        for p in data.volume:
            by_version.setdefault(p.version, {})[p.ts_ms] = by_version.get(p.version, {}).get(p.ts_ms, 0) + p.count
        stamps = sorted({p.ts_ms for p in data.volume})
        widths = [max(b - a, 1) for a, b in zip(stamps, stamps[1:], strict=False)]
        width_d = (min(widths) if widths else 1000) / 86_400_000 * 0.9
        bottom = [0.0] * len(stamps)
        for version in sorted(by_version):
            counts = [by_version[version].get(t, 0) for t in stamps]
            _mark(ax.bar([_dt(t) for t in stamps], counts, width=width_d, bottom=bottom, align="edge",
                         color=version_color(version), label=f"v{version}"), f"v{version}")
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
        ax.set_xlim(_dt(data.since_ms), _dt(data.until_ms))
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
        ax.set_ylabel("predictions")
        ax.set_title("Prediction volume by version", loc="left")
        if by_version:
            ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        else:
            ax.text(0.5, 0.5, "no predictions in range", transform=ax.transAxes, ha="center")
        return _svg(fig)


def _density(d: Distribution, lo: float = 0.0, hi: float = 1.0) -> tuple[list[float], list[float]]:
    """Step-plot x/y of a binned score distribution over [lo, hi] (share per unit of score)."""
    edges = [lo, *[min(max(e, lo), hi) for e in d.edges], hi]
    xs, ys = [], []
    for (a, b), p in zip(zip(edges, edges[1:], strict=False), d.proportions, strict=False):
        dens = p / (b - a) if b > a else 0.0
        xs += [a, b]
        ys += [dens, dens]
    return xs, ys


def scores_chart(data: ReportData, *, width: float = 4.6) -> str:
    """Score distribution by version: current window (solid) against that version's training scores (dotted)."""
    with _figure(width, 2.6) as fig:
        ax = fig.add_subplot()
        for version in sorted(set(data.scores) | set(data.score_reference)):
            color = version_color(version)
            if version in data.score_reference:
                _mark(ax.plot(*_density(data.score_reference[version]), color=color, linestyle=":", linewidth=1.2,
                              label=f"v{version} training"), f"ref{version}")
            if version in data.scores and data.scores[version].n:
                _mark(ax.plot(*_density(data.scores[version]), color=color, linewidth=1.8,
                              label=f"v{version} current (n={data.scores[version].n})"), f"v{version}")
        ax.set_xlim(0, 1)
        ax.set_xlabel("score")
        ax.set_ylabel("density")
        ax.set_title("Score distribution by version", loc="left")
        if data.scores or data.score_reference:
            ax.legend(fontsize=7, frameon=False)
        else:
            ax.text(0.5, 0.5, "no scores in range", transform=ax.transAxes, ha="center")
        return _svg(fig)
