"""The faust-streaming engine: the same handlers as the default runner, driven from a Faust agent.

``to_faust(worker, group)`` takes a worker built by :func:`streams.runtime.workers.build_pipeline` or
:func:`streams.runtime.workers.build_monitor` and runs its handler, producer and control ``tick`` from a Faust app
instead of the confluent :class:`~streams.runtime.loop.BatchLoop`. Nothing is implemented twice: features, scoring,
drift detection, the control commands (``ControlReader`` + ``ControlAgent`` in the worker's ``tick``) and the
Redis state are the worker's own objects; this module only moves records.

How records flow: the agent iterates ``stream.noack().events()`` (manual acks) and puts each event into a
bounded queue; a batcher task takes up to ``max_rows`` events or waits ``max_ms``, wraps them in
:class:`FaustRecord` (confluent ``Message``'s methods), calls ``handler.process(batch)``, produces the outputs
with the worker's confluent producer, flushes and checks every delivery, runs ``result.finalize()`` (state and
offset to Redis, atomically) and only **then** acks the events. Faust commits acked offsets only, so it can never
commit past a batch whose state was not written. A record that makes the handler raise is isolated and
dead-lettered as ``poison`` exactly as in the default loop (:mod:`streams.runtime.isolation`); a batch failed by
an infrastructure fault is not acked: it is retried (exponential backoff, 0.1 s doubling to 5 s) and the worker
reports itself unhealthy meanwhile, as the default loop does.
Between batches the processing is synchronous (no ``await`` between ``process`` and the acks), so a
cancellation on shutdown cannot split a batch.

No Faust tables: driftline state stays in the Redis store (``store="memory://"``, nothing is written to
changelog topics), ``stream_wait_empty=False`` (a stop or rebalance does not wait for queued, un-acked events:
they are simply not committed and are replayed, and the Redis offset check skips what was already applied),
the consumer group is the default runner's group id (the app id), and topics, keys and
values are the same bytes (``raw`` serializers). ``pause`` holds the batcher (the bounded queue then stops the
agent and Faust's fetching); ``resume`` releases it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Self

from confluent_kafka import TopicPartition

from streams.metrics import Metrics
from streams.runtime.loop import BatchLoop
from streams.runtime.workers import Worker
from streams.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["FaustRecord", "FaustWorker", "faust_app", "to_faust", "broker_urls"]

_TIMESTAMP_CREATE_TIME = 1  # confluent_kafka.TIMESTAMP_CREATE_TIME


class FaustRecord:
    """A Faust message seen through confluent ``Message``'s methods (what the handlers call).

    >>> class M: topic, partition, offset, key, value, timestamp, headers = "t", 2, 7, b"k", b"{}", 1.5, []
    >>> r = FaustRecord(M())
    >>> (r.topic(), r.partition(), r.offset(), r.key(), r.value(), r.timestamp(), r.error())
    ('t', 2, 7, b'k', b'{}', (1, 1500), None)
    """

    __slots__ = ("_m",)

    def __init__(self, message: Any) -> None:
        self._m = message

    def topic(self) -> str:
        return self._m.topic

    def partition(self) -> int:
        return self._m.partition

    def offset(self) -> int:
        return self._m.offset

    def key(self) -> bytes | None:
        return self._m.key

    def value(self) -> bytes | None:
        return self._m.value

    def timestamp(self) -> tuple[int, int]:
        return _TIMESTAMP_CREATE_TIME, int(round((self._m.timestamp or 0) * 1000))

    def headers(self) -> list[tuple[str, bytes]] | None:
        h = self._m.headers
        if h is None:
            return None
        return list(h.items()) if isinstance(h, dict) else list(h)

    def error(self) -> None:
        return None


def broker_urls(bootstrap_servers: str) -> list[str]:
    """Faust's broker list for a librdkafka ``bootstrap.servers`` string.

    >>> broker_urls("a:9092, b:9093")
    ['kafka://a:9092', 'kafka://b:9093']
    """
    return [f"kafka://{h.strip()}" for h in bootstrap_servers.split(",") if h.strip()]


def faust_app(settings: Settings, group: str, *, datadir: str, loop: asyncio.AbstractEventLoop) -> Any:
    """The Faust app of one stage: app id = consumer group, no tables, no web server, no leader topic.

    ``broker_session_timeout`` is at least 6 s (a real Kafka's minimum; tansu delivers a new group's first
    record after about half of it)."""
    import faust

    return faust.App(group, broker=broker_urls(settings.kafka.bootstrap_servers), loop=loop,
                     broker_session_timeout=max(6.0, settings.kafka.session_timeout_ms / 1000),
                     broker_heartbeat_interval=1.0, store="memory://", datadir=datadir, web_enabled=False,
                     topic_partitions=settings.topics.source_partitions, topic_allow_declare=False,
                     topic_disable_leader=True, autodiscover=False, broker_commit_interval=1.0,
                     stream_wait_empty=False,
                     consumer_auto_offset_reset=settings.kafka.auto_offset_reset)


class AppThread:
    """A Faust app in its own thread and event loop: ``start`` / ``stop`` / ``alive``, ``error`` holds what killed
    it. Subclasses write ``async _main(loop)``, which creates ``self._stopped`` (an ``asyncio.Event``) and returns
    once it is set (``stop`` sets it from any thread), and may override ``_on_exit`` (runs in the thread, last)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> Self:
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._aloop is not None and self._stopped is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._aloop.call_soon_threadsafe(self._stopped.set)
        if self.thread is not None:
            self.thread.join(timeout_s)

    async def _main(self, aloop: asyncio.AbstractEventLoop) -> None:
        raise NotImplementedError

    def _on_exit(self) -> None:
        """Runs in the thread after the loop is closed, also after a failure."""

    def _run(self) -> None:
        aloop = asyncio.new_event_loop()
        self._aloop = aloop
        asyncio.set_event_loop(aloop)
        try:
            aloop.run_until_complete(self._main(aloop))
        except BaseException as exc:  # noqa: BLE001 - recorded for the owner (health, the bench)
            self.error = exc
            log.exception("%s died", self.name)
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(aloop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    aloop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                aloop.run_until_complete(aloop.shutdown_asyncgens())
            finally:
                aloop.close()
                self._on_exit()


class FaustWorker(AppThread):
    """A driftline worker run by a Faust app in its own thread and event loop (``start`` / ``stop`` / ``health``
    like :class:`streams.runtime.workers.Worker`)."""

    def __init__(self, inner: Worker, settings: Settings, group: str, *, queue_factor: int = 4) -> None:
        super().__init__(f"faust-{inner.name}")
        self.inner = inner
        self.settings = settings
        self.group = group
        self.loop_: BatchLoop = inner.loop
        self.queue_size = max(1, self.loop_.max_rows * queue_factor)
        self.ready = threading.Event()  # set once the app has started (the group join is still under way)

    @property
    def metrics(self) -> Metrics:
        return self.inner.metrics

    def health(self) -> dict:
        """The inner worker's answer (same probes), with this thread's liveness and error."""
        self.inner.thread = self.thread
        self.inner.error = self.error
        state = self.inner.health()
        state["engine"] = "faust"
        return state

    # -- the thread ------------------------------------------------------------------------------------------
    def _on_exit(self) -> None:
        try:
            self.loop_.producer.flush(5)
        except Exception:  # noqa: BLE001
            log.debug("producer flush failed", exc_info=True)
        for close in [self.loop_.consumer.close, *self.inner.closers]:  # the consumer was never subscribed
            try:
                close()
            except Exception:  # noqa: BLE001
                log.debug("closer failed", exc_info=True)

    async def _main(self, aloop: asyncio.AbstractEventLoop) -> None:
        self._stopped = asyncio.Event()
        if self._stop.is_set():
            return
        queue: asyncio.Queue = asyncio.Queue(self.queue_size)
        with tempfile.TemporaryDirectory(prefix="driftline-faust-") as datadir:
            app = faust_app(self.settings, self.group, datadir=datadir, loop=aloop)
            topic = app.topic(*self.loop_.topics, key_type=bytes, value_type=bytes, key_serializer="raw",
                              value_serializer="raw")
            streams: list[Any] = []

            async def agent(stream: Any) -> None:
                manual = stream.noack()
                streams.append(manual)
                async for event in manual.events():
                    await queue.put(event)

            app.agent(topic, name=f"{self.group}-agent", concurrency=1)(agent)

            @app.on_partitions_assigned.connect
            async def _assigned(sender: Any, assigned: Any, **_: Any) -> None:
                tps = _tps(assigned, self.loop_.topics)
                self.loop_.health.assigned = sorted({*self.loop_.health.assigned,
                                                     *(f"{p.topic}[{p.partition}]" for p in tps)})
                log.info("assigned %s", [f"{p.topic}[{p.partition}]" for p in tps])
                self.loop_.handler.on_assign(tps)

            @app.on_partitions_revoked.connect
            async def _revoked(sender: Any, revoked: Any, **_: Any) -> None:
                tps = _tps(revoked, self.loop_.topics)
                gone = {f"{p.topic}[{p.partition}]" for p in tps}
                self.loop_.health.assigned = [a for a in self.loop_.health.assigned if a not in gone]
                log.info("revoked %s", sorted(gone))
                self.loop_.handler.on_revoke(tps)

            await app.start()
            self.ready.set()
            batcher = aloop.create_task(self._batcher(queue, streams, app))
            try:
                while not self._stopped.is_set():
                    if batcher.done():
                        batcher.result()  # re-raises a crash of the batcher
                        break
                    if getattr(app, "crash_reason", None) is not None:
                        raise RuntimeError(f"faust app crashed: {app.crash_reason!r}")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopped.wait(), 0.2)
            finally:
                batcher.cancel()
                await asyncio.gather(batcher, return_exceptions=True)
                await app.stop()

    async def _batcher(self, queue: asyncio.Queue, streams: list[Any], app: Any) -> None:
        lp = self.loop_
        while not self._stop.is_set():
            if lp.tick is not None:
                lp.tick()  # control commands, idle checks: between batches, never inside one
            if _paused(lp.handler):
                await asyncio.sleep(lp.max_s or 0.05)
                continue
            events = await self._take(queue, lp.max_rows, lp.max_s)
            lp.health.last_poll_at = time.time()
            if not events:
                lp.producer.poll(0)
                continue
            events = [e for e in events if f"{e.message.topic}[{e.message.partition}]" in lp.health.assigned
                      or not lp.health.assigned]  # records of a revoked partition: its new owner replays them
            while events and not self._stop.is_set():
                if self._handle(events):
                    for event in events:
                        await streams[0].ack(event)
                    break
                delay = min(lp.max_backoff_s, 0.1 * 2 ** min(lp.health.consecutive_failures, 10))
                await asyncio.sleep(delay)

    @staticmethod
    async def _take(queue: asyncio.Queue, max_rows: int, max_s: float) -> list[Any]:
        """Up to ``max_rows`` events: waits ``max_s`` for the first one, then takes what arrives until full or
        ``max_s`` after the first."""
        try:
            first = await asyncio.wait_for(queue.get(), max_s)
        except TimeoutError:
            return []
        events = [first]
        deadline = time.monotonic() + max_s
        while len(events) < max_rows:
            if not queue.empty():
                events.append(queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                events.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return events

    def _handle(self, events: Sequence[Any]) -> bool:
        """process → produce → flush and check → finalize; True when the batch may be acked."""
        lp = self.loop_
        records = [FaustRecord(e.message) for e in events]
        started = time.perf_counter()
        try:
            lp.handle_isolated(records)  # type: ignore[arg-type] - a poison record is dead-lettered, not retried
        except Exception as exc:  # noqa: BLE001 - an infrastructure fault: not acked, retried with backoff
            lp.note_failure(exc)
            log.warning("faust batch failed (%s); %d records not acked, retrying", lp.health.last_error,
                        len(records))
            return False
        lp.note_success(len(records), time.perf_counter() - started)
        lp.health.last_commit_at = time.time()  # acked: Faust commits it within broker_commit_interval
        lp.metrics.last_commit.labels(lp.stage).set(lp.health.last_commit_at)
        return True


def _paused(handler: Any) -> bool:
    """True while the pipeline's scorer is paused by a control command (the monitor has no scorer)."""
    inner = getattr(handler, "inner", handler)  # the online-learning wrapper holds the fused handler
    scorer = getattr(handler, "scorer", None) or getattr(inner, "scorer", None)
    return bool(getattr(scorer, "paused", False))


def _tps(tps: Iterable[Any], topics: Sequence[str]) -> list[TopicPartition]:
    """Faust TPs of our topics as confluent TopicPartitions (what ``on_assign`` / ``on_revoke`` take)."""
    return [TopicPartition(tp.topic, tp.partition) for tp in tps if tp.topic in topics]


def to_faust(worker: Worker, group: str, settings: Settings) -> FaustWorker:
    """Run ``worker``'s handler, producer and control tick under Faust, in consumer group ``group``."""
    return FaustWorker(worker, settings, group)
