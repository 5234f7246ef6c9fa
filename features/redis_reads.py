"""Serving reads on Redis that find every entity whatever partitioner its producer used.

An entity's state and latest vector live under its source partition's hash tag; the partition is learned from
the entity -> partition index (``features.entity_index``), not computed from the key. A read of many entities is
**one round trip** (as many MGETs as partitions) once the reader knows their partitions: it remembers what the
index said and re-checks it every ``revalidate_s`` (10 s), or at once when a vector is not where it was. For the
other entities the index entries are read in the same round trip as the vectors at a guessed partition (the
caller's ``partition_of``, if any); a second round trip reads those the guess missed. On a single Redis the
index lookup is one MGET; on a Redis Cluster one MGET per index bucket (64 buckets, one slot each), and the
vectors one MGET per partition (one slot each).

Entities without an index entry (state written before the index existed) are still found at the guessed
partition.

Example (any client; the store passes its own)::

    reads = ServingReads(client)
    raws = reads.latest_raws(view, ["p-1", "p-2"], group="driftline-features", partition_of=None)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from redis.cluster import RedisCluster

from features.definitions import FeatureView
from features.keys import index_base_key, index_bucket
from features.store import SourcePosition, latest_key_for

Scope = tuple[str, str, int, str, str]  # topic, view name, version, fingerprint, group

__all__ = ["ServingReads"]


class ServingReads:
    """Entity -> partition resolution and batched reads for one client.

    Remembers up to ``max_entities`` entities' partitions per (view, group). A remembered partition is used
    without asking the index for ``revalidate_s`` (10 s); after that, or when the entity's vector is not where it
    was, the index is asked again. So a reader follows an entity that moved to another partition within
    ``revalidate_s`` (a move is a producer fault, counted by the writers: ``features.entity_index``)."""

    def __init__(self, client: Any, max_entities: int = 1 << 18, revalidate_s: float = 10.0) -> None:
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        self.max_entities = max_entities
        self.revalidate_s = revalidate_s
        # scope -> entity -> (partition, latest key, checked at (monotonic s))
        self._known: dict[Scope, dict[str, tuple[int, bytes, float]]] = {}

    @staticmethod
    def _scope(view: FeatureView, group: str) -> Scope:
        return view.source_topic, view.name, view.version, view.fingerprint(), group

    @staticmethod
    def _index_keys(scope: Scope, ids: Sequence[str]) -> list[bytes]:
        topic, name, version, fp, group = scope
        return [(index_base_key(topic, index_bucket(e), name, version, fp, group) + e).encode() for e in ids]

    def _remember(self, scope: Scope, view: FeatureView, group: str, found: dict[str, int], now: float) -> None:
        known = self._known.setdefault(scope, {})
        prefixes: dict[int, bytes] = {}
        for e, p in found.items():
            prefix = prefixes.get(p)
            if prefix is None:
                prefix = prefixes[p] = latest_key_for(view, SourcePosition(group, view.source_topic, p), "")
            known.pop(e, None)
            known[e] = (p, prefix + e.encode(), now)
        over = len(known) - self.max_entities
        if over > 0:
            for e in list(known)[:over]:
                del known[e]

    def _queue_index(self, pipe: Any, keys: list[bytes]) -> list[list[int]]:
        """Queue the index MGETs of ``keys``; returns the positions (in ``keys``) each MGET answers, in order."""
        if not self.cluster:
            pipe.execute_command("MGET", *keys)
            return [list(range(len(keys)))]
        by_slot: dict[bytes, list[int]] = {}
        for i, key in enumerate(keys):
            by_slot.setdefault(key[: key.index(b"}") + 1], []).append(i)  # the {ix:<topic>:<bucket>} tag
        for idx in by_slot.values():
            pipe.execute_command("MGET", *[keys[i] for i in idx])
        return list(by_slot.values())

    def _lookup(self, scope: Scope, ids: Sequence[str]) -> list[int | None]:
        """The indexed partition of each id (one round trip)."""
        keys = self._index_keys(scope, ids)
        pipe = self.client.pipeline(transaction=False)
        groups = self._queue_index(pipe, keys)
        return _decode_index(len(ids), groups, pipe.execute())

    def _mget_latest(self, view: FeatureView, group: str, ids: Sequence[str], parts: dict[int, list[int]],
                     raws: list[bytes | None]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for p, idx in parts.items():
            prefix = latest_key_for(view, SourcePosition(group, view.source_topic, p), "")  # ends in ":l:"
            pipe.execute_command("MGET", *[prefix + ids[i].encode() for i in idx])  # one slot (cluster: no .mget)
        for idx, values in zip(parts.values(), pipe.execute(), strict=True):
            for i, raw in zip(idx, values, strict=True):
                raws[i] = raw

    def partitions(self, view: FeatureView, ids: Sequence[str], *, group: str,
                   partition_of: Callable[[str], int] | None) -> list[int | None]:
        """The partition of each id from the index (one round trip), else the guess, else None (never seen)."""
        scope = self._scope(view, group)
        where = self._lookup(scope, ids)
        self._remember(scope, view, group, {e: p for e, p in zip(ids, where, strict=True) if p is not None},
                       time.monotonic())
        return [p if p is not None else (partition_of(e) if partition_of is not None else None)
                for e, p in zip(ids, where, strict=True)]

    def latest_raws(self, view: FeatureView, ids: Sequence[str], *, group: str,
                    partition_of: Callable[[str], int] | None) -> list[bytes | None]:
        """The stored latest vector of each id (None: never seen or expired). One round trip when this reader
        checked the entities' partitions within ``revalidate_s``; entities it did not are looked up in the index
        in the same round trip (with the ``partition_of`` guess read beside), and a second round trip reads the
        ones the guess missed."""
        scope = self._scope(view, group)
        known = self._known.get(scope) or {}
        now = time.monotonic()
        fresh = now - self.revalidate_s
        n = len(ids)
        raws: list[bytes | None] = [None] * n
        hot: dict[int, tuple[list[int], list[bytes]]] = {}
        cold: list[int] = []
        for i, e in enumerate(ids):
            k = known.get(e)
            if k is not None and k[2] > fresh:
                got = hot.get(k[0])
                if got is None:
                    got = hot[k[0]] = ([], [])
                got[0].append(i)
                got[1].append(k[1])
            else:
                cold.append(i)
        cold_ids = [ids[i] for i in cold]
        guesses: list[int | None] = []
        for e in cold_ids:
            k = known.get(e)
            guesses.append(k[0] if k is not None else (partition_of(e) if partition_of is not None else None))
        by_guess: dict[int, list[int]] = {}
        for j, g in enumerate(guesses):
            if g is not None:
                by_guess.setdefault(g, []).append(j)
        pipe = self.client.pipeline(transaction=False)
        for _, keys in hot.values():
            pipe.execute_command("MGET", *keys)
        groups = self._queue_index(pipe, self._index_keys(scope, cold_ids)) if cold_ids else []
        for p, idx in by_guess.items():
            prefix = latest_key_for(view, SourcePosition(group, view.source_topic, p), "")
            pipe.execute_command("MGET", *[prefix + cold_ids[j].encode() for j in idx])
        replies = pipe.execute()
        lost: list[int] = []  # remembered entities whose vector is not where it was: ask the index again
        for (idx, _), values in zip(hot.values(), replies, strict=False):
            for i, raw in zip(idx, values, strict=True):
                raws[i] = raw
                if raw is None:
                    lost.append(i)
        replies = replies[len(hot):]
        where = _decode_index(len(cold_ids), groups, replies[: len(groups)])
        for idx, values in zip(by_guess.values(), replies[len(groups):], strict=True):
            for j, raw in zip(idx, values, strict=True):
                raws[cold[j]] = raw
        elsewhere: dict[int, list[int]] = {}
        learned: dict[str, int] = {}
        for j, (p, g) in enumerate(zip(where, guesses, strict=True)):
            if p is None:
                continue
            learned[cold_ids[j]] = p
            if p != g:  # the index says elsewhere: what the guess found (if anything) is not the entity's
                raws[cold[j]] = None
                elsewhere.setdefault(p, []).append(cold[j])
        if lost:
            for i, p in zip(lost, self._lookup(scope, [ids[i] for i in lost]), strict=True):
                if p is not None:
                    learned[ids[i]] = p
                    if p != known[ids[i]][0]:
                        elsewhere.setdefault(p, []).append(i)
        if elsewhere:
            self._mget_latest(view, group, ids, elsewhere, raws)
        if learned:
            self._remember(scope, view, group, learned, now)
        return raws


def _decode_index(n: int, groups: list[list[int]], replies: Sequence[Sequence[bytes | None]]) -> list[int | None]:
    where: list[int | None] = [None] * n
    for idx, values in zip(groups, replies, strict=True):
        for i, raw in zip(idx, values, strict=True):
            if raw is not None:
                where[i] = int(raw)
    return where
