"""Alert delivery: what the durable path (alerts topic → delivery stage → receiver) costs, and how it behaves
in an outage.

Run ``python -m bench.alert_delivery_bench [--tiny]``. Against a PagerDuty Events v2 stand-in on 127.0.0.1
(``tests/receivers.py``, validating every body), on one embedded stack, rows:

- ``direct POST`` (baseline in the same run): the sink's ``deliver`` called in a loop, one request at a time;
- ``delivery stage``: the same alerts produced to the alerts topic and delivered by the stage (4 requests in
  flight): produce → accepted latency per alert and alerts/s from the first produce to the last acceptance;
- ``outage 500``: the receiver answers 500 for ``outage_s`` (longer than the old sink's whole 8-15 s retry
  budget) with the default backoff (1 s doubling to 300 s, jitter 0.5-1): seconds from recovery until every
  alert is accepted, and whether each arrived exactly once, in order per incident;
- ``one stuck incident``: one incident answers 500 for ``outage_s``, the others are fine: their latency.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass

from bench.common import Table, bench_settings, percentiles, ratio, run_id, run_on_fresh_stack
from monitor.alerts import Alert
from monitor.sinks import PagerDutySink
from streams import codec
from streams.local.stack import StackInfo
from streams.runtime.alert_worker import build_alerts
from streams.runtime.clients import make_producer
from streams.runtime.topics import TopicSpec, ensure_topics
from streams.settings import AlertSettings
from tests.receivers import PagerDutyStandIn

COLUMNS = ["run", "alerts", "alerts/s", "latency ms p50", "latency ms p99", "x direct", "recovery s",
           "exactly once, in order"]
ROUTING_KEY = "R" * 32


@dataclass(frozen=True)
class AlertBenchConfig:
    alerts: int = 2_000
    incidents: int = 200
    outage_alerts: int = 200
    outage_s: float = 20.0

    @classmethod
    def tiny(cls) -> AlertBenchConfig:
        return cls(alerts=100, incidents=20, outage_alerts=20, outage_s=2.0)


def _alerts(n: int, incidents: int, now: int, tag: str) -> list[Alert]:
    """``n`` alerts over ``incidents`` dedup keys, each key alternating trigger / resolve."""
    return [Alert.build(action="trigger" if (i // incidents) % 2 == 0 else "resolve", severity="critical",
                        kind="performance", model=f"bench-{tag}", model_version=1, feature=f"f{i % incidents}",
                        detector="bench", statistic="x", value=1.0, threshold=0.5, window="w", ts=now + i,
                        summary=f"bench alert {i}") for i in range(n)]


def _in_order(pd: PagerDutyStandIn, sent: list[Alert]) -> bool:
    got = [(r.body["dedup_key"], r.body["event_action"]) for r in pd.accepted()]
    want = [(a.dedup_key, a.action) for a in sent]
    per_key = {k: [x for x in got if x[0] == k] for k in {a.dedup_key for a in sent}}
    expected = {k: [x for x in want if x[0] == k] for k in per_key}
    return Counter(got) == Counter(want) and per_key == expected and not pd.invalid()


def _through_stage(info: StackInfo, pd: PagerDutyStandIn, sent: list[Alert], *, outage_s: float = 0.0,
                   stuck: str | None = None, timeout_s: float = 600.0) -> tuple[float, list[float], float | None]:
    """Produce ``sent`` and wait until all accepted: (seconds, per-alert latency ms, recovery s)."""
    rid = run_id()
    s = bench_settings(info, rid).replace(alerts=AlertSettings(group=f"bench-alerts-{rid}", log_sink=False))
    ensure_topics(s, [TopicSpec(s.topics.alerts, 1), TopicSpec(s.topics.dlq(s.topics.alerts), 1)])
    worker, _ = build_alerts(s, sinks=[PagerDutySink(ROUTING_KEY, url=pd.url, rate_limit_per_min=None)])
    worker.start()
    try:
        producer = make_producer(s.kafka)
        (warm,) = _alerts(1, 1, int(time.time() * 1000), f"warm-{rid}")  # the group's first assignment and fetch
        producer.produce(s.topics.alerts, codec.encode(warm.to_dict()), warm.dedup_key)
        producer.flush(30)
        pd.wait_for(lambda acc: len(acc) >= 1, 60)
        pd.requests.clear()
        if outage_s:
            pd.fail(500, outage_s, keys=stuck)
        produced: dict[str, float] = {}
        t0 = time.monotonic()
        for a in sent:
            produced[a.alert_id] = time.monotonic()
            producer.produce(s.topics.alerts, codec.encode(a.to_dict()), a.dedup_key)
        producer.flush(30)
        pd.wait_for(lambda acc: len(acc) >= len(sent), timeout_s)
        elapsed = time.monotonic() - t0
    finally:
        worker.stop()
    accepted = pd.accepted()
    latency = [(r.at - produced[r.body["payload"]["custom_details"]["alert_id"]]) * 1000 for r in accepted
               if r.body.get("payload") and r.body["payload"]["custom_details"]["alert_id"] in produced
               and (stuck is None or stuck.strip("/") not in r.body["dedup_key"])]
    recovery = None
    if outage_s and stuck is None:
        recovery = max(r.at for r in accepted) - (t0 + outage_s)
    return elapsed, latency, recovery


def run(info: StackInfo, cfg: AlertBenchConfig = AlertBenchConfig()) -> list[Table]:
    rows: list[list] = []
    now = int(time.time() * 1000)
    pd = PagerDutyStandIn()
    try:
        direct = _alerts(cfg.alerts, cfg.incidents, now, "direct")
        sink = PagerDutySink(ROUTING_KEY, url=pd.url, rate_limit_per_min=None)
        lat = []
        t0 = time.monotonic()
        for a in direct:
            t = time.monotonic()
            sink.deliver(a)
            lat.append((time.monotonic() - t) * 1000)
        direct_rate = len(direct) / (time.monotonic() - t0)
        p50, p99 = percentiles(lat, (50, 99))
        rows.append(["direct POST (baseline)", len(direct), round(direct_rate), p50, p99, 1.0, None,
                     _in_order(pd, direct)])
    finally:
        pd.stop()
    runs = [("delivery stage", _alerts(cfg.alerts, cfg.incidents, now, "stage"), {}),
            (f"outage 500 for {cfg.outage_s:g} s", _alerts(cfg.outage_alerts, cfg.incidents, now, "outage"),
             {"outage_s": cfg.outage_s}),
            (f"one incident 500 for {cfg.outage_s:g} s (others' latency)",
             _alerts(cfg.outage_alerts, cfg.incidents, now, "stuck"), {"outage_s": cfg.outage_s, "stuck": "/f0/"})]
    for name, sent, kw in runs:
        pd = PagerDutyStandIn()
        try:
            elapsed, latency, recovery = _through_stage(info, pd, sent, **kw)  # type: ignore[arg-type]
            rate = len(sent) / elapsed
            p50, p99 = percentiles(latency, (50, 99)) if latency else (None, None)
            rows.append([name, len(sent), round(rate), p50, p99,
                         round(ratio(rate, direct_rate), 2) if not kw else None, recovery, _in_order(pd, sent)])
        finally:
            pd.stop()
    notes = [f"{cfg.incidents} incidents (dedup keys), trigger/resolve alternating per key; PagerDuty stand-in on "
             "127.0.0.1 validating every body; the stage: 4 requests in flight, default backoff (1 s doubling to "
             "300 s, jitter 0.5-1), sync commit of the delivered prefix.",
             "latency: produce → the receiver's 202, per alert, all produced at once after a warm-up alert (one "
             "stuck incident: the other incidents only); trickled alone (1 per 100 ms) an alert takes ~30 ms.",
             "recovery s: from the end of the outage to the last acceptance; it is bounded by the backoff delay "
             "reached during the outage (the n-th retry waits 0.5-1 x 2^(n-1) s: a 20 s outage ends inside a "
             "wait of up to 32 s; the cap of 300 s is reached after ~9 min)."]
    limit = ("limit: one HTTP request per alert and attempt (urllib, a new connection each); the stage adds the "
             "topic hop and the tansu fetch wait, and runs 4 requests at once, so it outpaces the sequential baseline.")
    return [Table("alert_delivery", "Alert delivery: direct POST vs the delivery stage, outage recovery",
                  COLUMNS, rows, limit=limit, notes=notes)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.alert_delivery_bench", description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true")
    args = p.parse_args(argv)
    run_on_fresh_stack(run, AlertBenchConfig.tiny() if args.tiny else AlertBenchConfig())


if __name__ == "__main__":
    main()


__all__ = ["AlertBenchConfig", "run", "main"]
