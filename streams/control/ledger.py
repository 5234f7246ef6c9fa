"""The control ledger's records and what a scorer makes of a command it reads (pure; no I/O).

Every scorer instance reads every record of the control topic. The first instance that reads a command
*decides* it for everybody: it records a :class:`LedgerEntry` (in the control store, in one atomic step with
the new desired state) naming the topic record it read (``ref`` = ``topic[partition]@offset``), the verdict,
the model's decision number ``seq``, and itself. Every other instance, on reading the same command, finds the
entry and :func:`classify` tells it what to do:

``new``        no entry: decide it (check order, change the desired state, record, serve, ack).
``replayed``   an entry made from *another* record: the command was published again (a captured copy, or an
               operator re-sending it). Reject it (``replayed``), raise the critical alert, change nothing.
``duplicate``  this instance already acked this very record (Kafka delivered it twice): ignore it.
``reflected``  the entry was decided before this instance loaded the desired state (it started later):
               what the command decided is already served; ignore it, no ack (a restarted worker acks
               nothing twice).
``follow``     decided by another instance while this one was running: serve the (current) desired state
               and ack the recorded verdict, once (the store's ack claim is atomic).

So each command is decided once per model and applied once per instance, whatever the restarts, and every
instance that was running acks it exactly once.

Example:
    >>> e = LedgerEntry("c1", "rollback", "control[0]@7", "applied", "", "", seq=4, revision=3, decided_by="a",
    ...                 group="g", at=0)
    >>> [classify(None, "control[0]@7", acked=False, joined_seq=0).value,
    ...  classify(e, "control[0]@9", acked=False, joined_seq=0).value,
    ...  classify(e, "control[0]@7", acked=True, joined_seq=0).value,
    ...  classify(e, "control[0]@7", acked=False, joined_seq=4).value,
    ...  classify(e, "control[0]@7", acked=False, joined_seq=3).value]
    ['new', 'replayed', 'duplicate', 'reflected', 'follow']
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from enum import StrEnum
from typing import Any

import orjson


def record_ref(topic: str, partition: int, offset: int) -> str:
    """The identity of one control-topic record.

    Example:
        >>> record_ref("control", 0, 42)
        'control[0]@42'
    """
    return f"{topic}[{partition}]@{offset}"


@dataclass(frozen=True)
class LedgerEntry:
    """How one command was decided for the model: ``status`` applied | rejected (``reason``, ``detail``)."""

    command_id: str
    command: str
    ref: str
    status: str
    reason: str
    detail: str
    seq: int
    revision: int
    decided_by: str
    group: str
    at: int

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: bytes | str) -> LedgerEntry:
        data = orjson.loads(raw)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class AckMark:
    """What the ledger keeps of one instance's ack of a command (so it is sent once, also after a restart)."""

    status: str
    reason: str
    group: str
    at: int

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AckMark:
        return cls(str(data["status"]), str(data.get("reason", "")), str(data.get("group", "")), int(data["at"]))


class Sighting(StrEnum):
    NEW = "new"
    REPLAYED = "replayed"
    DUPLICATE = "duplicate"
    REFLECTED = "reflected"
    FOLLOW = "follow"


def classify(entry: LedgerEntry | None, ref: str, *, acked: bool, joined_seq: int) -> Sighting:
    """What an instance does with a command read at ``ref``: see the module docstring.

    ``acked``: this instance's ack of the command is in the ledger. ``joined_seq``: the model's decision
    number when this instance loaded the desired state (at start)."""
    if entry is None:
        return Sighting.NEW
    if entry.ref != ref:
        return Sighting.REPLAYED
    if acked:
        return Sighting.DUPLICATE
    if entry.seq <= joined_seq:
        return Sighting.REFLECTED
    return Sighting.FOLLOW
