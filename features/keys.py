"""The Redis key schema of the online feature store (a spec; ``tests/features/test_keys.py`` pins the bytes).

Keys::

    state:  dl:{<topic>:<partition>}:fv:<view>:v<version>:<fingerprint>:g:<group>:e:<entity_id>   (hash)
    offset: dl:{<topic>:<partition>}:fv:<view>:v<version>:<fingerprint>:g:<group>:off             (string)
    latest: dl:{<topic>:<partition>}:fv:<view>:v<version>:<fingerprint>:g:<group>:l:<entity_id>   (string)
    index:  dl:{ix:<topic>:<bucket>}:fv:<view>:v<version>:<fingerprint>:g:<group>:p:<entity_id>   (string)

* ``{<topic>:<partition>}`` is a **Redis Cluster hash tag**: only the part between the braces is hashed,
  so every key of one source partition lives in one slot. The save script touches the offset key and the
  state keys it guards in one atomic EVAL, which Redis Cluster only allows within one slot; and state
  spreads over shards like Kafka spreads partitions over workers. Kafka topic names cannot contain braces.
* ``<view>:v<version>:<fingerprint>``: a new version or any change of the definition (the fingerprint
  hashes it) reads and writes fresh keys, never old state. Old keys die by TTL.
* ``g:<group>``: the consumer group. State is written as full bucket values computed from the group's
  own offset, so two groups on one topic must not share state (they would double-apply events).
* ``{ix:<topic>:<bucket>}`` tags the **entity -> partition index** that serving reads use to find an entity
  whatever partitioner its producer used: ``<bucket>`` = CRC-32 (zlib) of the UTF-8 entity id mod
  :data:`INDEX_BUCKETS` (64), so a read groups 1,000 entities into at most 64 single-slot MGETs spread over the
  cluster. ``ix:`` cannot be a topic (Kafka topic names have no colon), so no index slot is a partition's slot.
* ``<view>`` and ``<group>`` are percent-encoded (``%`` and ``:`` and braces escaped) so no component can
  forge a separator; ``<entity_id>`` is last and used verbatim (UTF-8).

Values:

* state hash: field = bucket start (epoch ms, ASCII decimal); value = ``b"B"`` + u16 row width + the bucket's
  row of f64 (little-endian; per field, only the slots of ``features.aggregations`` its features read, in the
  layout ``features.plan`` derives from the view) + optionally ``b"|"`` and orjson ``{field index: [distinct
  values]}`` (spec and decoder: ``features.state``; the former orjson ``{field_name: [13 slots(, distinct)]}``
  values are still read). TTL (PEXPIRE on every save) = the view's ``retention_ms`` or more.
* index string: the partition (ASCII decimal) the entity's events last arrived on; written before the state
  (``features.entity_index``), TTL = twice the state's, refreshed by the writer at least every half state TTL.
* offset string: ``<last applied offset>`` or ``<last applied offset>:<watermark ms>``; no TTL.
* latest string: ``b"DLv" + u8 format (1) + u32 n + i64 as_of ms + n x f64`` (little-endian, features in the
  view's ``feature_names`` order, NaN when missing; spec and decoder: ``features.latest``): the entity's feature
  vector as of its last applied event, written in the same atomic save as its state, so serving reads one small
  fixed-size value per entity instead of folding buckets, and decodes a batch with one ``numpy.frombuffer``.
  Same TTL as the state. Readers also accept format 0, orjson ``{"as_of": ms, "f": {feature: value}}``.

Example:
    >>> state_key("vitals", 3, "vitals_v", 2, "abc123", "driftline-features", "p-17")
    b'dl:{vitals:3}:fv:vitals_v:v2:abc123:g:driftline-features:e:p-17'
    >>> offset_key("vitals", 3, "vitals_v", 2, "abc123", "driftline-features")
    b'dl:{vitals:3}:fv:vitals_v:v2:abc123:g:driftline-features:off'
"""

from __future__ import annotations

import functools
import zlib
from urllib.parse import quote

from features.definitions import FeatureView

