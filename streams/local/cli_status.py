"""``driftline status [--json]``: the stack, each running stage and each model, in one table.

Example output::

    NAME             PID    HEALTH  LAG (topic partitions 0/1/2...)  LAST COMMIT  MODEL           TRAFFIC       INCIDENTS
    broker           4211   ok      127.0.0.1:40123                   -            -               -             -
    redis            -      ok      redis://127.0.0.1:6379/0          -            -               -             -
    pipeline-vitals  4302   ok      vitals 0/0/3                      0.4 s ago    vitals-risk v2  v2 100 %      -
    monitor          4303   ok      predictions 0/0/0 labels 0/0/0    1.2 s ago    -               -             1 critical
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from streams.local import status as st
from streams.local.reach import broker_answers, redis_answers
from streams.settings import Settings

__all__ = ["add_status_parser", "cmd_status", "collect", "render_table"]


def add_status_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="the stack and each running stage: health, lag, last commit, version, "
                       "incidents", epilog="examples:\n  driftline status\n  driftline status --json | jq .stages")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _stack(settings: Settings, how: str) -> dict[str, Any]:
    from streams.local.stack import EmbeddedStack

    state = EmbeddedStack(Path(settings.run_dir), redis_url=settings.redis_url).status()
    if state.get("broker") is None:  # no embedded stack recorded: check what the settings point at
        broker_problem = broker_answers(settings)
        redis_problem = redis_answers(settings.redis_url, cluster=settings.redis_cluster)
        state.update(broker={"bootstrap_servers": settings.kafka.bootstrap_servers, "pid": None,
                             "reachable": broker_problem is None, "error": broker_problem},
                     redis={"url": settings.redis_url, "pid": None, "reachable": redis_problem is None,
                            "error": redis_problem},
                     running=broker_problem is None and redis_problem is None)
    state["found"] = how
    return state


def _stage(settings: Settings, info: Mapping[str, Any], broker_ok: bool) -> dict[str, Any]:
    health = st.fetch_health(str(info.get("health") or ""))
    out: dict[str, Any] = {
        "stage": info.get("stage"), "pid": info.get("pid"), "health_url": info.get("health"),
        "healthy": bool(health.get("healthy")) if "error" not in health else False,
        "error": health.get("error") or health.get("last_error"),
        "last_commit_age_s": health.get("last_commit_age_s"), "model": health.get("model") or info.get("model"),
        "active_version": health.get("active_version"), "traffic": health.get("traffic"),
        "open_incidents": health.get("open_incidents"), "lag": None,
    }
    for key in ("broker", "redis", "failing", "last_error_at", "progress"):  # newer /health fields, if any
        if key in health:
            out[key] = health[key]
    if broker_ok and info.get("group") and info.get("topics"):
        try:
            out["lag"] = st.lag(settings.kafka, str(info["group"]), list(info["topics"]), timeout_s=3.0)
        except Exception as exc:  # noqa: BLE001 - status reports, never crashes on one stage
            out["lag_error"] = str(exc)
    return out


def _models(settings: Settings, redis_ok: bool, since_ms: int) -> dict[str, dict[str, Any]]:
    from models.registry import Registry

    registry = Registry(settings.registry_dir)
    out: dict[str, dict[str, Any]] = {}
    for model in registry.models():
        prod = registry.production(model)
        out[model] = {"production": None if prod is None else prod.version, "open_incidents": []}
    if redis_ok and settings.history.enabled:
        from streams.runtime.history_store import RedisHistory
        from streams.runtime.workers import redis_client

        client = redis_client(settings)
        try:
            history = RedisHistory(client, prefix=settings.history.prefix)
            now = int(time.time() * 1000)
            for model in history.models():
                events = history.events(model, since_ms, now + 60_000)
                out.setdefault(model, {"production": None})["open_incidents"] = st.open_incidents(events)
        finally:
            client.close()
    return out


def collect(settings: Settings, how: str = "") -> dict[str, Any]:
    """Everything the table shows, as one JSON-able dict."""
    stack = _stack(settings, how)
    broker_ok = bool((stack.get("broker") or {}).get("reachable"))
    redis_ok = bool((stack.get("redis") or {}).get("reachable"))
    infos = st.stages(Path(settings.run_dir))
    stages = [_stage(settings, info, broker_ok) for info in infos]
    # a restarted monitor forgets its incidents (it never resolves them): count only what the running monitor
    # raised, or the last day's when none runs
    monitors = [float(i.get("registered_at") or 0) for i in infos if str(i.get("stage")) == "monitor"]
    since_ms = int(min(monitors) * 1000) - 60_000 if monitors else int(time.time() * 1000) - 86_400_000
    return {"stack": stack, "stages": stages, "models": _models(settings, redis_ok, since_ms)}


def _lag_text(lag: Mapping[str, int | None] | None) -> str:
    """``vitals 0/0/3 labels 0/-`` (``-``: nothing committed yet).

    >>> _lag_text({"vitals[0]": 0, "vitals[1]": 3, "labels[0]": None})
    'vitals 0/3 labels -'
    """
    if not lag:
        return "-"
    by_topic: dict[str, list[str]] = {}
    for key, value in lag.items():
        topic = key.rsplit("[", 1)[0]
        by_topic.setdefault(topic, []).append("-" if value is None else str(value))
    return " ".join(f"{t} {'/'.join(v)}" for t, v in by_topic.items())


def _traffic_text(traffic: Any) -> str:
    if not isinstance(traffic, Mapping):
        return "-"
    champ, chall = traffic.get("champion"), traffic.get("challenger")
    if chall is None:
        return f"v{champ} 100 %"
    pct = float(traffic.get("canary_pct") or 0.0)
    return f"v{champ} {100 - pct:g} % / v{chall} {pct:g} %" + (" +shadow" if traffic.get("shadow") else "")


def _incidents_text(incidents: Any) -> str:
    if not isinstance(incidents, list) or not incidents:
        return "-"
    sev = [str(i.get("severity")) for i in incidents if isinstance(i, Mapping)]
    return ", ".join(f"{sev.count(s)} {s}" for s in ("critical", "warning", "info") if s in sev) or str(len(incidents))


def render_table(data: Mapping[str, Any]) -> str:
    """The status as an aligned text table, then the open incidents."""
    stack = data["stack"]
    rows = [("NAME", "PID", "HEALTH", "LAG (per partition)", "LAST COMMIT", "MODEL", "TRAFFIC", "INCIDENTS")]
    for name, comp, addr in (("broker", stack.get("broker"), "bootstrap_servers"), ("redis", stack.get("redis"), "url")):
        comp = comp or {}
        health = "ok" if comp.get("reachable") else "DOWN"
        rows.append((name, str(comp.get("pid") or "-"), health, str(comp.get(addr) or "-"), "-", "-", "-", "-"))
    for s in data["stages"]:
        age = s.get("last_commit_age_s")
        model = f"{s['model']} v{s['active_version']}" if s.get("model") and s.get("active_version") else "-"
        rows.append((str(s.get("stage")), str(s.get("pid")), "ok" if s.get("healthy") else "UNHEALTHY",
                     _lag_text(s.get("lag")), "-" if age is None else f"{age:.1f} s ago", model,
                     _traffic_text(s.get("traffic")), _incidents_text(s.get("open_incidents"))))
    for model, m in data["models"].items():
        rows.append((f"model {model}", "-", "-", "-", "-", f"production v{m.get('production')}" if m.get("production")
                     else "-", "-", _incidents_text(m.get("open_incidents"))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(0, f"run dir: {stack.get('run_dir')} ({stack.get('found') or 'configured'})")
    for model, m in data["models"].items():
        for inc in m.get("open_incidents") or []:
            lines.append(f"open: {model} [{inc.get('severity')}] {inc.get('dedup_key')}: {inc.get('summary', '')[:90]}")
    for s in data["stages"]:
        if s.get("error") and not s.get("healthy"):
            lines.append(f"{s.get('stage')}: {s['error']}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace, load: Callable[..., Settings], how: str = "") -> int:
    data = collect(load(args), how)
    print(json.dumps(data, indent=2, default=str) if args.json else render_table(data))
    healthy = data["stack"].get("running") and all(s.get("healthy") for s in data["stages"])
    return 0 if healthy else 1
