"""The operator's view against the real broker and Redis: `driftline status` finds the stack from another
directory and shows a running stage's lag per partition and last commit; `driftline demo` ends without
librdkafka noise and leaves its drift report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streams.local.cli_status import collect, render_table
from streams.local.discovery import remember_stack
from streams.runtime.clients import close_producer
from streams.runtime.offsets import start_groups_at_end
from streams.runtime.topics import ensure_topics, required_topics
from streams.settings import Settings

pytestmark = pytest.mark.integration


def _cli(*argv: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.local.cli", *argv], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def test_status_finds_the_stack_and_shows_a_running_stage(settings: Settings, unique: str, tmp_path: Path) -> None:
    group = f"driftline-monitor-status-{unique}"
    settings = settings.replace(pipeline=settings.pipeline.__class__(monitor_group=group))
    ensure_topics(settings, required_topics(settings, []))
    start_groups_at_end(settings.kafka, {group: [settings.topics.predictions, settings.topics.labels]})
    env = {k: v for k, v in os.environ.items() if k not in ("DRIFTLINE_RUN_DIR", "KAFKA_BOOTSTRAP_SERVERS")}
    env.update(DRIFTLINE_RUN_DIR=settings.run_dir, DRIFTLINE_REGISTRY=settings.registry_dir,
               REDIS_URL=settings.redis_url,  # the session's Redis (its own when none answers on 6379)
               DRIFTLINE_MONITOR_GROUP=group, DRIFTLINE_CONTROL_KEY=settings.control_key,
               XDG_STATE_HOME=str(tmp_path / "state"), PYTHONUNBUFFERED="1")
    monitor = subprocess.Popen([sys.executable, "-m", "streams.local.cli", "run", "monitor"], env=env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "health" in (monitor.stdout.readline() if monitor.stdout else "")
        producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
        for i in range(30):
            producer.produce(settings.topics.labels, json.dumps({"prediction_id": f"x-{unique}-{i}", "label": 1}),
                             key=f"e{i}")
        close_producer(producer)
        deadline, data = time.time() + 60, {}
        while time.time() < deadline:
            data = collect(settings)
            stage = next((s for s in data["stages"] if s["stage"] == "monitor" and s["pid"] == monitor.pid), None)
            lag = (stage or {}).get("lag") or {}
            if stage and stage["healthy"] and stage["last_commit_age_s"] is not None and lag and all(
                    v == 0 for k, v in lag.items() if k.startswith(settings.topics.labels)):
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"the monitor never showed up healthy with zero lag: {json.dumps(data, default=str)[:2000]}")
        assert set(stage["lag"]) == {f"{t}[{p}]" for t in (settings.topics.predictions, settings.topics.labels)
                                     for p in range(settings.topics.predictions_partitions)}
        # from another directory, with no DRIFTLINE_RUN_DIR: found through the user state file `driftline up` writes
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        remember_stack(env, Path(settings.run_dir))
        found_env = {k: v for k, v in env.items() if k != "DRIFTLINE_RUN_DIR"}
        done = _cli("status", "--json", env=found_env, cwd=elsewhere)
        out = json.loads(done.stdout)
        assert out["stack"]["running"] and "started last" in out["stack"]["found"], done.stdout[:1000]
        assert any(s["stage"] == "monitor" and s["pid"] == monitor.pid for s in out["stages"])
        table = _cli("status", env=found_env, cwd=elsewhere).stdout
        assert "broker" in table and "monitor" in table and "labels 0/0/0" in table, table
        assert "s ago" in render_table(data)
    finally:
        monitor.send_signal(signal.SIGINT)
        try:
            monitor.wait(30)
        finally:
            if monitor.poll() is None:
                monitor.kill()
    assert not any(p.name.startswith(f"monitor-{monitor.pid}") for p in (Path(settings.run_dir) / "stages").glob("*"))


def test_demo_ends_without_client_noise_and_leaves_its_report(tmp_path: Path) -> None:
    env = {**os.environ, "DRIFTLINE_RUN_DIR": str(tmp_path / "run"), "XDG_STATE_HOME": str(tmp_path / "state")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    done = _cli("demo", "--json", "--entities", "100", "--duration", "25", "--drift-at", "10", env=env,
                cwd=tmp_path, timeout=400)
    assert "Disconnected" not in done.stderr and "Connection refused" not in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    report = Path(summary["report"])
    page = report.read_text(encoding="utf-8")
    for chart in ("top-feature", "ranking", "timeline", "volume", "scores"):
        assert f'data-chart="{chart}"' in page
    assert "<script" not in page and "What changed first:" in page
    if summary["rollback_command_id"]:
        assert "rollback v2 → v1" in page
    assert not (tmp_path / "run" / "stack.json").exists()  # the demo's own stack is gone
