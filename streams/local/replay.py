"""Replaying a file of events into Kafka: keyed by entity, in event-time order, paced by rate and/or event time.

``driftline produce --from PATH --view V --rate R [--speedup X]``: every valid row of the file (checked
with the view, as the pipeline will; bad rows are counted and left out) is sent to the view's topic with its
entity id as the key (so an entity's events stay in one partition, in order), sorted by event time (ties in
file order). Pacing: ``--rate`` caps the events per second (0 = no cap); ``--speedup X`` also spaces events
by their event-time gaps divided by X (1 = real time, 3600 = an hour per second). With a label column,
each event's label follows on the labels topic ``label_delay_s`` later, as delayed ground truth.

Example:
    >>> list(schedule([0, 1000, 1000, 61_000], rate=10, speedup=61))
    [0.0, 0.1, 0.2, 1.0]
    >>> list(schedule([0, 1000, 5000], rate=0, speedup=None))
    [0.0, 0.0, 0.0]
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from features.definitions import FeatureView
from features.event_files import FileEvent, FileStats, in_event_time_order, read_events
from features.historical import LabelError, to_binary
from streams import codec
from streams.local.produce import _produce


@dataclass
class ReplayStats:
    events: int = 0
    labels: int = 0
    file: FileStats = field(default_factory=FileStats)
    first_ts_ms: int | None = None
    last_ts_ms: int | None = None
    started: float = 0.0
    finished: float = 0.0

    @property
    def rate(self) -> float:
        return self.events / max(self.finished - self.started, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return {"events": self.events, "labels": self.labels, "rate": round(self.rate, 1),
                "first_ts_ms": self.first_ts_ms, "last_ts_ms": self.last_ts_ms, "file": self.file.to_dict(),
                "file_summary": self.file.summary()}


def schedule(ts_ms: Sequence[int], *, rate: float, speedup: float | None) -> Iterator[float]:
    """Seconds after the start at which each event is due: never faster than ``rate`` per second (0: no cap),
    and with ``speedup`` never before its event-time offset divided by ``speedup``."""
    due = 0.0
    for i, ts in enumerate(ts_ms):
        if i and rate > 0:
            due += 1.0 / rate
        if speedup:
            due = max(due, (ts - ts_ms[0]) / 1000.0 / speedup)
        yield round(due, 9)


def load_replay(view: FeatureView, path: str | Path, *, label_field: str | None = None,
                stats: FileStats | None = None, limit: int | None = None) -> list[FileEvent]:
    """The file's valid events in event-time order (the first ``limit`` of them, if given)."""
    events = in_event_time_order(read_events(view, path, label_field=label_field, stats=stats))
    return events[:limit] if limit is not None else events


def replay(producer: Producer, topic: str, events: Sequence[FileEvent], *, rate: float,
           speedup: float | None = None, labels_topic: str | None = None, label_delay_s: float = 2.0,
           positive: str | None = None, stop: threading.Event | None = None,
           on_sent: Callable[[int, FileEvent], None] | None = None,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> ReplayStats:
    """Send ``events`` (already in event-time order) paced by :func:`schedule`; labels after ``label_delay_s``."""
    stats = ReplayStats(started=time.time())
    pending: collections.deque[tuple[float, bytes, bytes]] = collections.deque()
    start = clock()
    times = [fe.event.ts_ms for fe in events]
    for i, (fe, due) in enumerate(zip(events, schedule(times, rate=rate, speedup=speedup), strict=True)):
        if stop is not None and stop.is_set():
            break
        wait = start + due - clock()
        if wait > 0:
            sleep(wait)
        key = fe.event.entity_id.encode()
        _produce(producer, topic, key, codec.encode(fe.record))
        stats.events += 1
        stats.first_ts_ms = fe.event.ts_ms if stats.first_ts_ms is None else stats.first_ts_ms
        stats.last_ts_ms = fe.event.ts_ms
        if on_sent is not None:
            on_sent(i, fe)
        if labels_topic is not None and fe.label is not None:
            try:
                label = to_binary(fe.label, positive)
            except LabelError:
                label = None
            if label is not None:
                body = {"entity_id": fe.event.entity_id, "event_ts": fe.event.ts_ms, "label": label,
                        "label_ts": int(time.time() * 1000)}
                pending.append((clock() + label_delay_s, key, codec.encode(body)))
        while pending and pending[0][0] <= clock():
            _, k, v = pending.popleft()
            _produce(producer, labels_topic or "", k, v)
            stats.labels += 1
        producer.poll(0)
    for _, k, v in pending:  # the file ended: the remaining labels now
        _produce(producer, labels_topic or "", k, v)
        stats.labels += 1
    producer.flush(30)
    stats.finished = time.time()
    return stats
