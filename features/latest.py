"""The stored form of an entity's latest feature vector, and decoding many of them into one matrix.

Value layout (little-endian, ``16 + 8 * n_features`` bytes; 96 for the 10 vitals features)::

    offset 0   b"DLv"     magic
    offset 3   u8         format version (1)
    offset 4   u32        number of features n (must match the view)
    offset 8   i64        as_of: event time (ms) of the entity's last applied event
    offset 16  n x f64    the features in ``view.feature_names`` order; NaN = missing or empty window

The key already pins the view's definition (its fingerprint hashes the feature list, order included), so the
order needs no names in the value. Every value of a view has the same length, so a batch of values is decoded
with one ``numpy.frombuffer`` of their concatenation, with no Python object per feature or per entity.
Values written by older writers (orjson ``{"as_of": ms, "f": {name: value}}``) are still read, one by one.

Example:
    >>> codec = LatestCodec(("a", "b"))
    >>> raw = codec.encode(5, {"b": 2.5})
    >>> len(raw), codec.decode(raw)
    (32, (5, {'a': nan, 'b': 2.5}))
    >>> m = codec.matrix(["x", "y", "z"], [raw, None, codec.encode(7, {"a": 1.0, "b": 0.0})])
    >>> m.as_of.tolist(), m.found.tolist()
    ([5, -1, 7], [True, False, True])
    >>> m.values[2].tolist(), m.to_dict()["z"]
    ([1.0, 0.0], (7, {'a': 1.0, 'b': 0.0}))
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import ItemsView, Iterator, Mapping, Sequence, ValuesView
from dataclasses import dataclass

import numpy as np
import orjson

from features.exceptions import FeatureError

MAGIC = b"DLv"
FORMAT = 1
HEADER = struct.Struct("<3sBIq")  # magic, format, n features, as_of ms


@dataclass(frozen=True, eq=False)
class LatestMatrix:
    """Latest vectors of many entities: row ``i`` is ``ids[i]`` (request order), columns ``feature_names``.

    ``found[i]`` is False for an entity never seen (or expired): its ``as_of`` is -1 and its row all NaN.
    """

    ids: list[str]
    feature_names: tuple[str, ...]
    as_of: np.ndarray  # int64, shape (n,)
    values: np.ndarray  # float64, shape (n, len(feature_names))
    found: np.ndarray  # bool, shape (n,)

    def to_dict(self) -> dict[str, tuple[int, dict[str, float]]]:
        """``{entity: (as_of_ms, {feature: value})}`` of the found entities (the ``read_latest`` form)."""
        names = self.feature_names
        if self.found.all():
            ids, as_of, rows = self.ids, self.as_of.tolist(), self.values.tolist()
        else:
            idx = np.flatnonzero(self.found)
            ids = [self.ids[i] for i in idx.tolist()]
            as_of, rows = self.as_of[idx].tolist(), self.values[idx].tolist()
        return {e: (t, dict(zip(names, row, strict=True))) for e, t, row in zip(ids, as_of, rows, strict=True)}

    def silent(self, watermark_ms: int, idle_ms: int) -> np.ndarray:
        """Mask of the found entities whose last event is more than ``idle_ms`` behind ``watermark_ms`` (the
        rule of ``features.silence.SilenceTracker.due``): their vectors are stale.

        >>> m = LatestCodec(("a",)).matrix(["p", "q", "r"], [LatestCodec(("a",)).encode(t, {}) for t in (0, 50)] + [None])
        >>> m.silent(watermark_ms=100, idle_ms=60).tolist()
        [True, False, False]
        """
        return self.found & (self.as_of < watermark_ms - idle_ms)


class LatestVectors(Mapping[str, tuple[int, dict[str, float]]]):
    """The ``read_latest`` form of a :class:`LatestMatrix`: ``{entity: (as_of_ms, {feature: value})}`` over the
    found entities in request order. A lookup builds that entity's dict on first access (a caller that needs a
    few does not pay for a thousand); ``values()``/``items()`` build all of them at once, as an eager dict would.

    >>> codec = LatestCodec(("a",))
    >>> got = LatestVectors(codec.matrix(["x", "y"], [codec.encode(3, {"a": 1.0}), None]))
    >>> list(got), len(got), got["x"], "y" in got
    (['x'], 1, (3, {'a': 1.0}), False)
    """

    def __init__(self, matrix: LatestMatrix) -> None:
        self.matrix = matrix
        if matrix.found.all():
            self._row = dict(zip(matrix.ids, range(len(matrix.ids)), strict=True))
        else:
            rows = np.flatnonzero(matrix.found).tolist()
            self._row = dict(zip([matrix.ids[i] for i in rows], rows, strict=True))
        self._built: dict[str, tuple[int, dict[str, float]]] = {}
        self._complete = False

    def __getitem__(self, entity_id: str) -> tuple[int, dict[str, float]]:
        got = self._built.get(entity_id)
        if got is None:
            i, m = self._row[entity_id], self.matrix
            got = self._built[entity_id] = (int(m.as_of[i]), dict(zip(m.feature_names, m.values[i].tolist(),
                                                                          strict=True)))
        return got

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, entity_id: object) -> bool:
        return entity_id in self._row

    def _all(self) -> dict[str, tuple[int, dict[str, float]]]:
        if not self._complete:  # one bulk conversion; entries already handed out stay the same objects
            full = self.matrix.to_dict()
            full.update(self._built)
            self._built, self._complete = full, True
        return self._built

    def values(self) -> ValuesView[tuple[int, dict[str, float]]]:  # type: ignore[override]
        """Every entry, built in bulk."""
        return self._all().values()

    def items(self) -> ItemsView[str, tuple[int, dict[str, float]]]:  # type: ignore[override]
        """Every entry, built in bulk."""
        return self._all().items()


class LatestCodec:
    """Encoder/decoder of the latest vectors of one feature list (see the module docstring)."""

    def __init__(self, feature_names: Sequence[str]) -> None:
        self.feature_names = tuple(feature_names)
        n = len(self.feature_names)
        self._names = frozenset(self.feature_names)
        self._pack = struct.Struct(f"<3sBIq{n}d").pack
        self._unpack = struct.Struct(f"<3sBIq{n}d").unpack
        self.size = HEADER.size + 8 * n
        self._head = HEADER.pack(MAGIC, FORMAT, n, 0)[:8]
        self.head = self._head  # what every value of this codec starts with (magic, format, n)
        self._head_int = int.from_bytes(self._head, "little")
        self._dtype = np.dtype([("head", "<u8"), ("as_of", "<i8"), ("f", "<f8", (n,))])

    def encode(self, as_of_ms: int, vector: Mapping[str, float]) -> bytes:
        """The stored value; features absent from ``vector`` are NaN, unknown ones are refused."""
        if not self._names.issuperset(vector):
            unknown = sorted(set(vector) - self._names)
            raise FeatureError(f"latest vector has features {unknown} that the view does not define; "
                               "write vectors computed from the same view definition as the key")
        get, nan = vector.get, math.nan
        return self._pack(MAGIC, FORMAT, len(self.feature_names), as_of_ms,
                          *[get(k, nan) for k in self.feature_names])

    def decode(self, raw: bytes) -> tuple[int, dict[str, float]]:
        """``(as_of_ms, {feature: value})`` of one stored value (any format this module reads)."""
        as_of, row = self._decode_row(raw)
        return as_of, dict(zip(self.feature_names, row, strict=True))

    def matrix(self, ids: list[str], raws: Sequence[bytes | None]) -> LatestMatrix:
        """A :class:`LatestMatrix` of ``ids`` from their stored values in the same order (None = absent)."""
        n, width = len(ids), len(self.feature_names)
        if len(raws) != n:
            raise ValueError(f"{n} ids but {len(raws)} values")
        if None not in raws:
            found_idx = None
            present: Sequence[bytes] = raws  # type: ignore[assignment]
        else:
            found_idx = [i for i, r in enumerate(raws) if r is not None]
            present = [raws[i] for i in found_idx]  # type: ignore[misc]
        as_of, vals = self._decode_many(present)
        if found_idx is None:
            return LatestMatrix(ids, self.feature_names, as_of, vals, np.ones(n, dtype=bool))
        all_as_of = np.full(n, -1, dtype=np.int64)
        all_vals = np.full((n, width), np.nan)
        found = np.zeros(n, dtype=bool)
        if found_idx:
            idx = np.asarray(found_idx)
            all_as_of[idx], all_vals[idx], found[idx] = as_of, vals, True
        return LatestMatrix(ids, self.feature_names, all_as_of, all_vals, found)

    def _decode_many(self, raws: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
        size = self.size
        if raws and set(map(len, raws)) == {size}:
            rec = np.frombuffer(b"".join(raws), dtype=self._dtype)
            if (rec["head"] == self._head_int).all():
                return rec["as_of"].copy(), rec["f"].copy()
        rows = [self._decode_row(r) for r in raws]  # a mixed batch: another format or a corrupt value
        width = len(self.feature_names)
        return (np.array([t for t, _ in rows], dtype=np.int64).reshape(len(rows)),
                np.array([r for _, r in rows], dtype=np.float64).reshape(len(rows), width))

    def _decode_row(self, raw: bytes) -> tuple[int, list[float]]:
        if raw[:8] == self._head and len(raw) == self.size:
            _, _, _, as_of, *row = self._unpack(raw)
            return as_of, row
        if raw[:1] == b"{":  # format 0 (orjson, written before format 1)
            body = orjson.loads(raw)
            f = body["f"]
            return int(body["as_of"]), [math.nan if f.get(k) is None else float(f[k]) for k in self.feature_names]
        raise FeatureError(f"a latest-vector value of {len(raw)} bytes is neither format {FORMAT} with "
                           f"{len(self.feature_names)} features nor JSON; its key or writer is wrong")


@functools.lru_cache(maxsize=256)
def codec_for(feature_names: tuple[str, ...]) -> LatestCodec:
    """The (memoised) codec of a feature list, e.g. ``codec_for(view.feature_names)``."""
    return LatestCodec(feature_names)
