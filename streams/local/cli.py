"""The ``driftline`` command line: the edge where settings are built from the environment.

Commands: ``up | status | down`` (embedded stack; ``status`` in ``cli_status``), ``topics``, ``produce``,
``train``, ``registry ...``, ``control ...`` (send a signed command), ``run pipeline|monitor|alerts``, ``views ...``
(``cli_views``), ``report`` (``cli_report``), ``demo``. The parser is ``cli_parser``.

Failing fast: :data:`NEEDS` says what each command needs; ``main`` checks it answers (``streams.local.reach``)
before the command runs, and turns every error into one line (``--debug``: the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import faulthandler
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from streams.exceptions import DriftlineError
from streams.local import cli_data
from streams.local.cli_parser import build_parser
from streams.local.cli_report import cmd_report
from streams.local.cli_status import cmd_status as _cmd_status
from streams.local.cli_views import cmd_views
from streams.local.discovery import find_run_dir, forget_stack, remember_stack
from streams.local.reach import one_line, require
from streams.local.stack import EmbeddedStack
from streams.logs import configured_secrets, setup_logging
from streams.settings import Settings

log = logging.getLogger("driftline")


def load_settings(args: argparse.Namespace | None = None) -> Settings:
    """Environment + TOML, the run directory found from here (``streams.local.discovery``), then what a running
    embedded stack recorded there (unless a real cluster is configured)."""
    env = dict(os.environ)
    settings = Settings.from_env(env, getattr(args, "config", None))
    found = find_run_dir(env, Path.cwd(), configured=settings.run_dir)
    settings = settings.replace(run_dir=str(found.path))
    if found.registry is not None and "DRIFTLINE_REGISTRY" not in env and settings.registry_dir == ".driftline/registry":
        settings = settings.replace(registry_dir=str(found.registry))
    run_dir = Path(settings.run_dir)
    state = run_dir / "stack.json"
    if state.exists():
        info = json.loads(state.read_text())
        kafka = settings.kafka
        if "KAFKA_BOOTSTRAP_SERVERS" not in env:
            kafka = kafka.__class__(**{**kafka.__dict__, "bootstrap_servers": info["bootstrap_servers"],
                                       "session_timeout_ms": min(kafka.session_timeout_ms, 2000),
                                       "heartbeat_interval_ms": min(kafka.heartbeat_interval_ms, 200)})
        settings = settings.replace(kafka=kafka, redis_url=env.get("REDIS_URL", info["redis_url"]))
    key_file = run_dir / "control.key"
    if not settings.control_key and key_file.exists():
        settings = settings.replace(control_key=key_file.read_text().strip())
    return settings


def _stack(settings: Settings) -> EmbeddedStack:
    return EmbeddedStack(Path(settings.run_dir), redis_url=settings.redis_url,
                         external_bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))


def cmd_up(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    info = _stack(settings).up()
    key_file = Path(settings.run_dir) / "control.key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    settings = load_settings(args)
    from streams.local.cli_views import catalog_for
    from streams.runtime.topics import ensure_topics, required_topics
    ensure_topics(settings, required_topics(settings, sorted({v.source_topic for v in catalog_for(settings).views()})))
    remember_stack(os.environ, Path(settings.run_dir))  # `driftline status` finds it from any directory
    print(json.dumps({**info.to_dict(), "control_key_file": str(key_file)}, indent=2))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    how = find_run_dir(env, Path.cwd(), configured=Settings.from_env(env, args.config).run_dir).how
    return _cmd_status(args, load_settings, how)


def cmd_down(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    stopped = _stack(settings).down()
    if stopped:
        forget_stack(os.environ, Path(settings.run_dir))
    print(json.dumps({"stopped": stopped}))
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from streams.local.cli_views import catalog_for
    from streams.runtime.topics import ensure_topics, required_topics
    settings = load_settings(args)
    topics = sorted({v.source_topic for v in catalog_for(settings).views()})
    print(json.dumps(ensure_topics(settings, required_topics(settings, topics)), indent=2))
    return 0


def cmd_produce(args: argparse.Namespace) -> int:
    if args.from_path or args.view:  # a file of the user's events (streams/local/cli_data.py)
        return cli_data.cmd_produce_file(args, load_settings)
    from features.views import VIEWS
    from streams.local.produce import produce_stream
    from streams.local.simulator import SimConfig, generate
    from streams.runtime.clients import make_producer
    settings = load_settings(args)
    view = VIEWS[args.source]
    cfg = SimConfig(source=args.source, entities=args.entities, rate=args.rate, duration_s=args.duration,
                    scenario=args.scenario, drift_at_s=args.drift_at, seed=args.seed,
                    start_ms=args.start_ms or int(time.time() * 1000), time_scale=args.time_scale)
    stats = produce_stream(make_producer(settings.kafka), view.source_topic, generate(cfg), rate=args.rate,
                           entity_field=view.entity_key,
                           labels_topic=settings.topics.labels if args.labels else None,
                           label_delay_s=args.label_delay)
    print(json.dumps({"events": stats.events, "labels": stats.labels, "rate": round(stats.rate, 1),
                      "drift_onset_index": stats.drift_onset_index}))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.events or args.view:  # the user's own history (streams/local/cli_data.py)
        return cli_data.cmd_train_file(args, load_settings)
    from features.offline import compute_offline
    from features.views import VIEWS
    from models.registry import Registry
    from models.training_job import build_training_set, train_and_register
    from streams.local.demo import to_events
    from streams.local.simulator import SimConfig, generate
    settings = load_settings(args)
    view = VIEWS[args.source]
    sim = list(generate(SimConfig(source=args.source, entities=args.entities, rate=args.rate,
                                  duration_s=args.duration, scenario="stable", seed=args.seed,
                                  time_scale=args.time_scale)))
    events, labels = to_events(sim) if args.source == "vitals" else ([], {})
    if not labels:
        raise DriftlineError(f"source {args.source!r} has no labels to train on; use --source vitals")
    names = args.features.split(",") if args.features else None
    registry = Registry(settings.registry_dir)
    rows = compute_offline(view, events)
    warmup_ms = view.retention_ms - view.allowed_lateness_ms  # until the longest window is full
    span_ms = rows[-1].ts_ms - rows[0].ts_ms if rows else 0
    if span_ms < 1.5 * warmup_ms:
        raise DriftlineError(
            f"the simulated history spans {span_ms / 60000:.0f} min of event time, but the longest window needs "
            f"{warmup_ms / 60000:.0f} min to fill and rows before that are left out: make --duration x "
            f"--time-scale at least {1.5 * warmup_ms / 1000:.0f} s")
    warm = rows[0].ts_ms + warmup_ms
    mv = train_and_register(registry, args.model, build_training_set(view, rows, labels, names, min_ts_ms=warm),
                            seed=args.seed,
                            kind=args.kind, registered_by=os.environ.get("USER", "driftline train"))
    if args.promote:
        mv = registry.promote(args.model, mv.version, by="driftline train", reason="--promote")
    print(json.dumps({"model": mv.model, "version": mv.version, "stage": mv.stage, "metrics": mv.metrics}))
    return 0


def _control_view(settings: Settings, registry: Any, model: str) -> tuple[dict[str, Any] | None, list, str | None]:
    """The model's desired state and control history from the control store, or why they cannot be read."""
    from streams.exceptions import ControlStoreError
    from streams.redis_client import REDIS_ERRORS
    from streams.runtime.workers import control_store, redis_client
    try:
        client = redis_client(settings)  # a cluster client connects at once
    except REDIS_ERRORS as exc:
        return None, [], f"control store: {exc}"
    try:
        store = control_store(settings, client, registry, model)
        state, _ = store.current()
        return (state.to_dict() if state.revision else None), store.history(limit=1000), None
    except ControlStoreError as exc:
        return None, [], str(exc)
    finally:
        client.close()


