"""The embedded stack against real processes: tansu broker and redis-server up, used, idempotent, down."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import streams.local.redis_server as redis_server_mod
import streams.local.stack as stack_mod
from streams.exceptions import StackError
from streams.local.procs import free_port, pid_alive, port_open, stop_pid
from streams.local.stack import EmbeddedStack, StackInfo, redis_reachable

pytestmark = pytest.mark.integration


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """A run dir whose stack is always taken down, even when a test fails half-way."""
    d = tmp_path / "run"
    yield d
    state = d / "stack.json"
    if state.exists():
        data = json.loads(state.read_text())
        for key in ("broker_pid", "redis_pid"):
            if data.get(key):
                stop_pid(int(data[key]), timeout_s=2)


def closed_redis_url() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


def roundtrip(bootstrap: str) -> tuple[bytes, bytes]:
    """Create a topic, produce one message, read it back with assign(); return (key, value)."""
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        fut.result(10)
    producer = Producer({"bootstrap.servers": bootstrap})
    delivered: list[object] = []
    producer.produce(
        topic, key=b"k1", value=b'{"hello": 1}', on_delivery=lambda err, msg: delivered.append(err)
    )
    assert producer.flush(10) == 0
    assert delivered == [None]
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "enable.auto.commit": False}
    )
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                return msg.key(), msg.value()
        raise AssertionError("the produced message never came back")
    finally:
        consumer.close()


def assert_gone(info: StackInfo) -> None:
    for pid in (info.broker_pid, info.redis_pid):
        if pid is not None:
            assert not pid_alive(pid), f"pid {pid} left behind"


def test_up_produce_consume_idempotent_down(run_dir: Path) -> None:
    stack = EmbeddedStack(run_dir, start_timeout_s=15)  # each start-up wait is bounded by this
    info = stack.up()
    assert info.broker_pid is not None and pid_alive(info.broker_pid)
    assert info.bootstrap_servers.startswith("127.0.0.1:")
    assert (run_dir / "stack.json").exists() and (run_dir / "broker.log").exists()

    status = stack.status()
    assert status["running"] is True
    assert status["broker"]["alive"] and status["broker"]["reachable"] and status["redis"]["reachable"]

    assert roundtrip(info.bootstrap_servers) == (b"k1", b'{"hello": 1}')

    # a second up(), from this object or another one (another CLI process), returns the same stack
    assert stack.up() == info
    assert EmbeddedStack(run_dir).up() == info

    assert stack.down() is True
    assert_gone(info)
    assert not (run_dir / "stack.json").exists()
    assert stack.status()["running"] is False
    assert stack.down() is True  # nothing to do
    if info.redis_pid is None:  # an external Redis is never stopped
        assert redis_reachable(info.redis_url)


def test_unreachable_redis_url_starts_own_redis_and_down_stops_it(run_dir: Path) -> None:
    wanted = closed_redis_url()
    with EmbeddedStack(run_dir, redis_url=wanted.replace("/0", "/2")) as info:
        assert info.redis_pid is not None and pid_alive(info.redis_pid)
        assert info.redis_url != wanted and info.redis_url.endswith("/2")  # db number kept
        assert redis_reachable(info.redis_url)
        assert EmbeddedStack(run_dir).status()["redis"]["alive"] is True
    assert_gone(info)
    assert not redis_reachable(info.redis_url)


def test_prefer_own_redis_and_stale_state_is_restarted(run_dir: Path) -> None:
    stack = EmbeddedStack(run_dir, prefer_own_redis=True)
    first = stack.up()
    assert first.redis_pid is not None
    # the broker dies behind our back: status says so, and up() cleans up and starts afresh
    assert first.broker_pid is not None and stop_pid(first.broker_pid)
    status = stack.status()
    assert status["running"] is False and status["broker"]["alive"] is False
    second = stack.up()
    try:
        assert second.broker_pid != first.broker_pid
        assert not pid_alive(first.redis_pid)  # the stale half was stopped, not leaked
        assert stack.status()["running"] is True
    finally:
        assert stack.down()
    assert_gone(first)
    assert_gone(second)


def test_failed_start_stops_what_it_started(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spawned: list[int] = []
    real_spawn = stack_mod.spawn

    def recording_spawn(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        proc = real_spawn(*args, **kwargs)  # type: ignore[arg-type]
        spawned.append(proc.pid)
        return proc

    monkeypatch.setattr(stack_mod, "spawn", recording_spawn)
    monkeypatch.setattr(redis_server_mod, "find_redis_server", lambda: None)
    with pytest.raises(StackError, match="no redis-server binary"):
        EmbeddedStack(run_dir, prefer_own_redis=True).up()
    assert len(spawned) == 1  # the broker was started ...
    assert not pid_alive(spawned[0])  # ... and stopped again
    assert not (run_dir / "stack.json").exists()


def test_external_bootstrap_must_answer(run_dir: Path) -> None:
    port = free_port()
    with pytest.raises(StackError, match="does not answer"):
        EmbeddedStack(run_dir, external_bootstrap=f"127.0.0.1:{port}", start_timeout_s=1).up()
    assert not (run_dir / "stack.json").exists()


def test_external_bootstrap_is_used_and_never_stopped(run_dir: Path, tmp_path: Path) -> None:
    with EmbeddedStack(tmp_path / "owner") as owner:
        with EmbeddedStack(run_dir, external_bootstrap=owner.bootstrap_servers) as info:
            assert info.broker_pid is None and info.bootstrap_servers == owner.bootstrap_servers
        assert owner.broker_pid is not None and pid_alive(owner.broker_pid)
        host, _, port = owner.bootstrap_servers.rpartition(":")
        assert port_open(host, int(port))
    assert_gone(owner)


def test_busy_broker_port_is_refused(run_dir: Path, tmp_path: Path) -> None:
    with EmbeddedStack(tmp_path / "other") as other:
        port = int(other.bootstrap_servers.rpartition(":")[2])
        with pytest.raises(StackError, match="already in use"):
            EmbeddedStack(run_dir, broker_port=port).up()
    assert_gone(other)
    assert not (run_dir / "stack.json").exists()
