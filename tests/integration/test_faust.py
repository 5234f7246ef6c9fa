"""The end-to-end scenario of ``test_end_to_end.py`` with the Faust engine: drift → alert → signed rollback → ack
→ later predictions on v1, on the embedded broker and real Redis.

``run_demo`` builds its workers with ``build_pipeline`` / ``build_monitor``; here they are wrapped by
``streams.runtime.faust_app.to_faust``, so the same handlers run from Faust agents (same groups, topics, Redis state).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from streams.local import demo
from streams.settings import Settings

from .rollback_chain import assert_rollback_chain

pytestmark = pytest.mark.integration
faust = pytest.importorskip("faust", reason="faust-streaming is not installed (pip install -e '.[faust]')")
pytest.importorskip("cramjam", reason="aiokafka cannot read lz4 batches without cramjam (pip install 'aiokafka[lz4]')")


def test_faust_engine_drift_alert_rollback_ack_and_v1_afterwards(settings: Settings,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.runtime.faust_app import FaustWorker, to_faust
    from streams.runtime.workers import build_monitor, build_pipeline

    started: list[FaustWorker] = []

    def faust_pipeline(s: Settings, *args: Any, **kwargs: Any) -> tuple[FaustWorker, Any]:
        worker, handler = build_pipeline(s, *args, **kwargs)
        fw = to_faust(worker, s.pipeline.features_group, s)
        started.append(fw)
        return fw, handler

    def faust_monitor(s: Settings, *args: Any, **kwargs: Any) -> tuple[FaustWorker, Any]:
        worker, handler = build_monitor(s, *args, **kwargs)
        fw = to_faust(worker, s.pipeline.monitor_group, s)
        started.append(fw)
        return fw, handler

    monkeypatch.setattr(demo, "build_pipeline", faust_pipeline)
    monkeypatch.setattr(demo, "build_monitor", faust_monitor)
    threads_before = set(threading.enumerate())
    started_ms = int(time.time() * 1000)
    # Faust's group join takes ~3 s on tansu (session timeout 6 s): the settle timeout covers it.
    summary = demo.run_demo(settings, demo.DemoConfig(entities=300, rate=400.0, duration_s=30.0, drift_at_s=10.0,
                                                      train_duration_s=60.0, settle_timeout_s=30.0),
                            echo=lambda _l: None)
    assert len(started) == 2 and all(w.ready.is_set() for w in started)
    assert not any(w.alive for w in started), "a faust worker thread outlived run_demo"
    assert not [t for t in threading.enumerate() if t not in threads_before and t.name.startswith("faust-")]
    assert summary["worker_errors"] == []
    assert summary["alerts_before_onset"] == 0, summary
    assert summary["detection_delay_s"] is not None and summary["detection_delay_s"] > 0, summary
    assert summary["ok"], summary
    assert summary["events_consumed"] >= summary["events_produced"], summary
    assert_rollback_chain(settings, summary, started_ms)
