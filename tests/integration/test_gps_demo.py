"""`driftline demo --source gps`: the GPS delay-risk model closes the same loop as vitals, against the real
broker and Redis: speeds drift → critical alert → signed rollback → ack → later predictions on v1."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streams.local.demo import SOURCES, DemoConfig, run_demo
from streams.settings import Settings

from .rollback_chain import assert_rollback_chain

pytestmark = pytest.mark.integration


def test_gps_drift_alert_rollback_ack_and_v1_afterwards(settings: Settings) -> None:
    started_ms = int(time.time() * 1000)
    summary = run_demo(settings, DemoConfig(source="gps", seed=SOURCES["gps"].seed, rate=400.0, duration_s=30.0,
                                            drift_at_s=10.0), echo=lambda _l: None)
    assert summary["worker_errors"] == [] and summary["model"] == "gps-delay-risk"
    assert summary["critical_before_onset"] == 0, summary
    assert summary["detection_delay_s"] is not None and summary["detection_delay_s"] > 0, summary
    assert summary["ok"], summary
    assert summary["versions"]["served_after_swap"] == summary["versions"]["v1"]
    assert_rollback_chain(settings, summary, started_ms)
    # the run's drift report: the rollback on its timeline, the alert naming what the report shows first
    page = Path(summary["report"]).read_text(encoding="utf-8")
    versions = summary["versions"]
    assert f"rollback v{versions['v2']} → v{versions['v1']}" in page and 'data-chart="timeline"' in page
    assert "| report first: " in summary["first_alert"]
