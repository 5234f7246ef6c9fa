"""The control store in Redis (the contract: :mod:`streams.control.store`; key schema below, pinned by a test).

Keys of one model scope ``<model>:<uid>`` (the registry's id for the model)::

    dl:{ctl:<model>:<uid>}:state             hash    seq, revision, state (DesiredState JSON)   no TTL
    dl:{ctl:<model>:<uid>}:history           list    history lines (JSON), newest last, capped   no TTL
    dl:{ctl:<model>:<uid>}:cmd:<command_id>  string  LedgerEntry JSON                           TTL ttl_ms
    dl:{ctl:<model>:<uid>}:acks:<command_id> hash    instance -> AckMark JSON                   TTL ttl_ms

``{ctl:<model>:<uid>}`` is a Redis Cluster hash tag: every key of a model lives in one slot, so each check-and-
record is one ``EVALSHA`` of ``ledger.lua`` (ops ``look``, ``record``, ``claim``), atomic on a single Redis and
on a cluster alike. Model names cannot contain braces or colons (registry rule); the command id is percent-
encoded. The client comes from the caller (the worker's single Redis client factory), so a cluster client can
be passed instead; this module never builds one.

``ttl_ms`` must outlive a command's freshness (``control_max_age_s`` + ``max_future_s`` + clock slack): after
it, the ledger entry may go, but the verifier refuses the command as stale by then.

Example:
    >>> keys_for("risk", "9f1c", "c-1")
    ['dl:{ctl:risk:9f1c}:state', 'dl:{ctl:risk:9f1c}:history', 'dl:{ctl:risk:9f1c}:cmd:c-1', 'dl:{ctl:risk:9f1c}:acks:c-1']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import redis
from redis.exceptions import RedisClusterException

from streams.control.desired import DesiredState
from streams.control.ledger import AckMark, LedgerEntry
from streams.control.store import DEFAULT_HISTORY_MAX, Look, RecordResult
from streams.exceptions import ControlStoreError

LEDGER_SCRIPT = Path(__file__).with_name("ledger.lua").read_text()


def scope_tag(model: str, uid: str) -> str:
    """The hash-tagged prefix of every key of one model scope."""
    return f"dl:{{ctl:{model}:{uid}}}"


def keys_for(model: str, uid: str, command_id: str) -> list[str]:
    """KEYS of ``ledger.lua`` for ``command_id``: state, history, cmd entry, acks."""
    base = scope_tag(model, uid)
    cid = quote(command_id, safe="-_.")
    return [f"{base}:state", f"{base}:history", f"{base}:cmd:{cid}", f"{base}:acks:{cid}"]


def _text(raw: Any) -> str | None:
    return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)


class RedisControlStore:
    """:class:`~streams.control.store.ControlStore` over a Redis (or Redis Cluster) client.

    Every Redis failure surfaces as :class:`~streams.exceptions.ControlStoreError`: the caller keeps the
    command and tries again, it is never decided on a guess."""

    def __init__(self, client: Any, model: str, uid: str, *, ttl_ms: int,
                 history_max: int = DEFAULT_HISTORY_MAX) -> None:
        if ":" in model or "{" in model or "}" in model:
            raise ControlStoreError(f"model name {model!r} cannot carry a control scope (':' or braces)")
        self.client = client
        self.model = model
        self.uid = uid
        self.scope = f"{model}:{uid}"
        self.ttl_ms = int(ttl_ms)
        self.history_max = int(history_max)
        self._script = client.register_script(LEDGER_SCRIPT)
        self._state_key, self._history_key = keys_for(model, uid, "")[:2]

    def _run(self, command_id: str, *args: Any) -> Any:
        try:
            return self._script(keys=keys_for(self.model, self.uid, command_id), args=list(args))
        except (redis.RedisError, RedisClusterException) as exc:
            raise ControlStoreError(f"control store {self.scope}: {exc}") from exc

    def current(self) -> tuple[DesiredState, int]:
        try:
            seq, state = self.client.hmget(self._state_key, ["seq", "state"])
        except (redis.RedisError, RedisClusterException) as exc:
            raise ControlStoreError(f"control store {self.scope}: {exc}") from exc
        return _state(state), int(seq or 0)

    def look(self, command_id: str, instance: str) -> Look:
        entry, acked, seq, state = self._run(command_id, "look", instance)
        return Look(None if entry is None else LedgerEntry.from_json(entry), bool(int(acked)), _state(state),
                    int(seq or 0))

    def record(self, entry: LedgerEntry, *, expected_seq: int, ack: AckMark, new_state: DesiredState | None,
               history: dict[str, Any] | None) -> RecordResult:
        state_json = b"" if new_state is None else orjson.dumps(new_state.to_dict())
        revision = 0 if new_state is None else new_state.revision
        line = b"" if history is None else orjson.dumps(history)
        outcome, payload = self._run(entry.command_id, "record", expected_seq, entry.to_json(), self.ttl_ms,
                                     entry.decided_by, ack.to_json(), state_json, revision, line, self.history_max)
        outcome = _text(outcome)
        if outcome == "seen":
            return RecordResult("seen", LedgerEntry.from_json(payload))
        return RecordResult(str(outcome))

    def claim_ack(self, command_id: str, instance: str, ack: AckMark) -> bool:
        return bool(int(self._run(command_id, "claim", instance, ack.to_json(), self.ttl_ms)))

    def acks(self, command_id: str) -> dict[str, AckMark]:
        try:
            raw = self.client.hgetall(keys_for(self.model, self.uid, command_id)[3])
        except (redis.RedisError, RedisClusterException) as exc:
            raise ControlStoreError(f"control store {self.scope}: {exc}") from exc
        return {_text(k) or "": AckMark.from_mapping(orjson.loads(v)) for k, v in raw.items()}

    def history(self, limit: int = 100) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        try:
            lines = self.client.lrange(self._history_key, -limit, -1)
        except (redis.RedisError, RedisClusterException) as exc:
            raise ControlStoreError(f"control store {self.scope}: {exc}") from exc
        return [orjson.loads(line) for line in lines]

    def clear(self) -> None:
        base = scope_tag(self.model, self.uid)
        try:
            keys = [self._state_key, self._history_key]
            for pattern in (f"{base}:cmd:*", f"{base}:acks:*"):
                keys += list(self.client.scan_iter(match=pattern, count=1000))
            for key in keys:  # one by one: a cluster client takes multi-key DEL only within one slot anyway
                self.client.delete(key)
        except (redis.RedisError, RedisClusterException) as exc:
            raise ControlStoreError(f"control store {self.scope}: {exc}") from exc


def _state(raw: Any) -> DesiredState:
    return DesiredState() if raw is None else DesiredState.from_dict(orjson.loads(raw))
