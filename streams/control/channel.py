"""Kafka edge of the control protocol: reading commands (every instance sees every command) and publishing.

Each reader assigns the control topic's partitions without a consumer group, so every scorer instance gets
every command. It starts from the beginning and ignores records produced before the reader started
(the registry already reflects them); seeking to the end is not used because the embedded broker does not
answer offset look-ups correctly.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streams import codec
from streams.control.protocol import Ack, Command, CommandVerifier, sign_command
from streams.exceptions import ControlError
from streams.runtime.clients import make_consumer
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refused:
    """A command that failed verification; ``command_id`` may be '' when it was unreadable."""

    command_id: str
    model: str
    reason: str


class ControlReader:
    """Non-blocking reader of the control topic: ``poll()`` returns verified commands, refusals and acks."""

    def __init__(self, settings: Settings, *, verifier: CommandVerifier | None, since_ms: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.topic = settings.topics.control
        self.verifier = verifier
        self.clock = clock
        self.since_ms = int(clock() * 1000) - 1000 if since_ms is None else since_ms
        self.consumer: Consumer = make_consumer(settings.kafka, f"driftline-control-{uuid.uuid4().hex[:8]}")
        self.consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])

    def poll(self, timeout_s: float = 0.0) -> Iterator[Command | Refused | Ack]:
        for msg in self.consumer.consume(500, timeout_s):
            if msg.error() is not None:
                continue
            _, ts = msg.timestamp()
            if ts < self.since_ms:
                continue
            try:
                body = codec.decode(msg.value() or b"")
            except codec.DecodeError:
                yield Refused("", "", "malformed control record")
                continue
            if not isinstance(body, dict):
                yield Refused("", "", "control record is not an object")
                continue
            if body.get("type") == "ack":
                try:
                    yield Ack.from_dict(body)
                except (KeyError, TypeError, ValueError):
                    log.warning("malformed ack on %s: %r", self.topic, body)
                continue
            if self.verifier is None:
                continue
            try:
                yield self.verifier.verify(body, int(self.clock() * 1000))
            except ControlError as exc:
                yield Refused(str(body.get("command_id", "")), str(body.get("model", "")), str(exc))

    def close(self) -> None:
        self.consumer.close()


def publish(producer: Producer, topic: str, message: dict[str, Any]) -> None:
    """Produce one control message (command or ack) and wait for its delivery."""
    producer.produce(topic, codec.encode(message), key=message.get("model") or None)
    producer.flush(10)


def publish_command(producer: Producer, settings: Settings, command: dict[str, Any], key: bytes) -> dict[str, Any]:
    signed = sign_command(command, key)
    publish(producer, settings.topics.control, signed)
    return signed
