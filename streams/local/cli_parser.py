"""The ``driftline`` argument parser: every option's help shows its default (and its unit, in the text), every
command's help ends with examples (``tests/streams/test_cli_help.py`` walks every subparser to keep it so)."""

from __future__ import annotations

import argparse
from typing import Any

from streams.local import cli_data
from streams.local.cli_report import add_report_parser
from streams.local.cli_status import add_status_parser
from streams.local.cli_views import VIEW_HELP, add_views_parser

__all__ = ["EXAMPLES", "DriftlineParser", "build_parser"]


class DefaultsFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends ``(default: X)`` to every option's help (``off`` for flags, ``none`` for an empty default) unless
    the help already names its default; keeps the examples' line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        d = action.default
        shown = "off" if d is False else "on" if d is True else "none" if d in (None, "") else "%(default)s"
        return f"{text} (default: {shown})".strip()


class DriftlineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose subparsers use :class:`DefaultsFormatter` too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)


EXAMPLES: dict[str, tuple[str, ...]] = {
    "up": ("driftline up", "REDIS_URL=redis://10.0.0.5:6379/0 driftline up"),
    "down": ("driftline down",),
    "topics": ("driftline topics", "KAFKA_BOOTSTRAP_SERVERS=kafka:9092 driftline topics"),
    "produce": ("driftline produce --rate 500 --duration 60 --scenario covariate-shift --drift-at 20 --labels",
                "driftline produce --from events.jsonl --view payments.toml --rate 1000"),
    "train": ("driftline train --promote", "driftline train --view payments.toml --events history.parquet "
              "--label-field is_fraud"),
    "registry": ("driftline registry list", "driftline registry show --model vitals-risk",
                 "driftline registry promote --model vitals-risk --version 2 --reason 'AUC +0.03'"),
    "control": ("driftline control rollback --model vitals-risk --version 1 --reason 'PSI on spo2'",
                "driftline control set_traffic --model vitals-risk --challenger 3 --canary-pct 10"),
    "run": ("driftline run pipeline --model vitals-risk --metrics-port 9100", "driftline run monitor",
            "DRIFTLINE_PAGERDUTY_ROUTING_KEY=... driftline run alerts"),
    "views": ("driftline views list", "driftline views show vitals --format json"),
    "views list": ("driftline views list",),
    "views show": ("driftline views show vitals", "driftline views show payments.toml --format json"),
    "views validate": ("driftline views validate payments.toml --events history.csv --label-field is_fraud",),
    "demo": ("driftline demo", "driftline demo --source gps --json"),
}


def _examples(lines: tuple[str, ...]) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def _add_examples(parser: argparse.ArgumentParser, path: str = "") -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                key = f"{path} {name}".strip()
                if not sub.epilog and key in EXAMPLES:
                    sub.epilog = _examples(EXAMPLES[key])
                _add_examples(sub, key)


