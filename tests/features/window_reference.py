"""A brute-force reference for windowed features, written from the documented semantics and sharing no code with
``features/``: it keeps every raw event and, for each read, recomputes each aggregation from the events inside
the window with plain Python (correctly rounded sums, centred two-pass formulas).

Semantics (``features.definitions.Window``, ``features.aggregations``, ``features.engine``), restated:

* state is kept in buckets of ``bucket_ms``; a window read at ``now`` covers whole buckets, from its start up to
  and including the bucket that holds ``now`` (so an event later than ``now`` in that bucket counts, one in a
  later bucket does not);
* sliding: the ``size_ms`` that end with the bucket of ``now``; tumbling: the ``size_ms``-aligned window that
  holds ``now``; hopping: of the windows ``[k*step, k*step + size)`` that hold ``now``, the earliest-started;
* per source partition, the watermark is the largest event time accepted so far; an event earlier than
  ``watermark - allowed_lateness`` is ``late``, one later than ``watermark + max_future`` is ``too_far_future``;
  both are dropped and move nothing. Each accepted event is read at ``now = its own time``, after it is applied;
* aggregations over the values of a field inside the window, ordered by (event time, arrival): count, sum,
  mean, min, max, population std, first, last, delta = last - first, least-squares slope per second (NaN with
  fewer than two distinct times), EWMA (alpha 0.3) over the per-bucket means in time order, distinct count,
  angle change rate (sum of wrapped absolute changes between consecutive values, per second of the time span),
  integral = mean x time span in seconds; an empty window gives 0 for count, sum, distinct count and integral,
  NaN otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

EWMA_ALPHA = 0.3
NAN = float("nan")


@dataclass(frozen=True)
class WindowSpec:
    """A window as plain numbers: kind ("sliding" | "tumbling" | "hopping"), size, step (hopping) and bucket."""

    kind: str
    size_ms: int
    step_ms: int | None
    bucket_ms: int

    def span(self, now: int) -> tuple[int, int]:
        """``[start, end)`` in ms of the window read at ``now``."""
        bucket_start = (now // self.bucket_ms) * self.bucket_ms
        end = bucket_start + self.bucket_ms
        if self.kind == "sliding":
            return end - self.size_ms, end
        if self.kind == "tumbling":
            k = now // self.size_ms
            return k * self.size_ms, end
        step = self.step_ms
        assert step is not None
        k = now // step  # the latest window start at or before now; walk back while the earlier one still holds now
        while (k - 1) * step + self.size_ms > now:
            k -= 1
        return k * step, end


@dataclass(frozen=True)
class Observation:
    """One value of one field: its event time, its arrival number (ties in time keep arrival order), the value."""

    ts: int
    arrival: int
    value: float | int | str


def angle_change(a: float, b: float) -> float:
    """The smaller of the two ways round the circle from ``a`` to ``b``, in degrees (0..180)."""
    d = abs(a - b) % 360
    return min(d, 360 - d)


def angle_is_exact(obs: list[Observation], bucket_ms: int) -> bool:
    """The engine sums angle changes per bucket as events arrive and counts one only when it extends its bucket's
    time range at either end (documented: exact for in-order streams). True when every arrival in every bucket
    did, so the documented definition applies exactly."""
    ranges: dict[int, tuple[int, int]] = {}
    for o in sorted(obs, key=lambda o: o.arrival):
        b = o.ts // bucket_ms
        if b in ranges:
            lo, hi = ranges[b]
            if lo <= o.ts < hi:
                return False
            ranges[b] = (min(lo, o.ts), max(hi, o.ts))
        else:
            ranges[b] = (o.ts, o.ts)
    return True


def aggregate(agg: str, obs: list[Observation], bucket_ms: int) -> float:
    """``agg`` over the observations of one window (any order; sorted here by time, then arrival)."""
    obs = sorted(obs, key=lambda o: (o.ts, o.arrival))
    n = len(obs)
    if agg == "count":
        return float(n)
    if agg == "distinct_count":
        return float(len({o.value for o in obs}))
    if n == 0:
        return 0.0 if agg in ("sum", "integral") else NAN
    xs = [float(o.value) for o in obs]  # type: ignore[arg-type]
    mean = math.fsum(xs) / n  # fsum: the correctly rounded sum, whatever the order
    span_s = (obs[-1].ts - obs[0].ts) / 1000
    if agg == "sum":
        return math.fsum(xs)
    if agg == "mean":
        return mean
    if agg == "min":
        return min(xs)
    if agg == "max":
        return max(xs)
    if agg == "std":
        return math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / n)
    if agg == "first":
        return xs[0]
    if agg == "last":
        return xs[-1]
    if agg == "delta":
        return xs[-1] - xs[0]
    if agg == "slope":  # centred two-pass sums: no cancellation, whatever the times' offset
        ts = [(o.ts - obs[0].ts) / 1000 for o in obs]  # whole ms subtracted first: exact
        t_mean = math.fsum(ts) / n
        sxx = math.fsum((t - t_mean) ** 2 for t in ts)
        if n < 2 or sxx == 0:
            return NAN
        return math.fsum((t - t_mean) * (x - mean) for t, x in zip(ts, xs, strict=True)) / sxx
    if agg == "ewma":
        by_bucket: dict[int, list[float]] = {}
        for o, x in zip(obs, xs, strict=True):
            by_bucket.setdefault(o.ts // bucket_ms, []).append(x)
        e: float | None = None
        for b in sorted(by_bucket):
            m = math.fsum(by_bucket[b]) / len(by_bucket[b])
            e = m if e is None else EWMA_ALPHA * m + (1 - EWMA_ALPHA) * e
        return float(e)  # type: ignore[arg-type]
    if agg == "angle_change_rate":
        if n < 2 or span_s == 0:
            return NAN
        return math.fsum(angle_change(a, b) for a, b in zip(xs, xs[1:], strict=False)) / span_s
    if agg == "integral":
        return mean * span_s
    raise ValueError(f"unknown aggregation {agg!r}")


@dataclass(frozen=True)
class FeatureDef:
    """One feature as plain data: name, field, aggregation, window."""

    name: str
    field: str
    agg: str
    window: WindowSpec


@dataclass
class ReferenceEngine:
    """Feeds raw events one by one, as the engine's contract says, and answers every read by brute force."""

    features: list[FeatureDef]
    allowed_lateness_ms: int
    max_future_ms: int
    watermarks: dict[int, int] = field(default_factory=dict)
    accepted: dict[tuple[int, str], list[tuple[int, int, dict]]] = field(default_factory=dict)
    arrivals: int = 0

    def offer(self, partition: int, entity: str, ts: int, values: dict) -> str:
        """``"accepted"``, or why the event is dropped: ``"late"`` / ``"too_far_future"``."""
        wm = self.watermarks.get(partition)
        if wm is not None:
            if ts < wm - self.allowed_lateness_ms:
                return "late"
            if ts > wm + self.max_future_ms:
                return "too_far_future"
        self.watermarks[partition] = ts if wm is None else max(wm, ts)
        self.arrivals += 1
        self.accepted.setdefault((partition, entity), []).append((ts, self.arrivals, values))
        return "accepted"

    def read(self, partition: int, entity: str, now: int) -> dict[str, float]:
        """The feature vector of ``entity`` at ``now`` over every event accepted for it so far."""
        events = self.accepted.get((partition, entity), [])
        return {f.name: aggregate(f.agg, self.window_obs(events, f, now), f.window.bucket_ms) for f in self.features}

    @staticmethod
    def window_obs(events: list[tuple[int, int, dict]], f: FeatureDef, now: int) -> list[Observation]:
        start, end = f.window.span(now)
        return [Observation(ts, arrival, values[f.field]) for ts, arrival, values in events
                if start <= ts < end and values.get(f.field) is not None]
