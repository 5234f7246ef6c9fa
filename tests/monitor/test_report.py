"""The drift report without a browser: data model, assembly from history records, the page's self-containment."""

from __future__ import annotations

import functools
import json
import math
import re

from hypothesis import given
from hypothesis import strategies as st

from monitor.reference import Histogram
from monitor.report.assemble import assemble, version_steps
from monitor.report.model import Distribution, FeatureDrift, ReportData
from monitor.report.page import expected_charts, render_html
from monitor.report.sample import SHIFT, sample_report


@functools.cache
def sample() -> ReportData:
    return sample_report(duration_s=40, rate=200)


def test_sample_run_shows_the_drift_the_rollback_and_v1() -> None:
    assert sample().top_drifted(1)[0].name in SHIFT
    assert [v for _, v in sample().versions] == [2, 1]
    kinds = {e.kind for e in sample().events}
    assert {"alert", "rollback", "ack"} <= kinds
    assert {p.version for p in sample().volume} == {1, 2}
    assert set(sample().scores) == {1, 2}


def test_report_data_round_trips_through_json() -> None:
    assert ReportData.from_dict(json.loads(json.dumps(sample().to_dict(), allow_nan=False))) == sample()


psi_values = st.one_of(st.none(), st.just(math.nan), st.floats(0, 10, allow_nan=False))


@given(st.lists(psi_values, min_size=1, max_size=12))
def test_top_drifted_ranks_by_psi_and_puts_unknown_last(values: list[float | None]) -> None:
    d = Distribution((), (1.0,))
    data = ReportData("m", 0, 1, 1, features=tuple(FeatureDrift(f"f{i}", d, d, v) for i, v in enumerate(values)))
    ranked = [f.psi for f in data.top_drifted()]
    known = [v for v in ranked if v is not None and math.isfinite(v)]
    assert known == sorted(known, reverse=True)
    assert ranked[:len(known)] == known  # every unknown PSI after every known one


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 2), st.integers(0, 500)), max_size=40),
       st.integers(0, 5000), st.integers(5000, 10_000))
def test_volume_is_the_new_predictions_of_the_snapshots_in_range(snaps: list, since: int, until: int) -> None:
    records = [{"ts": ts, "version": v, "new": n, "psi": {}, "hist": {}} for ts, v, n in snaps]
    data = assemble("m", records, [], {}, since_ms=since, until_ms=until, now_ms=until)
    assert sum(p.count for p in data.volume) == sum(n for ts, _, n in snaps if since <= ts <= until)
    assert all(since <= p.ts_ms <= until for p in data.volume)


@given(st.lists(st.tuples(st.integers(0, 100), st.one_of(st.none(), st.integers(1, 3))), max_size=20),
       st.integers(0, 100))
def test_version_steps_change_every_step_and_start_in_range(changes: list, since: int) -> None:
    steps = version_steps(changes, since)
    assert all(a[1] != b[1] and a[0] < b[0] for a, b in zip(steps, steps[1:], strict=False))
    assert all(ts >= since for ts, _ in steps)
    known = sorted(((t, v) for t, v in changes if v is not None), key=lambda c: max(c[0], since))
    assert (steps[-1][1] if steps else None) == (known[-1][1] if known else None)


def test_current_distribution_uses_the_reference_bins_of_its_version() -> None:
    refs = {1: ({"x": Histogram((0.0, 1.0), (0.2, 0.5, 0.3))}, None)}
    snaps = [{"ts": 10, "version": 1, "new": 5, "psi": {"x": 0.3}, "hist": {"x": [1, 1, 8]}, "ks": {"x": 0.4}}]
    (f,) = assemble("m", snaps, [], refs, since_ms=0, until_ms=20, now_ms=20).features
    assert f.reference.edges == f.current.edges == (0.0, 1.0)
    assert f.current.proportions == (0.1, 0.1, 0.8) and f.current.n == 10 and f.ks == 0.4 and f.version == 1


def test_an_empty_range_says_why() -> None:
    data = assemble("m", [], [], {}, since_ms=0, until_ms=1, now_ms=1)
    assert data.notes and "monitor" in data.notes[0]
    assert "<figure" in render_html(data)  # still a page, with empty charts saying so


def test_page_is_self_contained_and_complete() -> None:
    page = render_html(sample())
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)  # nothing to fetch
    assert "url(http" not in page and "@import" not in page
    assert "Content-Security-Policy" in page
    for chart in expected_charts(sample()):
        assert page.count(f'data-chart="{chart}"') == 1, chart
    assert render_html(sample()) == page  # same data, same bytes


def test_page_leads_with_what_changed_first() -> None:
    page = render_html(sample())
    first = page.index('data-chart="top-feature"')
    assert first < page.index('data-chart="timeline"')
    top = sample().top_drifted(1)[0].name
    assert f"What changed first: <b>{top}" in page