def build_parser() -> argparse.ArgumentParser:
    p = DriftlineParser(prog="driftline", description="driftline: streaming inference and drift monitoring on "
                        "Kafka.", epilog=_examples(("driftline up", "driftline status", "driftline demo",
                                                    "driftline report --since 1h")))
    p.add_argument("--config", help="TOML settings file (env DRIFTLINE_CONFIG)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors (and debug logging)")
    p.add_argument("--log-json", action="store_true",
                   help="one JSON object per log line (or DRIFTLINE_LOG_JSON=1); secrets are masked")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="start the embedded broker (and Redis if none is reachable), create topics")
    add_status_parser(sub)
    sub.add_parser("down", help="stop what `up` started")
    sub.add_parser("topics", help="create the topics (idempotent)")

    pr = sub.add_parser("produce", help="stream simulated vitals or GPS events, or replay a file (--from, --view)")
    pr.add_argument("--source", choices=["vitals", "gps"], default="vitals", help="simulated source")
    pr.add_argument("--entities", type=int, default=50, help="simulated entities (patients or vehicles)")
    pr.add_argument("--rate", type=float, default=200.0, help="events per second")
    pr.add_argument("--duration", type=float, default=30.0, help="how long to stream, in seconds")
    pr.add_argument("--scenario", choices=["stable", "covariate-shift", "concept-drift", "sensor-fault"],
                    default="stable", help="what happens to the stream at --drift-at")
    pr.add_argument("--drift-at", type=float, default=15.0, help="seconds into the stream")
    pr.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    pr.add_argument("--time-scale", type=float, default=1.0,
                    help="event time runs this many times faster (above 1 it runs ahead of the clock: run the pipeline "
                         "with DRIFTLINE_MAX_FUTURE_SKEW_MS=0, or it dead-letters those events as `future`)")
    pr.add_argument("--start-ms", type=int, default=0, help="event time of the first event, epoch ms (0: now)")
    pr.add_argument("--labels", action="store_true", help="also produce delayed labels (vitals)")
    pr.add_argument("--label-delay", type=float, default=2.0, help="label delay, in seconds")
    cli_data.add_produce_file_arguments(pr)

    tr = sub.add_parser("train", help="train on simulated or your own history (--view, --events) through the "
                        "feature definitions, register")
    tr.add_argument("--model", default="vitals-risk", help="model name in the registry")
    tr.add_argument("--source", choices=["vitals"], default="vitals", help="simulated source")
    tr.add_argument("--features", default="", help="comma-separated subset of the view's features (default: all)")
    tr.add_argument("--kind", choices=["logistic", "gbm"], default="logistic", help="model family")
    tr.add_argument("--entities", type=int, default=40, help="simulated patients")
    tr.add_argument("--rate", type=float, default=400.0, help="simulated events per second")
    tr.add_argument("--duration", type=float, default=120.0, help="simulated history, in seconds (wall)")
    tr.add_argument("--time-scale", type=float, default=40.0, help="event time runs this many times faster")
    tr.add_argument("--seed", type=int, default=0, help="random seed of the simulation and the model")
    tr.add_argument("--promote", action="store_true", help="promote the new version to production")
    cli_data.add_train_file_arguments(tr)

    rg = sub.add_parser("registry", help="list | show | promote | archive | rollback")
    rg.add_argument("action", choices=["list", "show", "promote", "archive", "rollback"])
    rg.add_argument("--model", default="vitals-risk", help="model name")
    rg.add_argument("--version", type=int, help="version number (show: default production; rollback: default "
                    "the previous production version)")
    rg.add_argument("--reason", default="", help="recorded in the registry's history")
    rg.add_argument("--force", action="store_true",
                    help="change stages even though scorers follow a desired state from control commands "
                    "(default: refused once one exists)")

    ct = sub.add_parser("control", help="send a signed control command")
    ct.add_argument("command", choices=["rollback", "promote", "set_traffic", "reload", "pause", "resume"])
    ct.add_argument("--model", default="vitals-risk", help="model name")
    ct.add_argument("--version", type=int, help="target version number (rollback, promote)")
    ct.add_argument("--challenger", type=int, help="set_traffic: the challenger's version number")
    ct.add_argument("--canary-pct", type=float, default=0.0, help="set_traffic: percent of traffic to the challenger")
    ct.add_argument("--shadow", action="store_true", help="set_traffic: also score every event with the challenger")
    ct.add_argument("--reason", default="", help="recorded with the command")
    ct.add_argument("--from-version", type=int,
                    help="a version number: only if this is still the desired champion, else the command is rejected as "
                    "superseded "
                    "(default: unconditional)")

    rn = sub.add_parser("run", help="run one stage until Ctrl-C")
    rn.add_argument("stage", choices=["pipeline", "monitor", "alerts"],
                    help="alerts: deliver the alerts topic to PagerDuty / Alertmanager / webhooks (own group)")
    rn.add_argument("--engine", choices=["default", "faust"], default="default",
                    help="faust: run the same handlers from a faust-streaming agent (pip install -e '.[faust]')")
    rn.add_argument("--source", choices=["vitals", "gps"], default="vitals", help="pipeline: built-in view")
    rn.add_argument("--view", default="", help="the pipeline's feature view (overrides --source): " + VIEW_HELP)
    rn.add_argument("--model", default="vitals-risk", help="pipeline: the model to serve")
    rn.add_argument("--topic", default="", help="source topic, if not the view's own")
    rn.add_argument("--online-learning", action="store_true",
                    help="river champions learn_one from joined labels")
    rn.add_argument("--checkpoint-every", type=int, default=0,
                    help="with --online-learning: register the learned model as a staging version every N labels "
                         "(0: never)")
    rn.add_argument("--rollback-mode", choices=["alert_only", "rollback", "pause_challenger"], default="rollback",
                    help="monitor: what a critical alert does")
    rn.add_argument("--adwin-features", default="", help="monitor: features that also get an ADWIN, comma-separated")
    rn.add_argument("--slice-field", default="", help="monitor: detectors per value of this prediction field")
    rn.add_argument("--metrics-port", type=int, default=0,
                    help="TCP port of /metrics and /health (0: DRIFTLINE_METRICS_PORT, else a free port)")
    rn.add_argument("--metrics-host", default="127.0.0.1", help="address to bind; 0.0.0.0 inside a container")

    add_views_parser(sub)
    add_report_parser(sub)

    dm = sub.add_parser("demo", help="the whole loop on the embedded stack, end to end, and its drift report")
    dm.add_argument("--json", action="store_true", help="print only the summary, as one JSON object")
    dm.add_argument("--seed", type=int, default=None, help="random seed (default: 7 for vitals, 8 for gps)")
    dm.add_argument("--duration", type=float, default=45.0, help="live stream, in seconds")
    dm.add_argument("--rate", type=float, default=400.0, help="events per second")
    dm.add_argument("--source", choices=["vitals", "gps"], default="vitals",
                    help="vitals: deterioration risk; gps: delay risk of vehicles in traffic jams")
    dm.add_argument("--entities", type=int, default=None, help="simulated entities (default: 500 patients / 200 "
                    "vehicles)")
    dm.add_argument("--drift-at", type=float, default=15.0, help="seconds into the live stream")
    dm.add_argument("--scenario", choices=["covariate-shift", "sensor-fault", "concept-drift"],
                    default="covariate-shift", help="what happens to the stream at --drift-at")
    _add_examples(p)
    return p
