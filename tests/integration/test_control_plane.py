"""The control plane survives restarts, on the real broker and Redis.

1. A signed rollback captured from the control topic and published again after the worker restarted (and after a
   newer promote) is rejected ``replayed``, raises the critical alert and changes nothing.
2. Rollback, ``kill -9`` the worker process, start a new one: it serves v1 and nobody acks the rollback twice.
3. An old command after a newer one is rejected ``superseded``.
4. Two scorers in one group apply a command once each and ack once each; the ledger names the decider.
5. A command issued while no scorer runs is decided by the first one that starts.
6. Key rotation: current + previous key accepted, an unknown key id refused, the previous key refused after.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from confluent_kafka import Producer

from features.views import VITALS_VIEW
from models.registry import Registry
from models.train import build_estimator
from streams import codec
from streams.control.channel import publish
from streams.control.keyring import ControlKey, Keyring
from streams.control.protocol import new_command, sign_command
from streams.local.simulator import SimConfig, generate
from streams.runtime.topics import TopicSpec, ensure_topics
from streams.runtime.workers import Worker, build_pipeline, control_store
from streams.settings import PipelineSettings, Settings, TopicSettings

from .rollback_chain import read_all, read_records
from .test_scale_out import worker_env

pytestmark = pytest.mark.integration
MODEL = "risk"


@dataclasses.dataclass
class Env:
    settings: Settings
    view: Any
    registry: Registry
    producer: Producer

    def command(self, kind: str, *, key: bytes | ControlKey | Keyring | None = None, at_ms: int | None = None,
                **kw: Any) -> dict[str, Any]:
        """A signed command, published; returns it."""
        now = int(time.time() * 1000) if at_ms is None else at_ms
        cmd = sign_command(new_command(kind, model=MODEL, now_ms=now, issued_by="pytest", **kw),
                           key if key is not None else self.settings.control_key.encode())
        publish(self.producer, self.settings.topics.control, cmd)
        return cmd

    def control(self) -> list[dict]:
        return read_all(self.settings.kafka.bootstrap_servers, self.settings.topics.control, 1, idle_s=1.5)

    def acks(self, command_id: str) -> list[dict]:
        return [m for m in self.control() if m.get("type") == "ack" and m["ack_for"] == command_id]

    def wait_acks(self, command_id: str, n: int, timeout_s: float = 30.0) -> list[dict]:
        deadline = time.time() + timeout_s
        got = self.acks(command_id)
        while len(got) < n and time.time() < deadline:
            time.sleep(0.3)
            got = self.acks(command_id)
        assert len(got) >= n, f"{len(got)} acks for {command_id} after {timeout_s}s: {got}"
        return got

    def capture(self, command_id: str, timeout_s: float = 30.0) -> Any:
        """The raw record of a command on the control topic, as an eavesdropper would keep it."""
        deadline = time.time() + timeout_s
        while True:
            for m in read_records(self.settings.kafka.bootstrap_servers, self.settings.topics.control, 1, idle_s=1.0):
                if codec.decode(m.value()).get("command_id") == command_id:
                    return m
            assert time.time() < deadline, f"command {command_id} not found on the control topic"

    def pipeline(self, instance: str, settings: Settings | None = None) -> Worker:
        return build_pipeline(settings or self.settings, self.view, MODEL, instance=instance)[0].start()


@pytest.fixture()
def env(settings: Settings, unique: str) -> Iterator[Env]:
    topics = TopicSettings(predictions=f"pred-{unique}", labels=f"labels-{unique}", alerts=f"alerts-{unique}",
                           control=f"control-{unique}", source_partitions=2)
    s = settings.replace(topics=topics, pipeline=PipelineSettings(features_group=f"g-{unique}", batch_max_rows=200))
    view = dataclasses.replace(VITALS_VIEW, source_topic=f"vitals-{unique}")
    ensure_topics(s, [TopicSpec(view.source_topic, 2), TopicSpec(f"{view.source_topic}.dlq", 1),
                      TopicSpec(s.topics.stale_features(view.source_topic), 2),
                      TopicSpec(topics.predictions, 3), TopicSpec(topics.alerts, 1), TopicSpec(topics.control, 1)])
    reg = Registry(s.registry_dir)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, len(view.feature_names)))
    for sign in (1, -1):  # v1, then v2 (production; its rollback target is v1)
        est = build_estimator("logistic").fit(X, (sign * X[:, 0] > 0).astype(int))
        reg.promote(MODEL, reg.register(MODEL, est, feature_names=view.feature_names).version)
    producer = Producer({"bootstrap.servers": s.kafka.bootstrap_servers})
    yield Env(s, view, reg, producer)
    producer.flush(5)
    client = redis.Redis.from_url(s.redis_url)
    try:
        control_store(s, client, reg, MODEL).clear()
        for key in client.scan_iter(match=f"*g:g-{unique}*".encode(), count=1000):
            client.delete(key)
    finally:
        client.close()


def _wait(done: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if done():
            return True
        time.sleep(0.2)
    return done()


def _stop(*workers: Worker) -> None:
    for w in workers:
        w.stop()
    for w in workers:
        assert w.error is None, w.error


# ------------------------------------------------------------------------------------------ 1. replay
def test_captured_rollback_replayed_after_a_restart_and_a_promote_is_rejected(env: Env) -> None:
    w1 = env.pipeline("w1")
    try:
        rollback = env.command("rollback", to_version=1, from_version=2, reason="psi 0.4")
        [ack] = env.wait_acks(rollback["command_id"], 1)
        assert (ack["instance"], ack["status"], ack["active_version"]) == ("w1", "applied", 1)
        captured = env.capture(rollback["command_id"])
        promote = env.command("promote", to_version=2, reason="fixed")
        env.wait_acks(promote["command_id"], 1)
    finally:
        _stop(w1)
    w2 = env.pipeline("w2")  # the restarted worker (a new process would have a new instance id too)
    try:
        assert w2.probes["active_version"]() == 2  # the desired state, not a guess
        env.producer.produce(env.settings.topics.control, captured.value(), captured.key())  # the same bytes
        env.producer.flush(10)
        acks = env.wait_acks(rollback["command_id"], 2)
        assert _wait(lambda: w2.probes["control"]()["pending_commands"] == 0, 10)
        active = w2.probes["active_version"]()
    finally:
        _stop(w2)
    replay = [a for a in acks if a["instance"] == "w2"]
    assert [(a["status"], a["reason"], a["active_version"]) for a in replay] == [("rejected", "replayed", 2)]
    assert "replayed" in replay[0]["error"]
    assert [a["instance"] for a in acks] == ["w1", "w2"]  # nobody applied it twice
    assert active == 2 and env.registry.production(MODEL).version == 2
    alerts = read_all(env.settings.kafka.bootstrap_servers, env.settings.topics.alerts, 1, idle_s=1.5)
    rejected = [a for a in alerts if a["statistic"] == "command_rejected"]
    assert any(rollback["command_id"] in a["summary"] and "replayed" in a["summary"] and a["severity"] == "critical"
               for a in rejected), [a["summary"] for a in alerts]
    # the desired state's history, as `driftline registry show` prints it
    client = redis.Redis.from_url(env.settings.redis_url)
    try:
        history = control_store(env.settings, client, env.registry, MODEL).history()
    finally:
        client.close()
    assert [(h["command"], h["command_id"], h["issued_by"], h["version"]) for h in history] == [
        ("rollback", rollback["command_id"], "pytest", 1), ("promote", promote["command_id"], "pytest", 2)]
    events = [(e["action"], e.get("command_id")) for e in env.registry.history(MODEL)]
    assert events[-2:] == [("rollback", rollback["command_id"]), ("promote", promote["command_id"])]


# ------------------------------------------------------------------------------------------ 2. kill -9
def _health(url: str) -> dict:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - a local test URL
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:  # 503 while not healthy yet: the body is the same JSON
        return json.loads(exc.read())
    except OSError:
        return {}


def test_rollback_then_kill_9_a_new_worker_serves_v1_and_acks_nothing_twice(env: Env, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "streams.local.cli", "run", "pipeline", "--model", MODEL,
           "--topic", env.view.source_topic]
    child_env = worker_env(env.settings, tmp_path / "run", DRIFTLINE_SOURCE_PARTITIONS="2")

    def start() -> tuple[subprocess.Popen, str]:
        proc = subprocess.Popen(cmd, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "health" in line, line
        return proc, json.loads(line)["health"]

    procs: list[subprocess.Popen] = []
    try:
        first, health1 = start()
        procs.append(first)
        assert _wait(lambda: _health(health1).get("active_version") == 2, 30), _health(health1)
        rollback = env.command("rollback", to_version=1, reason="drift")
        [ack] = env.wait_acks(rollback["command_id"], 1)
        assert (ack["status"], ack["active_version"]) == ("applied", 1)
        first.send_signal(signal.SIGKILL)  # no goodbye
        first.wait(10)
        second, health2 = start()
        procs.append(second)
        assert _wait(lambda: _health(health2).get("active_version") == 1, 30), _health(health2)
        sim = list(generate(SimConfig(entities=20, rate=1000, duration_s=0.3, seed=5, time_scale=30.0)))
        for ev in sim:
            env.producer.produce(env.view.source_topic, codec.encode(ev.value), ev.key)
        env.producer.flush(10)
        preds: list[dict] = []

        def scored() -> bool:
            preds[:] = [p for p in read_all(env.settings.kafka.bootstrap_servers, env.settings.topics.predictions, 3,
                                            idle_s=1.5) if p["variant"] == "champion"]
            return len(preds) >= len(sim)

        assert _wait(scored, 60), len(preds)
        state = _health(health2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
    assert {p["model_version"] for p in preds} == {1}  # the new worker serves the rollback's v1
    assert state["control"]["desired_version"] == 1 and state["control"]["diverged"] is None
    assert [a["status"] for a in env.acks(rollback["command_id"])] == ["applied"]  # acked once, by the first
    assert env.registry.production(MODEL).version == 1


# ------------------------------------------------------------------------------------------ 3. superseded
def test_an_old_command_after_a_newer_one_is_superseded(env: Env) -> None:
    w = env.pipeline("w1")
    try:
        t0 = int(time.time() * 1000)
        rollback = env.command("rollback", to_version=1, at_ms=t0)
        env.wait_acks(rollback["command_id"], 1)
        promote = env.command("promote", to_version=2, at_ms=t0 + 1_000)
        env.wait_acks(promote["command_id"], 1)
        delayed = env.command("rollback", to_version=1, at_ms=t0 - 2_000)  # issued first, delivered last
        [ack] = env.wait_acks(delayed["command_id"], 1)
        active = w.probes["active_version"]()
    finally:
        _stop(w)
    assert (ack["status"], ack["reason"], ack["active_version"]) == ("rejected", "superseded", 2)
    assert promote["command_id"] in ack["error"]
    assert active == 2 and env.registry.production(MODEL).version == 2


# ------------------------------------------------------------------------------------------ 4. one group, two
def test_two_scorers_in_one_group_apply_once_each_and_ack_once_each(env: Env) -> None:
    a, b = env.pipeline("a"), env.pipeline("b")
    try:
        rollback = env.command("rollback", to_version=1)
        acks = env.wait_acks(rollback["command_id"], 2)
        time.sleep(2.0)  # any late duplicate ack would show up now
        acks = env.acks(rollback["command_id"])
        active = (a.probes["active_version"](), b.probes["active_version"]())
    finally:
        _stop(a, b)
    assert sorted((x["instance"], x["status"], x["active_version"]) for x in acks) == [
        ("a", "applied", 1), ("b", "applied", 1)]
    assert active == (1, 1)
    client = redis.Redis.from_url(env.settings.redis_url)
    try:
        store = control_store(env.settings, client, env.registry, MODEL)
        look = store.look(rollback["command_id"], "nobody")
        assert look.entry is not None and look.entry.decided_by in ("a", "b") and look.entry.status == "applied"
        assert set(store.acks(rollback["command_id"])) == {"a", "b"}
        assert look.state.revision == 1 and len(store.history()) == 1  # decided once for the model
    finally:
        client.close()
    c = env.pipeline("c")  # a third instance joining later reflects it and acks nothing
    try:
        time.sleep(2.0)
        assert c.probes["active_version"]() == 1
    finally:
        _stop(c)
    assert len(env.acks(rollback["command_id"])) == 2


# ------------------------------------------------------------------------------------------ 5. catch-up
def test_a_command_issued_while_no_scorer_runs_is_served_by_the_next_one(env: Env) -> None:
    rollback = env.command("rollback", to_version=1)  # nobody listens yet
    w = env.pipeline("late")
    try:
        [ack] = env.wait_acks(rollback["command_id"], 1)
        active = w.probes["active_version"]()
    finally:
        _stop(w)
    assert (ack["instance"], ack["status"], active) == ("late", "applied", 1)


# ------------------------------------------------------------------------------------------ 6. key rotation
def test_key_rotation_without_downtime(env: Env) -> None:
    old, new, stranger = (ControlKey(kid, os.urandom(32)) for kid in ("2024-01", "2024-06", "1999-12"))
    rotating = env.settings.replace(control_key=new.secret.hex(), control_key_id=new.key_id,
                                    control_previous_key=old.secret.hex(), control_previous_key_id=old.key_id)
    keys = {k.key_id: ControlKey(k.key_id, k.secret.hex().encode()) for k in (old, new, stranger)}  # as configured
    w = env.pipeline("w1", rotating)
    try:
        by_old = env.command("pause", key=keys["2024-01"])
        by_new = env.command("resume", key=keys["2024-06"])
        unknown = env.command("pause", key=keys["1999-12"])
        acks = {c["command_id"]: env.wait_acks(c["command_id"], 1)[0] for c in (by_old, by_new, unknown)}
    finally:
        _stop(w)
    assert acks[by_old["command_id"]]["status"] == "applied" and acks[by_new["command_id"]]["status"] == "applied"
    refused = acks[unknown["command_id"]]
    assert (refused["status"], refused["reason"]) == ("rejected", "unverified")
    assert "unknown key id '1999-12'" in refused["error"]
    done = env.settings.replace(control_key=new.secret.hex(), control_key_id=new.key_id)  # rotation finished
    w = env.pipeline("w2", done)
    try:
        late_old = env.command("pause", key=keys["2024-01"])
        [ack] = env.wait_acks(late_old["command_id"], 1)
        paused = w.probes["control"]()["paused"]
    finally:
        _stop(w)
    assert (ack["status"], ack["reason"], paused) == ("rejected", "unverified", False)
    assert new.secret.hex() not in json.dumps(env.control())  # keys never travel


# ------------------------------------------------------------------------------------------ 7. pause survives
def test_a_pause_survives_a_restart_and_the_resume_loses_nothing(env: Env) -> None:
    w1 = env.pipeline("w1")
    try:
        pause = env.command("pause", reason="maintenance")
        env.wait_acks(pause["command_id"], 1)
    finally:
        _stop(w1)
    w2 = env.pipeline("w2")  # comes back paused: the desired state says so
    sim = list(generate(SimConfig(entities=10, rate=1000, duration_s=0.2, seed=9, time_scale=30.0)))

    def champion() -> list[dict]:
        return [p for p in read_all(env.settings.kafka.bootstrap_servers, env.settings.topics.predictions, 3,
                                    idle_s=1.5) if p["variant"] == "champion"]

    try:
        for ev in sim:
            env.producer.produce(env.view.source_topic, codec.encode(ev.value), ev.key)
        env.producer.flush(10)
        time.sleep(4.0)  # the group has assigned the partitions by now (~1.2 s on tansu)
        held = champion()
        assert w2.probes["control"]()["paused"] is True and w2.loop.health.assigned
        resume = env.command("resume")
        env.wait_acks(resume["command_id"], 1)
        assert _wait(lambda: len(champion()) >= len(sim), 30)
    finally:
        _stop(w2)
    assert held == []  # nothing scored while paused
    assert len({p["prediction_id"] for p in champion()}) == len(sim)  # everything after the resume