PREFIX = "dl"
INDEX_BUCKETS = 64


def _esc(text: str) -> str:
    return quote(text, safe="-_.~!$&'()*+,;=@")


@functools.lru_cache(maxsize=65536)
def base_key(topic: str, partition: int, view_name: str, version: int, fingerprint: str, group: str) -> str:
    """The common prefix of every key of one (source partition, view definition, consumer group); memoised,
    since every key of a batch shares one of a few prefixes and escaping is the costly part."""
    return f"{PREFIX}:{{{topic}:{partition}}}:fv:{_esc(view_name)}:v{version}:{fingerprint}:g:{_esc(group)}"


def state_key(
    topic: str, partition: int, view_name: str, version: int, fingerprint: str, group: str, entity_id: str
) -> bytes:
    """Key of the state hash of one entity."""
    return f"{base_key(topic, partition, view_name, version, fingerprint, group)}:e:{entity_id}".encode()


def offset_key(
    topic: str, partition: int, view_name: str, version: int, fingerprint: str, group: str
) -> bytes:
    """Key of the last-applied-offset string of one source partition."""
    return f"{base_key(topic, partition, view_name, version, fingerprint, group)}:off".encode()


def latest_key(
    topic: str, partition: int, view_name: str, version: int, fingerprint: str, group: str, entity_id: str
) -> bytes:
    """Key of the string holding an entity's feature vector as of its last event (for serving reads).

    >>> latest_key("vitals", 3, "vitals_v", 2, "abc123", "driftline-features", "p-17")
    b'dl:{vitals:3}:fv:vitals_v:v2:abc123:g:driftline-features:l:p-17'
    """
    return f"{base_key(topic, partition, view_name, version, fingerprint, group)}:l:{entity_id}".encode()


def index_bucket(entity_id: str) -> int:
    """The index bucket of an entity (a spec: CRC-32 of its UTF-8 bytes mod :data:`INDEX_BUCKETS`).

    >>> index_bucket("p-17"), index_bucket("")
    (14, 0)
    """
    return zlib.crc32(entity_id.encode()) % INDEX_BUCKETS


@functools.lru_cache(maxsize=65536)
def index_base_key(topic: str, bucket: int, view_name: str, version: int, fingerprint: str, group: str) -> str:
    """The common prefix of the index keys of one bucket (memoised like :func:`base_key`)."""
    return f"{PREFIX}:{{ix:{topic}:{bucket}}}:fv:{_esc(view_name)}:v{version}:{fingerprint}:g:{_esc(group)}:p:"


def index_key(topic: str, view_name: str, version: int, fingerprint: str, group: str, entity_id: str) -> bytes:
    """Key of the string naming the partition an entity's events arrive on (for serving reads).

    >>> index_key("vitals", "vitals_v", 2, "abc123", "driftline-features", "p-17")
    b'dl:{ix:vitals:14}:fv:vitals_v:v2:abc123:g:driftline-features:p:p-17'
    """
    base = index_base_key(topic, index_bucket(entity_id), view_name, version, fingerprint, group)
    return f"{base}{entity_id}".encode()


def view_base_key(view: FeatureView, group: str, topic: str, partition: int) -> str:
    """``base_key`` for a feature view."""
    return base_key(topic, partition, view.name, view.version, view.fingerprint(), group)


def encode_position(offset: int, watermark_ms: int | None) -> bytes:
    """The offset string value.

    >>> encode_position(41, None), encode_position(41, 1700000000000)
    (b'41', b'41:1700000000000')
    """
    return str(offset).encode() if watermark_ms is None else f"{offset}:{watermark_ms}".encode()


def decode_position(raw: bytes | None) -> tuple[int, int | None]:
    """(offset, watermark) from the offset string value; ``(-1, None)`` when absent.

    >>> decode_position(b'41:1700000000000'), decode_position(None)
    ((41, 1700000000000), (-1, None))
    """
    if raw is None:
        return -1, None
    off, _, wm = raw.partition(b":")
    return int(off), (int(wm) if wm else None)
