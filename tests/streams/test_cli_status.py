"""`driftline status` without a broker: /health read defensively (old, new and broken answers), stages registered
by pid, the table, open incidents from the history."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from streams.local import status as st
from streams.local.cli_status import _stage, render_table
from streams.metrics import HealthServer, Metrics
from streams.settings import Settings


def serve(answer: dict[str, Any]) -> HealthServer:
    return HealthServer(Metrics(), lambda: answer).start()


def test_health_fields_are_read_defensively() -> None:
    new = {"healthy": False, "last_error": "RedisError: gone", "failing": "redis", "last_commit_age_s": 12.5,
           "active_version": 3, "model": "m", "traffic": {"champion": 3, "challenger": 4, "canary_pct": 10.0},
           "open_incidents": [{"severity": "critical"}], "progress": {"stalled_s": 40}}
    servers = [serve(new), serve({"stage": "monitor"}), serve({"healthy": True})]  # newer, older, minimal
    try:
        rows = [_stage(Settings(), {"stage": f"s{i}", "pid": 1, "health": f"http://127.0.0.1:{s.port}/health"},
                       broker_ok=False) for i, s in enumerate(servers)]
        rows.append(_stage(Settings(), {"stage": "gone", "pid": 2, "health": "http://127.0.0.1:9/health"}, False))
    finally:
        for s in servers:
            s.stop()
    assert rows[0]["healthy"] is False and rows[0]["failing"] == "redis" and rows[0]["progress"] == {"stalled_s": 40}
    assert rows[1]["healthy"] is False and rows[1]["active_version"] is None
    assert rows[2]["healthy"] is True
    assert rows[3]["healthy"] is False and "no answer" in rows[3]["error"]
    table = render_table({"stack": {"run_dir": "/r", "found": "DRIFTLINE_RUN_DIR", "broker": {"reachable": True,
                                    "bootstrap_servers": "b:1", "pid": 7}, "redis": {"reachable": False, "url": "u"}},
                          "stages": rows, "models": {"m": {"production": 3, "open_incidents": [
                              {"severity": "warning", "dedup_key": "m/3/data_drift/hr/all", "summary": "PSI"}]}}})
    lines = table.splitlines()
    assert lines[0] == "run dir: /r (DRIFTLINE_RUN_DIR)"
    assert "DOWN" in next(line for line in lines if line.startswith("redis"))
    s0 = next(line for line in lines if line.startswith("s0"))
    assert "UNHEALTHY" in s0 and "12.5 s ago" in s0 and "m v3" in s0 and "v3 90 % / v4 10 %" in s0 and "1 critical" in s0
    assert "open: m [warning] m/3/data_drift/hr/all: PSI" in table
    assert "s0: RedisError: gone" in table


def test_stages_of_dead_processes_are_dropped(tmp_path: Path) -> None:
    alive = st.register_stage(tmp_path, {"stage": "monitor", "pid": os.getpid(), "health": "h"})
    st.register_stage(tmp_path, {"stage": "pipeline", "pid": 2**22 + 12345, "health": "h"})  # no such process
    assert [s["stage"] for s in st.stages(tmp_path)] == ["monitor"]
    assert len(list((tmp_path / "stages").glob("*.json"))) == 1
    st.forget_stage(alive)
    assert st.stages(tmp_path) == []


def test_open_incidents_follow_trigger_and_resolve() -> None:
    ev = [{"kind": "alert", "dedup_key": "a", "action": "trigger", "severity": "warning", "ts": 1},
          {"kind": "alert", "dedup_key": "a", "action": "trigger", "severity": "critical", "ts": 2},
          {"kind": "detector", "dedup_key": "d", "action": "trigger", "severity": "critical", "ts": 3},
          {"kind": "alert", "dedup_key": "b", "action": "trigger", "severity": "warning", "ts": 4},
          {"kind": "alert", "dedup_key": "b", "action": "resolve", "severity": "warning", "ts": 5}]
    assert [(i["dedup_key"], i["severity"]) for i in st.open_incidents(reversed(ev))] == [("a", "critical")]
