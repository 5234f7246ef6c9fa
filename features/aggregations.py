"""Mergeable partial aggregates: one partial per (bucket, field), folded per window at read time.

The quix-style life cycle, specialised for speed (lists of floats, no per-event objects):

* ``new_partial`` (initialize) -> an empty bucket partial,
* ``add_number`` / ``add_string`` (agg) -> fold one event value into a bucket partial,
* ``new_accumulator`` + ``fold`` (merge) -> combine the bucket partials of a window, **in time order**,
* ``AGGREGATIONS[name].result(acc)`` (result) -> one feature value.

Bucket partial slots (``P_*``): count, sum, M2 (Welford sum of squared deviations, numerically
stable; merged with Chan's formula), min, max, first_ts, first, last_ts, last, and the least-squares
sums ``st = Σt``, ``stt = Σt²``, ``sty = Σt·y`` with ``t`` in **seconds relative to the bucket start**
(small numbers). ``fold`` shifts them to the window start, so the result does not depend on how events
fell into buckets up to rounding: ``Σt² - (Σt)²/n`` cancels when the times are close together far from the
window start, so the slope's relative error is about ``n * 2**-52 * Σt² / Σ(t - t̄)²`` (e.g. two events 1 ms
apart 65 s into the window: ~1e-5). ``ang`` sums absolute angle changes between consecutive events
of the bucket. Slot 13 (only for fields with ``distinct_count``) is a set of values, capped at
``DISTINCT_CAP`` values per bucket: beyond that the count saturates (a lower bound).

Definitions (``n`` = values in the window):

* ``std``: population standard deviation (ddof=0, like ``numpy.std``); 0.0 for one value.
* ``slope``: least-squares slope of value vs time, per second; NaN with < 2 values or when all values
  share one timestamp.
* ``ewma``: exponentially weighted mean over the window's **per-bucket means in time order**:
  ``e = m1``, then ``e = EWMA_ALPHA * m_i + (1 - EWMA_ALPHA) * e``.
* ``delta``: last - first (by event time).
* ``angle_change_rate``: mean absolute change of an angle in degrees (wrapped into [0, 180]) per
  second: Σ|Δangle| between consecutive events / (last_ts - first_ts). Out-of-order events inside a
  bucket only count when they extend the bucket at either end (exact for in-order streams).
* ``integral``: mean value x (last_ts - first_ts) in seconds (e.g. distance from speed).
* Empty window: count, sum, distinct_count and integral give 0.0; everything else NaN.

Example:
    >>> p = new_partial()
    >>> for ts, x in [(0, 1.0), (1000, 3.0), (2000, 5.0)]:
    ...     add_number(p, 0, ts, x, False)
    >>> acc = new_accumulator(False)
    >>> fold(acc, p, 0, 0, False)
    >>> [AGGREGATIONS[a].result(acc) for a in ("count", "mean", "max", "slope", "delta")]
    [3.0, 3.0, 5.0, 2.0, 4.0]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

P_N, P_SUM, P_M2, P_MIN, P_MAX, P_FTS, P_FIRST, P_LTS, P_LAST, P_ST, P_STT, P_STY, P_ANG = range(13)
P_DISTINCT = 13
NUM_SLOTS = 13
A_EWMA = 13  # accumulator: slots 0..12 as the partial (slope sums relative to the window origin)
A_DISTINCT = 14

EWMA_ALPHA = 0.3
DISTINCT_CAP = 1000
NAN = math.nan


def new_partial(distinct: bool = False) -> list:
    """An empty bucket partial (``distinct`` adds the value set of slot 13)."""
    p: list = [0, 0.0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0]
    if distinct:
        p.append(set())
    return p


def angle_diff(a: float, b: float) -> float:
    """Absolute difference of two angles in degrees, wrapped into [0, 180].

    >>> angle_diff(350.0, 10.0), angle_diff(90.0, 270.0), angle_diff(5.0, 1.0)
    (20.0, 180.0, 4.0)
    """
    d = abs(a - b) % 360.0
    return 360.0 - d if d > 180.0 else d


def add_number(p: list, bucket_start: int, ts: int, x: float, angle: bool) -> None:
    """Fold one numeric value observed at ``ts`` (ms) into the partial of the bucket starting at ``bucket_start``."""
    dt = (ts - bucket_start) / 1000.0
    n = p[0]
    if n == 0:
        p[0] = 1
        p[1] = x
        p[2] = 0.0
        p[3] = p[4] = p[6] = p[8] = x
        p[5] = p[7] = ts
        p[9] = dt
        p[10] = dt * dt
        p[11] = dt * x
        p[12] = 0.0
    else:
        mean_old = p[1] / n
        n += 1
        s = p[1] + x
        p[0] = n
        p[1] = s
        p[2] += (x - mean_old) * (x - s / n)
        if x < p[3]:
            p[3] = x
        if x > p[4]:
            p[4] = x
        if angle:
            if ts >= p[7]:
                p[12] += angle_diff(p[8], x)
            elif ts < p[5]:
                p[12] += angle_diff(x, p[6])
        if ts < p[5]:
            p[5] = ts
            p[6] = x
        if ts >= p[7]:
            p[7] = ts
            p[8] = x
        p[9] += dt
        p[10] += dt * dt
        p[11] += dt * x
    if len(p) > NUM_SLOTS and len(p[13]) < DISTINCT_CAP:
        p[13].add(x)


def first_number(bucket_start: int, ts: int, x: float, distinct: bool) -> list:
    """A new partial holding one numeric value: the same list as ``new_partial`` + ``add_number``.

    >>> p = new_partial(True); add_number(p, 10_000, 12_500, 4.0, False)
    >>> first_number(10_000, 12_500, 4.0, True) == p
    True
    """
    dt = (ts - bucket_start) / 1000.0
    p = [1, x, 0.0, x, x, ts, x, ts, x, dt, dt * dt, dt * x, 0.0]
    if distinct:
        p.append({x})
    return p


def first_string(ts: int, x: str, distinct: bool) -> list:
    """A new partial holding one string value: the same list as ``new_partial`` + ``add_string``.

    >>> p = new_partial(True); add_string(p, 12_500, "a")
    >>> first_string(12_500, "a", True) == p
    True
    """
    p: list = [1, 0.0, 0.0, 0.0, 0.0, ts, 0.0, ts, 0.0, 0.0, 0.0, 0.0, 0.0]
    if distinct:
        p.append({x})
    return p


def add_string(p: list, ts: int, x: str) -> None:
    """Fold one string value into a partial (only count, timestamps and the distinct set are kept)."""
    if p[0] == 0:
        p[5] = p[7] = ts
    else:
        if ts < p[5]:
            p[5] = ts
        if ts >= p[7]:
            p[7] = ts
    p[0] += 1
    if len(p) > NUM_SLOTS and len(p[13]) < DISTINCT_CAP:
        p[13].add(x)


def new_accumulator(distinct: bool) -> list:
    """An empty window accumulator: partial slots + the EWMA + (optionally) the union of distinct values."""
    return [0, 0.0, 0.0, NAN, NAN, 0, NAN, 0, NAN, 0.0, 0.0, 0.0, 0.0, NAN, set() if distinct else None]


def fold(acc: list, p: list, bucket_start: int, origin_ms: int, angle: bool) -> None:
    """Merge the partial of the bucket at ``bucket_start`` into ``acc``; call in bucket time order.

    Slope sums are shifted from the bucket start to ``origin_ms`` (the window start).
    """
    nb = p[0]
    if nb == 0:
        return
    sb = p[1]
    mean_b = sb / nb
    d = (bucket_start - origin_ms) / 1000.0
    st = p[9]
    na = acc[0]
    if na == 0:
        acc[0] = nb
        acc[1] = sb
        acc[2] = p[2]
        acc[3] = p[3]
        acc[4] = p[4]
        acc[5] = p[5]
        acc[6] = p[6]
        acc[7] = p[7]
        acc[8] = p[8]
        acc[9] = st + nb * d
        acc[10] = p[10] + 2.0 * d * st + nb * d * d
        acc[11] = p[11] + d * sb
        acc[12] = p[12]
        acc[13] = mean_b
    else:
        n = na + nb
        delta = mean_b - acc[1] / na
        acc[2] += p[2] + delta * delta * na * nb / n
        acc[0] = n
        acc[1] += sb
        if p[3] < acc[3]:
            acc[3] = p[3]
        if p[4] > acc[4]:
            acc[4] = p[4]
        if angle:
            acc[12] += p[12] + angle_diff(acc[8], p[6])
        if p[5] < acc[5]:
            acc[5] = p[5]
            acc[6] = p[6]
        if p[7] >= acc[7]:
            acc[7] = p[7]
            acc[8] = p[8]
        acc[9] += st + nb * d
        acc[10] += p[10] + 2.0 * d * st + nb * d * d
        acc[11] += p[11] + d * sb
        acc[13] = EWMA_ALPHA * mean_b + (1.0 - EWMA_ALPHA) * acc[13]
    if acc[14] is not None and len(p) > NUM_SLOTS:
        acc[14] |= p[13]


def _count(a: list) -> float:
    return float(a[0])


def _sum(a: list) -> float:
    return float(a[1]) if a[0] else 0.0


def _mean(a: list) -> float:
    return a[1] / a[0] if a[0] else NAN


def _min(a: list) -> float:
    return float(a[3]) if a[0] else NAN


def _max(a: list) -> float:
    return float(a[4]) if a[0] else NAN


def _std(a: list) -> float:
    n = a[0]
    return math.sqrt(max(a[2], 0.0) / n) if n else NAN


def _first(a: list) -> float:
    return float(a[6]) if a[0] else NAN


def _last(a: list) -> float:
    return float(a[8]) if a[0] else NAN


def _delta(a: list) -> float:
    return float(a[8] - a[6]) if a[0] else NAN


def slope_of(n: int, s: float, first_ts: int, last_ts: int, st: float, stt: float, sty: float) -> float:
    """Least-squares slope from window sums (``st = Σt``, ``stt = Σt²``, ``sty = Σt·y``, ``s = Σy``).

    >>> slope_of(3, 9.0, 0, 2000, 3.0, 5.0, 13.0)
    2.0
    """
    if n < 2 or first_ts == last_ts:
        return NAN
    sxx = stt - st * st / n
    if sxx <= 0.0:
        return NAN
    return (sty - st * s / n) / sxx


def _slope(a: list) -> float:
    return slope_of(a[0], a[1], a[5], a[7], a[9], a[10], a[11])


def _ewma(a: list) -> float:
    return float(a[13]) if a[0] else NAN


def _distinct(a: list) -> float:
    return float(len(a[14])) if a[14] is not None else 0.0


def _angle_rate(a: list) -> float:
    if a[0] < 2 or a[7] == a[5]:
        return NAN
    return a[12] / ((a[7] - a[5]) / 1000.0)


def _integral(a: list) -> float:
    n = a[0]
    return (a[1] / n) * ((a[7] - a[5]) / 1000.0) if n else 0.0


@dataclass(frozen=True)
class Aggregation:
    """One named aggregation: how to read a feature value out of a window accumulator."""

    name: str
    result: Callable[[list], float]
    numeric_only: bool = True
    needs_angle: bool = False
    needs_distinct: bool = False


AGGREGATIONS: dict[str, Aggregation] = {
    a.name: a
    for a in (
        Aggregation("count", _count, numeric_only=False),
        Aggregation("sum", _sum),
        Aggregation("mean", _mean),
        Aggregation("min", _min),
        Aggregation("max", _max),
        Aggregation("std", _std),
        Aggregation("first", _first),
        Aggregation("last", _last),
        Aggregation("delta", _delta),
        Aggregation("slope", _slope),
        Aggregation("ewma", _ewma),
        Aggregation("distinct_count", _distinct, numeric_only=False, needs_distinct=True),
        Aggregation("angle_change_rate", _angle_rate, needs_angle=True),
        Aggregation("integral", _integral),
    )
}
