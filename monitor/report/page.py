"""The report page: one self-contained HTML file (inline CSS and SVG, no script, no external reference).

It opens from a file, offline, in any browser, a CI artifact viewer or a mail client. Every chart sits in a
``<figure class="chart" data-chart="ID">``; :func:`expected_charts` lists the ids the data calls for, so a
test can check that each one was drawn.

Order (what the on-call person needs first): the top drifted feature's reference vs current distribution next
to the ranking of all features, then the timeline (PSI with the 0.1 / 0.25 lines, detector events, alerts,
rollbacks, the active version), prediction volume and score distribution by version, every feature, the events.

Example:
    >>> from monitor.report.sample import sample_report
    >>> data = sample_report(duration_s=20, rate=100)
    >>> html = render_html(data)
    >>> html.count('class="chart"') == len(expected_charts(data)), "<script" in html
    (True, False)
"""

from __future__ import annotations

import html as _html
import math
from collections.abc import Callable
from datetime import UTC, datetime

from monitor.report import charts
from monitor.report.model import Event, FeatureDrift, ReportData

__all__ = ["expected_charts", "render_html"]

_CSS = """
body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;margin:24px auto;max-width:1000px;color:#212529}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:28px 0 8px;border-bottom:1px solid #dee2e6}
.meta{color:#495057;font-size:13px}.first{background:#fff4e6;border-left:4px solid #d9480f;padding:8px 12px;
margin:12px 0;font-size:14px}.row{display:flex;flex-wrap:wrap;gap:12px}.chart{margin:0}
.chart svg{max-width:100%;height:auto}table{border-collapse:collapse;font-size:12px;width:100%}
td,th{border-bottom:1px solid #e9ecef;padding:3px 6px;text-align:left}td.num{text-align:right;
font-variant-numeric:tabular-nums}.critical{color:#c92a2a;font-weight:bold}.warning{color:#e67700}
.ok{color:#2b8a3e}.note{color:#862e9c;font-size:12px}
"""


def expected_charts(data: ReportData) -> list[str]:
    """The ``data-chart`` ids :func:`render_html` draws for ``data`` (a feature chart per feature)."""
    return ["top-feature", "ranking", "timeline", "volume", "scores",
            *[f"feature-{f.name}" for f in data.top_drifted()]]


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _figure(chart_id: str, render: Callable[[], str], caption: str = "") -> str:
    cap = f"<figcaption class='meta'>{_html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure class="chart" data-chart="{_html.escape(chart_id)}">{render()}{cap}</figure>'


def _ranking_table(features: list[FeatureDrift]) -> str:
    rows = "".join(
        f"<tr><td>{i}</td><td>{_html.escape(f.name)}</td><td class='num {f.level}'>{_fmt(f.psi)}</td>"
        f"<td class='num'>{_fmt(f.ks)}</td><td class='num'>{_fmt(f.js)}</td><td class='{f.level}'>{f.level}</td>"
        f"<td class='num'>{f.current.n}</td><td>v{f.version}</td></tr>" for i, f in enumerate(features, 1))
    return ("<table><tr><th>#</th><th>feature</th><th>PSI</th><th>KS D</th><th>JS (bits)</th><th>level</th>"
            f"<th>window n</th><th>version</th></tr>{rows}</table>")


def _events_table(events: tuple[Event, ...]) -> str:
    if not events:
        return "<p class='meta'>No alert, detector event or control command in this range.</p>"
    rows = "".join(
        f"<tr><td>{_time(e.ts_ms)}</td><td>{e.kind}</td><td>{_html.escape(e.action)}</td>"
        f"<td class='{e.severity or ''}'>{e.severity or ''}</td><td>{'' if e.version is None else f'v{e.version}'}"
        f"</td><td>{_html.escape(e.label)}</td></tr>" for e in events)
    return ("<table><tr><th>time</th><th>kind</th><th>action</th><th>severity</th><th>version</th><th>summary</th>"
            f"</tr>{rows}</table>")


def _headline(data: ReportData) -> str:
    alerts = [e for e in data.events if e.kind in ("alert", "detector") and e.action == "trigger"]
    critical = sum(1 for e in alerts if e.severity == "critical")
    rollbacks = [e for e in data.events if e.kind == "rollback"]
    active = data.active_version()
    parts = [f"{len(alerts)} alert triggers ({critical} critical)", f"{len(rollbacks)} rollback(s)",
             f"active version at the end: {'unknown' if active is None else f'v{active}'}"]
    return " · ".join(parts)


def render_html(data: ReportData) -> str:
    """The whole page as one string."""
    ranked = data.top_drifted()
    top = ranked[0] if ranked else None
    title = f"driftline drift report: {data.model}"
    notes = "".join(f"<p class='note'>{_html.escape(n)}</p>" for n in data.notes)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">",
        f"<title>{_html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_html.escape(title)}</h1>",
        f"<p class='meta'>{_time(data.since_ms)} → {_time(data.until_ms)} · generated {_time(data.generated_ms)}"
        f" · {_headline(data)}</p>{notes}",
        f"<div class='first'>What changed first: <b>{_html.escape(data.first_focus())}</b></div>",
        "<div class='row'>",
        _figure("top-feature", lambda: charts.feature_chart(top) if top else charts.ranking_chart(data),
                "reference (training) vs current window, per reference bin: the shares PSI compares"),
        _figure("ranking", lambda: charts.ranking_chart(data), "dotted: 0.1 (warning), dashed: 0.25 (critical)"),
        "</div>",
        "<h2>Top drifted features</h2>", _ranking_table(ranked),
        "<h2>Timeline</h2>",
        _figure("timeline", lambda: charts.timeline_chart(data),
                "▲ alert trigger (filled by severity), ○ resolve, ◆ detector (ADWIN / DDM), ▼ rollback, ■ ack"),
        "<h2>Predictions</h2>",
        _figure("volume", lambda: charts.volume_chart(data)),
        _figure("scores", lambda: charts.scores_chart(data), "solid: current window, dotted: training scores"),
        "<h2>Every feature: reference vs current</h2><div class='row'>",
        *[_figure(f"feature-{f.name}", lambda f=f: charts.feature_chart(f)) for f in ranked],  # type: ignore[misc]
        "</div>",
        "<h2>Events</h2>", _events_table(data.events),
        "</body></html>",
    ]
    return "\n".join(parts)