def _guard_desired(settings: Settings, registry: Any, args: argparse.Namespace) -> None:
    """Refuse a hand-made change of the production version that scorers would not follow: once a model has a
    desired state, it is what they serve, and changes go through signed commands (which also move the stages)."""
    desired, _, error = _control_view(settings, registry, args.model)
    if error:
        log.warning("control store unreadable (%s): the scorers' desired state was not checked", error)
    if desired is None or args.force:
        return
    moves_champion = (args.action == "rollback" or (args.action == "promote" and args.version != desired["version"])
                      or (args.action == "archive" and args.version == desired["version"]))
    if not moves_champion:
        return
    raise DriftlineError(
        f"{args.model}: scorers serve the desired state v{desired['version']} (revision {desired['revision']}, "
        f"{desired['command']} {desired['command_id']} by {desired['issued_by']}); a stage change in the registry "
        f"alone would not reach them. Send `driftline control promote|rollback --model {args.model} --version N` "
        "(the registry follows), or `driftline control reload` after this change with --force.")


def cmd_registry(args: argparse.Namespace) -> int:
    from models.registry import Registry
    settings = load_settings(args)
    registry = Registry(settings.registry_dir)
    by = os.environ.get("USER", "cli")
    if args.action in ("promote", "archive", "rollback"):
        _guard_desired(settings, registry, args)
    if args.action == "list":
        out: Any = [{"model": m, "versions": [{"version": v.version, "stage": v.stage, "auc": v.metrics.get("auc")}
                                              for v in registry.versions(m)]} for m in registry.models()]
    elif args.action == "show":
        mv = registry.get(args.model, args.version) if args.version else registry.production(args.model)
        out = {k: v for k, v in (mv.to_dict() if mv else {}).items() if k != "reference"}
        out["history"] = registry.history(args.model)
        desired, history, error = _control_view(settings, registry, args.model)
        out["desired_state"] = desired if error is None else f"unavailable: {error}"
        out["control_history"] = history
    elif args.action == "promote":
        out = registry.promote(args.model, args.version, by=by, reason=args.reason).to_dict()
    elif args.action == "archive":
        out = registry.archive(args.model, args.version, by=by, reason=args.reason).to_dict()
    else:
        out = registry.rollback(args.model, to_version=args.version, by=by, reason=args.reason).to_dict()
    if isinstance(out, dict):
        out.pop("reference", None)
    print(json.dumps(out, indent=2, default=str))
    return 0


