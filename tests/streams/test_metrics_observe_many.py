"""observe_many must expose exactly what per-value Histogram.observe does (it uses prometheus_client internals)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from streams.metrics import LATENCY_BUCKETS, observe_many

values = st.lists(st.one_of(st.floats(min_value=-1.0, max_value=20.0), st.sampled_from(LATENCY_BUCKETS),
                            st.just(math.inf)), max_size=60)


def exposition(observe: object, batches: list[list[float]]) -> bytes:
    registry = CollectorRegistry()
    h = Histogram("t_seconds", "t", buckets=LATENCY_BUCKETS, registry=registry)
    for batch in batches:
        observe(h, batch)  # type: ignore[operator]
    return generate_latest(registry)


def one_by_one(h: Histogram, batch: list[float]) -> None:
    for v in batch:
        h.observe(v)


def series(text: bytes) -> tuple[list[bytes], float]:
    """(every line but the creation time and the sum, the sum): a batch's values are summed before they are
    added, so the sum may differ from one-by-one adding in its last bits (float summation order)."""
    lines = [line for line in text.splitlines() if b"_created" not in line and not line.startswith(b"t_seconds_sum")]
    (total,) = [float(line.split()[1]) for line in text.splitlines() if line.startswith(b"t_seconds_sum")]
    return lines, total


@given(st.lists(values, max_size=4))
def test_same_exposition_as_observe_per_value(batches: list[list[float]]) -> None:
    (lines, total), (want_lines, want_total) = series(exposition(observe_many, batches)), \
        series(exposition(one_by_one, batches))
    assert lines == want_lines
    assert total == pytest.approx(want_total, rel=1e-12, abs=1e-12, nan_ok=True)
    as_arrays = series(exposition(lambda h, batch: observe_many(h, np.asarray(batch, dtype=np.float64)), batches))
    assert as_arrays[0] == want_lines  # the pipeline hands it a numpy array of latencies
    assert as_arrays[1] == pytest.approx(want_total, rel=1e-12, abs=1e-12, nan_ok=True)


def test_falls_back_to_observe_without_the_internals() -> None:
    seen: list[float] = []

    class Plain:
        def observe(self, v: float) -> None:
            seen.append(v)

    observe_many(Plain(), [0.2, 3.0])  # type: ignore[arg-type]
    assert seen == [0.2, 3.0]


def test_nan_goes_to_the_sum_only_as_observe_does() -> None:
    a, b = (Histogram("n_seconds", "n", buckets=(1.0,), registry=CollectorRegistry()) for _ in range(2))
    observe_many(a, [float("nan"), 0.5])
    one_by_one(b, [float("nan"), 0.5])
    assert [x.get() for x in a._buckets] == [x.get() for x in b._buckets] == [1.0, 0.0]
    assert math.isnan(a._sum.get()) and math.isnan(b._sum.get())
