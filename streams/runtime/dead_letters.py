"""Dead letters: the copy of a record no stage could use, on ``<topic>.dlq``, that always fits.

A dead letter carries the original key and value bytes and these headers (design.md, ``<topic>.dlq``):

* ``error``: the reason (``malformed_json``, ``bad_encoding``, ``future``, ``late``, ``poison``, ...);
* ``error_class``: the exception class that decided it (``RecordError`` for a validation verdict, the class
  of the unforeseen exception for ``poison``);
* ``error_detail`` (when there is one): at most 500 characters of explanation;
* ``source_topic``, ``source_partition``, ``source_offset``: where the record was read.

A record too large to be produced again (the producer refuses anything over its ``message.max.bytes``) is
dead-lettered *truncated* to fit, with ``truncated: 1``, ``original_size`` (bytes of the value) and
``original_sha256`` (hex, of the whole original value), so its copy never turns into a produce error loop.

Example:
    >>> from streams.runtime.batch import Output
    >>> out = Output("t.dlq", b"x" * 5000, b"k", headers_for("t", 0, 7, "too_large", "5000 bytes"))
    >>> small = fit(out, max_bytes=2048)
    >>> size_of(small) <= 2048, dict(small.headers)["original_size"], dict(small.headers)["truncated"]
    (True, b'5000', b'1')
    >>> fit(Output("t.dlq", b"short")).value
    b'short'
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, TypeVar

OutputT = TypeVar("OutputT")  # streams.runtime.batch.Output (not imported: it imports this module)

DETAIL_MAX_CHARS = 500
DLQ_SUFFIX = ".dlq"
DEFAULT_MAX_BYTES = 1_000_000  # librdkafka's default message.max.bytes (KafkaSettings.message_max_bytes)
MESSAGE_OVERHEAD = 64  # the record framing librdkafka adds to key + value + headers (varints; with room to spare)
HEADER_OVERHEAD = 12  # per header: the varints of its name's and value's lengths (with room to spare)
KEY_MAX_BYTES = 1024  # a truncated record keeps at most this much of its key


def dlq_topic(source_topic: str) -> str:
    """``<topic>.dlq`` (``streams.settings.TopicSettings.dlq`` gives the same name)."""
    return f"{source_topic}{DLQ_SUFFIX}"


def headers_for(topic: str | None, partition: int, offset: int, reason: str, detail: str = "",
                error_class: str = "RecordError") -> list[tuple[str, bytes]]:
    """The headers of a dead letter (see the module docstring)."""
    headers = [
        ("error", reason.encode()), ("source_topic", (topic or "").encode()),
        ("source_partition", str(partition).encode()), ("source_offset", str(offset).encode()),
        ("error_class", error_class.encode("utf-8", "replace")),
    ]
    if detail:
        headers.append(("error_detail", detail[:DETAIL_MAX_CHARS].encode("utf-8", "replace")))
    return headers


def is_dead_letter(out: Any) -> bool:
    """An output bound for a ``.dlq`` topic (the ones :func:`fit` may cut)."""
    return out.topic.endswith(DLQ_SUFFIX)


def size_of(out: Any) -> int:
    """Bytes of key, value and headers: what librdkafka compares with ``message.max.bytes``."""
    key = out.key.encode("utf-8", "replace") if isinstance(out.key, str) else (out.key or b"")
    headers = sum(len(k) + len(v or b"") + HEADER_OVERHEAD for k, v in out.headers or [])
    return len(out.value or b"") + len(key) + headers + MESSAGE_OVERHEAD


def fit(out: OutputT, max_bytes: int = DEFAULT_MAX_BYTES) -> OutputT:
    """``out`` unchanged when it fits ``max_bytes``; otherwise its value cut so it fits, with headers
    ``truncated``, ``original_size`` and ``original_sha256`` (of the value). A key over ``KEY_MAX_BYTES`` (or
    over what is left) is cut too, with ``original_key_size`` and ``original_key_sha256``; at a tiny limit
    ``error_detail`` goes last. ``max_bytes`` below ~1,000 (librdkafka's minimum) may not leave room for the
    headers themselves."""
    if size_of(out) <= max_bytes:
        return out
    o: Any = out
    value = o.value or b""
    key = o.key.encode("utf-8", "replace") if isinstance(o.key, str) else o.key
    headers = [*(o.headers or []), ("truncated", b"1"), ("original_size", str(len(value)).encode()),
               ("original_sha256", hashlib.sha256(value).hexdigest().encode())]
    bare = dataclasses.replace(o, value=b"", key=None, headers=headers)
    if key is not None and len(key) > min(KEY_MAX_BYTES, max_bytes - size_of(bare) - 2 * (64 + HEADER_OVERHEAD)):
        headers += [("original_key_size", str(len(key)).encode()),
                    ("original_key_sha256", hashlib.sha256(key).hexdigest().encode())]
        bare = dataclasses.replace(bare, headers=headers)
        key = key[:max(0, min(KEY_MAX_BYTES, max_bytes - size_of(bare)))]
    cut = dataclasses.replace(bare, key=key)
    if size_of(cut) > max_bytes:  # only the detail is left to give
        headers = [(k, v) for k, v in headers if k != "error_detail"]
        cut = dataclasses.replace(cut, headers=headers)
    return dataclasses.replace(cut, value=value[:max(0, max_bytes - size_of(cut))])
