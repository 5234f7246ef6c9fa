"""The Redis online feature store (key schema: ``features.keys``; save script: ``save_state.lua``).

* ``load``: one non-transactional pipeline, ``HGETALL`` per entity + ``GET`` of the offset.
* ``save`` / ``save_many``: one pipelined ``EVALSHA`` of ``save_state.lua`` per partition, one round trip per
  batch (a ``NOSCRIPT`` answer after a script flush loads the script and retries that call) that checks the offset, HSETs/HDELs, PEXPIREs and sets the offset, all
  atomically. Every key of a call shares the ``{topic:partition}`` hash tag, so it also runs on a
  Redis Cluster.
* ``read_features``: one pipeline of ``HGETALL`` for many entities (any partitions).
* ``read_latest_matrix`` / ``read_latest``: one pipeline of one ``MGET`` per partition of the latest-vector
  strings, decoded in bulk (``features.latest``).

Use a bytes client: ``RedisFeatureStore(redis.Redis(host=..., decode_responses=False))``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import redis

from features.definitions import FeatureView
from features.exceptions import FeatureError, OffsetRegressionError, StaleOffsetError
from features.keys import decode_position, encode_position
from features.latest import LatestMatrix, LatestVectors, codec_for
from features.state import EntityState
from features.store import SaveRequest, SourcePosition, latest_key_for, offset_key_for, state_key_for

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
        states = {e: EntityState.from_redis(h, view) for e, h in zip(ids, res, strict=False)}
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
        self.save_many(view, [SaveRequest(pos, states, expected_offset, new_offset, ttl_ms, watermark_ms, latest)])

    def save_many(self, view: FeatureView, requests: Sequence[SaveRequest]) -> None:
        """See ``features.store.FeatureStore``: one pipelined ``EVALSHA`` per request, one round trip in all
        (a batch touching 3 partitions saved in 1 round trip instead of 3)."""
        calls = [self._save_args(view, r) for r in requests]
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            pipe.evalsha(self._save.sha, len(keys), *keys, *args)
        results = pipe.execute(raise_on_error=False)
        first: Exception | None = None
        for r, (keys, args), res in zip(requests, calls, results, strict=True):
            if isinstance(res, redis.exceptions.NoScriptError):  # after SCRIPT FLUSH or a failover: load, retry
                res = self._save(keys=keys, args=args)
            try:
                self._check(r, res)
            except Exception as exc:  # noqa: BLE001 - the first is raised after every partition was handled
                first = first or exc
        if first is not None:
            raise first

    def _save_args(self, view: FeatureView, r: SaveRequest) -> tuple[list[bytes], list[bytes | int]]:
        """KEYS and ARGV of ``save_state.lua`` for one request."""
        keys: list[bytes] = [offset_key_for(view, r.pos)]
        args: list[bytes | int] = [
            r.expected_offset,
            r.new_offset,
            encode_position(r.new_offset, r.watermark_ms),
            int(r.ttl_ms),
        ]
        for entity_id, st in r.states.items():
            sets, dels = st.to_redis()
            if not sets and not dels:
                continue
            keys.append(state_key_for(view, r.pos, entity_id))
            args.append(len(sets))
            args.append(len(dels))
            for f, v in sets.items():
                args.append(f)
                args.append(v)
            args.extend(dels)
        encode = codec_for(view.feature_names).encode
        for entity_id, (as_of, vector) in (r.latest or {}).items():  # same slot (hash tag): same atomic step
            keys.append(latest_key_for(view, r.pos, entity_id))
            args += [-1, 0, encode(as_of, vector)]
        return keys, args

    @staticmethod
    def _check(r: SaveRequest, res: object) -> None:
        """Raise what the script's answer means; mark the states saved when it applied them."""
        if isinstance(res, Exception):
            raise res
        status, stored = res  # type: ignore[misc]
        if status != 1:
            cur = int(stored)
            if status == 0:
                raise StaleOffsetError(r.expected_offset, cur)
            raise OffsetRegressionError(
                r.expected_offset, cur, f"refusing to move offset back from {cur} to {r.new_offset}"
            )
        for st in r.states.values():
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
        return {e: EntityState.from_redis(h, view).features(view, now_ms) for e, h in zip(ids, res, strict=False)}

    def read_latest(
        self, view: FeatureView, entity_ids: Collection[str], *, partition_of: Callable[[str], int], group: str
    ) -> Mapping[str, tuple[int, dict[str, float]]]:
        """See ``features.store.FeatureStore``: :meth:`read_latest_matrix` as a mapping."""
        return LatestVectors(self.read_latest_matrix(view, entity_ids, partition_of=partition_of, group=group))

    def read_latest_matrix(
        self, view: FeatureView, entity_ids: Collection[str], *, partition_of: Callable[[str], int], group: str
    ) -> LatestMatrix:
        """See ``features.store.FeatureStore``: one MGET per partition (keys of a partition share a cluster
        slot), pipelined, and one ``numpy.frombuffer`` of all the values (``features.latest``)."""
        ids = list(entity_ids)
        by_part: dict[int, list[int]] = {}
        for i, p in enumerate(map(partition_of, ids)):
            by_part.setdefault(p, []).append(i)
        pipe = self.client.pipeline(transaction=False)
        for p, idx in by_part.items():
            prefix = latest_key_for(view, SourcePosition(group, view.source_topic, p), "")  # ends in ":l:"
            pipe.mget([prefix + ids[i].encode() for i in idx])
        replies = pipe.execute()
        if len(by_part) == 1:
            raws = replies[0]
        else:
            raws = [None] * len(ids)
            for idx, values in zip(by_part.values(), replies, strict=True):
                for i, raw in zip(idx, values, strict=True):
                    raws[i] = raw
        return codec_for(view.feature_names).matrix(ids, raws)

    def raw_state(self, view: FeatureView, pos: SourcePosition, entity_id: str) -> dict[bytes, bytes]:
        """The stored hash of one entity (for tests and debugging)."""
        return self.client.hgetall(state_key_for(view, pos, entity_id))  # type: ignore[return-value]

    def entity_ttl_ms(self, view: FeatureView, pos: SourcePosition, entity_id: str) -> int | None:
        """Remaining TTL of one entity key in ms (None when the key does not exist)."""
        ttl = int(self.client.pttl(state_key_for(view, pos, entity_id)))  # type: ignore[arg-type]
        return None if ttl == -2 else ttl
