"""The monitor's bounded history in Redis: two capped streams per model, read back by ``driftline report``.

Keys (the model in a Redis Cluster hash tag, so both streams of a model share a slot)::

    driftline:history:{<model>}:snapshots   XADD ... MAXLEN ~ DRIFTLINE_HISTORY_MAX_SNAPSHOTS (8,640)
    driftline:history:{<model>}:events      XADD ... MAXLEN ~ DRIFTLINE_HISTORY_MAX_EVENTS (10,000)
    driftline:history:models                SET of model names

Each entry has one field ``d``: the record's JSON (:mod:`monitor.history`). Entry ids are Redis's own; a read
pages through the (capped) stream with ``XRANGE ... COUNT 1000`` and keeps the records whose own ``ts`` (the
writer's clock, what the report plots) is in the range, so writers' clocks need not agree with Redis's.

Why Redis and not a topic: the report reads a time range of one model without consuming a topic from its
beginning; the caps bound memory (8,640 snapshots = a day at the default 10 s per version, about 1-2 KB
each); and the history survives a restart of the embedded broker, which keeps topics in memory only. The
``alerts`` and ``control`` topics stay the contract for delivery; this is the operator's copy.

A failed write never fails a batch: the caller logs it and counts it (``driftline_history_records_total``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis

__all__ = ["RedisHistory", "history_key"]

PAGE = 1000


def history_key(prefix: str, model: str, kind: str) -> str:
    """The stream key of ``model``'s ``kind`` (snapshots | events).

    >>> history_key("driftline:history", "vitals-risk", "events")
    'driftline:history:{vitals-risk}:events'
    """
    return f"{prefix}:{{{model}}}:{kind}"


class RedisHistory:
    """:class:`monitor.history.HistoryStore` on Redis streams (one pipelined round trip per write)."""

    def __init__(self, client: redis.Redis, *, prefix: str = "driftline:history", max_snapshots: int = 8640,
                 max_events: int = 10_000, ttl_s: int = 0) -> None:
        self.client = client
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.max_snapshots = max_snapshots
        self.max_events = max_events

    def write(self, model: str, snapshots: Sequence[Mapping[str, Any]] = (),
              events: Sequence[Mapping[str, Any]] = ()) -> None:
        if not snapshots and not events:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(f"{self.prefix}:models", model)
        for kind, records, cap in (("snapshots", snapshots, self.max_snapshots), ("events", events, self.max_events)):
            key = history_key(self.prefix, model, kind)
            for rec in records:
                pipe.xadd(key, {"d": orjson.dumps(rec, option=orjson.OPT_NON_STR_KEYS)}, maxlen=cap,
                          approximate=True)
            if self.ttl_s and records:
                pipe.expire(key, self.ttl_s)
        pipe.execute()

    def _range(self, model: str, kind: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        key, start, out = history_key(self.prefix, model, kind), "-", []
        while True:
            page = self.client.xrange(key, start, "+", count=PAGE)
            for _id, fields in page:
                raw = fields.get(b"d") or fields.get("d")
                try:
                    rec = orjson.loads(raw)
                except (orjson.JSONDecodeError, TypeError):
                    continue
                if isinstance(rec, dict) and since_ms <= int(rec.get("ts") or 0) <= until_ms:
                    out.append(rec)
            if len(page) < PAGE:
                return out
            last = page[-1][0]
            start = "(" + (last.decode() if isinstance(last, bytes) else str(last))

    def snapshots(self, model: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        return self._range(model, "snapshots", since_ms, until_ms)

    def events(self, model: str, since_ms: int, until_ms: int) -> list[dict[str, Any]]:
        return self._range(model, "events", since_ms, until_ms)

    def models(self) -> list[str]:
        return sorted(m.decode() if isinstance(m, bytes) else str(m)
                      for m in self.client.smembers(f"{self.prefix}:models"))
