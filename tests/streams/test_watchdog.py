"""Honest /health: the watchdog (records waiting, no commit: red, then a new consumer), the failing dependency
named even when its probe answers, and a /health client that hangs up no longer killing the worker (SIGPIPE)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import redis
from confluent_kafka import TopicPartition

from streams.runtime.batch import BatchResult, Output
from streams.runtime.loop import BatchLoop
from streams.runtime.watchdog import Watchdog, chain, records_waiting
from streams.runtime.workers import Worker

from .fake_message import FakeMessage
from .test_loop import FakeConsumer, FakeProducer, msgs


class Clock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class LaggingConsumer(FakeConsumer):
    """A consumer assigned ``src[0]`` whose fetches stopped: it polls nothing while the broker holds ``high``."""

    def __init__(self, batches: Sequence[Sequence[FakeMessage]], events: list[str], high: int = 556_000,
                 position: int = 1_000) -> None:
        super().__init__(batches, events)
        self.assigned_tps = [TopicPartition("src", 0)]
        self.high, self.pos = high, position

    def position(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.pos) for tp in tps]

    def committed(self, tps: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self.pos) for tp in tps]

    def get_watermark_offsets(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return 0, self.high


class Handler:
    def __init__(self, exc: Exception | None = None) -> None:
        self.exc = exc

    def process(self, messages: Sequence[FakeMessage]) -> BatchResult:
        if self.exc is not None:
            raise self.exc
        return BatchResult([Output("out", b"v")])

    def on_assign(self, partitions: object) -> None:
        pass

    def on_revoke(self, partitions: object) -> None:
        pass


def setup(handler: Handler, batches: list[list[FakeMessage]] | None = None, **kw: float
          ) -> tuple[BatchLoop, Watchdog, Clock, list[LaggingConsumer]]:
    clock = Clock()
    events: list[str] = []
    consumer = LaggingConsumer(batches or [], events)
    loop = BatchLoop(consumer, FakeProducer(events), handler, ["src"], max_rows=100, max_ms=1,  # type: ignore[arg-type]
                     max_backoff_s=0.0, flush_timeout_s=0.01)
    loop.health.started_at = clock.t
    made: list[LaggingConsumer] = []

    def new_consumer(fetch_wait_max_ms: int) -> LaggingConsumer:
        made.append(LaggingConsumer([], events, high=0, position=0))
        made[-1].fetch_wait_max_ms = fetch_wait_max_ms  # type: ignore[attr-defined]
        return made[-1]

    dog = Watchdog("pipeline", kw.get("stall_after_s", 60.0), new_consumer, check_every_s=0.0, clock=clock)
    loop.tick = chain(None, lambda: dog.check(loop))
    return loop, dog, clock, made


def test_a_consumer_that_polls_nothing_while_records_wait_is_red_then_re_created() -> None:
    loop, dog, clock, made = setup(Handler())
    old = loop.consumer
    loop.run_once()
    assert not dog.stalled and dog.waiting == 555_000  # waiting, but not for long yet
    clock.t += 61
    loop.run_once()
    assert dog.stalled and made and loop.consumer is made[0] and old.closed
    assert made[0].subscribed == ["src"] and dog.restarts == 1
    assert made[0].fetch_wait_max_ms == 40 and dog.status()["fetch_wait_max_ms"] == 40  # type: ignore[attr-defined]
    assert loop.metrics.consumer_restarts.labels("pipeline")._value.get() == 1
    assert loop.metrics.healthy.labels("pipeline")._value.get() == 0  # driftline_healthy follows /health
    worker = Worker("pipeline-x", loop, probes={"redis": lambda: "ok"}, watchdog=dog)
    worker.thread = type("T", (), {"is_alive": lambda self: True})()  # type: ignore[assignment]
    loop.health.last_poll_at = clock.t
    state = worker.health()
    assert state["healthy"] is False and state["progress"]["stalled"] is True  # red while it lasts
    assert state["progress"]["records_waiting"] == 555_000 and state["progress"]["consumer_restarts"] == 1
    clock.t += 10
    loop.run_once()  # the new consumer has nothing waiting: green again, no second restart
    assert not dog.stalled and dog.restarts == 1
    assert loop.metrics.healthy.labels("pipeline")._value.get() == 1


def test_no_stall_while_full_batches_commit_or_nothing_waits() -> None:
    loop, dog, clock, made = setup(Handler(), batches=[msgs("src", 0, range(100))] * 3)  # max_rows 100
    for _ in range(3):
        clock.t += 50
        loop.health.last_commit_at = clock.t  # each batch commits
        loop.run_once()
    assert not dog.stalled and made == []
    loop.consumer.high = loop.consumer.pos  # type: ignore[attr-defined]
    clock.t += 600
    loop.run_once()
    assert not dog.stalled and made == []


def test_a_failing_dependency_is_reported_not_restarted_around() -> None:
    loop, dog, clock, made = setup(Handler(redis.ResponseError("OOM command not allowed when used memory > "
                                                               "'maxmemory'")),
                                   batches=[msgs("src", 0, [1])] * 3)
    loop.run_once()
    clock.t += 120
    loop.run_once()
    assert dog.stalled and made == []  # the loop's own retries handle Redis; a new consumer would not help
    worker = Worker("pipeline-x", loop, probes={"redis": lambda: "ok", "broker": lambda: "ok"}, watchdog=dog)
    worker.thread = type("T", (), {"is_alive": lambda self: True})()  # type: ignore[assignment]
    loop.health.last_poll_at = clock.t
    state = worker.health()
    assert state["healthy"] is False and state["failing"] == "redis" and state["broker"] == "ok"
    assert state["redis"].startswith("failing: ResponseError: OOM command not allowed")  # not "ok": PING answers
    assert state["last_error_class"] == "ResponseError"


def test_a_paused_stage_is_not_stalled() -> None:
    loop, dog, clock, made = setup(Handler())
    loop.hold = lambda: True
    clock.t += 600
    loop.run_once()
    loop.run_once()
    assert not dog.stalled and made == []


def test_records_waiting_uses_committed_offsets_before_the_first_record() -> None:
    c = LaggingConsumer([], [], high=50, position=-1001)
    c.committed = lambda tps, timeout: [TopicPartition(t.topic, t.partition, 20) for t in tps]  # type: ignore[method-assign]
    assert records_waiting(c) == 30  # type: ignore[arg-type]
    c.assigned_tps = []
    assert records_waiting(c) == 0  # type: ignore[arg-type]


SIGPIPE_SCRIPT = textwrap.dedent("""
    import signal, socket, sys, time
    from streams.local.cli import keep_running_on_broken_pipes
    from streams.metrics import HealthServer, Metrics
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # what driftline's main() sets for every command
    if sys.argv[1] == "fixed":
        keep_running_on_broken_pipes()  # what `driftline run` now does
    def health():
        time.sleep(0.3)  # the probes: a Redis PING, a metadata request
        return {"healthy": True, "pad": "x" * 200_000}
    server = HealthServer(Metrics(), health).start()
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(b"GET /health HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        s.close()  # the client's timeout ran out: it hangs up before the answer
        time.sleep(0.6)
    print("served on", flush=True)
""")


def test_a_health_client_that_hangs_up_no_longer_kills_the_worker(tmp_path: Path) -> None:
    script = tmp_path / "sigpipe.py"
    script.write_text(SIGPIPE_SCRIPT)
    root = Path(__file__).resolve().parents[2]
    before = subprocess.run([sys.executable, str(script), "default"], capture_output=True, text=True, cwd=root,
                            timeout=60)
    assert before.returncode == -13 and "served on" not in before.stdout  # killed by SIGPIPE: the shell's 141
    after = subprocess.run([sys.executable, str(script), "fixed"], capture_output=True, text=True, cwd=root,
                           timeout=60)
    assert after.returncode == 0 and "served on" in after.stdout
    assert "Traceback" not in after.stderr  # a client going away is not an error worth a traceback


def test_a_partition_no_longer_fetched_is_seen_by_the_probe_once_per_bound() -> None:
    """Paused or broken fetching reports no new high watermark: the cached measure says nothing waits."""
    loop, dog, clock, made = setup(Handler())
    loop.consumer.high = loop.consumer.pos  # type: ignore[attr-defined]
    probed: list[list[TopicPartition]] = []
    dog.probe = lambda at: probed.append(at) or 7
    loop.run_once()
    assert probed == [] and not dog.stalled  # committed recently enough: no probe
    clock.t += 61
    loop.run_once()
    assert [(tp.topic, tp.partition, tp.offset) for tp in probed[0]] == [("src", 0, 1_000)]
    assert dog.stalled and dog.waiting == 7 and dog.restarts == 1
    clock.t += 1
    loop.run_once()
    assert len(probed) == 1  # not again within the bound


def test_each_restart_doubles_the_fetch_wait_up_to_librdkafkas_default() -> None:
    loop, dog, clock, made = setup(Handler())
    for _ in range(7):
        dog.restart(loop)
    assert [c.fetch_wait_max_ms for c in made] == [40, 80, 160, 320, 500, 500, 500]  # type: ignore[attr-defined]


def test_a_trickle_while_records_wait_is_a_stall_too() -> None:
    """The embedded broker starving a consumer: a record now and then, each committed, 555,000 waiting."""
    loop, dog, clock, made = setup(Handler(), batches=[msgs("src", 0, [i]) for i in range(4)])
    for _ in range(4):
        clock.t += 25
        loop.health.last_commit_at = clock.t
        loop.run_once()
    assert dog.stalled and dog.restarts == 1 and dog.handled_in_bound is not None and dog.handled_in_bound < 100
    assert dog.status()["handled_in_bound"] == dog.handled_in_bound
