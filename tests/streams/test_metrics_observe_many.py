"""observe_many must expose exactly what per-value Histogram.observe does (it uses prometheus_client internals)."""

from __future__ import annotations

import math

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


def created_free(text: bytes) -> list[bytes]:
    return [line for line in text.splitlines() if b"_created" not in line]


@given(st.lists(values, max_size=4))
def test_same_exposition_as_observe_per_value(batches: list[list[float]]) -> None:
    assert created_free(exposition(observe_many, batches)) == created_free(exposition(one_by_one, batches))


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
