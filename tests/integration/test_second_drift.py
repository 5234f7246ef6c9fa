"""A monitor that keeps watching, against the real embedded broker and real Redis: a concept drift on the served
version raises an alert, the incident resolves once the error rate is back, and a *second* drift on the same
version, later, raises a second alert under the same dedup key (before, the key stayed critical forever).

The live stream is the demo's stable vitals stream; only its labels change, in phases: normal, half of them
flipped (the model's error rate jumps from ~15 % to ~50 %), normal again, flipped again. The monitor runs with
``rollback_mode="alert_only"``, so the same version serves throughout; the alerts and the control commands (one
retrain request per incident) are read from their topics.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace

import pytest

from features.views import VITALS_VIEW
from streams.local.demo import MODEL, DemoConfig, prepare
from streams.local.produce import produce_stream
from streams.local.simulator import SimEvent
from streams.monitor_settings import MonitorSettings
from streams.runtime.clients import make_producer
from streams.runtime.offsets import start_groups_at_end
from streams.runtime.topics import ensure_topics, required_topics
from streams.runtime.workers import build_monitor, build_pipeline
from streams.settings import Settings, TopicSettings
from streams.timeline import Timeline

from .rollback_chain import read_all

pytestmark = pytest.mark.integration

RATE = 400.0
PHASES = ((1_500, False), (1_500, True), (3_000, False), (2_000, True))  # (events, labels half flipped)


def relabel(events: list[SimEvent], seed: int = 3) -> list[SimEvent]:
    rng = random.Random(seed)
    out, i = [], 0
    for n, flip in PHASES:
        for ev in events[i:i + n]:
            label = ev.label
            if flip and label is not None and rng.random() < 0.5:
                label = 1 - label
            out.append(SimEvent(ev.key, ev.value, label, flip))
        i += n
    return out


def test_a_second_drift_after_the_first_incident_resolved_raises_a_second_alert(settings: Settings,
                                                                                  unique: str) -> None:
    s = settings.replace(
        topics=TopicSettings(predictions=f"predictions-{unique}", labels=f"labels-{unique}",
                             alerts=f"alerts-{unique}", control=f"control-{unique}"),
        pipeline=replace(settings.pipeline, features_group=f"features-{unique}", monitor_group=f"monitor-{unique}",
                         max_future_skew_ms=0),  # the demo's stream runs its event time ahead of the clock
        monitor=MonitorSettings(detector_warmup=300, incident_resolve_after=1_500, confirm_within=2_000))
    ensure_topics(s, required_topics(s, [VITALS_VIEW.source_topic]))
    start_groups_at_end(s.kafka, {s.pipeline.features_group: [VITALS_VIEW.source_topic],
                                  s.pipeline.monitor_group: [s.topics.predictions, s.topics.labels]})
    total = sum(n for n, _ in PHASES)
    timeline = Timeline(echo=lambda _line: None)
    # 300 patients: the PSI window must see many entities (see test_end_to_end)
    prepared = prepare(s, DemoConfig(entities=300, rate=RATE, duration_s=total / RATE, scenario="stable",
                                     train_duration_s=60.0, drift_at_s=0.0), timeline)
    assert len(prepared.live) >= total
    monitor, mon_handler = build_monitor(s, timeline=timeline, rollback_mode="alert_only")
    pipeline, pipe_handler = build_pipeline(s, VITALS_VIEW, MODEL, timeline=timeline)
    served: set[int] = set()
    pipe_handler.on_predictions = lambda preds: served.update(p.model_version for p in preds)
    workers = [monitor.start(), pipeline.start()]
    stop = threading.Event()
    try:
        producer = make_producer(s.kafka)
        stats = produce_stream(producer, VITALS_VIEW.source_topic, relabel(prepared.live[:total]), rate=RATE,
                               entity_field=VITALS_VIEW.entity_key, labels_topic=s.topics.labels,
                               label_delay_s=1.0, stop=stop)
        deadline = time.time() + 30
        while time.time() < deadline and (pipe_handler.stats.consumed < stats.events
                                          or mon_handler.join.stats.matched < 0.98 * stats.labels):
            time.sleep(0.2)
        time.sleep(2.0)  # the monitor's last batches
        assert all(w.error is None for w in workers), [w.error for w in workers]
    finally:
        stop.set()
        for w in workers:
            w.stop()

    alerts = read_all(s.kafka.bootstrap_servers, s.topics.alerts, 1)
    concept = [a for a in alerts if a["kind"] == "concept_drift" and a["model_version"] == prepared.v2]
    story = [(a["action"], a["severity"], (a["details"].get("incident") or {}).get("change")) for a in concept]
    opened = [a for a in concept if a["action"] == "trigger" and a["details"]["incident"]["change"] == "opened"]
    assert len(opened) == 2, story
    assert len({a["dedup_key"] for a in concept}) == 1, story
    resolves = [a for a in concept if a["action"] == "resolve"]
    assert resolves and opened[0]["ts"] < resolves[0]["ts"] < opened[1]["ts"], story
    # each incident opened during a phase of flipped labels: outcomes counted when it opened
    starts = [sum(n for n, _ in PHASES[:k]) for k in range(len(PHASES))]
    first_at, second_at = (a["details"]["incident"]["opened_at_event"] for a in opened)
    assert starts[1] < first_at < starts[2] and starts[3] < second_at, (first_at, second_at, story)
    assert not [a for a in alerts if a["kind"] in ("data_drift", "prediction_drift")], "the inputs never moved"
    commands = [c["command"] for c in read_all(s.kafka.bootstrap_servers, s.topics.control, 1)
                if c.get("type") == "command"]
    assert commands == ["retrain_requested"] * 2  # one per incident (alert_only: no rollback)
    assert served == {prepared.v2}