def cmd_control(args: argparse.Namespace) -> int:
    from models.exceptions import RegistryError
    from models.registry import Registry
    from streams.control.channel import publish_command
    from streams.control.keyring import keyring_from_settings
    from streams.control.protocol import new_command
    from streams.runtime.clients import make_producer
    settings = load_settings(args)
    traffic = None
    if args.command == "set_traffic":
        traffic = {"challenger": args.challenger, "canary_pct": args.canary_pct, "shadow": args.shadow}
    try:  # scoped to this registry's model: scorers of another registry on the same topic ignore it
        scope: str | None = Registry(settings.registry_dir).uid(args.model)
    except RegistryError as exc:
        scope = None
        print(f"driftline: warning: {exc}; the command is not scoped to a registry", file=sys.stderr)
    cmd = new_command(args.command, model=args.model, now_ms=int(time.time() * 1000), to_version=args.version,
                      traffic=traffic, reason=args.reason, issued_by=os.environ.get("USER", "cli"),
                      from_version=args.from_version, scope=scope)
    signed = publish_command(make_producer(settings.kafka), settings, cmd, keyring_from_settings(settings))
    print(json.dumps({k: v for k, v in signed.items() if k != "signature"}))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from features.views import VIEWS
    from streams.runtime.workers import build_monitor, build_pipeline
    settings = load_settings(args)
    if args.stage == "alerts":
        return _run_worker(args, _alerts_worker(args, settings), settings)
    if args.stage == "pipeline":
        from streams.local.cli_views import resolve_view
        view = resolve_view(settings, args.view) if args.view else VIEWS[args.source]
        if args.topic:
            view = dataclasses.replace(view, source_topic=args.topic)
        worker, _ = build_pipeline(settings, view, args.model, online_learning=args.online_learning,
                                   online_checkpoint_every=args.checkpoint_every)
    else:
        worker, _ = build_monitor(settings, rollback_mode=args.rollback_mode,
                                  adwin_features=tuple(f for f in args.adwin_features.split(",") if f),
                                  slice_field=args.slice_field or None)
    if args.engine == "faust":  # the same handlers, driven by a Faust app (streams/runtime/faust_app.py)
        from streams.runtime.faust_app import to_faust
        group = settings.pipeline.features_group if args.stage == "pipeline" else settings.pipeline.monitor_group
        worker = to_faust(worker, group, settings)  # type: ignore[assignment]
    return _run_worker(args, worker, settings)


