"""The drift report in a real browser (Debian's headless chromium): every chart is drawn, and the check fails
when one is missing or blank. The screenshot is kept at ``artifacts/report-browser.png`` (CI artifact;
``DRIFTLINE_ARTIFACTS`` moves the folder)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from monitor.report.page import expected_charts, render_html
from monitor.report.sample import sample_report
from streams.local.browser import ReportRenderError, check_report, find_chromium

ARTIFACTS = Path(os.environ.get("DRIFTLINE_ARTIFACTS", Path(__file__).resolve().parents[2] / "artifacts"))

if find_chromium() is None:
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing in CI: .ci/run must apt-get install chromium")
    pytest.skip("no chromium (apt-get install chromium); CI installs it", allow_module_level=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    data = sample_report(duration_s=45, rate=300)
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_html(data), encoding="utf-8")
    return path, expected_charts(data)


def test_every_chart_of_a_demo_like_run_is_drawn(report: tuple[Path, list[str]], tmp_path: Path) -> None:
    path, expected = report
    result = check_report(path, expected, tmp_path / "report.png")
    assert sorted(result.charts) == sorted(expected)
    for chart in result.charts.values():
        assert chart.marks >= 1 and chart.ink >= 0.01, chart
    assert result.charts["timeline"].marks >= 10  # PSI lines, alerts, the rollback, the version spans
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(result.screenshot, ARTIFACTS / "report-browser.png")


def test_the_check_fails_when_a_chart_is_missing_or_blank(report: tuple[Path, list[str]], tmp_path: Path) -> None:
    """Counter-test: the same page with the score chart removed and the timeline's SVG emptied."""
    path, expected = report
    page = path.read_text(encoding="utf-8")
    page, removed = re.subn(r'<figure class="chart" data-chart="scores">.*?</figure>', "", page, flags=re.S)
    page, blanked = re.subn(r'(<figure class="chart" data-chart="timeline">)<svg.*?</svg>',
                            r'\1<svg xmlns="http://www.w3.org/2000/svg" width="900" height="480"></svg>', page,
                            flags=re.S)
    assert removed == 1 and blanked == 1
    broken = tmp_path / "broken.html"
    broken.write_text(page, encoding="utf-8")
    with pytest.raises(ReportRenderError) as err:
        check_report(broken, expected, tmp_path / "broken.png")
    message = str(err.value)
    assert "scores: missing" in message
    assert "timeline: 0 data marks" in message and "timeline: 0.0% of its box drawn" in message
    assert "volume" not in message  # the intact charts pass
