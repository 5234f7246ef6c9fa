"""The file-driven modes of ``driftline train`` and ``driftline produce`` (the user's own history and events).

* ``driftline train --view V --events PATH (--label-field F | --labels PATH --target F)``: train on a file
  through the view's features, point in time, with a time-based validation split (``models.history_training``);
* ``driftline produce --from PATH --view V --rate R [--speedup X]``: replay a file into Kafka keyed by entity,
  in event-time order (``streams.local.replay``).

``cli.py`` hands over to these when ``--events`` / ``--from`` are given.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

from features.definitions import parse_duration
from features.records import parse_timestamp
from streams.exceptions import ConfigError
from streams.local.cli_views import VIEW_HELP, resolve_view
from streams.settings import Settings

LoadSettings = Callable[[argparse.Namespace], Settings]


def add_train_file_arguments(tr: argparse.ArgumentParser) -> None:
    """``train`` options for training from files (``--view`` + ``--events``)."""
    g = tr.add_argument_group("training from your own history (instead of the simulator)")
    g.add_argument("--view", default="", help=VIEW_HELP)
    g.add_argument("--events", default="", help="event file: .jsonl/.ndjson/.json, .csv/.tsv (optionally .gz), .parquet")
    g.add_argument("--label-field", default="", help="the events' label column (0/1, true/false, yes/no)")
    g.add_argument("--labels", default="", help="a label file (entity, time, --target), joined as of each label's time")
    g.add_argument("--target", default="", help="with --labels: the label file's class column")
    g.add_argument("--positive", default=None, help="the label value that means 1 (when labels are not 0/1)")
    g.add_argument("--validation", type=float, default=0.25, help="share of the latest rows held out (time split)")
    g.add_argument("--split-at", default="", help="validate on rows at/after this time (epoch ms or RFC 3339)")
    g.add_argument("--warmup", default="", help="history left out at the start (default: the longest window, if "
                   "the history spans twice that); e.g. 0, 30m")
    g.add_argument("--label-tolerance", default="", help="with --labels: the oldest event a label may use "
                   "(default: the longest window)")


def add_produce_file_arguments(pr: argparse.ArgumentParser) -> None:
    """``produce`` options for replaying a file (``--from`` + ``--view``)."""
    g = pr.add_argument_group("replaying your own events (instead of the simulator)")
    g.add_argument("--from", dest="from_path", default="", help="event file (.jsonl/.csv/.parquet) to replay")
    g.add_argument("--view", default="", help=VIEW_HELP)
    g.add_argument("--speedup", type=float, default=None,
                   help="also pace by event time: X times faster than real time (with --rate as a cap; "
                        "--rate 0 = no cap)")
    g.add_argument("--label-field", default="", help="send this column to the labels topic (delayed), not as a field")
    g.add_argument("--positive", default=None, help="the label value that means 1")
    g.add_argument("--limit", type=int, default=None, help="send only the first N events (in event-time order)")


def _ms(text: str, what: str) -> int | None:
    if not text:
        return None
    try:
        return parse_duration(text)
    except Exception as exc:
        raise ConfigError(f"{what}: {exc}") from None


def cmd_train_file(args: argparse.Namespace, load_settings: LoadSettings) -> int:
    from models.history_training import HistorySpec, train_from_history
    from models.registry import Registry
    settings = load_settings(args)
    if not args.view:
        raise ConfigError("--events needs --view (which feature view the file's events belong to)")
    view = resolve_view(settings, args.view)
    split_at = None
    if args.split_at:
        raw = args.split_at.strip()
        split_at = parse_timestamp(int(raw) if raw.isdigit() else raw)
    spec = HistorySpec(view=view, events=Path(args.events), label_field=args.label_field or None,
                       labels=Path(args.labels) if args.labels else None, target=args.target or None,
                       positive=args.positive, features=args.features.split(",") if args.features else None,
                       validation=args.validation, split_at_ms=split_at, warmup_ms=_ms(args.warmup, "--warmup"),
                       label_tolerance_ms=_ms(args.label_tolerance, "--label-tolerance"))
    model = args.model if args.model != "vitals-risk" else f"{view.name}-model"
    registry = Registry(settings.registry_dir)
    mv, report = train_from_history(registry, model, spec, kind=args.kind, seed=args.seed,
                                    registered_by=os.environ.get("USER", "driftline train"))
    if args.promote:
        mv = registry.promote(model, mv.version, by="driftline train", reason="--promote")
    print(json.dumps({"model": mv.model, "version": mv.version, "stage": mv.stage, "view": view.name,
                      "metrics": {k: round(v, 4) for k, v in mv.metrics.items()}, **report}, indent=2))
    return 0


def cmd_produce_file(args: argparse.Namespace, load_settings: LoadSettings) -> int:
    from features.event_files import FileStats
    from streams.local.replay import load_replay, replay
    from streams.runtime.clients import make_producer
    settings = load_settings(args)
    if not args.view:
        raise ConfigError("--from needs --view (which feature view the file's events belong to)")
    view = resolve_view(settings, args.view)
    if args.rate < 0 or (args.speedup is not None and args.speedup <= 0):
        raise ConfigError("--rate must be >= 0 (0: no cap) and --speedup > 0")
    file_stats = FileStats()
    events = load_replay(view, args.from_path, label_field=args.label_field or None, stats=file_stats,
                         limit=args.limit)
    stats = replay(make_producer(settings.kafka), view.source_topic, events, rate=args.rate, speedup=args.speedup,
                   labels_topic=settings.topics.labels if args.label_field else None, label_delay_s=args.label_delay,
                   positive=args.positive)
    stats.file = file_stats
    print(json.dumps({"topic": view.source_topic, **stats.to_dict()}))
    return 0
