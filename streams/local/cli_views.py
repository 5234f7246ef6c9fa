"""``driftline views list | show | validate`` and the ``--view PATH|NAME`` lookup every command shares.

A view is found by name (the built-in ``vitals`` / ``gps`` or a view listed under ``views`` in the config
file / ``DRIFTLINE_VIEWS``), by a view file path, or as ``module:ATTRIBUTE`` (``features.view_catalog``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from features.definitions import FeatureView
from features.exceptions import ViewFileError
from features.view_catalog import ViewCatalog
from features.view_files import dumps_view, view_to_dict
from streams.settings import Settings

VIEW_HELP = "a view: a name (built-in or from the config's `views`), a view file (.toml/.yaml/.json) or module:ATTRIBUTE"


def catalog_for(settings: Settings) -> ViewCatalog:
    """The built-in views plus the configured ones."""
    return ViewCatalog(settings.views)


def resolve_view(settings: Settings, ref: str) -> FeatureView:
    """The view ``ref`` names (see the module docstring)."""
    return catalog_for(settings).resolve(ref)


def view_summary(view: FeatureView, origin: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"name": view.name, "version": view.version, "topic": view.source_topic,
                           "entity_key": view.entity_key, "timestamp": f"{view.ts_field} ({view.ts_format})",
                           "fields": len(view.fields), "features": len(view.features),
                           "fingerprint": view.fingerprint()}
    if origin:
        out["origin"] = origin
    return out


def cmd_views(args: argparse.Namespace, load_settings: Callable[[argparse.Namespace], Settings]) -> int:
    settings = load_settings(args)
    if args.action == "list":
        for entry in catalog_for(settings).entries():
            print(json.dumps(view_summary(entry.view, entry.origin)))
        return 0
    if args.action == "show":
        view = resolve_view(settings, args.view)
        print(dumps_view(view) if args.format == "toml" else json.dumps(view_to_dict(view), indent=2), end="")
        return 0
    return _validate(args, settings)


def _validate(args: argparse.Namespace, settings: Settings) -> int:
    """Load each view (a file, a name, module:ATTRIBUTE); with ``--events``, check a sample file against it."""
    failed = 0
    catalog = None
    for ref in args.views:
        try:
            catalog = catalog or catalog_for(settings)
            entry = catalog.entry(ref)
        except ViewFileError as exc:
            failed += 1
            print(json.dumps({"view": ref, "ok": False, "error": str(exc)}))
            continue
        out: dict[str, Any] = {"view": ref, "ok": True, **view_summary(entry.view)}
        if args.events:
            from features.event_files import FileStats, read_events
            stats = FileStats()
            for _ in read_events(entry.view, args.events, label_field=args.label_field or None, stats=stats):
                pass
            out["events"] = {**stats.to_dict(), "summary": stats.summary()}
            out["ok"] = stats.skipped == 0
            failed += 0 if out["ok"] else 1
        print(json.dumps(out))
    return 0 if failed == 0 else 2


def add_views_parser(sub: Any) -> None:
    """Register ``views list | show | validate`` on the main parser's subcommands."""
    vw = sub.add_parser("views", help="list | show | validate feature views (built-in, view files, module:ATTRIBUTE)")
    vsub = vw.add_subparsers(dest="action", required=True)
    vsub.add_parser("list", help="the built-in views and those the config names (`views = [...]`)")
    show = vsub.add_parser("show", help="print a view as a view file (TOML) or JSON")
    show.add_argument("view", help=VIEW_HELP)
    show.add_argument("--format", choices=["toml", "json"], default="toml", help="output format")
    val = vsub.add_parser("validate", help="check view files; exit 2 with file, line, key and what is allowed")
    val.add_argument("views", nargs="+", help=VIEW_HELP)
    val.add_argument("--events", default="", help="also check this event file (.jsonl/.csv/.parquet) against the view")
    val.add_argument("--label-field", default="", help="with --events: the label column (not a view field)")