def _alerts_worker(args: argparse.Namespace, settings: Settings) -> Any:
    """``driftline run alerts``: the delivery stage (alerts topic → PagerDuty / Alertmanager / webhook / log)."""
    from streams.runtime.alert_worker import build_alerts
    if args.engine != "default":
        raise DriftlineError("the alert delivery stage runs on the default engine only (drop --engine)")
    worker, _ = build_alerts(settings)
    return worker


def _topics_of(worker: Any) -> list[str]:
    """The topics a stage consumes (the batch loop's list, or the delivery loop's one topic)."""
    loop = getattr(worker, "loop", None)
    topics = getattr(loop, "topics", None) or ([loop.topic] if isinstance(getattr(loop, "topic", None), str) else [])
    return list(topics)


def keep_running_on_broken_pipes() -> None:
    """A long-running command ignores SIGPIPE. ``main`` restores its default (so ``driftline registry list | head``
    ends quietly), under which a /health or /metrics client that hangs up before the answer (a probe's timeout
    shorter than the Redis and broker checks) killed the whole worker: exit 141, not a line logged. Ignored,
    that write raises ``BrokenPipeError`` in the HTTP thread, which drops the connection and serves on."""
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def _run_worker(args: argparse.Namespace, worker: Any, settings: Settings) -> int:
    """Serve /metrics and /health, run ``worker`` until Ctrl-C or SIGTERM, stop it."""
    from streams.metrics import HealthServer
    from streams.runtime.heap import settle_heap, watch_gc_pauses
    keep_running_on_broken_pipes()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = HealthServer(worker.metrics, worker.health, port=args.metrics_port or settings.metrics_port,
                          host=args.metrics_host).start()
    host = "127.0.0.1" if args.metrics_host in ("0.0.0.0", "::", "") else args.metrics_host
    health = f"http://{host}:{server.port}/health"
    print(json.dumps({"stage": args.stage, "metrics": f"http://{host}:{server.port}/metrics", "health": health}),
          flush=True)
    from streams.local.status import forget_stage, register_stage
    group = {"pipeline": settings.pipeline.features_group, "monitor": settings.pipeline.monitor_group,
             "alerts": settings.alerts.group}[args.stage]
    registered = register_stage(Path(settings.run_dir), {  # `driftline status` lists it
        "stage": getattr(worker, "name", args.stage), "pid": os.getpid(), "health": health, "group": group,
        "model": args.model if args.stage == "pipeline" else None,
        "topics": _topics_of(worker)})
    try:
        settle_heap()  # the start-up heap out of every later collection: no 30-80 ms GC pauses in the tail
        watch_gc_pauses(lambda gen, s: worker.metrics.gc_pauses.labels(str(gen)).observe(s))
        worker.start()
        while not stop.is_set() and worker.alive:
            stop.wait(0.5)
        worker.stop()
    finally:
        forget_stage(registered)
        server.stop()
    if worker.error is not None:
        log.error("worker failed: %r", worker.error)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.local.demo import DemoConfig, run_demo
    settings = load_settings(args)
    if args.source == "gps" and args.scenario == "concept-drift":
        raise DriftlineError("--scenario concept-drift is simulated for vitals only; use covariate-shift or "
                             "sensor-fault with --source gps")
    from streams.local.demo import SOURCES
    seed = args.seed if args.seed is not None else SOURCES[args.source].seed
    cfg = DemoConfig(seed=seed, duration_s=args.duration, rate=args.rate, entities=args.entities,
                     drift_at_s=args.drift_at, scenario=args.scenario, source=args.source)
    echo = (lambda _line: None) if args.json else print
    summary = run_demo(settings, cfg, echo=echo, external_bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"))
    if args.json:
        print(json.dumps(summary))
    else:
        print("\nsummary")
        for key, value in summary.items():
            print(f"  {key:<24} {value}")
        if summary.get("report"):
            print(f"\ndrift report: {summary['report']} (one file, opens offline in a browser)")
    return 0 if summary["ok"] else 1


COMMANDS = {"up": cmd_up, "status": cmd_status, "down": cmd_down, "topics": cmd_topics, "produce": cmd_produce,
            "train": cmd_train, "registry": cmd_registry, "control": cmd_control, "run": cmd_run, "demo": cmd_demo,
            "views": lambda args: cmd_views(args, load_settings), "report": lambda args: cmd_report(args, load_settings)}

NEEDS: dict[str, frozenset[str]] = {  # checked before the command runs; up, down, status and demo check themselves
    "topics": frozenset({"broker"}), "produce": frozenset({"broker"}), "control": frozenset({"broker"}),
    "run": frozenset({"broker", "redis"}), "report": frozenset({"redis"}),
}


def _origin(settings: Settings) -> dict[str, str]:
    """Where the broker and Redis addresses came from, for the one-line error."""
    state = Path(settings.run_dir) / "stack.json"
    found = f"recorded in {state}" if state.exists() else f"the default; no running stack found from {Path.cwd()}"
    return {"broker": "from KAFKA_BOOTSTRAP_SERVERS" if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") else found,
            "redis": "from REDIS_URL" if os.environ.get("REDIS_URL") else found}


def _stacks_on_sigusr1() -> None:
    """``kill -USR1 <pid>``: every thread's stack to the process's stderr (file descriptor 2, whatever ``sys.stderr``
    was replaced by), and the process goes on: where a stuck command waits."""
    stream = sys.__stderr__
    with contextlib.suppress(AttributeError, OSError, ValueError):  # no stderr file descriptor: no dumps
        if stream is not None:
            faulthandler.register(signal.SIGUSR1, file=stream, all_threads=True, chain=False)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `driftline registry list | head` ends quietly
    _stacks_on_sigusr1()
    args = build_parser().parse_args(argv)
    json_lines = args.log_json or Settings.from_env({k: v for k, v in os.environ.items()
                                                     if k == "DRIFTLINE_LOG_JSON"}).log_json
    found = find_run_dir(os.environ, Path.cwd(), configured=os.environ.get("DRIFTLINE_RUN_DIR"))
    setup_logging(json_lines, logging.DEBUG if args.verbose or args.debug else logging.WARNING,
                  secrets=configured_secrets({**os.environ, "DRIFTLINE_RUN_DIR": str(found.path)}))
    try:
        if args.cmd in NEEDS:
            settings = load_settings(args)
            require(settings, NEEDS[args.cmd], origin=_origin(settings))
        return COMMANDS[args.cmd](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's one error handler: one line, the traceback with --debug
        if args.debug:
            raise
        print(f"driftline: {one_line(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, DriftlineError) else 1


if __name__ == "__main__":
    sys.exit(main())
