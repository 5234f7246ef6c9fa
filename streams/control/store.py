"""The control store: one model's desired state, history and command ledger, shared by every scorer.

:class:`ControlStore` is the contract; :class:`streams.control.redis_store.RedisControlStore` is the real one and
:class:`MemoryControlStore` its in-memory twin for unit tests (the same contract tests run over both). One
store object serves one model *scope* (the model and its registry's id for it, see
:meth:`models.registry.Registry.uid`): a new registry never inherits an old one's decisions.

The store holds, per scope:

* the desired state (:class:`~streams.control.desired.DesiredState`) and ``seq``, the number of decisions made
  (applied or rejected); a decision is recorded only if ``seq`` is still what the decider read, so two
  instances deciding different commands at once cannot both win (the loser reads again and re-decides);
* one :class:`~streams.control.ledger.LedgerEntry` per decided command id, kept ``ttl_ms`` (longer than a
  command stays fresh: after that the verifier refuses the command as stale anyway);
* per command id, the instances that acked it (:class:`~streams.control.ledger.AckMark`), same TTL;
* the history of applied commands, newest last, capped at ``history_max`` entries.

Example:
    >>> from streams.control.ledger import AckMark, LedgerEntry
    >>> store = MemoryControlStore("m:abc")
    >>> e = LedgerEntry("c1", "pause", "control[0]@3", "applied", "", "", 1, 1, "a", "g", 10)
    >>> s1 = DesiredState(revision=1, paused=True, command_id="c1")
    >>> store.record(e, expected_seq=0, ack=AckMark("applied", "", "g", 10), new_state=s1,
    ...              history={"revision": 1}).outcome
    'recorded'
    >>> store.record(e, expected_seq=1, ack=AckMark("applied", "", "g", 10), new_state=None, history=None).outcome
    'seen'
    >>> store.look("c1", "b").acked, store.claim_ack("c1", "b", AckMark("applied", "", "g", 11))
    (False, True)
    >>> store.claim_ack("c1", "b", AckMark("applied", "", "g", 12))
    False
    >>> store.current()
    (DesiredState(revision=1, version=None, challenger=None, canary_pct=0.0, shadow=False, paused=True, command_id='c1', command='', issued_at=0, issued_by='', reason='', alert_id='', key_id='', applied_at=0, decided_by=''), 1)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from streams.control.desired import DesiredState
from streams.control.ledger import AckMark, LedgerEntry

DEFAULT_HISTORY_MAX = 1000


@dataclass(frozen=True)
class Look:
    """One read of the store for a command: its ledger entry (or None), whether ``instance`` acked it, and the
    current desired state with the decision count ``seq``."""

    entry: LedgerEntry | None
    acked: bool
    state: DesiredState
    seq: int


@dataclass(frozen=True)
class RecordResult:
    """``recorded``; ``seen`` (another instance decided this command first: ``entry``); or ``conflict``
    (another command was decided since the look: read again)."""

    outcome: str
    entry: LedgerEntry | None = None


class ControlStore(Protocol):
    """One model scope's desired state, history and ledger (see the module docstring)."""

    scope: str
    ttl_ms: int

    def current(self) -> tuple[DesiredState, int]:
        """The desired state and the decision count ``seq``."""
        ...

    def look(self, command_id: str, instance: str) -> Look: ...

    def record(self, entry: LedgerEntry, *, expected_seq: int, ack: AckMark, new_state: DesiredState | None,
               history: dict[str, Any] | None) -> RecordResult:
        """Atomically: unless ``entry.command_id`` has an entry (``seen``) or ``seq`` moved (``conflict``), store
        the entry, ``seq + 1``, the decider's ack mark and, when given, the new state and its history line."""
        ...

    def claim_ack(self, command_id: str, instance: str, ack: AckMark) -> bool:
        """Mark ``instance``'s ack of ``command_id``; False when it was already marked (send nothing)."""
        ...

    def acks(self, command_id: str) -> dict[str, AckMark]: ...

    def history(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` history lines, oldest first."""
        ...

    def clear(self) -> None:
        """Forget the scope entirely (tests; an operator resetting a model's control state)."""
        ...


class MemoryControlStore:
    """The in-memory twin of :class:`~streams.control.redis_store.RedisControlStore` (thread-safe; TTLs by
    ``clock``). Instances that share one object behave like scorers sharing one Redis."""

    def __init__(self, scope: str, *, ttl_ms: int = 3_600_000, history_max: int = DEFAULT_HISTORY_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.scope = scope
        self.ttl_ms = ttl_ms
        self.history_max = history_max
        self.clock = clock
        self._lock = threading.Lock()
        self._state = DesiredState()
        self._seq = 0
        self._entries: dict[str, tuple[float, bytes]] = {}  # command_id -> (expires at, entry json)
        self._acks: dict[str, tuple[float, dict[str, bytes]]] = {}
        self._history: list[dict[str, Any]] = []

    def _live(self, table: dict[str, tuple[float, Any]], key: str) -> Any:
        item = table.get(key)
        if item is None:
            return None
        if item[0] <= self.clock():
            del table[key]
            return None
        return item[1]

    def current(self) -> tuple[DesiredState, int]:
        with self._lock:
            return self._state, self._seq

    def look(self, command_id: str, instance: str) -> Look:
        with self._lock:
            raw = self._live(self._entries, command_id)
            acks = self._live(self._acks, command_id) or {}
            return Look(None if raw is None else LedgerEntry.from_json(raw), instance in acks, self._state, self._seq)

    def record(self, entry: LedgerEntry, *, expected_seq: int, ack: AckMark, new_state: DesiredState | None,
               history: dict[str, Any] | None) -> RecordResult:
        with self._lock:
            raw = self._live(self._entries, entry.command_id)
            if raw is not None:
                return RecordResult("seen", LedgerEntry.from_json(raw))
            if self._seq != expected_seq:
                return RecordResult("conflict")
            expires = self.clock() + self.ttl_ms / 1000
            self._entries[entry.command_id] = (expires, entry.to_json())
            self._acks[entry.command_id] = (expires, {entry.decided_by: ack.to_json()})
            self._seq += 1
            if new_state is not None:
                self._state = new_state
                if history is not None:
                    self._history = (self._history + [dict(history)])[-self.history_max:]
            return RecordResult("recorded")

    def claim_ack(self, command_id: str, instance: str, ack: AckMark) -> bool:
        with self._lock:
            acks = self._live(self._acks, command_id)
            if acks is None:
                acks = {}
                self._acks[command_id] = (self.clock() + self.ttl_ms / 1000, acks)
            if instance in acks:
                return False
            acks[instance] = ack.to_json()
            return True

    def acks(self, command_id: str) -> dict[str, AckMark]:
        with self._lock:
            acks = self._live(self._acks, command_id) or {}
            return {i: AckMark.from_mapping(orjson.loads(v)) for i, v in acks.items()}

    def history(self, limit: int = 100) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(h) for h in self._history[-limit:]] if limit > 0 else []

    def clear(self) -> None:
        with self._lock:
            self._state, self._seq = DesiredState(), 0
            self._entries.clear()
            self._acks.clear()
            self._history.clear()
