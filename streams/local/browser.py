"""Open a report in a real headless Chromium: a screenshot, and a check that every chart was drawn.

Two Chromium runs per check (Debian's ``chromium``; ``DRIFTLINE_CHROMIUM`` names another binary):

1. ``--dump-dom`` on a copy of the page with a small probe script added (the report itself has none and
   forbids scripts in its Content-Security-Policy; only the copy is relaxed). The probe reports, per
   ``figure[data-chart]``, its box on the page and how many SVG shapes the browser laid out with a
   non-empty bounding box, and the page's height.
2. ``--screenshot`` of the page itself at that height; per chart box, the share of pixels that are not
   background (Pillow).

A chart passes when it is present, lays out at least ``min_marks`` data marks (the charts tag bars, lines,
markers and spans with SVG ids ``mark-*``; axes and labels do not count) and at least ``min_ink`` of its box
is drawn. Chromium runs with every background-network feature off and a fresh profile; host names
resolve to nothing, so a page that needed the network would show it.

Example (needs chromium, so not a doctest; ``tests/monitor/test_report_browser.py`` runs it)::

    check_report(Path("report.html"), ["timeline"], Path("shot.png"))
    # -> BrowserCheck(charts={'timeline': ChartCheck(...)}, ...)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streams.exceptions import DriftlineError

__all__ = ["BrowserCheck", "ChartCheck", "ReportRenderError", "check_report", "find_chromium", "probe", "screenshot"]

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--force-device-scale-factor=1", "--host-resolver-rules=MAP * ~NOTFOUND", "--disable-extensions")
WIDTH = 1100

_PROBE = """<script>
(function () {
  var shapes = 'path,rect,line,polyline,polygon,circle,ellipse,text,use';
  var out = {height: document.documentElement.scrollHeight, width: document.documentElement.scrollWidth, charts: []};
  document.querySelectorAll('figure[data-chart]').forEach(function (f) {
    var r = f.getBoundingClientRect(), svg = f.querySelector('svg'), drawn = 0, marks = 0;
    if (svg) svg.querySelectorAll(shapes).forEach(function (e) {
      var b = null;
      try { b = e.getBBox(); } catch (err) {}
      if (b && (b.width > 0 || b.height > 0)) {
        drawn++;
        if (e.closest('[id^="mark-"]')) marks++;
      }
    });
    var s = svg ? svg.getBoundingClientRect() : r;
    out.charts.push({id: f.getAttribute('data-chart'), x: s.left + window.scrollX, y: s.top + window.scrollY,
                     w: s.width, h: s.height, drawn: drawn, marks: marks});
  });
  var pre = document.createElement('pre'); pre.id = 'driftline-probe';
  pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
})();
</script>"""


class ReportRenderError(DriftlineError):
    """A chart is missing or blank in the browser, or the browser could not open the page."""


@dataclass(frozen=True)
class ChartCheck:
    id: str
    drawn: int        # SVG shapes laid out with a non-empty box (axes, labels and data)
    marks: int        # of those, data marks (bars, lines, markers, spans: ids ``mark-*``)
    ink: float        # share of the chart's box that is not background, in the screenshot
    box: tuple[int, int, int, int]  # x, y, width, height in CSS pixels


@dataclass
class BrowserCheck:
    charts: dict[str, ChartCheck]
    page_height: int
    screenshot: Path
    problems: list[str] = field(default_factory=list)


def find_chromium() -> str | None:
    """``DRIFTLINE_CHROMIUM``, else ``chromium`` / ``chromium-browser`` / ``google-chrome`` on PATH."""
    env = os.environ.get("DRIFTLINE_CHROMIUM")
    if env:
        return env
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _run(args: Sequence[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    binary = find_chromium()
    if binary is None:
        raise ReportRenderError("no chromium found: `apt-get install chromium`, or set DRIFTLINE_CHROMIUM")
    with tempfile.TemporaryDirectory(prefix="driftline-chromium-") as profile:
        try:
            return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                                  text=True, timeout=timeout_s, check=False, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise ReportRenderError(f"chromium did not finish within {timeout_s:g} s") from exc


def probe(html_path: Path, *, width: int = WIDTH, timeout_s: float = 90.0) -> dict:
    """What the browser laid out: ``{"height", "width", "charts": [{"id", "x", "y", "w", "h", "drawn"}]}``."""
    page = Path(html_path).read_text(encoding="utf-8")
    page = re.sub(r"<meta http-equiv=.Content-Security-Policy[^>]*>", "", page, count=1)
    page = page.replace("</body>", _PROBE + "</body>") if "</body>" in page else page + _PROBE
    with tempfile.TemporaryDirectory(prefix="driftline-probe-") as tmp:
        copy = Path(tmp) / "probe.html"
        copy.write_text(page, encoding="utf-8")
        done = _run([f"--window-size={width},1000", "--virtual-time-budget=5000", "--dump-dom",
                     copy.as_uri()], timeout_s)
    found = re.search(r'<pre id="driftline-probe">(.*?)</pre>', done.stdout, re.S)
    if found is None:
        raise ReportRenderError(f"the probe did not run (chromium exit {done.returncode}): "
                                f"{done.stderr.strip().splitlines()[-1:]}")
    import html as _html
    return json.loads(_html.unescape(found.group(1)))


def screenshot(html_path: Path, png_path: Path, *, width: int = WIDTH, height: int | None = None,
               timeout_s: float = 90.0) -> Path:
    """A PNG of the whole page (its height from :func:`probe` unless given)."""
    height = height or int(probe(html_path, width=width)["height"]) + 16
    png_path = Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    png_path.unlink(missing_ok=True)
    done = _run([f"--window-size={width},{height}", "--virtual-time-budget=5000", f"--screenshot={png_path}",
                 Path(html_path).resolve().as_uri()], timeout_s)
    if not png_path.exists():
        raise ReportRenderError(f"chromium wrote no screenshot (exit {done.returncode}): "
                                f"{done.stderr.strip().splitlines()[-1:]}")
    return png_path


def _ink(png: Path, boxes: dict[str, tuple[int, int, int, int]]) -> dict[str, float]:
    from PIL import Image

    with Image.open(png) as img:
        gray = img.convert("L")
        out = {}
        for chart_id, (x, y, w, h) in boxes.items():
            crop = gray.crop((x, y, min(x + w, gray.width), min(y + h, gray.height)))
            hist = crop.histogram()
            total = sum(hist)
            out[chart_id] = 0.0 if total == 0 else sum(hist[:236]) / total  # darker than near-white
    return out


def check_report(html_path: Path, expected: Sequence[str], png_path: Path, *, min_marks: int = 1,
                 min_ink: float = 0.01, width: int = WIDTH) -> BrowserCheck:
    """Open the report, screenshot it to ``png_path`` and check that every ``expected`` chart was drawn.

    Raises :class:`ReportRenderError` naming each missing, empty or blank chart.
    """
    laid = probe(html_path, width=width)
    png = screenshot(html_path, png_path, width=width, height=int(laid["height"]) + 16)
    boxes = {c["id"]: (int(c["x"]), int(c["y"]), int(c["w"]), int(c["h"])) for c in laid["charts"]}
    ink = _ink(png, boxes)
    checks = {c["id"]: ChartCheck(c["id"], int(c["drawn"]), int(c["marks"]), round(ink[c["id"]], 4), boxes[c["id"]])
              for c in laid["charts"]}
    problems = [f"{cid}: missing" for cid in expected if cid not in checks]
    for cid in expected:
        c = checks.get(cid)
        if c is None:
            continue
        if c.marks < min_marks:
            problems.append(f"{cid}: {c.marks} data marks laid out (< {min_marks}; {c.drawn} shapes in all)")
        if c.ink < min_ink:
            problems.append(f"{cid}: {c.ink:.1%} of its box drawn (< {min_ink:.0%})")
    result = BrowserCheck(checks, int(laid["height"]), png, problems)
    if problems:
        raise ReportRenderError(f"{len(problems)} chart problem(s) in {html_path}: " + "; ".join(problems))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.local.browser [--sample] [HTML] PNG``: check a report (or the seeded sample run's,
    with ``--sample``) in chromium and keep its screenshot; ``make report-screenshot`` uses it for the README."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m streams.local.browser", description=main.__doc__)
    p.add_argument("--sample", action="store_true", help="render the seeded demo-like sample run (default: off)")
    p.add_argument("paths", nargs="+", help="[HTML] PNG")
    args = p.parse_args(argv)
    from monitor.report.page import expected_charts, render_html

    with tempfile.TemporaryDirectory(prefix="driftline-report-") as tmp:
        if args.sample:
            from monitor.report.sample import sample_report

            data = sample_report()
            html_path = Path(tmp) / "report.html"
            html_path.write_text(render_html(data), encoding="utf-8")
            expected = expected_charts(data)
        else:
            html_path, expected = Path(args.paths[0]), []
        result = check_report(html_path, expected, Path(args.paths[-1]))
    print(json.dumps({"screenshot": str(result.screenshot), "height": result.page_height,
                      "charts": {c.id: {"marks": c.marks, "ink": c.ink} for c in result.charts.values()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
