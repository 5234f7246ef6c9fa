"""The alert delivery stage on the real broker, against a PagerDuty Events v2 stand-in over real HTTP.

The stand-in validates every request by the published rules and answers 500 or 429 (with Retry-After) for
longer than the old sink's whole retry budget (8-15 s), then recovers. Every alert must arrive exactly once
per dedup key and action, in order per key, and a failing incident must not hold the others back. Retry delays
are capped at a few seconds here (``retry_max_s``) so the test stays short; the default cap is 300 s.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from models.registry import Registry
from models.train import build_estimator
from monitor.alerts import Alert
from monitor.sinks import PagerDutySink
from streams import codec
from streams.runtime.alert_worker import build_alerts
from streams.runtime.topics import TopicSpec, ensure_topics
from streams.runtime.workers import build_pipeline
from streams.settings import AlertSettings, Settings, TopicSettings
from tests.receivers import PagerDutyStandIn

from .rollback_chain import read_records
from .test_scale_out import MODEL, env, produce_all  # noqa: F401 - env is the pipeline fixture

pytestmark = pytest.mark.integration
ROUTING_KEY = "R0UT1NGKEYs3cr3t0123456789abcdef"
OLD_BUDGET_S = 15.0  # the old sink gave up after about 8-15 s of retries


@pytest.fixture()
def pd(monkeypatch: pytest.MonkeyPatch) -> Iterator[PagerDutyStandIn]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = PagerDutyStandIn(reject_keys={"m/1/performance/rejected/all"})
    yield server
    server.stop()


@pytest.fixture()
def alert_settings(settings: Settings, unique: str) -> Settings:
    topics = TopicSettings(alerts=f"alerts-{unique}")
    s = settings.replace(topics=topics, alerts=AlertSettings(group=f"alerts-{unique}", retry_base_s=0.2,
                                                             retry_max_s=3.0, retry_after_max_s=10.0,
                                                             log_sink=False, http_timeout_s=5.0))
    ensure_topics(s, [TopicSpec(topics.alerts, 1), TopicSpec(topics.dlq(topics.alerts), 1)])
    return s


def alert(key: str, action: str, ts: int, severity: str = "critical", **over: object) -> Alert:
    a = Alert.build(action=action, severity=severity, kind="performance", model="m", model_version=1, feature=key,
                    detector="test", statistic="x", value=1.0, threshold=0.5, window="w", ts=ts,
                    summary=f"{action} {key}")
    return Alert(**{**a.to_dict(), **over}) if over else a


def produce(settings: Settings, alerts: list[Alert], raw: list[bytes] = ()) -> None:  # type: ignore[assignment]
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for a in alerts:
        producer.produce(settings.topics.alerts, codec.encode(a.to_dict()), a.dedup_key)
    for value in raw:
        producer.produce(settings.topics.alerts, value, b"junk")
    assert producer.flush(10) == 0


def committed(settings: Settings) -> int:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": settings.alerts.group,
                         "enable.auto.commit": False})
    try:
        (tp,) = consumer.committed([TopicPartition(settings.topics.alerts, 0)], timeout=10)
        return tp.offset
    finally:
        consumer.close()


def incidents(n: int, now: int) -> list[Alert]:
    """``n`` incidents, each a trigger and later its resolve, interleaved: t0 t1 .. r0 t(n/2) r1 ..."""
    out: list[Alert] = []
    for i in range(n):
        out.append(alert(f"f{i}", "trigger", now + i))
        if i >= n // 2:
            out.append(alert(f"f{i - n // 2}", "resolve", now + i))
    out += [alert(f"f{i}", "resolve", now + n + i) for i in range(n - n // 2, n)]
    return out


def assert_exactly_once_in_order(pd: PagerDutyStandIn, sent: list[Alert]) -> None:
    accepted = pd.accepted()
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for r in accepted:
        counts[r.key] += 1
    assert counts == {(a.dedup_key, a.action): 1 for a in sent}, counts
    order: dict[str, list[str]] = defaultdict(list)
    for r in accepted:
        order[r.key[0]].append(r.key[1])
    assert all(actions == ["trigger", "resolve"] for actions in order.values()), order
    assert pd.invalid() == []  # every request was a valid Events API v2 body


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (429, "2")])
def test_outage_longer_than_the_old_retry_budget_loses_nothing(pd: PagerDutyStandIn, alert_settings: Settings,
                                                                status: int, retry_after: str | None) -> None:
    sent = incidents(6, int(time.time() * 1000))
    outage_s = OLD_BUDGET_S + 5
    pd.fail(status, outage_s, retry_after=retry_after)
    worker, loop = build_alerts(alert_settings, sinks=[PagerDutySink(ROUTING_KEY, url=pd.url, timeout_s=5)])
    worker.start()
    try:
        produce(alert_settings, sent)
        time.sleep(3)
        assert pd.accepted() == [] and pd.requests  # down: tried, nothing accepted
        assert committed(alert_settings) < 0  # nothing committed while nothing was accepted
        assert worker.health()["sinks"]["pagerduty"]["waiting"] == len(sent)
        assert pd.wait_for(lambda acc: len(acc) >= len(sent), outage_s + 60), worker.health()
        deadline = time.time() + 20
        while committed(alert_settings) < len(sent) and time.time() < deadline:
            time.sleep(0.3)
        assert committed(alert_settings) == len(sent)
        assert worker.alive and worker.error is None
    finally:
        worker.stop()
    assert_exactly_once_in_order(pd, sent)
    failed = [r for r in pd.requests if r.status == status]
    assert failed and max(r.at for r in failed) - min(r.at for r in failed) > OLD_BUDGET_S  # kept trying past it
    if retry_after is not None:  # Retry-After is honoured per incident, and for the whole sink after a 429
        wait = float(retry_after) - 0.05
        by_key: dict[tuple[str, str], list[float]] = defaultdict(list)
        for r in pd.requests:
            by_key[r.key].append(r.at)
        assert all(b - a >= wait for times in by_key.values() for a, b in zip(times, times[1:], strict=False))
        throttled = [r.at for r in pd.requests if r.status == 429]
        for t in throttled:  # requests already in flight when the 429 came are answered within ms
            assert not [r for r in pd.requests if t + 0.5 < r.at < t + wait]


def test_one_failing_incident_holds_back_no_other(pd: PagerDutyStandIn, alert_settings: Settings) -> None:
    now = int(time.time() * 1000)
    stuck = [alert("stuck", "trigger", now), alert("stuck", "resolve", now + 1)]
    others = incidents(8, now + 2)
    pd.fail(500, 20.0, keys="/stuck/")
    worker, _ = build_alerts(alert_settings, sinks=[PagerDutySink(ROUTING_KEY, url=pd.url, timeout_s=5)])
    worker.start()
    try:
        produce(alert_settings, stuck + others)  # the failing incident comes first in the topic
        assert pd.wait_for(lambda acc: len(acc) >= len(others), 30)
        assert not any(r.key[0].endswith("/stuck/all") for r in pd.accepted())  # still failing meanwhile
        assert committed(alert_settings) <= 0  # the stuck trigger at offset 0 holds the commit
        assert pd.wait_for(lambda acc: len(acc) >= len(stuck + others), 60)
        deadline = time.time() + 20
        while committed(alert_settings) < len(stuck + others) and time.time() < deadline:
            time.sleep(0.3)
        assert committed(alert_settings) == len(stuck + others)
    finally:
        worker.stop()
    assert_exactly_once_in_order(pd, stuck + others)


def test_restart_during_an_outage_loses_nothing(pd: PagerDutyStandIn, alert_settings: Settings) -> None:
    sent = incidents(4, int(time.time() * 1000))
    pd.fail(503, 3600)
    sink = PagerDutySink(ROUTING_KEY, url=pd.url, timeout_s=5)
    first, _ = build_alerts(alert_settings, sinks=[sink])
    first.start()
    try:
        produce(alert_settings, sent)
        deadline = time.time() + 30
        while len(pd.requests) < 8 and time.time() < deadline:
            time.sleep(0.2)
        assert len(pd.requests) >= 8  # retried repeatedly, never accepted
    finally:
        first.stop()
    assert not first.alive and committed(alert_settings) < 0
    pd.outages.clear()  # the receiver is back; a new process takes over
    second, _ = build_alerts(alert_settings, sinks=[sink])
    second.start()
    try:
        assert pd.wait_for(lambda acc: len(acc) >= len(sent), 60)
    finally:
        second.stop()
    assert_exactly_once_in_order(pd, sent)


def test_invalid_alerts_are_dead_lettered_never_looped(pd: PagerDutyStandIn, alert_settings: Settings) -> None:
    now = int(time.time() * 1000)
    good = incidents(2, now)
    bad_for_pd = alert("fatal", "trigger", now, severity="fatal")  # no PagerDuty severity: never sent
    refused = alert("rejected", "trigger", now)  # the receiver answers 400
    worker, _ = build_alerts(alert_settings, sinks=[PagerDutySink(ROUTING_KEY, url=pd.url, timeout_s=5)])
    worker.start()
    try:
        produce(alert_settings, [bad_for_pd, refused, *good], raw=[b"{not json", b"[1, 2]"])
        total = len(good) + 4
        deadline = time.time() + 30
        while committed(alert_settings) < total and time.time() < deadline:
            time.sleep(0.3)
        assert committed(alert_settings) == total
        health = worker.health()
    finally:
        worker.stop()
    assert_exactly_once_in_order(pd, good)
    assert [r.status for r in pd.requests if r.key[0].endswith("/rejected/all")] == [400]  # once, not looped
    dlq = read_records(alert_settings.kafka.bootstrap_servers, alert_settings.topics.dlq(alert_settings.topics.alerts),
                       1)
    reasons = sorted((dict(m.headers())["error"].decode(), dict(m.headers()).get("sink", b"").decode()) for m in dlq)
    assert reasons == [("malformed_alert", ""), ("malformed_alert", ""), ("rejected_by_receiver", "pagerduty"),
                       ("rejected_by_receiver", "pagerduty")]
    assert all(dict(m.headers())["source_topic"].decode() == alert_settings.topics.alerts for m in dlq)
    assert health["healthy"] and health["sinks"]["pagerduty"]["rejected"] == 2


def test_a_pipeline_stage_alert_reaches_pagerduty(pd: PagerDutyStandIn, env) -> None:  # noqa: ANN001, F811
    """schema_drift raised by the scorer inside the pipeline process: pipeline → alerts topic → delivery stage
    → PagerDuty, on the real broker."""
    settings, view, sim = env
    registry = Registry(settings.registry_dir)
    names = (*view.feature_names, "not_in_the_view")  # a version whose schema the view does not produce
    X = np.random.default_rng(0).normal(size=(200, len(names)))
    drifting = registry.register(MODEL, build_estimator("logistic").fit(X, (X[:, 0] > 0).astype(int)),
                                 feature_names=names)
    registry.promote(MODEL, drifting.version)
    s = settings.replace(alerts=AlertSettings(group=f"alerts-{settings.pipeline.features_group}", log_sink=False,
                                              retry_base_s=0.2, retry_max_s=3.0))
    delivery, _ = build_alerts(s, sinks=[PagerDutySink(ROUTING_KEY, url=pd.url, source="test", timeout_s=5)])
    pipeline, _ = build_pipeline(s, view, MODEL, instance="schema")
    delivery.start()
    pipeline.start()
    try:
        produce_all(s, view.source_topic, sim[:300])
        assert pd.wait_for(lambda acc: any(r.body["payload"]["class"] == "schema_drift" for r in acc), 60), \
            (delivery.health(), pipeline.health())
    finally:
        pipeline.stop()
        delivery.stop()
    (event,) = [r.body for r in pd.accepted() if r.body["payload"]["class"] == "schema_drift"]
    assert event["event_action"] == "trigger" and event["payload"]["severity"] == "warning"
    assert event["dedup_key"] == f"{MODEL}/{drifting.version}/schema_drift/scorer/all"
    assert "not_in_the_view" in event["payload"]["summary"] and event["payload"]["source"] == "test"
    assert pd.invalid() == []


def test_a_full_backlog_pauses_the_partition_and_loses_nothing(pd: PagerDutyStandIn, alert_settings: Settings) -> None:
    """With room for 4 alerts in memory, 24 alerts during an outage: the partition is paused (and sought back),
    the backlog never exceeds the bound, and after recovery every alert arrives once, in order per incident."""
    s = alert_settings.replace(alerts=dataclasses.replace(alert_settings.alerts, max_pending=4))
    sent = incidents(12, int(time.time() * 1000))
    pd.fail(503, 8.0)
    worker, loop = build_alerts(s, sinks=[PagerDutySink(ROUTING_KEY, url=pd.url, timeout_s=5)])
    worker.start()
    peak = 0
    try:
        produce(s, sent)
        deadline = time.time() + 90
        while len(pd.accepted()) < len(sent) and time.time() < deadline:
            peak = max(peak, loop.scheduler.pending())
            time.sleep(0.05)
        taken = loop.health.records
    finally:
        worker.stop()
    assert peak <= 4 and loop.pauses >= 1
    assert taken == len(sent)  # a record fetched while paused was sought back: taken once, never lost
    assert_exactly_once_in_order(pd, sent)
