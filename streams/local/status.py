"""``driftline status``: one table for the stack and each running stage.

Per stage (a ``driftline run`` process registers itself in ``<run_dir>/stages/``): health from its ``/health``
(fields read defensively: a stage of another version may lack some), consumer lag per partition, the age of
its last commit, the active model version and traffic split, and open incidents.

**Lag** = the partition's high watermark as a *fetch* reports it, minus the group's committed offset
(OffsetFetch). Measured on the embedded tansu broker: OffsetFetch answers right, and so does the high
watermark in a fetch response, while ListOffsets(latest) (``get_watermark_offsets(cached=False)``,
``AdminClient.list_offsets``) answers 1 for every partition; so status reads the watermark the way
``streams/runtime/offsets.py`` does. A real Kafka gives the same numbers either way.

**Open incidents**: the stage's ``/health`` ``open_incidents`` when it reports them, else the report history's
alert events (a trigger with no later resolve for the same dedup key) since the running monitor started (a
restarted monitor forgets its incidents and never resolves them), or of the last day when no monitor runs.

Example:
    >>> open_incidents([{"dedup_key": "k", "action": "trigger", "severity": "warning", "ts": 1, "kind": "alert"},
    ...                 {"dedup_key": "j", "action": "trigger", "severity": "critical", "ts": 2, "kind": "alert"},
    ...                 {"dedup_key": "k", "action": "resolve", "severity": "warning", "ts": 3, "kind": "alert"}])
    [{'dedup_key': 'j', 'severity': 'critical', 'since_ms': 2, 'summary': ''}]
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from streams.local.procs import pid_alive

__all__ = ["Stage", "forget_stage", "open_incidents", "register_stage", "stages"]

Stage = dict[str, Any]


def _stage_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "stages"


def register_stage(run_dir: Path, info: Mapping[str, Any]) -> Path:
    """Record a running stage (``stage``, ``pid``, ``health``, ``group``, ``topics``, ``model``...)."""
    d = _stage_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{info['stage']}-{info['pid']}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**info, "registered_at": time.time()}, sort_keys=True))
    os.replace(tmp, path)
    return path


def forget_stage(path: Path) -> None:
    with contextlib.suppress(OSError):
        Path(path).unlink()


def stages(run_dir: Path) -> list[Stage]:
    """The registered stages whose process is alive (files of dead ones are removed)."""
    out = []
    for path in sorted(_stage_dir(run_dir).glob("*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(info, dict) or not pid_alive(int(info.get("pid") or 0)):
            forget_stage(path)
            continue
        out.append(info)
    return out


def fetch_health(url: str, timeout_s: float = 1.5) -> dict[str, Any]:
    """The stage's ``/health`` JSON (also on HTTP 503, which means unhealthy), or ``{"error": ...}``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - a local health URL
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except (OSError, ValueError) as exc:
        return {"error": f"no answer from {url}: {exc}"}
    try:
        data = json.loads(body)
    except ValueError:
        return {"error": f"{url} did not answer JSON"}
    return data if isinstance(data, dict) else {"error": f"{url} answered {type(data).__name__}"}


def open_incidents(events: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Incidents still open after ``events`` (alert records in time order): the last action per dedup key was a
    trigger. Detector firings never resolve and are not incidents."""
    last: dict[str, Mapping[str, Any]] = {}
    for e in sorted(events, key=lambda e: int(e.get("ts") or 0)):
        if e.get("kind") == "alert" and e.get("dedup_key"):
            last[str(e["dedup_key"])] = e
    return [{"dedup_key": k, "severity": e.get("severity"), "since_ms": e.get("ts"), "summary": e.get("label", "")}
            for k, e in last.items() if e.get("action") == "trigger"]


def lag(kafka: Any, group: str, topics: list[str], timeout_s: float = 5.0) -> dict[str, int | None]:
    """``{"topic[p]": high watermark - committed}`` for ``group`` (None: nothing committed yet)."""
    from confluent_kafka import Consumer, TopicPartition

    from streams.runtime.clients import consumer_config
    from streams.runtime.offsets import end_offsets

    ends = end_offsets(kafka, topics, timeout_s)
    cfg = consumer_config(kafka, group)
    cfg["log_level"] = 0  # a broker error is reported in the table, not as librdkafka lines around it
    consumer = Consumer(cfg)
    try:
        committed = consumer.committed([TopicPartition(tp.topic, tp.partition) for tp in ends], timeout=timeout_s)
    finally:
        consumer.close()
    done = {(tp.topic, tp.partition): tp.offset for tp in committed}
    out: dict[str, int | None] = {}
    for tp in ends:
        c = done.get((tp.topic, tp.partition), -1)
        out[f"{tp.topic}[{tp.partition}]"] = None if c is None or c < 0 else max(0, tp.offset - c)
    return out
