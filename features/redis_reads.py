"""Serving reads on Redis that find every entity whatever partitioner its producer used.

An entity's state and latest vector live under its source partition's hash tag; the partition is learned from
the entity -> partition index (``features.entity_index``), not computed from the key. A read of many entities is
**one round trip** when the partitions are known: the index entries and the latest vectors at the expected
partitions (this reader's last answer for the entity, else the caller's ``partition_of`` guess) are fetched in
the same pipeline, and the index confirms them. Only entities the reader had never seen and the guess missed, or
that moved, cost a second round trip. On a single Redis the index is one MGET; on a Redis Cluster one MGET per
index bucket (64 buckets, one slot each), and the latest vectors one MGET per partition (one slot each).

Entities without an index entry (state written before the index existed) are still found at the guessed
partition.

Example (any client; the store passes its own)::

    reads = ServingReads(client)
    raws = reads.latest_raws(view, ["p-1", "p-2"], group="driftline-features", partition_of=None)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis.cluster import RedisCluster

from features.definitions import FeatureView
from features.keys import index_base_key, index_bucket
from features.store import SourcePosition, latest_key_for

Scope = tuple[str, str, int, str, str]  # topic, view name, version, fingerprint, group

__all__ = ["ServingReads"]


class ServingReads:
    """Entity -> partition resolution and batched reads for one client; remembers up to ``max_entities`` entities'
    partitions per (view, group) (a hint, always checked against the index in the same round trip)."""

    def __init__(self, client: Any, max_entities: int = 1 << 18) -> None:
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        self.max_entities = max_entities
        self._known: dict[Scope, dict[str, tuple[int | None, bytes]]] = {}

    @staticmethod
    def _scope(view: FeatureView, group: str) -> Scope:
        return view.source_topic, view.name, view.version, view.fingerprint(), group

    def _entries(self, scope: Scope, ids: Sequence[str]) -> list[tuple[int | None, bytes]]:
        """(known partition or None, index key) of each id."""
        known = self._known.setdefault(scope, {})
        topic, name, version, fp, group = scope
        out = []
        for e in ids:
            got = known.get(e)
            if got is None:
                got = (None, (index_base_key(topic, index_bucket(e), name, version, fp, group) + e).encode())
            out.append(got)
        return out

    def _remember(self, scope: Scope, ids: Sequence[str], entries: list[tuple[int | None, bytes]],
                  where: list[int | None]) -> None:
        known = self._known[scope]
        for e, (was, key), p in zip(ids, entries, where, strict=True):
            if p is not None and p != was:
                known[e] = (p, key)
        over = len(known) - self.max_entities
        if over > 0:
            for e in list(known)[:over]:
                del known[e]

    def _queue_index(self, pipe: Any, entries: list[tuple[int | None, bytes]]) -> list[list[int]]:
        """Queue the index MGETs; returns the positions each MGET answers, in queue order."""
        if not self.cluster:
            pipe.execute_command("MGET", *[k for _, k in entries])
            return [list(range(len(entries)))]
        by_slot: dict[bytes, list[int]] = {}
        for i, (_, key) in enumerate(entries):
            by_slot.setdefault(key[: key.index(b"}") + 1], []).append(i)  # the {ix:<topic>:<bucket>} tag
        for idx in by_slot.values():
            pipe.execute_command("MGET", *[entries[i][1] for i in idx])
        return list(by_slot.values())

    def _queue_by_partition(self, pipe: Any, view: FeatureView, group: str, ids: Sequence[str],
                            parts: dict[int, list[int]]) -> None:
        for p, idx in parts.items():
            prefix = latest_key_for(view, SourcePosition(group, view.source_topic, p), "")  # ends in ":l:"
            pipe.execute_command("MGET", *[prefix + ids[i].encode() for i in idx])  # one slot (cluster: no .mget)

    def partitions(self, view: FeatureView, ids: Sequence[str], *, group: str,
                   partition_of: Callable[[str], int] | None) -> list[int | None]:
        """The partition of each id from the index (one round trip), else the guess, else None (never seen)."""
        scope = self._scope(view, group)
        entries = self._entries(scope, ids)
        pipe = self.client.pipeline(transaction=False)
        groups = self._queue_index(pipe, entries)
        where = _decode_index(len(ids), groups, pipe.execute())
        self._remember(scope, ids, entries, where)
        return [p if p is not None else (partition_of(e) if partition_of is not None else None)
                for e, p in zip(ids, where, strict=True)]

    def latest_raws(self, view: FeatureView, ids: Sequence[str], *, group: str,
                    partition_of: Callable[[str], int] | None) -> list[bytes | None]:
        """The stored latest vector of each id (None: never seen or expired), one round trip when the partitions
        this reader expects are right."""
        scope = self._scope(view, group)
        entries = self._entries(scope, ids)
        guesses: list[int | None] = [p if p is not None else (partition_of(e) if partition_of is not None else None)
                                     for e, (p, _) in zip(ids, entries, strict=True)]
        by_guess: dict[int, list[int]] = {}
        for i, p in enumerate(guesses):
            if p is not None:
                by_guess.setdefault(p, []).append(i)
        pipe = self.client.pipeline(transaction=False)
        groups = self._queue_index(pipe, entries)
        self._queue_by_partition(pipe, view, group, ids, by_guess)
        replies = pipe.execute()
        where = _decode_index(len(ids), groups, replies[: len(groups)])
        raws: list[bytes | None] = [None] * len(ids)
        for idx, values in zip(by_guess.values(), replies[len(groups):], strict=True):
            for i, raw in zip(idx, values, strict=True):
                raws[i] = raw
        wrong: dict[int, list[int]] = {}
        for i, (p, guess) in enumerate(zip(where, guesses, strict=True)):
            if p is not None and p != guess:  # the index says elsewhere: what the guess found is not the entity's
                raws[i] = None
                wrong.setdefault(p, []).append(i)
        if wrong:
            pipe = self.client.pipeline(transaction=False)
            self._queue_by_partition(pipe, view, group, ids, wrong)
            for idx, values in zip(wrong.values(), pipe.execute(), strict=True):
                for i, raw in zip(idx, values, strict=True):
                    raws[i] = raw
        self._remember(scope, ids, entries, where)
        return raws


def _decode_index(n: int, groups: list[list[int]], replies: Sequence[Sequence[bytes | None]]) -> list[int | None]:
    where: list[int | None] = [None] * n
    for idx, values in zip(groups, replies, strict=True):
        for i, raw in zip(idx, values, strict=True):
            if raw is not None:
                where[i] = int(raw)
    return where
