"""The whole loop against the real embedded broker and real Redis: drift → alert → signed rollback → ack → v1.

Asserts the causal chain, reading the real topics afterwards: no alert before the drift onset; the rollback
command on ``control`` verifies with the control key and was acked ``applied`` by the scorer; every prediction
scored after the ack carries v1.
"""

from __future__ import annotations

import time

import pytest

from streams.local.demo import DemoConfig, run_demo
from streams.settings import Settings

from .rollback_chain import assert_rollback_chain

pytestmark = pytest.mark.integration


def test_drift_alert_rollback_ack_and_v1_afterwards(settings: Settings) -> None:
    started_ms = int(time.time() * 1000)
    # 300 patients: the PSI window must see many entities, or the per-patient autocorrelation of the vitals
    # alone gives PSI ~ (bins - 1) / patients and false alarms before the onset.
    summary = run_demo(settings, DemoConfig(entities=300, rate=400.0, duration_s=30.0, drift_at_s=10.0,
                                            train_duration_s=60.0), echo=lambda _l: None)
    assert summary["worker_errors"] == []
    assert summary["alerts_before_onset"] == 0, summary
    assert summary["detection_delay_s"] is not None and summary["detection_delay_s"] > 0, summary
    assert summary["ok"], summary
    assert_rollback_chain(settings, summary, started_ms)
