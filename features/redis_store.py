"""The Redis online feature store (key schema: ``features.keys``; save script: ``save_state.lua``).

* ``load``: one non-transactional pipeline, ``HGETALL`` per entity + ``GET`` of the offset.
* ``save``: one ``EVALSHA`` of ``save_state.lua`` (registered with ``register_script``; it falls back to
  ``EVAL`` after a script flush) that checks the offset, HSETs/HDELs, PEXPIREs and sets the offset, all
  atomically. Every key of a call shares the ``{topic:partition}`` hash tag, so it also runs on a
  Redis Cluster.
* ``read_features``: one pipeline of ``HGETALL`` for many entities (any partitions).

Use a bytes client: ``RedisFeatureStore(redis.Redis(host=..., decode_responses=False))``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from pathlib import Path

import redis

from features.definitions import FeatureView
from features.exceptions import FeatureError, OffsetRegressionError, StaleOffsetError
from features.keys import decode_position, encode_position
from features.state import EntityState
from features.store import (
    SourcePosition,
    decode_latest_many,
    encode_latest,
    latest_key_for,
    offset_key_for,
    state_key_for,
)

SAVE_SCRIPT = (Path(__file__).with_name("save_state.lua")).read_text()


class RedisFeatureStore:
    """``FeatureStore`` on Redis (standalone or Cluster) with one round trip per batch and direction."""

    def __init__(self, client: redis.Redis) -> None:
        kwargs = getattr(client, "get_connection_kwargs", dict)()
        if kwargs.get("decode_responses"):
            raise FeatureError(
                "RedisFeatureStore needs a bytes client: create it with decode_responses=False"
            )
        self.client = client
        self._save = client.register_script(SAVE_SCRIPT)

    def load(
        self, view: FeatureView, pos: SourcePosition, entity_ids: Collection[str]
    ) -> tuple[dict[str, EntityState], int]:
        """See ``features.store.FeatureStore``."""
        ids = list(entity_ids)
        pipe = self.client.pipeline(transaction=False)
        for e in ids:
            pipe.hgetall(state_key_for(view, pos, e))
        pipe.get(offset_key_for(view, pos))
        res = pipe.execute()
        states = {e: EntityState.from_redis(h) for e, h in zip(ids, res, strict=False)}
        return states, decode_position(res[-1])[0]

    def position(self, view: FeatureView, pos: SourcePosition) -> tuple[int, int | None]:
        """(last applied offset, saved watermark or None)."""
        return decode_position(self.client.get(offset_key_for(view, pos)))

    def last_offset(self, view: FeatureView, pos: SourcePosition) -> int:
        """See ``features.store.FeatureStore``."""
        return self.position(view, pos)[0]

    def save(
        self,
        view: FeatureView,
        pos: SourcePosition,
        states: Mapping[str, EntityState],
        *,
        expected_offset: int,
        new_offset: int,
        ttl_ms: int,
        watermark_ms: int | None = None,
        latest: Mapping[str, tuple[int, Mapping[str, float]]] | None = None,
    ) -> None:
        """See ``features.store.FeatureStore``; ``watermark_ms`` is stored beside the offset when given."""
        keys: list[bytes] = [offset_key_for(view, pos)]
        args: list[bytes | int] = [
            expected_offset,
            new_offset,
            encode_position(new_offset, watermark_ms),
            int(ttl_ms),
        ]
        for entity_id, st in states.items():
            sets, dels = st.to_redis()
            if not sets and not dels:
                continue
            keys.append(state_key_for(view, pos, entity_id))
            args.append(len(sets))
            args.append(len(dels))
            for f, v in sets.items():
                args.append(f)
                args.append(v)
            args.extend(dels)
        for entity_id, (as_of, vector) in (latest or {}).items():  # same slot (hash tag): same atomic step
            keys.append(latest_key_for(view, pos, entity_id))
            args += [-1, 0, encode_latest(as_of, vector)]
        status, stored = self._save(keys=keys, args=args)
        if status != 1:
            cur = int(stored)
            if status == 0:
                raise StaleOffsetError(expected_offset, cur)
            raise OffsetRegressionError(
                expected_offset, cur, f"refusing to move offset back from {cur} to {new_offset}"
            )
        for st in states.values():
            st.mark_saved()

    def read_features(
        self,
        view: FeatureView,
        entity_ids: Collection[str],
        now_ms: int,
        *,
        partition_of: Callable[[str], int],
        group: str,
    ) -> dict[str, dict[str, float]]:
        """See ``features.store.FeatureStore``."""
        ids = list(entity_ids)
        pipe = self.client.pipeline(transaction=False)
        for e in ids:
            pipe.hgetall(state_key_for(view, SourcePosition(group, view.source_topic, partition_of(e)), e))
        res = pipe.execute()
        return {e: EntityState.from_redis(h).features(view, now_ms) for e, h in zip(ids, res, strict=False)}

    def read_latest(
        self, view: FeatureView, entity_ids: Collection[str], *, partition_of: Callable[[str], int], group: str
    ) -> dict[str, tuple[int, dict[str, float]]]:
        """See ``features.store.FeatureStore``: one MGET per partition (keys of a partition share a cluster
        slot), pipelined, and one JSON decode for the whole reply."""
        by_part: dict[int, list[str]] = {}
        for e in entity_ids:
            by_part.setdefault(partition_of(e), []).append(e)
        pipe = self.client.pipeline(transaction=False)
        for p, ids in by_part.items():
            prefix = latest_key_for(view, SourcePosition(group, view.source_topic, p), "")  # ends in ":l:"
            pipe.mget([prefix + e.encode() for e in ids])
        found = [(e, raw) for ids, values in zip(by_part.values(), pipe.execute(), strict=True)
                 for e, raw in zip(ids, values, strict=True) if raw is not None]
        return dict(zip((e for e, _ in found), decode_latest_many([raw for _, raw in found]), strict=True))

    def raw_state(self, view: FeatureView, pos: SourcePosition, entity_id: str) -> dict[bytes, bytes]:
        """The stored hash of one entity (for tests and debugging)."""
        return self.client.hgetall(state_key_for(view, pos, entity_id))  # type: ignore[return-value]

    def entity_ttl_ms(self, view: FeatureView, pos: SourcePosition, entity_id: str) -> int | None:
        """Remaining TTL of one entity key in ms (None when the key does not exist)."""
        ttl = int(self.client.pttl(state_key_for(view, pos, entity_id)))  # type: ignore[arg-type]
        return None if ttl == -2 else ttl
