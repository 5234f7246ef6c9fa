"""Per-incident scheduling of alert deliveries (pure: no Kafka, no threads, no clock; the caller passes ``now``).

Every record of the ``alerts`` topic becomes one job per sink. Jobs wait in FIFO queues keyed by
``(sink, partition, dedup key)`` and only a queue's head may be in flight, so at each sink a resolve never
overtakes its trigger; the heads of all other queues go on meanwhile, so one failing incident holds back
nothing else. A head that failed is retried after a backoff (exponential with jitter, at least the
receiver's ``Retry-After``, both capped); a 429 also holds the whole sink until its ``Retry-After``
(the receiver throttles the integration, not one incident); a 429 without ``Retry-After`` waits ``throttle_s``. Nothing is ever dropped: a job leaves its queue
only when its sink accepted it or rejected it as invalid (the caller dead-letters it, then calls
:meth:`DeliveryScheduler.release`).

Offsets: a record is settled when all its jobs left their queues and every hold on it was released. The
offset a partition may commit is the end of its **contiguous settled prefix**: with records 5, 6, 7 where
6 is still retrying, 7 being delivered does not move the commit past 6. ``pending(partition)`` counts the
records after that prefix; the caller pauses a partition whose backlog reached ``max_pending``.

Example:
    >>> import random
    >>> s = DeliveryScheduler({"pd": 4}, backoff=Backoff(base_s=1, max_s=60), rng=random.Random(0))
    >>> for offset, key in [(5, "a"), (6, "b"), (7, "a")]:
    ...     _ = s.add("p0", offset, key, item=f"alert@{offset}")
    >>> [(j.offset, j.key) for j in s.ready(now=0.0)]   # the second "a" waits behind the first
    [(5, 'a'), (6, 'b')]
    >>> a5, b6 = s.in_flight()
    >>> s.retry(b6, now=0.1, reason="HTTP 500") > 0       # b fails: backoff, a goes on
    True
    >>> s.accepted(a5, now=0.2), [(j.offset, j.key) for j in s.ready(now=0.2)]
    (True, [(7, 'a')])
    >>> _ = s.accepted(s.in_flight()[0], now=0.3)
    >>> s.advance()   # 7 is done, 6 is not: the commit stops at 6
    {'p0': 6}
    >>> _ = s.accepted(s.ready(now=60.0)[0], now=60.1)
    >>> s.advance(), s.pending("p0")
    ({'p0': 8}, 0)
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.exceptions import ConfigError


@dataclass(frozen=True)
class Backoff:
    """Retry delays: ``min(max_s, base_s * 2**(attempt-1))`` times a jitter in [0.5, 1], and at least the
    receiver's ``Retry-After`` (capped at ``retry_after_max_s``, so a hostile header cannot park an alert
    for days); a 429 without ``Retry-After`` counts as ``Retry-After: throttle_s``.

    >>> b = Backoff(base_s=1, max_s=300, retry_after_max_s=900)
    >>> rng = random.Random(1)
    >>> [round(b.delay(n, None, rng), 2) for n in (1, 2, 3, 12)]
    [0.57, 1.85, 3.53, 188.26]
    >>> b.delay(1, 120.0, rng), b.delay(1, 10**9, rng)
    (120.0, 900.0)
    """

    base_s: float = 1.0
    max_s: float = 300.0
    retry_after_max_s: float = 900.0
    throttle_s: float = 60.0  # a 429 without Retry-After: PagerDuty asks to back off for about a minute

    def __post_init__(self) -> None:
        if not (0 < self.base_s <= self.max_s) or self.retry_after_max_s < 0 or self.throttle_s < 0:
            raise ConfigError(f"alert retry backoff needs 0 < base_s <= max_s, retry_after_max_s >= 0 and "
                              f"throttle_s >= 0, got {self.base_s}, {self.max_s}, {self.retry_after_max_s}, "
                              f"{self.throttle_s}")

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        """Seconds before retry number ``attempt`` (1 = the first retry)."""
        d = min(self.max_s, self.base_s * 2 ** min(max(attempt, 1) - 1, 40)) * rng.uniform(0.5, 1.0)
        if retry_after_s is not None:
            d = max(d, min(retry_after_s, self.retry_after_max_s))
        return float(d)


class RateLimit:
    """At most ``limit`` starts per ``period_s`` (sliding window).

    >>> r = RateLimit(2, 60.0)
    >>> r.wait(0.0), r.take(0.0), r.take(10.0), r.wait(20.0), r.wait(60.0)
    (0.0, None, None, 40.0, 0.0)
    """

    def __init__(self, limit: int, period_s: float = 60.0) -> None:
        if limit < 1 or period_s <= 0:
            raise ConfigError(f"rate limit needs limit >= 1 and period > 0, got {limit}, {period_s}")
        self.limit, self.period_s = limit, period_s
        self._starts: deque[float] = deque()

    def wait(self, now: float) -> float:
        """Seconds until one more start is allowed (0.0: now)."""
        while self._starts and now - self._starts[0] >= self.period_s:
            self._starts.popleft()
        return 0.0 if len(self._starts) < self.limit else self._starts[0] + self.period_s - now

    def take(self, now: float) -> None:
        """Count one start."""
        self._starts.append(now)


@dataclass(eq=False)
class Job:
    """One alert for one sink. ``attempts`` counts the starts so far; ``item`` is the caller's payload."""

    sink: str
    partition: Hashable
    offset: int
    key: str
    item: Any
    enqueued_at: float
    attempts: int = 0
    due: float = 0.0
    last_error: str = ""
    in_flight: bool = False
    cancelled: bool = False
    _token: int = 0


