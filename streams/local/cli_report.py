"""``driftline report``: the drift report of a model over a time range, as one self-contained HTML file."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from streams.settings import Settings

if TYPE_CHECKING:  # the report's modules (matplotlib, scipy via the monitor) load only when a report is made
    from monitor.report.model import ReportData

__all__ = ["add_report_parser", "cmd_report", "report_data", "write_report"]


def add_report_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "report", help="a self-contained HTML drift report of a model over a time range (opens offline)",
        epilog="examples:\n  driftline report\n  driftline report --model vitals-risk --since 2h --out drift.html\n"
               "  driftline report --since 2027-01-15T08:00:00Z --until 2027-01-15T09:00:00Z --json > report.json")
    p.add_argument("--model", default="", help="the model (default: the only one with a history)")
    p.add_argument("--since", default="1h", help="start: a duration ago (90s, 15m, 2h, 1d), RFC 3339 or epoch ms")
    p.add_argument("--until", default="now", help="end: now, a duration ago, RFC 3339 or epoch ms")
    p.add_argument("--out", default="", help="the HTML file to write (default: <run dir>/../reports/<model>-<UTC "
                   "time>.html)")
    p.add_argument("--json", action="store_true", help="print the report's data as JSON instead of writing HTML")


def report_data(settings: Settings, model: str | None, since_ms: int, until_ms: int) -> ReportData:
    """The report's data from the history in Redis and the registry."""
    from models.registry import Registry
    from streams.local.report_source import gather, pick_model
    from streams.runtime.history_store import RedisHistory
    from streams.runtime.workers import redis_client

    client = redis_client(settings)
    try:
        history = RedisHistory(client, prefix=settings.history.prefix)
        registry = Registry(settings.registry_dir)
        return gather(history, registry, pick_model(history, registry, model), since_ms, until_ms)
    finally:
        client.close()


def write_report(settings: Settings, model: str | None, since_ms: int, until_ms: int,
                 out: Path | None = None) -> tuple[Path, ReportData]:
    """Gather and write the report; returns its path and data."""
    from monitor.report.page import render_html
    from streams.local.report_source import default_path

    data = report_data(settings, model, since_ms, until_ms)
    path = out or default_path(Path(settings.run_dir).parent / "reports", data.model, data.generated_ms)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(data), encoding="utf-8")
    return path, data


def cmd_report(args: argparse.Namespace, load: Callable[..., Settings]) -> int:
    from streams.local.report_source import parse_time

    settings = load(args)
    now = int(time.time() * 1000)
    since, until = parse_time(args.since, now), parse_time(args.until, now)
    if args.json:
        print(json.dumps(report_data(settings, args.model or None, since, until).to_dict()))
        return 0
    path, data = write_report(settings, args.model or None, since, until, Path(args.out) if args.out else None)
    print(json.dumps({"report": str(path.resolve()), "model": data.model, "first": data.first_focus(),
                      "snapshots": len(data.volume),
                      "events": len(data.events), "notes": list(data.notes)}))
    return 0
