"""Producing simulated events to Kafka at a steady rate, with their labels delayed on the ``labels`` topic."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from confluent_kafka import Producer

from streams import codec
from streams.local.simulator import SimEvent


@dataclass
class ProduceStats:
    events: int = 0
    labels: int = 0
    drift_onset_wall: float | None = None  # wall time at which the first drifted event was produced
    drift_onset_index: int | None = None
    started: float = 0.0
    finished: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / max(self.finished - self.started, 1e-9)


def produce_stream(producer: Producer, topic: str, events: Iterable[SimEvent], *, rate: float,
                   entity_field: str, ts_field: str = "ts", labels_topic: str | None = None,
                   label_delay_s: float = 2.0, stop: threading.Event | None = None,
                   on_drift: Callable[[int], None] | None = None, clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> ProduceStats:
    """Produce ``events`` paced at ``rate`` per second; labels follow ``label_delay_s`` later (delayed truth)."""
    stats = ProduceStats(started=time.time())
    pending: collections.deque[tuple[float, bytes, bytes]] = collections.deque()
    start = clock()
    for i, ev in enumerate(events):
        if stop is not None and stop.is_set():
            break
        due = start + i / rate
        now = clock()
        if due > now:
            sleep(due - now)
        _produce(producer, topic, ev.key.encode(), codec.encode(ev.value))
        stats.events += 1
        if ev.drifted and stats.drift_onset_wall is None:
            stats.drift_onset_wall, stats.drift_onset_index = time.time(), i
            if on_drift is not None:
                on_drift(i)
        if labels_topic is not None and ev.label is not None:
            label = {"entity_id": ev.key, "event_ts": ev.value[ts_field], "label": ev.label,
                     "label_ts": int(time.time() * 1000)}
            pending.append((clock() + label_delay_s, ev.key.encode(), codec.encode(label)))
        while pending and pending[0][0] <= clock():
            _, key, value = pending.popleft()
            _produce(producer, labels_topic or "", key, value)
            stats.labels += 1
        producer.poll(0)
    for _, key, value in pending:  # the stream ended: deliver the remaining labels now
        _produce(producer, labels_topic or "", key, value)
        stats.labels += 1
    producer.flush(30)
    stats.finished = time.time()
    return stats


def _produce(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            producer.poll(0.05)
