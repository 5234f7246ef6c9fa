"""The batch loop's outputs: produced asynchronously, dead letters cut to fit, every delivery checked at a flush.

:meth:`OutputProducer.flush_and_check` tells the two kinds of failure apart: :class:`RefusedRecordError` when the
broker refused only outputs for what they are (too large, invalid: a record-level fault the loop isolates), and
:class:`~streams.runtime.batch.DeliveryError` for anything else not acknowledged (an infrastructure fault the
loop retries).

Example (a stand-in producer that acknowledges everything):
    >>> from streams.metrics import Metrics
    >>> from streams.runtime.batch import Output
    >>> class Producer:
    ...     def __init__(self): self.sent = []
    ...     def produce(self, topic, value, key, headers, on_delivery): self.sent.append((topic, value))
    ...     def flush(self, timeout): return 0
    >>> out = OutputProducer(Producer(), Metrics(), "pipeline", max_message_bytes=1_000_000)
    >>> out.produce_all([Output("predictions", b"{}", b"p1")])
    >>> out.flush_and_check(5.0)
    >>> out.producer.sent
    [('predictions', b'{}')]
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, Message

from streams.metrics import Metrics
from streams.runtime.batch import DeliveryError, Output
from streams.runtime.dead_letters import fit, is_dead_letter
from streams.runtime.isolation import RECORD_LEVEL_KAFKA_ERRORS, RefusedRecordError

__all__ = ["OutputProducer"]


class OutputProducer:
    """Produces a loop's outputs and keeps the delivery errors reported since the last :meth:`clear`."""

    def __init__(self, producer: Any, metrics: Metrics, stage: str, *, max_message_bytes: int) -> None:
        self.producer = producer
        self.metrics = metrics
        self.stage = stage
        self.max_message_bytes = max_message_bytes  # the producer's message.max.bytes: dead letters are cut to fit
        self.errors: list[str] = []
        self.refused = 0  # of those, refusals of the record itself (RECORD_LEVEL_KAFKA_ERRORS)

    def clear(self) -> None:
        """Forget the delivery errors seen so far (a new delivery round, or a rewind)."""
        self.errors.clear()
        self.refused = 0

    def produce_all(self, outputs: list[Output]) -> None:
        """Produce ``outputs`` (asynchronously), counted per topic."""
        per_topic: dict[str, int] = {}
        for out in outputs:
            self._produce(fit(out, self.max_message_bytes) if is_dead_letter(out) else out)
            per_topic[out.topic] = per_topic.get(out.topic, 0) + 1
        for topic, n in per_topic.items():
            self.metrics.produced.labels(self.stage, topic).inc(n)

    def flush_and_check(self, timeout_s: float) -> None:
        """Wait for every output produced so far; raise when any was not acknowledged (see the module docstring)."""
        remaining = self.producer.flush(timeout_s)
        if not remaining and self.errors and self.refused == len(self.errors):
            raise RefusedRecordError(f"the broker refused outputs: {self.errors[:3]}")
        if remaining or self.errors:
            raise DeliveryError(f"{remaining} undelivered, errors: {self.errors[:3]}")

    def _produce(self, out: Output) -> None:
        while True:
            try:
                self.producer.produce(out.topic, out.value, out.key, headers=out.headers, on_delivery=self._delivered)
                return
            except BufferError:  # local queue full: serve delivery callbacks, then retry (back-pressure)
                self.producer.poll(0.05)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append(f"{msg.topic()}: {err.str()}")
            self.refused += err.code() in RECORD_LEVEL_KAFKA_ERRORS  # too large, invalid: the record's fault