@dataclass
class SinkState:
    """Counters and timing of one sink (what metrics and ``/health`` show)."""

    max_in_flight: int
    in_flight: int = 0
    not_before: float = 0.0  # a 429's Retry-After or the rate limit holds the whole sink until then
    failing_since: float | None = None
    last_success_at: float | None = None
    last_error: str = ""
    accepted: int = 0
    retried: int = 0
    rejected: int = 0
    heap: list = field(default_factory=list)  # (due, seq, token, job) of queue heads ready to start
    limit: RateLimit | None = None


@dataclass(eq=False)
class _Record:
    offset: int
    remaining: int


class DeliveryScheduler:
    """Per-(sink, partition, dedup key) FIFO queues, retry timers and the committable prefix per partition.

    ``sinks`` maps sink names to their ``max_in_flight``; ``rate_limits`` optional starts per minute.
    """

    def __init__(self, sinks: Mapping[str, int], *, backoff: Backoff = Backoff(),
                 rate_limits: Mapping[str, int | None] | None = None, max_pending: int = 10_000,
                 rng: random.Random | None = None) -> None:
        if max_pending < 1 or any(n < 1 for n in sinks.values()):
            raise ConfigError("alert delivery needs max_pending >= 1 and max_in_flight >= 1 per sink")
        self.backoff = backoff
        self.max_pending = max_pending
        self.rng = rng or random.Random()
        self.sinks: dict[str, SinkState] = {name: SinkState(n) for name, n in sinks.items()}
        for name, limit in (rate_limits or {}).items():
            if limit and name in self.sinks:
                self.sinks[name].limit = RateLimit(int(limit))
        self._queues: dict[tuple[str, Hashable, str], deque[Job]] = {}
        self._by_partition: dict[Hashable, set[tuple[str, Hashable, str]]] = {}
        self._records: dict[Hashable, deque[_Record]] = {}
        self._index: dict[tuple[Hashable, int], _Record] = {}
        self._last_added: dict[Hashable, int] = {}
        self._commit: dict[Hashable, int] = {}
        self._reported: dict[Hashable, int] = {}
        self._seq = itertools.count()

    # -- intake -------------------------------------------------------------------------------------------
    def add(self, partition: Hashable, offset: int, key: str, item: Any, *, now: float = 0.0,
            sinks: Iterable[str] | None = None, holds: int = 0) -> bool:
        """Queue record ``offset`` of ``partition`` for ``sinks`` (default: all), with ``holds`` extra holds
        the caller releases later (e.g. a dead letter being written). False for an offset already added."""
        if offset <= self._last_added.get(partition, -1):
            return False
        self._last_added[partition] = offset
        names = list(self.sinks) if sinks is None else [s for s in sinks if s in self.sinks]
        rec = _Record(offset, len(names) + holds)
        self._records.setdefault(partition, deque()).append(rec)
        self._index[(partition, offset)] = rec
        for name in names:
            qid = (name, partition, key)
            queue = self._queues.get(qid)
            job = Job(name, partition, offset, key, item, enqueued_at=now, due=now)
            if queue is None:
                self._queues[qid] = deque([job])
                self._by_partition.setdefault(partition, set()).add(qid)
                self._schedule(job, now)
            else:
                queue.append(job)
        if rec.remaining == 0:
            self._settled(partition)
        return True

    # -- dispatch -----------------------------------------------------------------------------------------
    def ready(self, now: float) -> list[Job]:
        """Jobs to start now (each marked in flight): due queue heads, within each sink's limits."""
        out: list[Job] = []
        for st in self.sinks.values():
            while st.heap and st.in_flight < st.max_in_flight and st.not_before <= now:
                due, _, token, job = st.heap[0]
                if job.cancelled or job.in_flight or token != job._token:
                    heapq.heappop(st.heap)
                    continue
                if due > now:
                    break
                if st.limit is not None:
                    wait = st.limit.wait(now)
                    if wait > 0:
                        st.not_before = now + wait
                        break
                    st.limit.take(now)
                heapq.heappop(st.heap)
                job.in_flight = True
                job.attempts += 1
                st.in_flight += 1
                out.append(job)
        return out

    def in_flight(self) -> list[Job]:
        """Jobs started and not yet reported back (oldest queue first)."""
        return [q[0] for q in self._queues.values() if q and q[0].in_flight]

    def next_due(self) -> float | None:
        """When the next job may start (None: nothing is waiting on a timer)."""
        best: float | None = None
        for st in self.sinks.values():
            while st.heap and (st.heap[0][3].cancelled or st.heap[0][2] != st.heap[0][3]._token
                               or st.heap[0][3].in_flight):
                heapq.heappop(st.heap)
            if st.heap and st.in_flight < st.max_in_flight:
                at = max(st.heap[0][0], st.not_before)
                best = at if best is None else min(best, at)
        return best

    # -- outcomes -----------------------------------------------------------------------------------------
    def accepted(self, job: Job, now: float) -> bool:
        """The sink accepted ``job``: its queue moves on. False when the job was dropped by :meth:`revoke`."""
        st = self._finish(job)
        if st is None:
            return False
        st.accepted += 1
        st.last_success_at = now
        st.failing_since = None
        self._pop_head(job, now)
        self._release_record(job.partition, job.offset)
        return True

    def rejected(self, job: Job, now: float, reason: str) -> bool:
        """The sink refused ``job`` as invalid: its queue moves on; the record stays held until the caller,
        having dead-lettered the alert, calls :meth:`release`. False when the job was revoked."""
        st = self._finish(job)
        if st is None:
            return False
        st.rejected += 1
        st.last_error = reason
        job.last_error = reason
        self._pop_head(job, now)
        return True

    def retry(self, job: Job, now: float, reason: str, *, retry_after_s: float | None = None,
              throttled: bool = False) -> float:
        """The attempt failed and may succeed later: ``job`` stays at its queue's head and starts again after
        the returned delay (seconds); a ``throttled`` answer (429) holds the whole sink as long."""
        st = self._finish(job)
        if st is None:
            return 0.0
        st.retried += 1
        st.last_error = job.last_error = reason
        if st.failing_since is None:
            st.failing_since = now
        if throttled and retry_after_s is None:
            retry_after_s = self.backoff.throttle_s
        delay = self.backoff.delay(job.attempts, retry_after_s, self.rng)
        if throttled:
            st.not_before = max(st.not_before, now + delay)
        self._schedule(job, now + delay)
        return delay

    def release(self, partition: Hashable, offset: int) -> None:
        """Drop one hold on a record (e.g. its dead letter was written)."""
        self._release_record(partition, offset)

    # -- offsets and flow control ---------------------------------------------------------------------------
    def advance(self) -> dict[Hashable, int]:
        """Partitions whose committable offset moved since the last call, with that offset."""
        moved = {p: o for p, o in self._commit.items() if self._reported.get(p) != o}
        self._reported.update(moved)
        return moved

    def committable(self, partition: Hashable) -> int | None:
        """The offset ``partition`` may commit now (None: nothing settled yet)."""
        return self._commit.get(partition)

    def pending(self, partition: Hashable | None = None) -> int:
        """Records after the committable prefix (of one partition, or of all)."""
        if partition is not None:
            return len(self._records.get(partition, ()))
        return sum(len(r) for r in self._records.values())

    def full(self, partition: Hashable) -> bool:
        """The partition's backlog reached ``max_pending``: stop taking its records."""
        return self.pending(partition) >= self.max_pending

    def revoke(self, partition: Hashable) -> None:
        """Forget everything about ``partition`` (its new owner redelivers from the committed offset). Jobs
        in flight still count against their sink until they report back, and are then ignored."""
        for qid in self._by_partition.pop(partition, set()):
            for job in self._queues.pop(qid, ()):
                job.cancelled = True
        for rec in self._records.pop(partition, ()):
            self._index.pop((partition, rec.offset), None)
        for d in (self._last_added, self._commit, self._reported):
            d.pop(partition, None)

    def partitions(self) -> list[Hashable]:
        """Partitions with any state."""
        return list({*self._records, *self._commit})

    def oldest_waiting(self, sink: str) -> float | None:
        """``enqueued_at`` of the oldest job ``sink`` has not delivered yet (None: none)."""
        heads = [q[0].enqueued_at for (name, _, _), q in self._queues.items() if name == sink and q]
        return min(heads, default=None)

    def waiting(self, sink: str) -> int:
        """Jobs of ``sink`` not delivered yet."""
        return sum(len(q) for (name, _, _), q in self._queues.items() if name == sink)

    # -- internals --------------------------------------------------------------------------------------------
    def _schedule(self, job: Job, due: float) -> None:
        job._token += 1
        job.due = due
        heapq.heappush(self.sinks[job.sink].heap, (due, next(self._seq), job._token, job))

    def _finish(self, job: Job) -> SinkState | None:
        st = self.sinks[job.sink]
        if job.in_flight:
            job.in_flight = False
            st.in_flight -= 1
        return None if job.cancelled else st

    def _pop_head(self, job: Job, now: float) -> None:
        qid = (job.sink, job.partition, job.key)
        queue = self._queues.get(qid)
        if not queue or queue[0] is not job:
            return
        queue.popleft()
        if queue:
            self._schedule(queue[0], now)
        else:
            del self._queues[qid]
            self._by_partition.get(job.partition, set()).discard(qid)

    def _release_record(self, partition: Hashable, offset: int) -> None:
        rec = self._index.get((partition, offset))
        if rec is None or rec.remaining <= 0:
            return
        rec.remaining -= 1
        if rec.remaining == 0:
            self._settled(partition)

    def _settled(self, partition: Hashable) -> None:
        records = self._records.get(partition)
        while records and records[0].remaining == 0:
            rec = records.popleft()
            self._index.pop((partition, rec.offset), None)
            self._commit[partition] = rec.offset + 1
