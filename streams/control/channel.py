"""Kafka edge of the control protocol: reading commands (every instance sees every command) and publishing.

Each reader assigns the control topic's partition without a consumer group, so every scorer instance gets
every command. It reads from the beginning (seeking to the end or to a time is not used because the embedded
broker does not answer offset look-ups correctly) and sorts records by their timestamp:

* before ``since_ms - catch_up_ms``: ignored;
* from then until ``since_ms`` (the reader's start, less a second): *catch-up*. Verified commands are yielded
  as :class:`Delivery` with ``catch_up=True``: a command issued while no scorer ran is decided by the first
  one that starts (within the command's freshness), and one that was decided already is recognised by the
  ledger. Refusals are yielded with ``catch_up=True`` (to be counted, not alarmed about); acks are dropped;
* from ``since_ms`` on: live.

Each yielded command carries ``ref``, the identity of the record it was read from (``topic[partition]@offset``),
which is how the ledger tells a second copy of a command (a replay) from the same record read again.
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
from streams.control.keyring import ControlKey, Keyring
from streams.control.ledger import record_ref
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
    ref: str = ""
    catch_up: bool = False


@dataclass(frozen=True)
class Delivery:
    """A verified command, the record it was read from (``ref``) and whether it predates the reader."""

    command: Command
    ref: str
    catch_up: bool = False

    @property
    def command_id(self) -> str:
        return self.command.command_id


class ControlReader:
    """Non-blocking reader of the control topic: ``poll()`` returns verified commands, refusals and acks."""

    def __init__(self, settings: Settings, *, verifier: CommandVerifier | None, since_ms: int | None = None,
                 catch_up_ms: int = 0, clock: Callable[[], float] = time.time) -> None:
        self.topic = settings.topics.control
        self.verifier = verifier
        self.clock = clock
        self.since_ms = int(clock() * 1000) - 1000 if since_ms is None else since_ms
        self.catch_up_ms = max(0, int(catch_up_ms))
        self.consumer: Consumer = make_consumer(settings.kafka, f"driftline-control-{uuid.uuid4().hex[:8]}")
        self.consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])

    def poll(self, timeout_s: float = 0.0, max_records: int = 500) -> Iterator[Delivery | Refused | Ack]:
        for msg in self.consumer.consume(max_records, timeout_s):
            if msg.error() is not None:
                continue
            _, ts = msg.timestamp()
            if ts < self.since_ms - self.catch_up_ms:
                continue
            catch_up = ts < self.since_ms
            ref = record_ref(msg.topic() or self.topic, msg.partition() or 0, msg.offset() or 0)
            try:
                body = codec.decode(msg.value() or b"")
            except codec.DecodeError:
                yield Refused("", "", "malformed control record", ref, catch_up)
                continue
            if not isinstance(body, dict):
                yield Refused("", "", "control record is not an object", ref, catch_up)
                continue
            if body.get("type") == "ack":
                if catch_up:
                    continue
                try:
                    yield Ack.from_dict(body)
                except (KeyError, TypeError, ValueError):
                    log.warning("malformed ack on %s: %r", self.topic, body)
                continue
            if self.verifier is None:
                continue
            try:
                yield Delivery(self.verifier.verify(body, int(self.clock() * 1000)), ref, catch_up)
            except ControlError as exc:
                yield Refused(str(body.get("command_id", ""))[:200], str(body.get("model", ""))[:200], str(exc),
                              ref, catch_up)

    def close(self) -> None:
        self.consumer.close()


def publish(producer: Producer, topic: str, message: dict[str, Any]) -> None:
    """Produce one control message (command or ack) and wait for its delivery."""
    producer.produce(topic, codec.encode(message), key=message.get("model") or None)
    producer.flush(10)


def publish_command(producer: Producer, settings: Settings, command: dict[str, Any],
                    key: bytes | ControlKey | Keyring) -> dict[str, Any]:
    """Sign ``command`` (the keyring's current key) and publish it; returns what was sent."""
    signed = sign_command(command, key)
    publish(producer, settings.topics.control, signed)
    return signed
