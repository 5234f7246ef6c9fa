"""A stand-in for ``confluent_kafka.Message``: the methods the batch loop and the handlers call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

T0 = 1_700_000_000_000


@dataclass
class FakeMessage:
    """``FakeMessage("vitals", 2, 99, b'{"id": "p1"}', b"p1")``: topic, partition, offset, value, key."""

    topic_: str
    partition_: int
    offset_: int
    value_: bytes | None = b"{}"
    key_: bytes | None = b"k"
    error_: Any = None
    headers_: list[tuple[str, bytes]] | None = None
    timestamp_ms: int = T0

    def topic(self) -> str:
        return self.topic_

    def partition(self) -> int:
        return self.partition_

    def offset(self) -> int:
        return self.offset_

    def value(self) -> bytes | None:
        return self.value_

    def key(self) -> bytes | None:
        return self.key_

    def error(self) -> Any:
        return self.error_

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self.headers_

    def timestamp(self) -> tuple[int, int]:
        return (1, self.timestamp_ms)  # TIMESTAMP_CREATE_TIME
