"""The Redis online feature store on one Redis or a Redis Cluster (key schema: ``features.keys``; scripts:
``save_state.lua``, ``index_entities.lua``).

* ``load``: one non-transactional pipeline, ``HGETALL`` per entity + ``GET`` of the offset (one slot).
* ``save`` / ``save_many``: first the entity -> partition index of entities this writer has not indexed recently
  (``index_entities.lua``, one ``EVALSHA`` per index bucket; none in the steady state; ``features.entity_index``),
  then one pipelined ``EVALSHA`` of ``save_state.lua`` per partition, one round trip per batch, that checks the
  offset, HSETs/HDELs, PEXPIREs and sets the offset, all atomically. ``start_save_many`` writes the same calls and
  returns before their answers (on a single Redis: one connection kept out of the pool until the ticket's ``wait``),
  so the caller's next work overlaps Redis running the scripts; every other call waits for it first. Every key of a
  call shares one hash tag (``{topic:partition}``, ``{ix:topic:bucket}``), so each script runs in one Redis Cluster
  slot; a cluster client groups the pipeline per node and follows ``MOVED`` / ``ASK``. A ``NOSCRIPT`` answer (a
  fresh node, a script flush, a failover) loads the script on every primary and reruns those calls.
* ``read_latest_matrix`` / ``read_latest`` / ``read_features``: the partition of each entity comes from the index
  (``features.redis_reads``), so reads find entities whatever partitioner the producer used; the latest vectors
  are one ``MGET`` per partition, decoded in bulk (``features.latest``).

Use a bytes client: ``RedisFeatureStore(make_redis(url))`` (``streams.redis_client``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from features.definitions import FeatureView
from features.entity_index import ConflictReporter, IndexCache, PartitionConflict
from features.exceptions import FeatureError, OffsetRegressionError, StaleOffsetError
from features.keys import decode_position, index_bucket, index_key
from features.latest import LatestMatrix, LatestVectors, codec_for
from features.redis_packed import pack_evalsha, packable, start_packed_many
from features.redis_reads import ServingReads
from features.save_wire import packed_save_call, save_call
from features.state import EntityState
from features.store import (
    SaveRequest,
    SaveTicket,
    SourcePosition,
    latest_key_for,
    offset_key_for,
    state_key_for,
)

SAVE_SCRIPT = (Path(__file__).with_name("save_state.lua")).read_text()
INDEX_SCRIPT = (Path(__file__).with_name("index_entities.lua")).read_text()


class RedisFeatureStore:
    """``FeatureStore`` on Redis (standalone or Cluster) with one round trip per batch and direction."""

    def __init__(self, client: redis.Redis | RedisCluster, *,
                 on_conflict: Callable[[PartitionConflict], None] | None = None,
                 index_cache_entities: int = 1 << 18) -> None:
        kwargs = getattr(client, "get_connection_kwargs", dict)()
        if kwargs.get("decode_responses"):
            raise FeatureError(
                "RedisFeatureStore needs a bytes client: create it with decode_responses=False"
            )
        self.client = client
        self._save = client.register_script(SAVE_SCRIPT)
        self._index_sha = client.register_script(INDEX_SCRIPT).sha
        self.index_cache = IndexCache(index_cache_entities)
        self.conflicts = ConflictReporter(on_conflict)
        self.reads = ServingReads(client)
        self._started: SaveTicket | None = None  # a started save whose answers were not read yet

    def _settle(self) -> None:
        """Wait for a started save: what this store reads or writes next sees it. Its error is raised here when
        nobody waited for the ticket before (once given to its owner, it is the owner's to handle)."""
        started, self._started = self._started, None
        if started is not None and not started.done:
            started.wait()

    def load(
        self, view: FeatureView, pos: SourcePosition, entity_ids: Collection[str]
    ) -> tuple[dict[str, EntityState], int]:
        """See ``features.store.FeatureStore``."""
        self._settle()
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
        self._settle()
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
        """See ``features.store.FeatureStore``: the entities' partitions are indexed first (only those this writer
        did not index recently; ``features.entity_index``), then one pipelined ``EVALSHA`` per request, one round
        trip in all (a batch touching 3 partitions saved in 1 round trip instead of 3). The states are marked saved
        once their partition's save applied."""
        self._settle()
        self._index(view, requests)
        self._check_all(requests, self._start_saves(view, requests, background=False)(), mark_saved=True)

    def start_save_many(self, view: FeatureView, requests: Sequence[SaveRequest]) -> SaveTicket:
        """See ``features.store.FeatureStore``: the index and the calls of :meth:`save_many`, written now; the
        states are marked saved now (their changes are in the calls); the ticket reads the answers."""
        self._settle()
        self._index(view, requests)
        answers = self._start_saves(view, requests, background=True, mark_saved=True)
        self._started = SaveTicket(lambda: self._check_all(requests, answers(), mark_saved=False))
        return self._started

    @staticmethod
    def _check_all(requests: Sequence[SaveRequest], results: Sequence[Any], *, mark_saved: bool) -> None:
        """Raise the first request's error, if any, after looking at every answer; ``mark_saved``: mark the states
        of each request whose save applied."""
        first: Exception | None = None
        for r, res in zip(requests, results, strict=True):
            try:
                RedisFeatureStore._check(r, res)
                if mark_saved:
                    r.mark_saved()
            except Exception as exc:  # noqa: BLE001 - the first is raised after every partition was handled
                first = first or exc
        if first is not None:
            raise first

    def _start_saves(self, view: FeatureView, requests: Sequence[SaveRequest], *,
                     background: bool, mark_saved: bool = False) -> Callable[[], list[Any]]:
        """One ``save_state.lua`` call per request, written now (``background``: by a writer thread); the returned
        function gives the answers in order. A single Redis gets each call's wire bytes from
        ``features.save_wire``; a cluster runs redis-py's pipeline (``_start_eval_all``). ``mark_saved``: the
        states are marked saved once their calls are made (a started save)."""
        if packable(self.client):
            return self._start_packed(SAVE_SCRIPT, [self._save_wire(view, r, mark_saved) for r in requests],
                                      background)
        calls = [save_call(view, r) for r in requests]
        if mark_saved:
            for r in requests:
                r.mark_saved()
        return self._start_eval_all(SAVE_SCRIPT, self._save.sha, calls)

    def _save_wire(self, view: FeatureView, r: SaveRequest, mark_saved: bool = False) -> bytes:
        """The wire bytes of one request's save call (``features.save_wire``)."""
        return packed_save_call(view, r, self._save.sha, mark_saved=mark_saved)

    def _eval_all(self, script: str, sha: str, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]) -> list[Any]:
        """One pipelined ``EVALSHA`` per (keys, args) call, answers (or errors) in order: see
        :meth:`_start_eval_all`."""
        return self._start_eval_all(script, sha, calls)()

    def _start_eval_all(self, script: str, sha: str,
                        calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]) -> Callable[[], list[Any]]:
        """One pipelined ``EVALSHA`` per (keys, args) call; the returned function gives the answers (or errors) in
        order. A single Redis gets the calls packed by hiredis in one pass and written now
        (``features.redis_packed``; the pipeline's bytes); a cluster runs its pipeline right here. A ``NOSCRIPT``
        answer (a fresh node, a SCRIPT FLUSH, a failover) loads the script on every primary and reruns those
        calls."""
        if packable(self.client):
            return self._start_packed(script, [pack_evalsha(sha, keys, args) for keys, args in calls], False)

        def pipelined(indices: Sequence[int]) -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for i in indices:
                keys, args = calls[i]
                pipe.evalsha(sha, len(keys), *keys, *args)
            return pipe.execute(raise_on_error=False)

        done = pipelined(range(len(calls)))
        return lambda: self._rerun_noscript(script, done, pipelined)

    def _start_packed(self, script: str, packed: Sequence[bytes], background: bool) -> Callable[[], list[Any]]:
        """Packed ``EVALSHA`` calls on a single Redis (``features.redis_packed``), written now; the returned function
        gives the answers in order, the calls answered ``NOSCRIPT`` rerun (the same bytes)."""
        first = start_packed_many(self.client, packed, background=background)
        return lambda: self._rerun_noscript(script, first(), lambda indices: start_packed_many(
            self.client, [packed[i] for i in indices], background=False)())

    def _rerun_noscript(self, script: str, results: list[Any],
                        rerun: Callable[[Sequence[int]], list[Any]]) -> list[Any]:
        """``results`` with each ``NOSCRIPT`` answer (a fresh node, a SCRIPT FLUSH, a failover) replaced by its call's
        answer after the script was loaded on every primary (``rerun``: the answers of those calls, by index)."""
        missing = [i for i, res in enumerate(results) if isinstance(res, redis.exceptions.NoScriptError)]
        if missing:
            self.client.script_load(script)
            for i, res in zip(missing, rerun(missing), strict=True):
                results[i] = res
        return results

    def _index(self, view: FeatureView, requests: Sequence[SaveRequest]) -> None:
        """Record the partition of every entity of ``requests`` this writer has not indexed within half a state
        TTL, before any state is saved (``features.entity_index``); report entities that changed partition."""
        now = int(time.time() * 1000)
        fp = view.fingerprint()
        calls: list[tuple[list[bytes], list[Any]]] = []
        written: list[tuple[str, dict[str, int]]] = []
        for r in requests:
            entities = r.states.keys()
            if r.latest and not r.latest.keys() <= entities:  # a latest vector without a state change
                entities = entities | r.latest.keys()
            due = self.index_cache.due_on(r.pos.partition, entities, now_ms=now, refresh_ms=r.ttl_ms // 2)
            by_bucket: dict[int, list[str]] = {}
            for e in due:
                by_bucket.setdefault(index_bucket(e), []).append(e)
            for ids in by_bucket.values():
                calls.append(([index_key(r.pos.topic, view.name, view.version, fp, r.pos.group, e) for e in ids],
                              [r.pos.partition, 2 * int(r.ttl_ms)]))
                written.append((r.pos.topic, {e: r.pos.partition for e in ids}))
        if not calls:
            return
        conflicts: list[PartitionConflict] = []
        for (topic, ids), res in zip(written, self._eval_all(INDEX_SCRIPT, self._index_sha, calls), strict=True):
            if isinstance(res, Exception):
                raise res  # nothing is saved unindexed: the batch fails and is retried
            names = list(ids)
            for j in range(0, len(res), 2):
                e = names[int(res[j]) - 1]
                conflicts.append(PartitionConflict(topic, e, int(res[j + 1]), ids[e]))
            self.index_cache.mark(ids, now_ms=now)
        if conflicts:
            self.conflicts.report(conflicts)

    @staticmethod
    def _check(r: SaveRequest, res: object) -> None:
        """Raise what the script's answer means."""
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

    def read_features(
        self,
        view: FeatureView,
        entity_ids: Collection[str],
        now_ms: int,
        *,
        partition_of: Callable[[str], int] | None = None,
        group: str,
    ) -> dict[str, dict[str, float]]:
        """See ``features.store.FeatureStore``: partitions from the index (``features.redis_reads``), then one
        pipeline of ``HGETALL``."""
        self._settle()
        ids = list(entity_ids)
        parts = self.reads.partitions(view, ids, group=group, partition_of=partition_of)
        pipe = self.client.pipeline(transaction=False)
        for e, p in zip(ids, parts, strict=True):
            if p is not None:
                pipe.hgetall(state_key_for(view, SourcePosition(group, view.source_topic, p), e))
        res = iter(pipe.execute())
        return {e: EntityState.from_redis(next(res) if p is not None else {}, view).features(view, now_ms)
                for e, p in zip(ids, parts, strict=True)}

    def read_latest(
        self, view: FeatureView, entity_ids: Collection[str], *, partition_of: Callable[[str], int] | None = None,
        group: str,
    ) -> Mapping[str, tuple[int, dict[str, float]]]:
        """See ``features.store.FeatureStore``: :meth:`read_latest_matrix` as a mapping."""
        return LatestVectors(self.read_latest_matrix(view, entity_ids, partition_of=partition_of, group=group))

    def read_latest_matrix(
        self, view: FeatureView, entity_ids: Collection[str], *, partition_of: Callable[[str], int] | None = None,
        group: str,
    ) -> LatestMatrix:
        """See ``features.store.FeatureStore``: the index and the latest vectors in one pipelined round trip when
        the partitions are known (``features.redis_reads``; ``partition_of`` is only a first guess for entities
        this store never read), and one ``numpy.frombuffer`` of all the values (``features.latest``)."""
        self._settle()
        ids = list(entity_ids)
        raws = self.reads.latest_raws(view, ids, group=group, partition_of=partition_of)
        return codec_for(view.feature_names).matrix(ids, raws)

    def raw_state(self, view: FeatureView, pos: SourcePosition, entity_id: str) -> dict[bytes, bytes]:
        """The stored hash of one entity (for tests and debugging)."""
        self._settle()
        return self.client.hgetall(state_key_for(view, pos, entity_id))  # type: ignore[return-value]

    def entity_ttl_ms(self, view: FeatureView, pos: SourcePosition, entity_id: str, *,
                      latest: bool = False) -> int | None:
        """Remaining TTL of one entity key in ms (None when the key does not exist); ``latest``: of its latest
        vector's key instead of its state's."""
        self._settle()
        key = (latest_key_for if latest else state_key_for)(view, pos, entity_id)
        ttl = int(self.client.pttl(key))  # type: ignore[arg-type]
        return None if ttl == -2 else ttl

