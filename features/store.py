"""The online feature store interface, and its in-memory twin for unit tests of logic.

Contract (the same contract tests run over :class:`MemoryFeatureStore` and
``features.redis_store.RedisFeatureStore``):

* ``load`` returns a state for **every** requested entity (empty when unknown) and the last applied
  offset of the source partition (-1 when none), in one round trip.
* ``save`` is atomic: if the stored offset differs from ``expected_offset`` it raises
  :class:`~features.exceptions.StaleOffsetError` and writes nothing; a ``new_offset`` below the stored
  one raises :class:`~features.exceptions.OffsetRegressionError`. Otherwise it writes the dirty buckets
  (full values), deletes the expired ones, PEXPIREs every touched entity key to ``ttl_ms`` and stores
  ``new_offset`` (plus the optional watermark). The states are then marked saved.
* ``start_save_many`` starts the same saves and returns at once (a :class:`SaveTicket`): the states' changes are
  taken as they are at the call and marked saved then (later changes stay dirty for the next save); the ticket's
  ``wait()`` returns once they are written, or raises what ``save_many`` would have. Every other call of the
  store waits for a started save first, so its reads see it. After a failed save the caller drops those states.
* ``read_features`` (serving) reads many entities' current vectors in one round trip.
* ``read_latest_matrix`` (serving fast path) reads many entities' latest vectors, saved by ``save(latest=...)``,
  in one round trip as one float matrix in ``view.feature_names`` order; ``read_latest`` is its dict form.

Example:
    >>> from features.views import VITALS_VIEW
    >>> from features.records import Event
    >>> store, pos = MemoryFeatureStore(), SourcePosition("g", "vitals", 0)
    >>> states, off = store.load(VITALS_VIEW, pos, ["p1"])
    >>> off, states["p1"].is_empty
    (-1, True)
    >>> vals = {"hr": 80.0, "rr": 12.0, "spo2": 98.0, "temp": 37.0, "sbp": 120.0, "dbp": 80.0}
    >>> states["p1"].apply(VITALS_VIEW, Event("p1", 1_700_000_000_000, vals))
    >>> store.save(VITALS_VIEW, pos, states, expected_offset=-1, new_offset=0, ttl_ms=VITALS_VIEW.retention_ms)
    >>> store.last_offset(VITALS_VIEW, pos)
    0
    >>> store.read_features(VITALS_VIEW, ["p1"], 1_700_000_000_000, partition_of=lambda e: 0, group="g")["p1"]["hr_mean_5m"]
    80.0
    >>> store.save(VITALS_VIEW, pos, states, expected_offset=0, new_offset=1, ttl_ms=VITALS_VIEW.retention_ms,
    ...            latest={"p1": (1_700_000_000_000, states["p1"].features(VITALS_VIEW, 1_700_000_000_000))})
    >>> m = store.read_latest_matrix(VITALS_VIEW, ["p1", "p9"], partition_of=lambda e: 0, group="g")
    >>> m.values.shape, m.found.tolist(), m.values[0, VITALS_VIEW.feature_names.index("hr_mean_5m")]
    ((2, 10), [True, False], np.float64(80.0))
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from features.definitions import FeatureView
from features.entity_index import ConflictReporter, PartitionConflict
from features.exceptions import OffsetRegressionError, StaleOffsetError
from features.keys import decode_position, encode_position, index_key, latest_key, offset_key, state_key
from features.latest import LatestMatrix, LatestVectors, codec_for
from features.state import EntityState


@dataclass(frozen=True)
class SourcePosition:
    """Which offsets a state belongs to: (consumer group, source topic, partition)."""

    group: str
    topic: str
    partition: int


def state_key_for(view: FeatureView, pos: SourcePosition, entity_id: str) -> bytes:
    """The state key of ``entity_id`` at ``pos`` (see ``features.keys``)."""
    return state_key(
        pos.topic, pos.partition, view.name, view.version, view.fingerprint(), pos.group, entity_id
    )


def latest_key_for(view: FeatureView, pos: SourcePosition, entity_id: str) -> bytes:
    """The latest-vector key of ``entity_id`` at ``pos`` (see ``features.keys``)."""
    return latest_key(pos.topic, pos.partition, view.name, view.version, view.fingerprint(), pos.group, entity_id)


def offset_key_for(view: FeatureView, pos: SourcePosition) -> bytes:
    """The offset key of ``pos`` (see ``features.keys``)."""
    return offset_key(pos.topic, pos.partition, view.name, view.version, view.fingerprint(), pos.group)


@runtime_checkable
class FeatureStore(Protocol):
    """Online store of entity bucket state plus the last applied offset per source partition."""

    def load(
        self, view: FeatureView, pos: SourcePosition, entity_ids: Collection[str]
    ) -> tuple[dict[str, EntityState], int]:
        """(states of all ``entity_ids``, last applied offset or -1), in one round trip."""
        ...

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
        """Atomically compare-and-set the offset and write the states' changes (and each entity's latest
        vector, ``{entity: (as_of_ms, vector)}``, when given)."""
        ...

    def save_many(self, view: FeatureView, requests: Sequence[SaveRequest]) -> None:
        """Several partitions' saves in one round trip where the store can; each request is its own atomic
        compare-and-set (partitions are independent). Raises the first request's error, if any, after trying
        them all."""
        ...

    def start_save_many(self, view: FeatureView, requests: Sequence[SaveRequest]) -> SaveTicket:
        """``save_many``, started: see the module docstring (a store that cannot overlap a save with the caller's
        work saves right here and returns a ticket already settled)."""
        ...

    def read_latest(
        self, view: FeatureView, entity_ids: Collection[str], *, partition_of: Callable[[str], int] | None = None,
        group: str
    ) -> Mapping[str, tuple[int, dict[str, float]]]:
        """Serving fast path: each entity's vector as of its last event, ``{entity: (as_of_ms, vector)}``, in one
        round trip (entities never seen are absent; each vector's dict is built on first access).
        ``read_features`` recomputes at an exact time instead."""
        ...

    def read_latest_matrix(
        self, view: FeatureView, entity_ids: Collection[str], *, partition_of: Callable[[str], int] | None = None,
        group: str
    ) -> LatestMatrix:
        """Serving fast path for scorers: the same vectors as one ``(entities x view.feature_names)`` float
        array plus ``as_of`` and ``found`` arrays, rows in request order, in one round trip, with no Python
        object per entity (see ``features.latest``)."""
        ...

    def read_features(
        self,
        view: FeatureView,
        entity_ids: Collection[str],
        now_ms: int,
        *,
        partition_of: Callable[[str], int] | None = None,
        group: str,
    ) -> dict[str, dict[str, float]]:
        """Current feature vectors of many entities (serving), in one round trip."""
        ...

    def position(self, view: FeatureView, pos: SourcePosition) -> tuple[int, int | None]:
        """(last applied offset or -1, saved watermark or None)."""
        ...

    def last_offset(self, view: FeatureView, pos: SourcePosition) -> int:
        """Last applied offset of ``pos`` or -1."""
        ...


@dataclass(frozen=True)
class SaveRequest:
    """One partition's part of a batch save: the arguments of :meth:`FeatureStore.save` as a value."""

    pos: SourcePosition
    states: Mapping[str, EntityState]
    expected_offset: int
    new_offset: int
    ttl_ms: int
    watermark_ms: int | None = None
    latest: Mapping[str, tuple[int, Mapping[str, float]]] | None = None

    def mark_saved(self) -> None:
        """Mark the request's states saved (``EntityState.mark_saved``): their changes are in a save."""
        for st in self.states.values():
            st.mark_saved()


class SaveTicket:
    """A started save (:meth:`FeatureStore.start_save_many`): ``wait()`` runs ``finish`` (which reads the answers and
    raises the save's error) the first time, and gives the same outcome on every later call.

    >>> def refused() -> None:
    ...     raise StaleOffsetError(3, 5)
    >>> ticket = SaveTicket(refused)
    >>> for _ in range(2):
    ...     try:
    ...         ticket.wait()
    ...     except StaleOffsetError as exc:
    ...         print(exc.actual)
    5
    5
    >>> SaveTicket.settled().wait()
    """

    __slots__ = ("_error", "_finish", "_lock")

    def __init__(self, finish: Callable[[], None] | None, error: BaseException | None = None) -> None:
        self._finish, self._error = finish, error
        self._lock = threading.Lock()  # two threads waiting: one reads the answers, the other gets its outcome

    @classmethod
    def settled(cls, error: BaseException | None = None) -> SaveTicket:
        """A ticket of a save already done (``error``: that it raised)."""
        return cls(None, error)

    @property
    def done(self) -> bool:
        """Whether ``wait()`` would return (or raise) without waiting."""
        return self._finish is None and not self._lock.locked()

    def wait(self) -> None:
        """Return once the save is written; raise its error (the same one every call)."""
        with self._lock:
            finish, self._finish = self._finish, None
            if finish is not None:
                try:
                    finish()
                except Exception as exc:  # noqa: BLE001 - kept, and raised on this and every later call
                    self._error = exc
        if self._error is not None:
            raise self._error


def check_offsets(current: int, expected: int, new: int) -> None:
    """Raise unless ``current == expected`` and ``new >= current`` (the CAS rule of ``save``).

    >>> check_offsets(5, 5, 9)
    >>> check_offsets(5, 4, 9)
    Traceback (most recent call last):
    ...
    features.exceptions.StaleOffsetError: stored offset is 5, this writer expected 4; reload and reprocess
    """
    if current != expected:
        raise StaleOffsetError(expected, current)
    if new < current:
        raise OffsetRegressionError(
            expected, current, f"refusing to move offset back from {current} to {new}"
        )


class MemoryFeatureStore:
    """In-memory twin of ``RedisFeatureStore`` (same bytes, same CAS; TTLs are recorded, not enforced)."""

    def __init__(self, *, on_conflict: Callable[[PartitionConflict], None] | None = None) -> None:
        self.hashes: dict[bytes, dict[bytes, bytes]] = {}
        self.strings: dict[bytes, bytes] = {}
        self.ttls: dict[bytes, int] = {}
        self.conflicts = ConflictReporter(on_conflict)

    def load(
        self, view: FeatureView, pos: SourcePosition, entity_ids: Collection[str]
    ) -> tuple[dict[str, EntityState], int]:
        """See :class:`FeatureStore`."""
        hashes = self.hashes
        states = {e: EntityState.from_redis(hashes.get(state_key_for(view, pos, e), {}), view) for e in entity_ids}
        return states, self.last_offset(view, pos)

    def position(self, view: FeatureView, pos: SourcePosition) -> tuple[int, int | None]:
        """(last applied offset, saved watermark or None)."""
        return decode_position(self.strings.get(offset_key_for(view, pos)))

    def last_offset(self, view: FeatureView, pos: SourcePosition) -> int:
        """See :class:`FeatureStore`."""
        return self.position(view, pos)[0]

    def save_many(self, view: FeatureView, requests: Sequence[SaveRequest]) -> None:
        """See :class:`FeatureStore` (one ``save`` per request; the first error is raised after all ran)."""
        first: Exception | None = None
        for r in requests:
            try:
                self.save(view, r.pos, r.states, expected_offset=r.expected_offset, new_offset=r.new_offset,
                          ttl_ms=r.ttl_ms, watermark_ms=r.watermark_ms, latest=r.latest)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the other partitions
                first = first or exc
        if first is not None:
            raise first

    def start_save_many(self, view: FeatureView, requests: Sequence[SaveRequest]) -> SaveTicket:
        """See :class:`FeatureStore`: saved right here (memory has nothing to overlap); a settled ticket."""
        try:
            self.save_many(view, requests)
        except Exception as exc:  # noqa: BLE001 - the ticket raises it
            return SaveTicket.settled(exc)
        return SaveTicket.settled()

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
        """See :class:`FeatureStore`; ``watermark_ms`` is stored beside the offset when given."""
        self._index(view, pos, [*states, *(latest or {})], ttl_ms)  # before the state, as the Redis store does
        okey = offset_key_for(view, pos)
        check_offsets(decode_position(self.strings.get(okey))[0], expected_offset, new_offset)
        encode = codec_for(view.feature_names).encode
        for entity_id, (as_of, vector) in (latest or {}).items():
            key = latest_key_for(view, pos, entity_id)
            self.strings[key] = encode(as_of, vector)
            self.ttls[key] = ttl_ms
        for entity_id, st in states.items():
            sets, dels = st.to_redis()
            if not sets and not dels:
                continue
            key = state_key_for(view, pos, entity_id)
            h = self.hashes.setdefault(key, {})
            h.update(sets)
            for f in dels:
                h.pop(f, None)
            if h:
                self.ttls[key] = ttl_ms
            else:
                del self.hashes[key]
                self.ttls.pop(key, None)
        self.strings[okey] = encode_position(new_offset, watermark_ms)
        for st in states.values():
            st.mark_saved()

    def _index(self, view: FeatureView, pos: SourcePosition, entities: list[str], ttl_ms: int) -> None:
        """The entity -> partition index (``features.entity_index``), conflicts reported."""
        conflicts = []
        for e in entities:
            key = index_key(pos.topic, view.name, view.version, view.fingerprint(), pos.group, e)
            old = self.strings.get(key)
            self.strings[key] = str(pos.partition).encode()
            self.ttls[key] = 2 * ttl_ms
            if old is not None and int(old) != pos.partition:
                conflicts.append(PartitionConflict(pos.topic, e, int(old), pos.partition))
        self.conflicts.report(conflicts)

    def _partition(self, view: FeatureView, group: str, entity_id: str,
                   partition_of: Callable[[str], int] | None) -> int | None:
        """The indexed partition of ``entity_id``, else the guess, else None."""
        raw = self.strings.get(index_key(view.source_topic, view.name, view.version, view.fingerprint(), group,
                                         entity_id))
        return int(raw) if raw is not None else (partition_of(entity_id) if partition_of is not None else None)

    def read_features(
        self,
        view: FeatureView,
        entity_ids: Collection[str],
        now_ms: int,
        *,
        partition_of: Callable[[str], int] | None = None,
        group: str,
    ) -> dict[str, dict[str, float]]:
        """See :class:`FeatureStore`."""
        out = {}
        for e in entity_ids:
            p = self._partition(view, group, e, partition_of)
            h = {} if p is None else self.hashes.get(state_key_for(view, SourcePosition(group, view.source_topic, p),
                                                                   e), {})
            out[e] = EntityState.from_redis(h, view).features(view, now_ms)
        return out

    def read_latest(
        self, view: FeatureView, entity_ids: Collection[str], *, partition_of: Callable[[str], int] | None = None,
        group: str
    ) -> Mapping[str, tuple[int, dict[str, float]]]:
        """See :class:`FeatureStore`."""
        return LatestVectors(self.read_latest_matrix(view, entity_ids, partition_of=partition_of, group=group))

    def read_latest_matrix(
        self, view: FeatureView, entity_ids: Collection[str], *, partition_of: Callable[[str], int] | None = None,
        group: str
    ) -> LatestMatrix:
        """See :class:`FeatureStore`."""
        ids = list(entity_ids)
        parts = [self._partition(view, group, e, partition_of) for e in ids]
        raws = [None if p is None else self.strings.get(latest_key_for(view, SourcePosition(group, view.source_topic,
                                                                                               p), e))
                for e, p in zip(ids, parts, strict=True)]
        return codec_for(view.feature_names).matrix(ids, raws)

    def raw_state(self, view: FeatureView, pos: SourcePosition, entity_id: str) -> dict[bytes, bytes]:
        """The stored hash of one entity (for tests and debugging)."""
        return dict(self.hashes.get(state_key_for(view, pos, entity_id), {}))

    def entity_ttl_ms(self, view: FeatureView, pos: SourcePosition, entity_id: str, *,
                      latest: bool = False) -> int | None:
        """The TTL set on one entity key (None when the key does not exist); ``latest``: on its latest vector's
        key instead of its state's."""
        return self.ttls.get((latest_key_for if latest else state_key_for)(view, pos, entity_id))
