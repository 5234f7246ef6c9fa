"""Per-record fault isolation (streams/runtime/isolation.py) and dead letters that always fit
(streams/runtime/dead_letters.py): the bisection itself, the batch loop around it, and a real librdkafka
producer's size check."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException, Producer
from hypothesis import given, settings
from hypothesis import strategies as st

from features.exceptions import StaleOffsetError
from streams.runtime.batch import BatchResult, DeliveryError, Output, dead_letter
from streams.runtime.dead_letters import fit, size_of
from streams.runtime.isolation import is_infrastructure, poison_detail, run_isolated
from streams.runtime.loop import BatchLoop
from tests.budget import examples

from .fake_message import FakeMessage
from .test_loop import FakeConsumer, FakeError, FakeProducer, msgs


# --------------------------------------------------------------------------------------------- bisection
@settings(max_examples=examples(300), deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1), max_size=12))))
def test_every_record_is_delivered_once_or_poisoned_once(case: tuple[int, set[int]]) -> None:
    n, bad = case
    delivered: list[int] = []
    poisoned: list[int] = []
    calls = [0]

    def process(batch: Sequence[int]) -> list[int]:
        calls[0] += 1
        if bad.intersection(batch):
            raise OverflowError("int too large to convert to float")
        return list(batch)

    got = run_isolated(list(range(n)), process, delivered.extend, lambda r, exc: poisoned.append(r) or [])
    assert got == len(bad)
    assert delivered == [r for r in range(n) if r not in bad]  # each good record once, in order
    assert sorted(poisoned) == sorted(bad)
    assert calls[0] <= 1 + 2 * max(1, len(bad)) * n.bit_length() + 1  # bisection, not one call per record


@pytest.mark.parametrize("exc", [redis.ConnectionError("refused"), redis.TimeoutError("slow"),
                                 KafkaException("broker"), DeliveryError("1 undelivered"),
                                 StaleOffsetError(1, 2), ConnectionResetError(), TimeoutError()])
def test_an_infrastructure_fault_retries_the_batch_and_blames_no_record(exc: Exception) -> None:
    calls: list[int] = []

    def process(batch: Sequence[int]) -> list[int]:
        calls.append(len(batch))
        raise exc

    assert is_infrastructure(exc)
    with pytest.raises(type(exc)):
        run_isolated([1, 2, 3, 4], process, lambda _: None, lambda r, e: pytest.fail("no poison"))
    assert calls == [4]  # not bisected


@pytest.mark.parametrize("exc", [OverflowError(), UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates"),
                                 KeyError("x"), TypeError(), ZeroDivisionError(), RecursionError(), IndexError(),
                                 AttributeError(), ValueError(), RuntimeError(), AssertionError()])
def test_anything_else_is_a_record_level_fault(exc: Exception) -> None:
    assert not is_infrastructure(exc)


def test_a_failed_delivery_of_a_half_is_isolated_too() -> None:
    """A record whose *delivery* (or finalize) raises is found like one whose processing raises."""
    delivered: list[int] = []

    def deliver(batch: list[int]) -> None:
        if 7 in batch:
            raise ValueError("cannot encode")
        delivered.extend(batch)

    poisoned: list[int] = []
    assert run_isolated(list(range(10)), list, deliver, lambda r, e: poisoned.append(r) or []) == 1
    assert poisoned == [7] and delivered == [0, 1, 2, 3, 4, 5, 6, 8, 9]


def test_poison_detail_names_the_exception_and_where() -> None:
    try:
        float(10**400)
    except OverflowError as exc:
        detail = poison_detail(exc)
    assert detail.startswith("OverflowError: int too large to convert to float (at ")
    assert "test_isolation.py:" in detail


# --------------------------------------------------------------------------------------------- the loop
class PoisonHandler:
    """Outputs one record per message; raises ``exc`` whenever the batch holds an offset in ``poison``."""

    def __init__(self, poison: set[int], exc: Exception) -> None:
        self.poison, self.exc = poison, exc
        self.finalized: list[list[int]] = []

    def process(self, messages: Sequence[FakeMessage]) -> BatchResult:
        offsets = [m.offset() for m in messages]
        if self.poison.intersection(offsets):
            raise self.exc
        return BatchResult([Output("out", b"v%d" % o) for o in offsets],
                           finalize=lambda: self.finalized.append(offsets))

    def on_assign(self, partitions: object) -> None:
        pass

    def on_revoke(self, partitions: object) -> None:
        pass


def make_loop(batch: list[FakeMessage], handler: PoisonHandler) -> tuple[BatchLoop, FakeConsumer, FakeProducer]:
    events: list[str] = []
    consumer, producer = FakeConsumer([batch], events), FakeProducer(events)
    loop = BatchLoop(consumer, producer, handler, ["src"], max_rows=100, max_ms=1,  # type: ignore[arg-type]
                     max_backoff_s=0.0, flush_timeout_s=0.01)
    return loop, consumer, producer


def test_the_loop_dead_letters_a_poison_record_and_goes_on() -> None:
    batch = msgs("src", 0, range(10, 30)) + msgs("src", 1, range(5))
    handler = PoisonHandler({17}, OverflowError("int too large to convert to float"))
    loop, consumer, producer = make_loop(batch, handler)
    assert loop.run_once() == 25
    out = [o.value for o in producer.delivered if o.topic == "out"]
    assert sorted(out) == sorted(b"v%d" % m.offset() for m in batch if not (m.partition() == 0 and m.offset() == 17))
    assert len(out) == 24  # every good record once
    [dlq] = [o for o in producer.delivered if o.topic == "src.dlq"]
    headers = dict(dlq.headers or [])
    assert (headers["error"], headers["error_class"], headers["source_offset"]) == (b"poison", b"OverflowError", b"17")
    assert headers["error_detail"].startswith(b"OverflowError: int too large to convert to float (at ")
    assert dlq.value == batch[7].value() and dlq.key == batch[7].key()
    assert sorted(consumer.commits[0]) == [("src", 0, 30), ("src", 1, 5)]  # past the poison record
    assert loop.health.consecutive_failures == 0 and consumer.seeks == []
    assert loop.metrics.dead_letters.labels("src", "poison")._value.get() == 1
    assert sum(len(f) for f in handler.finalized) == 24  # each half's state written before the next half ran


def test_the_loop_retries_an_infrastructure_fault_whole() -> None:
    batch = msgs("src", 0, range(4))
    loop, consumer, producer = make_loop(batch, PoisonHandler({2}, redis.ConnectionError("Connection refused")))
    assert loop.run_once() == 0
    assert producer.delivered == [] and consumer.commits == [] and consumer.seeks == [("src", 0, 0)]
    assert loop.health.consecutive_failures == 1 and "ConnectionError" in (loop.health.last_error or "")


# --------------------------------------------------------------------------------------------- fit
def test_a_dead_letter_too_large_to_produce_is_cut_to_fit_a_real_producer() -> None:
    """librdkafka refuses (synchronously, no broker needed) a message over its message.max.bytes; the cut
    copy is accepted, and says what was cut."""
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "message.max.bytes": 2000})
    value, key = bytes(range(256)) * 40, b"k" * 3000
    out = dead_letter(FakeMessage("src", 3, 99, value_=value, key_=key), "src.dlq", "too_large",  # type: ignore[arg-type]
                      "x" * 400)
    with pytest.raises(KafkaException):
        producer.produce(out.topic, out.value, out.key, headers=out.headers)
    small = fit(out, 2000)
    producer.produce(small.topic, small.value, small.key, headers=small.headers)  # no exception
    headers = dict(small.headers or [])
    assert headers["truncated"] == b"1" and headers["original_size"] == b"10240"
    assert headers["original_sha256"] == hashlib.sha256(value).hexdigest().encode()
    assert headers["original_key_size"] == b"3000"
    assert small.value == value[:len(small.value)] and len(small.value) > 0 and size_of(small) <= 2000
    assert headers["error"] == b"too_large" and headers["source_offset"] == b"99"
    producer.purge()


@settings(max_examples=examples(200), deadline=None)
@given(st.integers(0, 5000), st.integers(0, 2000), st.integers(1000, 4000))
def test_fit_always_fits_and_leaves_what_fits_alone(n_value: int, n_key: int, limit: int) -> None:
    out = Output("t.dlq", b"v" * n_value, b"k" * n_key, [("error", b"poison")])
    got = fit(out, limit)
    if size_of(out) <= limit:
        assert got is out
    else:
        assert size_of(got) <= limit and dict(got.headers or [])["original_size"] == str(n_value).encode()


def test_the_loop_cuts_dead_letters_to_its_producer_limit_only() -> None:
    class Big(PoisonHandler):
        def process(self, messages: Sequence[FakeMessage]) -> BatchResult:
            return BatchResult([Output("src.dlq", b"x" * 50_000), Output("out", b"y" * 50_000)])

    loop, consumer, producer = make_loop(msgs("src", 0, [1]), Big(set(), ValueError()))
    loop.max_message_bytes = 10_000
    assert loop.run_once() == 1
    by_topic = {o.topic: o for o in producer.delivered}
    assert size_of(by_topic["src.dlq"]) <= 10_000 and len(by_topic["out"].value) == 50_000


class RefusingProducer(FakeProducer):
    """Refuses (MSG_SIZE_TOO_LARGE: the broker's verdict about one message) every record whose value is in
    ``refused``, and everything produced to a topic in ``refused_topics``."""

    def __init__(self, events: list[str], refused: set[bytes], refused_topics: set[str] = frozenset()) -> None:
        super().__init__(events)
        self.refused, self.refused_topics = refused, refused_topics

    def flush(self, timeout: float) -> int:
        for out, cb in self.queue:
            if out.value in self.refused or out.topic in self.refused_topics:
                cb(FakeError(code_=KafkaError.MSG_SIZE_TOO_LARGE, text="Broker: Message size too large"),
                   FakeMessage(out.topic, 0, 0))
            else:
                self.delivered.append(out)
                cb(None, FakeMessage(out.topic, 0, 0))
        self.queue = []
        return 0


def test_an_output_the_broker_refuses_for_its_size_is_isolated_not_retried_forever() -> None:
    batch = msgs("src", 0, range(8))
    events: list[str] = []
    consumer, producer = FakeConsumer([batch], events), RefusingProducer(events, {b"v5"})
    loop = BatchLoop(consumer, producer, PoisonHandler(set(), ValueError()), ["src"], max_rows=100,  # type: ignore[arg-type]
                     max_ms=1, max_backoff_s=0.0, flush_timeout_s=0.01)
    assert loop.run_once() == 8 and loop.health.consecutive_failures == 0
    [dlq] = [o for o in producer.delivered if o.topic == "src.dlq"]
    assert dict(dlq.headers or [])["error_class"] == b"RefusedRecordError"
    assert dict(dlq.headers or [])["source_offset"] == b"5"


def test_when_even_the_dead_letter_is_refused_a_bare_one_goes_out() -> None:
    events: list[str] = []
    batch = msgs("src", 0, [1])
    consumer = FakeConsumer([batch], events)
    producer = RefusingProducer(events, {b"v1", batch[0].value()})  # the record and its full copy
    loop = BatchLoop(consumer, producer, PoisonHandler(set(), ValueError()), ["src"], max_rows=100,  # type: ignore[arg-type]
                     max_ms=1, max_backoff_s=0.0, flush_timeout_s=0.01)
    assert loop.run_once() == 1
    [dlq] = [o for o in producer.delivered if o.topic == "src.dlq"]
    assert dlq.value == b"" and dlq.key is None and dict(dlq.headers or [])["error"] == b"poison"


def test_the_faust_engine_isolates_a_poison_record_the_same_way() -> None:
    from types import SimpleNamespace

    from streams.runtime.faust_app import FaustWorker
    from streams.runtime.workers import Worker
    from streams.settings import Settings

    events: list[str] = []
    producer = FakeProducer(events)
    loop = BatchLoop(FakeConsumer([], events), producer, PoisonHandler({3}, KeyError("hr")), ["src"],  # type: ignore[arg-type]
                     max_rows=100, max_ms=1, max_backoff_s=0.0, flush_timeout_s=0.01)
    faust = FaustWorker(Worker("pipeline-x", loop), Settings(), "g")
    faust_events = [SimpleNamespace(message=SimpleNamespace(topic="src", partition=0, offset=o, key=b"k",
                                                            value=b"v%d" % o, timestamp=1.0, headers=None))
                    for o in range(6)]
    assert faust._handle(faust_events) is True  # acked: nothing is retried
    [dlq] = [o for o in producer.delivered if o.topic == "src.dlq"]
    assert dict(dlq.headers or [])["error_class"] == b"KeyError" and dlq.value == b"v3"
    assert sorted(o.value for o in producer.delivered if o.topic == "out") == [b"v0", b"v1", b"v2", b"v4", b"v5"]
